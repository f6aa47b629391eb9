"""The host's ``jobs`` table (core Alembic branch, revision core_0002).

One row per job: what users see at /api/jobs. The queue (Huey's storage: a SQLite file or
Redis) only carries job ids; this row is the truth about a job's state, so a lost queue
message or a dead worker never loses a job (``app.jobs.store.recover`` re-enqueues it).
"""
from __future__ import annotations

import sqlalchemy as sa

from app.db import JSONType, UtcDateTime

metadata = sa.MetaData()

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(100), nullable=False),
    # Who submitted it (NULL: the schedule). admin = only admins see it, and every admin does.
    sa.Column("user_id", sa.Integer, nullable=True),
    sa.Column("admin", sa.Boolean, nullable=False, default=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("params", JSONType, nullable=False),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("message", sa.String(500), nullable=False, default=""),
    sa.Column("result", JSONType, nullable=True),
    sa.Column("error", JSONType, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False, default=1),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    # The run holding the job: a fresh token per claim; every write of a run is conditional
    # on it, so a run that lost its lease (presumed dead) can never complete the job.
    sa.Column("lease_token", sa.String(36), nullable=True),
    sa.Column("lease_owner", sa.String(120), nullable=True),
    sa.Column("lease_expires_at", UtcDateTime, nullable=True),
    # One job per schedule slot across every worker: "<entry>@<slot ISO time>".
    sa.Column("schedule_key", sa.String(200), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("enqueued_at", UtcDateTime, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("heartbeat_at", UtcDateTime, nullable=True),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("version", sa.Integer, nullable=False, default=1),
    sa.UniqueConstraint("schedule_key", name="uq_jobs_schedule_key"),
    sa.Index("ix_jobs_user_created", "user_id", "created_at"),
    sa.Index("ix_jobs_state_lease", "state", "lease_expires_at"),
    sa.Index("ix_jobs_admin_created", "admin", "created_at"),
)
