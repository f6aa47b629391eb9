"""mlloop: the deep path's records (``ml_deep_scores``: one immutable deep score per decision).

A fresh database has the table from mlloop_0001 (which creates ``tables.metadata``); an
existing one gets it here.

Revision ID: mlloop_0004
"""
from alembic import op

revision = "mlloop_0004"
down_revision = "mlloop_0003"
branch_labels = None
depends_on = None


def upgrade():
    from plugins.mlloop import tables
    tables.metadata.create_all(op.get_bind(), tables=[tables.ml_deep_scores])  # checkfirst


def downgrade():
    op.drop_table("ml_deep_scores")
