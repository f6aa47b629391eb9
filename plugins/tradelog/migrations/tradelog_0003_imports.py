"""tradelog: the imports table (broker statement imports and their reconciliation reports),
and the position version a linked risk artifact was computed from.

Revision ID: tradelog_0003
"""
from alembic import op

revision = "tradelog_0003"
down_revision = "tradelog_0002"
branch_labels = None
depends_on = None


def upgrade():
    import sqlalchemy as sa
    from plugins.tradelog import tables
    bind = op.get_bind()
    tables.metadata.create_all(bind, tables=[tables.imports])
    if "position_version" not in {c["name"] for c in sa.inspect(bind).get_columns("tl_risk_artifacts")}:
        op.add_column("tl_risk_artifacts", sa.Column("position_version", sa.Integer, nullable=True))


def downgrade():
    from plugins.tradelog import tables
    with op.batch_alter_table("tl_risk_artifacts") as batch:
        batch.drop_column("position_version")
    tables.metadata.drop_all(op.get_bind(), tables=[tables.imports])
