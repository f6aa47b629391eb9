"""breakers: baseline (configs, states, trading state, audit, P&L ledger and book, order log,
slippage log, inputs, kill switches).

Revision ID: breakers_0001
"""
from alembic import op

revision = "breakers_0001"
down_revision = None
branch_labels = ("breakers",)
depends_on = None


def upgrade():
    from plugins.breakers.tables import metadata
    metadata.create_all(op.get_bind())


def downgrade():
    from plugins.breakers.tables import metadata
    metadata.drop_all(op.get_bind())
