"""One run of a job: claim, heartbeat, call the plain service function, finish once.

The worker (a Huey consumer thread, or ``tradeloop jobs run --inline``) calls ``execute``.
The kind's function gets the arguments it names among ``db``, ``params``, ``progress``,
``user_id`` and ``job_id`` (see ``app.hookspecs.JobKind``). A heartbeat thread extends the
run's lease every third of ``JOBS_LEASE_SECONDS`` while the function works, so a CPU-bound
fit that reports no progress for minutes still holds its job; a killed process stops
heartbeating and ``store.reap`` takes the job back once the lease has run out.
"""
from __future__ import annotations

import inspect
import logging
import os
import socket
import threading
import time

from app import errors
from app.jobs import store
from app.jobs.store import JobCancelled, LeaseLost

log = logging.getLogger(__name__)

ARGUMENTS = ("db", "params", "progress", "user_id", "job_id")
MAX_WAITS = 50          # a message for a row not committed yet is retried this often...
WAIT_SECONDS = 0.2      # ...this far apart (10 s), then dropped (its transaction rolled back)
RETRY_BACKOFF_SECONDS = 2.0


# Runs in progress in this process: job id -> lease token (``release_all`` at shutdown).
IN_FLIGHT: dict[str, str] = {}


def release_all(system) -> list[str]:
    """Give every run still in progress here back to the queue (a worker stopping before its
    jobs finished). Conditional on each run's token: a run that finished meanwhile keeps its
    result."""
    released = []
    for job_id, token in list(IN_FLIGHT.items()):
        try:
            with system.ext.db.transaction() as conn:
                if store.release(conn, job_id, token):
                    released.append(job_id)
            system.queue.enqueue(job_id)
        except Exception:
            log.warning("could not release job %s; its lease will run out", job_id, exc_info=True)
    return released


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


def error_of(exc: BaseException) -> dict:
    """A job's error as stored and shown: ``{"code", "message"}`` (+ ``status``/``errors`` for a
    domain error, ``type`` for an unexpected exception)."""
    if isinstance(exc, errors.DomainError):
        out = {"code": exc.code, "message": exc.message, "status": exc.status}
        if exc.errors:
            out["errors"] = exc.errors
        return out
    return {"code": "job_error", "type": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}"[:2000]}


def call(fn, **available):
    """Call ``fn`` with the arguments it names among ``ARGUMENTS``."""
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return fn(**available)
    return fn(**{k: v for k, v in available.items() if k in params})


class Progress:
    """The ``progress(fraction, message="")`` callback a job function receives.

    ``fraction`` is clamped to 0..1. Writes (row + ``JobProgressed`` event) are throttled to
    one per ``interval`` seconds (``JOBS_PROGRESS_SECONDS``; completion writes 1.0). Raises ``JobCancelled`` once a cancel was requested and
    ``LeaseLost`` once this run no longer holds the job, so the work stops there.
    ``listeners`` (e.g. a terminal progress bar) see every call, unthrottled."""

    def __init__(self, db, job_id: str, token: str, *, lease_seconds: float, interval: float, listeners=()):
        self.db, self.job_id, self.token = db, job_id, token
        self.lease_seconds, self.interval = lease_seconds, interval
        self.listeners = list(listeners)
        self.cancel_requested = False
        self.lost = False
        self._last_write = 0.0
        self.fraction, self.message = 0.0, ""
        self.writes = 0

    def __call__(self, fraction, message: str = "") -> None:
        try:
            fraction = float(fraction)
        except (TypeError, ValueError):
            fraction = self.fraction
        fraction = min(1.0, max(0.0, fraction if fraction == fraction else self.fraction))
        self.fraction, self.message = fraction, str(message or "")
        for listener in self.listeners:
            listener(fraction, self.message)
        self.check()
        now = time.monotonic()
        if now - self._last_write < self.interval:
            return
        self._last_write = now
        with self.db.transaction() as conn:
            if store.report_progress(conn, self.job_id, self.token, fraction, self.message,
                                     lease_seconds=self.lease_seconds):
                self.cancel_requested = True
        self.writes += 1
        self.check()

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(self.job_id)
        if self.cancel_requested:
            raise JobCancelled(self.job_id)


class Heartbeat:
    """Extends the run's lease every ``lease_seconds / 3`` on its own thread."""

    def __init__(self, db, progress: Progress, lease_seconds: float):
        self.db, self.progress, self.lease_seconds = db, progress, lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{progress.job_id[:8]}", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self):
        while not self._stop.wait(self.lease_seconds / 3.0):
            try:
                with self.db.transaction() as conn:
                    if store.heartbeat(conn, self.progress.job_id, self.progress.token,
                                       lease_seconds=self.lease_seconds):
                        self.progress.cancel_requested = True
            except LeaseLost:
                self.progress.lost = True
                return
            except Exception:
                log.warning("heartbeat of job %s failed; retrying", self.progress.job_id, exc_info=True)


def execute(system, job_id: str, *, waits: int = 0, listeners=(), token_and_job=None) -> str | None:
    """Run ``job_id`` here if it is queued. Returns the state this run left it in (None when
    there was nothing to run)."""
    ext = system.ext
    cfg = ext.config
    lease = float(cfg["JOBS_LEASE_SECONDS"])
    if token_and_job is None:
        with ext.db.transaction() as conn:
            claimed = store.claim(conn, job_id, owner=owner_name(), lease_seconds=lease)
        if claimed is None:
            with ext.db.read() as conn:
                row = store.get(conn, job_id)
            if row is None and waits < MAX_WAITS:
                # The submitting transaction may not have committed yet: look again shortly.
                system.queue.enqueue(job_id, delay=WAIT_SECONDS, waits=waits + 1)
            return None
        job, token = claimed
    else:
        job, token = token_and_job
    progress = Progress(ext.db, job_id, token, lease_seconds=lease,
                        interval=float(cfg["JOBS_PROGRESS_SECONDS"]), listeners=listeners)
    kind = system.kinds.get(job["kind"])
    if kind is None:
        with ext.db.transaction() as conn:
            store.fail(conn, job_id, token, {"code": "unknown_kind", "message": (
                f"no enabled plugin declares job kind {job['kind']!r} on this worker")})
        return "failed"
    beat = Heartbeat(ext.db, progress, lease).start()
    IN_FLIGHT[job_id] = token
    try:
        return _run(system, kind, job, job_id, token, progress, beat, listeners)
    finally:
        IN_FLIGHT.pop(job_id, None)


def _run(system, kind, job, job_id, token, progress, beat, listeners):
    ext = system.ext
    try:
        with ext.app.app_context():
            result = call(kind.run, db=ext.db, params=dict(job["params"] or {}), progress=progress,
                          user_id=job["user_id"], job_id=job_id)
    except JobCancelled:
        beat.stop()
        with ext.db.transaction() as conn:
            return "cancelled" if store.cancelled(conn, job_id, token) else None
    except LeaseLost:
        beat.stop()
        log.warning("job %s: this run lost its lease; it stops and writes nothing more", job_id)
        return None
    except Exception as exc:
        beat.stop()
        err = error_of(exc)
        if kind.retry_on and isinstance(exc, tuple(kind.retry_on)):
            with ext.db.transaction() as conn:
                retried = store.retry(conn, job_id, token, err)
            if retried:
                log.warning("job %s: %s; retrying", job_id, err["message"])
                try:
                    system.queue.enqueue(job_id, delay=RETRY_BACKOFF_SECONDS * job["attempts"])
                except Exception:
                    log.warning("job %s: re-enqueue failed; recovery will enqueue it", job_id, exc_info=True)
                return "queued"
        if not isinstance(exc, errors.DomainError):
            log.exception("job %s (%s) failed", job_id, job["kind"])
        with ext.db.transaction() as conn:
            return "failed" if store.fail(conn, job_id, token, err) else None
    beat.stop()
    try:
        with ext.db.transaction() as conn:
            done = store.complete(conn, job_id, token, result)
    except TypeError as exc:  # a result that is not JSON
        with ext.db.transaction() as conn:
            store.fail(conn, job_id, token, {"code": "bad_result", "message": f"the job's result is not JSON: {exc}"})
        return "failed"
    if not done:
        log.warning("job %s: result discarded — this run no longer holds the job", job_id)
        return None
    for listener in listeners:
        listener(1.0, "done")
    return "succeeded"
