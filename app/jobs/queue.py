"""The job queue: Huey, with its storage chosen by the deployment's one setting.

* ``REDIS_URL`` set (production): ``RedisHuey`` — a Redis list per deployment.
* unset (the embedded default): ``SqliteHuey`` — a SQLite file beside the database
  (``JOBS_SQLITE_PATH``, default ``<database>-jobs.db``), so ``./scripts/run`` needs no service.

Messages carry only a job id: the ``jobs`` row is the truth (state, params, result), so the
queue can lose a message without losing a job (``store.stale_queued`` re-enqueues it) and a
duplicate message is harmless (``store.claim`` starts one run). Huey gives us the storage,
the consumer (worker threads, a scheduler thread for delayed messages, restarts of dead
worker threads, signal handling) and revocation. Huey is imported only here, lazily, so the
web process and ``tradeloop --help`` don't pay for it until a job is submitted.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

TASK_NAME = "tradeloop_run_job"
REDIS_TIMEOUT_SECONDS = 2.0


class QueueUnavailable(Exception):
    """The queue's storage (Redis, the SQLite file) could not take the message."""


def sqlite_path(config: dict, db_url) -> str:
    if config.get("JOBS_SQLITE_PATH"):
        return config["JOBS_SQLITE_PATH"]
    if db_url.get_backend_name() == "sqlite" and db_url.database and db_url.database != ":memory:":
        base, _ = os.path.splitext(db_url.database)
        return base + "-jobs.db"
    return "tradeloop-jobs.db"


class JobQueue:
    """Huey for one deployment. ``enqueue(job_id)`` puts a message; ``run_one()`` takes and
    runs one (tests and ``tradeloop jobs run-pending``); a consumer (``app.jobs.worker``)
    runs them continuously. ``handler(job_id, waits)`` is what a message runs."""

    def __init__(self, config: dict, db_url, namespace: str, handler):
        self.config = config
        self.db_url = db_url
        self.name = f"tradeloop-{namespace}"
        self.handler = handler
        self._huey = None
        self._task = None

    @property
    def backend(self) -> str:
        return "redis" if self.config.get("REDIS_URL") else "sqlite"

    @property
    def location(self) -> str:
        if self.backend == "redis":
            import re
            return re.sub(r"//[^@/]*@", "//***@", self.config["REDIS_URL"])  # no password in output
        return sqlite_path(self.config, self.db_url)

    @property
    def huey(self):
        if self._huey is None:
            if self.backend == "redis":
                from huey import RedisHuey
                from redis import ConnectionPool
                pool = ConnectionPool.from_url(self.config["REDIS_URL"], socket_timeout=REDIS_TIMEOUT_SECONDS,
                                               socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
                huey = RedisHuey(self.name, connection_pool=pool, results=False, utc=True,
                                 read_timeout=1)
            else:
                from huey import SqliteHuey
                huey = SqliteHuey(self.name, filename=self.location, results=False, utc=True, timeout=10)
            self._task = huey.task(name=TASK_NAME)(self.handler)
            self._huey = huey
        return self._huey

    def enqueue(self, job_id: str, *, delay: float | None = None, waits: int = 0) -> None:
        """Put a message for ``job_id``; raises ``QueueUnavailable`` when storage is down."""
        import datetime as dt
        huey = self.huey
        task = self._task.task_class(args=(job_id,), kwargs={"waits": waits} if waits else None, id=job_id)
        try:
            if delay:
                task.eta = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=delay)
                huey.add_schedule(task)
            else:
                huey.enqueue(task)
        except Exception as exc:  # redis.ConnectionError / TimeoutError, sqlite3.OperationalError
            raise QueueUnavailable(f"{self.backend} job queue: {type(exc).__name__}: {str(exc)[:200]}") from exc

    def revoke(self, job_id: str) -> None:
        """Skip the queued message of ``job_id`` (best effort: a claim refuses it anyway)."""
        try:
            self.huey.revoke_by_id(job_id, revoke_once=True)
        except Exception:
            log.warning("could not revoke the queue message of job %s", job_id, exc_info=True)

    def message_ids(self, limit: int = 10_000) -> set[str]:
        """Job ids with a message waiting (queued or delayed); ``QueueUnavailable`` when the
        storage is down."""
        try:
            tasks = self.huey.pending(limit) + self.huey.scheduled(limit)
        except Exception as exc:
            raise QueueUnavailable(f"{self.backend} job queue: {type(exc).__name__}: {str(exc)[:200]}") from exc
        return {t.args[0] for t in tasks if t.args}

    def pending(self) -> int:
        return self.huey.pending_count()

    def ping(self) -> tuple[bool, str]:
        try:
            n = self.huey.pending_count()
            return True, f"{self.backend}: {n} message(s) waiting"
        except Exception as exc:
            return False, f"{self.backend} job queue: {type(exc).__name__}: {str(exc)[:150]}"

    def run_one(self) -> bool:
        """Take one message (due delayed ones first) and run it here. Returns whether there
        was one."""
        huey = self.huey
        for task in huey.read_schedule():
            huey.enqueue(task)
        if not huey.pending_count():  # (Redis's dequeue would block for its read timeout)
            return False
        task = huey.dequeue()
        if task is None:
            return False
        huey.execute(task)
        return True

    def consumer(self, *, threads: int, scheduler_interval: int = 1, on_tick=None, tick_seconds: float = 5.0):
        """A Huey consumer whose scheduler thread also calls ``on_tick(now)`` every
        ``tick_seconds`` (recovery and the schedule, ``app.jobs.worker``)."""
        import time
        from huey.consumer import Consumer, Scheduler

        class TickingScheduler(Scheduler):
            _next_tick = 0.0

            def loop(self, now=None):
                if on_tick is not None and time.monotonic() >= self._next_tick:
                    self._next_tick = time.monotonic() + tick_seconds
                    try:
                        on_tick()
                    except Exception:
                        log.exception("jobs maintenance tick failed; next one in %ss", tick_seconds)
                super().loop(now)

        class JobConsumer(Consumer):
            scheduler_class = TickingScheduler

        # periodic=False: the schedule is ours (one job row per slot across every worker).
        return JobConsumer(self.huey, workers=threads, periodic=False, worker_type="thread",
                           scheduler_interval=scheduler_interval, initial_delay=0.05, max_delay=0.5,
                           backoff=1.3, check_worker_health=True, health_check_interval=5)
