"""Background jobs and the schedule: heavy work off the request loop, as rows users can see.

A **job** is a row of the host's ``jobs`` table (``app.jobs.tables``) plus a message on a Huey
queue (``app.jobs.queue``: SQLite file embedded, Redis in production). Submitting answers at
once; a job worker (``tradeloop jobs worker``, a separate process — ``tradeloop serve`` starts
one on the embedded default) claims the row, runs the kind's plain service function with a
``progress(fraction, message)`` callback, and records the result or the error. Users follow
it at ``GET /api/jobs/{id}`` and ``/sse/jobs``; ``DELETE`` cancels it.

For plugins (docs/plugins.md, docs/jobs.md):

* declare kinds with the ``register_job_kinds`` hook (``app.hookspecs.JobKind``) and recurring
  runs with ``register_schedule`` (``app.hookspecs.ScheduleEntry``);
* submit from a view and answer 202::

      from app import conn, jobs, user
      return jobs.accepted(jobs.submit(conn(), "mlloop.train", data, user=user()))

* run CPU work a request must wait for (no job row) with ``app.jobs.offloop.run_cpu``.

Huey is imported lazily (``app.jobs.queue`` on the first submit, the schedule's cron check on
its first use), so neither the web process's start-up nor ``tradeloop --help`` pays for it.
"""
from __future__ import annotations

import datetime as dt
import logging

from app import errors
from app.jobs import store

log = logging.getLogger(__name__)

SSE_PATH = "/sse/jobs"


class JobsUnavailable(errors.DomainError):
    """The job queue is unreachable: nothing was submitted; retry shortly."""
    status = 503
    code = "jobs_unavailable"


class JobSystem:
    """Everything jobs for one app: the declared kinds, the schedule, the queue, and the
    operations on job rows. ``ext.jobs`` (``app.extensions['tradeloop'].jobs``)."""

    def __init__(self, ext):
        from app.jobs import kinds as host_kinds
        from app.jobs.queue import JobQueue
        from app.jobs.schedule import Schedule, parse_overrides
        self.ext = ext
        cfg = ext.config
        self.kinds: dict = {}
        self.owners: dict[str, str] = {}
        declared = [("host", k) for k in host_kinds.KINDS] + ext.plugins.collect_unique(
            "register_job_kinds", "job kind", key=lambda k: k.name)
        for owner, kind in declared:
            if kind.name in self.kinds:
                from app.plugins import PluginError
                raise PluginError(f"job kind {kind.name!r} is claimed by both {self.owners[kind.name]!r} and {owner!r}")
            self.kinds[kind.name], self.owners[kind.name] = kind, owner
        entries = [("host", e) for e in host_kinds.SCHEDULE] + ext.plugins.collect_unique(
            "register_schedule", "schedule entry", key=lambda e: e.name)
        names: dict[str, str] = {}
        for owner, entry in entries:
            if entry.name in names:
                from app.plugins import PluginError
                raise PluginError(f"schedule entry {entry.name!r} is claimed by both {names[entry.name]!r} and {owner!r}")
            names[entry.name] = owner
        self.schedule = Schedule(self, entries, parse_overrides(cfg.get("JOBS_SCHEDULE")),
                                 catchup_seconds=float(cfg["JOBS_SCHEDULE_CATCHUP_SECONDS"]))
        self.queue = JobQueue(cfg, ext.db.url, ext.namespace, self._handle)

    # -- the queue's handler ---------------------------------------------------------------
    def _handle(self, job_id: str, waits: int = 0):
        from app.jobs import runner
        runner.execute(self, job_id, waits=waits)

    # -- submitting -----------------------------------------------------------------------
    def kind(self, name: str):
        kind = self.kinds.get(name)
        if kind is None:
            raise errors.field_error("kind", f"unknown job kind {name!r}; declared: {', '.join(sorted(self.kinds))}")
        return kind

    def validate(self, kind, params) -> dict:
        """The job's params as loaded by the kind's schema (422 naming the field)."""
        from marshmallow import ValidationError
        params = params or {}
        if not isinstance(params, dict):
            raise errors.field_error("params", "must be an object")
        if kind.params_schema is None:
            if params:
                raise errors.Unprocessable("this job kind takes no params",
                                           errors={"json": {"params": {k: ["unknown field"] for k in params}}})
            return {}
        schema = kind.params_schema() if isinstance(kind.params_schema, type) else kind.params_schema
        try:
            loaded = schema.load(params)
        except ValidationError as exc:
            fields_ = ", ".join(f"params.{k}" for k in exc.messages) if isinstance(exc.messages, dict) else "params"
            raise errors.Unprocessable(f"invalid input: {fields_}", errors={"json": {"params": exc.messages}})
        return store.jsonable(loaded)

    def submit(self, conn, kind: str, params: dict | None = None, *, user_id: int | None,
               is_admin: bool = False, schedule_key: str | None = None) -> dict:
        """Create a queued job in ``conn``'s transaction and put its message on the queue.

        Raises 422 (unknown kind, bad params, naming the field), 403 ``admin_only`` (an admin
        kind submitted by a non-admin) and 503 ``jobs_unavailable`` when the queue is down —
        then the caller's transaction must roll back (a request's does), so nothing is left
        half-written. The message may reach a worker before the row commits; the worker
        looks again for a few seconds (``runner.MAX_WAITS``)."""
        from app.jobs.queue import QueueUnavailable
        k = self.kind(kind)
        if k.admin_only and not is_admin and user_id is not None:
            raise errors.Forbidden(f"job kind {kind!r} is for admins", code="admin_only")
        loaded = self.validate(k, params)
        job = store.create(conn, kind=kind, params=loaded, user_id=user_id, admin=bool(k.admin_only or user_id is None),
                           max_attempts=max(1, int(k.max_attempts)), schedule_key=schedule_key)
        try:
            self.queue.enqueue(job["id"])
        except QueueUnavailable as exc:
            raise JobsUnavailable(f"the job queue is unavailable ({exc}); nothing was submitted, retry shortly")
        return job

    def submit_system(self, kind: str, params: dict | None = None, *, schedule_key: str | None = None) -> dict:
        """Submit a job on no user's behalf (the schedule, maintenance): an admin job."""
        with self.ext.db.transaction() as conn:
            return self.submit(conn, kind, params, user_id=None, is_admin=True, schedule_key=schedule_key)

    def cancel(self, conn, viewer, job_id: str) -> tuple[dict, bool]:
        job, finished = store.request_cancel(conn, viewer, job_id)
        if finished:
            self.queue.revoke(job_id)
        return job, finished

    # -- running --------------------------------------------------------------------------
    def recover(self, now: dt.datetime | None = None) -> dict:
        """Reclaim runs whose worker died (lease expired) and re-enqueue queued jobs whose
        message is missing. Every worker calls this each tick; all of it is conditional SQL,
        so concurrent workers never double a job."""
        from app.db import utcnow
        from app.jobs.queue import QueueUnavailable
        now = now or utcnow()
        with self.ext.db.transaction() as conn:
            reaped = store.reap(conn, now)
        requeue = [job_id for job_id, state in reaped if state == "queued"]
        older = now - dt.timedelta(seconds=float(self.ext.config["JOBS_REQUEUE_AFTER_SECONDS"]))
        try:
            waiting = self.queue.message_ids()
        except QueueUnavailable:
            return {"reaped": reaped, "requeued": []}
        with self.ext.db.transaction() as conn:
            stale = store.stale_queued(conn, older_than=older, now=now)
        requeue += [j for j in stale if j not in waiting]
        done = []
        for job_id in requeue:
            try:
                self.queue.enqueue(job_id)
                done.append(job_id)
            except QueueUnavailable:
                break  # the next tick tries again (the row stays queued)
        return {"reaped": reaped, "requeued": done}

    def maintenance(self, now: dt.datetime | None = None) -> dict:
        """One tick of a worker: recovery, then the schedule's due slots."""
        out = self.recover(now)
        out["scheduled"] = self.schedule.tick(now)
        return out

    def run_pending(self, max_jobs: int = 100) -> int:
        """Run queued messages in this process until the queue is empty (tests, ``tradeloop
        jobs run-pending``). Returns how many messages were taken."""
        n = 0
        while n < max_jobs and self.queue.run_one():
            n += 1
        return n

    def run_inline(self, kind: str, params: dict | None = None, *, user_id: int | None = None,
                   is_admin: bool = True, listeners=()) -> dict:
        """Submit a job and run it here, now (the CLI's ``--inline``, with a progress bar as a
        listener): still a job row with a record, claimed by this process, so a worker never
        runs it too. Returns the finished job."""
        from app.jobs import runner
        from app.jobs.runner import owner_name
        k = self.kind(kind)
        loaded = self.validate(k, params)
        with self.ext.db.transaction() as conn:
            job = store.create(conn, kind=kind, params=loaded, user_id=user_id,
                               admin=bool(k.admin_only or user_id is None), max_attempts=1)
            claimed = store.claim(conn, job["id"], owner=owner_name() + ":inline",
                                  lease_seconds=float(self.ext.config["JOBS_LEASE_SECONDS"]))
        runner.execute(self, job["id"], listeners=listeners, token_and_job=claimed)
        with self.ext.db.read() as conn:
            return store.public(store.get(conn, job["id"]))


# -- for views (Flask): app.jobs.web, re-exported here --------------------------------
from app.jobs.web import accepted, submit, system  # noqa: E402,F401


def init_app(app, ext) -> None:
    """Wire jobs into the host: ``ext.jobs``, /api/jobs, the ``jobs.events`` topic and its
    user-scoped SSE stream /sse/jobs."""
    from app.hookspecs import SSEStream
    from app.jobs import views
    ext.jobs = JobSystem(ext)
    ext.topics.append(("host", views.TOPIC))
    ext.sse_streams.append(("host", SSEStream(SSE_PATH, store.TOPIC, "Your jobs: queued, started, progress "
                                                                     "(throttled), succeeded/failed/cancelled.")))
    app.extensions["tradeloop_api"].register_blueprint(views.blp)

    @app.errorhandler(JobsUnavailable)
    def _unavailable(exc):
        from flask import jsonify
        resp = jsonify(exc.body())
        resp.status_code = 503
        resp.headers["Retry-After"] = "2"
        return resp
