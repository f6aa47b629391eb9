"""mlloop: an index for the low-data regime count (settled ideas per VIX regime, over every
user's ``tracked_ideas``), which the scoring plan reads: without it the count scans the whole
table; with it, an index-only range over the settled ideas.

A fresh database has the index from mlloop_0001 (which creates ``tables.metadata``); an
existing one gets it here.

Revision ID: mlloop_0005
"""
from alembic import op

revision = "mlloop_0005"
down_revision = "mlloop_0004"
branch_labels = None
depends_on = None

INDEX = "ix_tracked_ideas_status_regime"


def upgrade():
    from plugins.mlloop import tables
    index = next(i for i in tables.tracked_ideas.indexes if i.name == INDEX)
    index.create(op.get_bind(), checkfirst=True)


def downgrade():
    op.drop_index(INDEX, table_name="tracked_ideas")
