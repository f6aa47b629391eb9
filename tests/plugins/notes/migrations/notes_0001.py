"""notes: baseline.

Revision ID: notes_0001
"""
from alembic import op

revision = "notes_0001"
down_revision = None
branch_labels = ("notes",)
depends_on = None


def upgrade():
    from tests.plugins.notes.plugin import metadata
    metadata.create_all(op.get_bind())


def downgrade():
    from tests.plugins.notes.plugin import metadata
    metadata.drop_all(op.get_bind())
