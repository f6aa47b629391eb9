"""mlloop: model registry, audit, experiments, drift reports, settings.

Revision ID: mlloop_0002
"""
from alembic import op

revision = "mlloop_0002"
down_revision = "mlloop_0001"
branch_labels = None
depends_on = None


def upgrade():
    from plugins.mlloop.tables import registry_metadata as metadata
    metadata.create_all(op.get_bind())


def downgrade():
    from plugins.mlloop.tables import registry_metadata as metadata
    metadata.drop_all(op.get_bind())
