"""core: the jobs table (background jobs and scheduled runs, app/jobs/tables.py).

Revision ID: core_0002
"""
import sqlalchemy as sa
from alembic import op

from app.db import JSONType, UtcDateTime

revision = "core_0002"
down_revision = "core_0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=True),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("message", sa.String(500), nullable=False),
        sa.Column("result", JSONType, nullable=True),
        sa.Column("error", JSONType, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("lease_token", sa.String(36), nullable=True),
        sa.Column("lease_owner", sa.String(120), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime, nullable=True),
        sa.Column("schedule_key", sa.String(200), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("enqueued_at", UtcDateTime, nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=True),
        sa.Column("heartbeat_at", UtcDateTime, nullable=True),
        sa.Column("finished_at", UtcDateTime, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.UniqueConstraint("schedule_key", name="uq_jobs_schedule_key"),
    )
    op.create_index("ix_jobs_user_created", "jobs", ["user_id", "created_at"])
    op.create_index("ix_jobs_state_lease", "jobs", ["state", "lease_expires_at"])
    op.create_index("ix_jobs_admin_created", "jobs", ["admin", "created_at"])


def downgrade():
    op.drop_table("jobs")
