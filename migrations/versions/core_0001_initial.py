"""core: users, API tokens, idempotency records and the bus tables (outbox, stream
positions, cursors, processed events, dead letters).

Baseline revision: it creates the tables as declared in app/tables.py and bus/outbox.py at
this revision. Later changes get their own revisions written with ``op.*`` operations.

Revision ID: core_0001
"""
from alembic import op

revision = "core_0001"
down_revision = None
branch_labels = ("core",)
depends_on = None


def upgrade():
    from app.tables import metadata as core
    from bus.outbox import metadata as bus
    bind = op.get_bind()
    core.create_all(bind)
    bus.create_all(bind)


def downgrade():
    from app.tables import metadata as core
    from bus.outbox import metadata as bus
    bind = op.get_bind()
    bus.drop_all(bind)
    core.drop_all(bind)
