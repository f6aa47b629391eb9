"""tradelog: imports run as jobs — the upload waits in tl_imports for its job.

Revision ID: tradelog_0004
"""
import sqlalchemy as sa
from alembic import op

revision = "tradelog_0004"
down_revision = "tradelog_0003"
branch_labels = None
depends_on = None


def upgrade():
    from plugins.tradelog import tables
    bind = op.get_bind()
    for table_name, names in tables.ADDED_0004.items():
        have = {c["name"] for c in sa.inspect(bind).get_columns(table_name)}
        for name in names:
            if name not in have:
                op.add_column(table_name, sa.Column(name, tables.metadata.tables[table_name].c[name].type, nullable=True))


def downgrade():
    from plugins.tradelog import tables
    for table_name, names in tables.ADDED_0004.items():
        with op.batch_alter_table(table_name) as batch:
            for name in names:
                batch.drop_column(name)
