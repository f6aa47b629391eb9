"""tradelog: baseline (positions, legs, fills, position versions, journal, orders, risk refs).

Revision ID: tradelog_0001
"""
from alembic import op

revision = "tradelog_0001"
down_revision = None
branch_labels = ("tradelog",)
depends_on = None


def upgrade():
    from plugins.tradelog.tables import metadata
    metadata.create_all(op.get_bind())


def downgrade():
    from plugins.tradelog.tables import metadata
    metadata.drop_all(op.get_bind())
