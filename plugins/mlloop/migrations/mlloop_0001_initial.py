"""mlloop: baseline (tracked ideas, selector params, market contexts, decisions, feature
snapshots, the P&L ledger, idea snapshots, user actions, labels, daily performance).

Revision ID: mlloop_0001
"""
from alembic import op

revision = "mlloop_0001"
down_revision = None
branch_labels = ("mlloop",)
depends_on = None


def upgrade():
    from plugins.mlloop.tables import metadata
    metadata.create_all(op.get_bind())


def downgrade():
    from plugins.mlloop.tables import metadata
    metadata.drop_all(op.get_bind())
