"""The host's own job kinds and schedule entries (owner ``host``): housekeeping that used to
wait for someone to run a command."""
from __future__ import annotations

import datetime as dt

from marshmallow import Schema, fields, validate

from app.hookspecs import JobKind, ScheduleEntry


def purge_idempotency_keys(db) -> dict:
    """Delete Idempotency-Key records past their expiry (IDEMPOTENCY_TTL_SECONDS)."""
    from app.idempotency import purge_expired
    return {"deleted": purge_expired(db)}


class PurgeJobsParams(Schema):
    keep_days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=3650),
                               metadata={"description": "finished jobs older than this are deleted"})


def purge_jobs(db, params) -> dict:
    """Delete finished jobs (succeeded, failed, cancelled) that ended more than
    ``keep_days`` ago."""
    from app.db import utcnow
    from app.jobs import store
    with db.transaction() as conn:
        n = store.purge_finished(conn, before=utcnow() - dt.timedelta(days=params["keep_days"]))
    return {"deleted": n}


KINDS = [
    JobKind("host.purge_idempotency_keys", purge_idempotency_keys,
            "Delete expired Idempotency-Key records.", admin_only=True, max_attempts=3),
    JobKind("host.purge_jobs", purge_jobs, "Delete finished jobs past their retention.",
            params_schema=PurgeJobsParams, admin_only=True, max_attempts=3),
]

SCHEDULE = [
    ScheduleEntry("host.purge_idempotency_keys", "host.purge_idempotency_keys", every_seconds=3600,
                  description="Idempotency-Key expiry, hourly."),
    ScheduleEntry("host.purge_jobs", "host.purge_jobs", cron="15 3 * * *", params={"keep_days": 30},
                  description="Job retention (30 days), daily at 03:15 UTC."),
]
