"""The trade log's background jobs (the host's job system runs them on a job worker).

* ``tradelog.import`` — apply an uploaded broker file (``imports.run_import_job``); submitted
  by ``POST /api/imports`` and ``tradeloop import``.
* ``tradelog.settle_expired`` — the end-of-day settlement of expired option legs
  (``settlement.settle_expired``), scheduled 15 minutes after each trading day's close
  (``next_settlement_run``), when that day's PM settlement moment (and any AM one of the
  morning) has passed; the ``JOBS_SCHEDULE`` setting can move or turn it off.
"""
from __future__ import annotations

import datetime as dt

from marshmallow import Schema, fields, validate

from app.hookspecs import JobKind, ScheduleEntry
from plugins.tradelog import imports, markettime, service, settlement

AFTER_CLOSE = dt.timedelta(minutes=15)


class ImportParams(Schema):
    import_id = fields.String(required=True, validate=validate.Length(equal=36),
                              metadata={"description": "the import record the upload was kept in"})


def settle_expired_job(db, progress) -> dict:
    """Settle every user's expired option legs from the recorded settlement prices."""
    inside = None if db.dialect == "sqlite" else progress  # SQLite: one writer (see run_import_job)
    with db.transaction() as conn:
        report = settlement.settle_expired(conn, progress=inside)
    progress(1.0, f"{len(report['settled'])} settled, {len(report['awaiting_settlement_price'])} awaiting a price")
    return service._jsonable(report)


def next_settlement_run(after: dt.datetime) -> dt.datetime:
    """The first trading day's close (the PM settlement moment, early closes included) plus
    15 minutes strictly after ``after`` (an aware UTC datetime)."""
    day = markettime.local_date(after)
    for _ in range(15):
        if markettime.is_trading_day(day):
            run = markettime.settlement_moment("SPY", day, "PM") + AFTER_CLOSE
            if run > after:
                return run
        day += dt.timedelta(days=1)
    raise ValueError(f"no trading day within 15 days after {after.isoformat()}")  # pragma: no cover


KINDS = [
    JobKind(imports.JOB_KIND, imports.run_import_job,
            "Import a broker's CSV of executions (one transaction: all of it or nothing).",
            params_schema=ImportParams, max_attempts=3),
    JobKind("tradelog.settle_expired", settle_expired_job,
            "Settle expired option legs from the recorded settlement prices (every user's).",
            admin_only=True, max_attempts=3),
]

SCHEDULE = [
    ScheduleEntry("tradelog.settle_expired", "tradelog.settle_expired", moments=next_settlement_run,
                  description="After each trading day's close (+15 min): settle expired option legs."),
]
