"""The job rows: every state change of a job, as conditional SQL, plus its event.

A job moves ``queued -> running -> succeeded | failed | cancelled`` (and ``running ->
queued`` when a retry or a dead worker's reclaim gives it another run). Each claim hands the
run a fresh ``lease_token`` and a lease (``lease_expires_at``) that its heartbeat extends;
every later write of that run says ``WHERE lease_token = :token AND state = 'running'``. So:

* a worker killed mid-job stops heartbeating, its lease runs out and ``reap`` gives the job
  another run (``max_attempts``) or fails it with the reason — never "running" forever;
* a run presumed dead that wakes up later (a stopped process, a partition) finds its token
  gone: its progress, heartbeat and completion change nothing, so a job completes once, with
  one result.

Every change emits an event on the host's ``jobs.events`` topic in the same transaction
(``JobQueued``, ``JobStarted``, ``JobProgressed``, ``JobSucceeded``, ``JobFailed``,
``JobCancelled``, ``JobCancelRequested``, ``JobRetrying``), which ``/sse/jobs`` streams to the
job's owner. No Flask here: the API, the CLI, the worker and tests call these functions.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app import errors
from app.db import utcnow
from app.jobs.tables import FINISHED, jobs
from bus import outbox
from bus.envelope import JSONEncoder

TOPIC = "jobs.events"
MESSAGE_MAX = 500


class LeaseLost(Exception):
    """This run no longer holds the job (its lease expired and the job was reclaimed, or it
    finished elsewhere): stop, and write nothing more."""


class JobCancelled(Exception):
    """The job was cancelled while running (raised from ``progress``)."""


def jsonable(value):
    """The value as plain JSON types (Decimal -> string, datetime -> ISO), or a TypeError
    naming what could not be stored."""
    return json.loads(json.dumps(value, cls=JSONEncoder))


def public(row) -> dict:
    """The API representation of a job row (``JobSchema``)."""
    r = row._mapping if hasattr(row, "_mapping") else row
    started, finished = r["started_at"], r["finished_at"]
    end = finished or (utcnow() if r["state"] == "running" else None)
    return {
        "id": r["id"], "kind": r["kind"], "state": r["state"],
        "progress": float(r["progress"] or 0.0), "message": r["message"] or "",
        "params": r["params"] or {}, "result": r["result"], "error": r["error"],
        "attempts": r["attempts"], "max_attempts": r["max_attempts"],
        "cancel_requested": bool(r["cancel_requested"]),
        "user_id": r["user_id"], "admin": bool(r["admin"]),
        "schedule": (r["schedule_key"] or "").split("@")[0] or None,
        "created_at": r["created_at"], "started_at": started, "heartbeat_at": r["heartbeat_at"],
        "finished_at": finished,
        "queued_seconds": round((started - r["created_at"]).total_seconds(), 3) if started else None,
        "run_seconds": round((end - started).total_seconds(), 3) if started and end else None,
        "version": r["version"],
    }


def _event_payload(row, *, with_result: bool = False) -> dict:
    r = row._mapping
    payload = {"job_id": r["id"], "kind": r["kind"], "state": r["state"],
               "progress": float(r["progress"] or 0.0), "message": r["message"] or "",
               "attempts": r["attempts"]}
    if r["error"] is not None:
        payload["error"] = r["error"]
    if with_result:
        payload["result"] = r["result"]
    return payload


def _emit(conn: Connection, job_id: str, type_: str, *, with_result: bool = False) -> dict:
    row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
    outbox.emit(conn, TOPIC, type_, aggregate_type="job", aggregate_id=job_id,
                aggregate_version=row.version, payload=_event_payload(row, with_result=with_result),
                user_id=row.user_id)
    return public(row)


def get(conn: Connection, job_id: str):
    return conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()


# -- submitting, reading, cancelling (on behalf of a user) ------------------------------
def create(conn: Connection, *, kind: str, params: dict, user_id: int | None, admin: bool,
           max_attempts: int, schedule_key: str | None = None, job_id: str | None = None) -> dict:
    """Insert a queued job (the caller enqueues it in the same transaction's lifetime)."""
    now = utcnow()
    job_id = job_id or str(uuid.uuid4())
    conn.execute(jobs.insert().values(
        id=job_id, kind=kind, user_id=user_id, admin=admin, state="queued", params=jsonable(params or {}),
        progress=0.0, message="queued", attempts=0, max_attempts=max_attempts, cancel_requested=False,
        schedule_key=schedule_key, created_at=now, enqueued_at=now, version=1))
    return _emit(conn, job_id, "JobQueued")


def _visible(viewer) -> sa.ColumnElement:
    if viewer is None:  # the operator (CLI): every job
        return sa.true()
    cond = jobs.c.user_id == viewer.id
    if getattr(viewer, "is_admin", False):
        cond = sa.or_(cond, jobs.c.admin.is_(True))
    return cond


def get_visible(conn: Connection, viewer, job_id: str) -> dict:
    """The job if ``viewer`` may see it (its owner; any admin for admin jobs; ``None``: the
    operator, every job), else 404."""
    row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id, _visible(viewer))).first()
    if row is None:
        raise errors.NotFound("no such job", code="job_not_found")
    return public(row)


def list_visible(conn: Connection, viewer, *, state: str | None = None, kind: str | None = None,
                 page: int = 1, page_size: int = 50) -> tuple[list[dict], int]:
    """One page, newest first, of the viewer's jobs (plus admin and scheduled jobs for an
    admin), and how many match in all."""
    cond = [_visible(viewer)]
    if state:
        cond.append(jobs.c.state == state)
    if kind:
        cond.append(jobs.c.kind == kind)
    total = conn.execute(sa.select(sa.func.count()).select_from(jobs).where(*cond)).scalar()
    rows = conn.execute(sa.select(jobs).where(*cond).order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
                        .limit(page_size).offset((page - 1) * page_size)).fetchall()
    return [public(r) for r in rows], int(total)


def request_cancel(conn: Connection, viewer, job_id: str) -> tuple[dict, bool]:
    """Cancel a job. Queued: cancelled at once. Running: ``cancel_requested`` is set and the
    run stops at its next ``progress`` call (or heartbeat). Returns ``(job, finished_now)``.
    409 ``job_finished`` for a job that already ended."""
    current = get_visible(conn, viewer, job_id)
    now = utcnow()
    done = conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "queued").values(
        state="cancelled", cancel_requested=True, finished_at=now, message="cancelled before it started",
        version=jobs.c.version + 1)).rowcount
    if done:
        return _emit(conn, job_id, "JobCancelled"), True
    done = conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "running").values(
        cancel_requested=True, version=jobs.c.version + 1)).rowcount
    if done:
        return _emit(conn, job_id, "JobCancelRequested"), False
    current = get_visible(conn, viewer, job_id)
    raise errors.Conflict(f"job already {current['state']}", code="job_finished", current=current)


# -- a run (the worker side) ---------------------------------------------------------------
def claim(conn: Connection, job_id: str, *, owner: str, lease_seconds: float) -> tuple[dict, str] | None:
    """Start a run of a queued job: ``(job, lease_token)``, or None when the job is not queued
    (already running elsewhere, finished, cancelled — or not committed yet)."""
    now = utcnow()
    token = str(uuid.uuid4())
    done = conn.execute(jobs.update().where(
        jobs.c.id == job_id, jobs.c.state == "queued", jobs.c.cancel_requested.is_(False)).values(
        state="running", lease_token=token, lease_owner=owner[:120],
        lease_expires_at=now + dt.timedelta(seconds=lease_seconds), attempts=jobs.c.attempts + 1,
        started_at=now, heartbeat_at=now, message="started",
        version=jobs.c.version + 1)).rowcount
    if not done:
        return None
    return _emit(conn, job_id, "JobStarted"), token


def _own(job_id: str, token: str):
    return sa.and_(jobs.c.id == job_id, jobs.c.lease_token == token, jobs.c.state == "running")


def heartbeat(conn: Connection, job_id: str, token: str, *, lease_seconds: float) -> bool:
    """Extend the lease. Returns whether a cancel was requested; raises ``LeaseLost``."""
    now = utcnow()
    done = conn.execute(jobs.update().where(_own(job_id, token)).values(
        heartbeat_at=now, lease_expires_at=now + dt.timedelta(seconds=lease_seconds))).rowcount
    if not done:
        raise LeaseLost(job_id)
    return bool(conn.execute(sa.select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar())


def report_progress(conn: Connection, job_id: str, token: str, fraction: float, message: str, *,
                    lease_seconds: float) -> bool:
    """Record progress (and extend the lease); emits ``JobProgressed``. Returns whether a
    cancel was requested; raises ``LeaseLost``."""
    now = utcnow()
    done = conn.execute(jobs.update().where(_own(job_id, token)).values(
        progress=fraction, message=(message or "")[:MESSAGE_MAX], heartbeat_at=now,
        lease_expires_at=now + dt.timedelta(seconds=lease_seconds), version=jobs.c.version + 1)).rowcount
    if not done:
        raise LeaseLost(job_id)
    job = _emit(conn, job_id, "JobProgressed")
    return job["cancel_requested"]


def complete(conn: Connection, job_id: str, token: str, result) -> bool:
    """Succeed the job with ``result`` — only if this run still holds it. False: the result
    is discarded (the job was reclaimed or cancelled meanwhile)."""
    done = conn.execute(jobs.update().where(_own(job_id, token)).values(
        state="succeeded", result=jsonable(result), progress=1.0, message="done", finished_at=utcnow(),
        lease_token=None, lease_expires_at=None, version=jobs.c.version + 1)).rowcount
    if done:
        _emit(conn, job_id, "JobSucceeded", with_result=True)
    return bool(done)


def fail(conn: Connection, job_id: str, token: str, error: dict) -> bool:
    done = conn.execute(jobs.update().where(_own(job_id, token)).values(
        state="failed", error=jsonable(error), message=str(error.get("message", ""))[:MESSAGE_MAX],
        finished_at=utcnow(), lease_token=None, lease_expires_at=None, version=jobs.c.version + 1)).rowcount
    if done:
        _emit(conn, job_id, "JobFailed")
    return bool(done)


def cancelled(conn: Connection, job_id: str, token: str) -> bool:
    """The run stopped because a cancel was requested."""
    done = conn.execute(jobs.update().where(_own(job_id, token)).values(
        state="cancelled", message="cancelled", finished_at=utcnow(), lease_token=None,
        lease_expires_at=None, version=jobs.c.version + 1)).rowcount
    if done:
        _emit(conn, job_id, "JobCancelled")
    return bool(done)


def retry(conn: Connection, job_id: str, token: str, error: dict) -> bool:
    """Give a failed run another try (``retry_on``): back to queued, the error kept."""
    now = utcnow()
    done = conn.execute(jobs.update().where(_own(job_id, token), jobs.c.attempts < jobs.c.max_attempts).values(
        state="queued", error=jsonable(error), message=f"retrying: {error.get('message', '')}"[:MESSAGE_MAX],
        lease_token=None, lease_expires_at=None, enqueued_at=now, version=jobs.c.version + 1)).rowcount
    if done:
        _emit(conn, job_id, "JobRetrying")
    return bool(done)


def release(conn: Connection, job_id: str, token: str) -> bool:
    """Hand a run back unfinished (its worker is shutting down): queued again, this attempt
    not counted, so a stop never costs a job its only attempt."""
    done = conn.execute(jobs.update().where(_own(job_id, token)).values(
        state="queued", message="released by a stopping worker", attempts=jobs.c.attempts - 1,
        lease_token=None, lease_expires_at=None, enqueued_at=utcnow(), version=jobs.c.version + 1)).rowcount
    if done:
        _emit(conn, job_id, "JobRetrying")
    return bool(done)


# -- recovery (every worker's maintenance tick) -------------------------------------------
def reap(conn: Connection, now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """Runs whose lease expired (their worker died or hung): another run when attempts are
    left (``queued``; the caller enqueues it), else ``failed`` with ``worker_lost``; a job
    whose cancel was requested ends ``cancelled``. Returns ``[(job_id, new_state)]``."""
    now = now or utcnow()
    stale = conn.execute(sa.select(jobs.c.id, jobs.c.lease_token, jobs.c.lease_owner, jobs.c.attempts,
                                   jobs.c.max_attempts, jobs.c.cancel_requested, jobs.c.lease_expires_at)
                         .where(jobs.c.state == "running", jobs.c.lease_expires_at < now)
                         .order_by(jobs.c.lease_expires_at).limit(100)).fetchall()
    out = []
    for r in stale:
        own = _own(r.id, r.lease_token)
        lost = (f"worker {r.lease_owner} stopped heartbeating (lease expired "
                f"{r.lease_expires_at:%Y-%m-%dT%H:%M:%S}Z) during attempt {r.attempts} of {r.max_attempts}")
        if r.cancel_requested:
            values, state, event = dict(state="cancelled", message="cancelled", finished_at=now), "cancelled", "JobCancelled"
        elif r.attempts < r.max_attempts:
            values = dict(state="queued", message=f"retrying: {lost}"[:MESSAGE_MAX], enqueued_at=now,
                          error={"code": "worker_lost", "message": lost})
            state, event = "queued", "JobRetrying"
        else:
            values = dict(state="failed", message=lost[:MESSAGE_MAX], finished_at=now,
                          error={"code": "worker_lost", "message": lost})
            state, event = "failed", "JobFailed"
        done = conn.execute(jobs.update().where(own).values(
            lease_token=None, lease_expires_at=None, version=jobs.c.version + 1, **values)).rowcount
        if done:
            _emit(conn, r.id, event)
            out.append((r.id, state))
    return out


def stale_queued(conn: Connection, *, older_than: dt.datetime, now: dt.datetime | None = None,
                 limit: int = 500) -> list[str]:
    """Queued jobs enqueued before ``older_than`` that no worker has claimed: their queue
    message may be lost (a queue restarted without persistence, an enqueue whose process
    died). Marks them re-enqueued now and returns their ids; a duplicate message is harmless
    (``claim`` lets exactly one run start)."""
    now = now or utcnow()
    ids = conn.execute(sa.select(jobs.c.id).where(jobs.c.state == "queued", jobs.c.enqueued_at < older_than)
                       .order_by(jobs.c.enqueued_at).limit(limit)).scalars().all()
    out = []
    for job_id in ids:
        if conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "queued",
                                            jobs.c.enqueued_at < older_than).values(enqueued_at=now)).rowcount:
            out.append(job_id)
    return out


def purge_finished(conn: Connection, *, before: dt.datetime) -> int:
    """Delete finished jobs that ended before ``before`` (retention)."""
    return conn.execute(jobs.delete().where(jobs.c.state.in_(FINISHED), jobs.c.finished_at < before)).rowcount
