"""core: server-side browser sessions (app.sessions) and leases (bus.lease: one relay at a
time).

Revision ID: core_0003
"""
import sqlalchemy as sa
from alembic import op

revision = "core_0003"
down_revision = "core_0002"
branch_labels = None
depends_on = None


def upgrade():
    # core_0001 creates tables from the live metadata, so a database created after this
    # revision was written may have them already.
    from app.tables import browser_sessions
    from bus.lease import leases
    bind = op.get_bind()
    have = set(sa.inspect(bind).get_table_names())
    for table in (leases, browser_sessions):
        if table.name not in have:
            table.create(bind)


def downgrade():
    op.drop_table("browser_sessions")
    op.drop_table("bus_leases")
