"""riskgraph: baseline (strategies, versions, templates, risk artifacts, position books).

Revision ID: riskgraph_0001
"""
from alembic import op

revision = "riskgraph_0001"
down_revision = None
branch_labels = ("riskgraph",)
depends_on = None


def upgrade():
    from plugins.riskgraph.tables import metadata
    metadata.create_all(op.get_bind())


def downgrade():
    from plugins.riskgraph.tables import metadata
    metadata.drop_all(op.get_bind())
