"""SQLAlchemy engine, column types and transactions.

One transaction per request: the first use of ``request_conn()`` opens it, ``after_request``
commits it when the response is a success and rolls it back otherwise. Service code receives
a ``Connection`` and never commits itself, so a CLI command, a bus handler and a test call
the same functions inside ``Database.transaction()``.

Types: ``UtcDateTime`` stores UTC with millisecond precision on every backend; ``Money`` is a
Decimal in storage and in Python (never a float); ``JSONType`` is JSON.
"""
from __future__ import annotations

import contextlib
import time

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from bus.sql import (  # noqa: F401  (re-exported: plugins import types from app.db)
    JSONType, Money, UtcDateTime, is_duplicate_key, new_id, on_commit, run_after_commit,
    to_ms, utcnow, uuid_column,
)

SQLITE_LOCK_WAIT_SECONDS = 60.0


class Database:
    """An engine plus the transaction helpers every layer uses."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 30, max_overflow: int = 20):
        self.url = sa.engine.make_url(url)
        kwargs: dict = {"echo": echo, "future": True}
        if self.url.get_backend_name() == "sqlite":
            # SQLite has one writer. Its busy handler sleeps in C, which would stall a gevent
            # loop, so the busy timeout is 0 and writers retry BEGIN IMMEDIATE in Python
            # (a cooperative sleep); readers use plain BEGIN, which WAL never blocks.
            kwargs.update(poolclass=QueuePool, pool_size=8, max_overflow=0, pool_timeout=60,
                          connect_args={"check_same_thread": False, "timeout": 0})
        else:
            # Overflow connections are closed when returned, so a pool smaller than the usual
            # concurrency reconnects (a full MySQL handshake) on every burst: size it for it.
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True, pool_recycle=3600,
                          isolation_level="READ COMMITTED")
            if self.url.get_backend_name() in ("mysql", "mariadb"):
                kwargs["connect_args"] = {"charset": "utf8mb4"}
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.url.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self):
        """``with db.transaction() as conn:`` commit on success, roll back on error, then run
        the after-commit callbacks registered with ``on_commit``."""
        conn = self.engine.connect()
        try:
            conn.info["after_commit"] = []
            trans = conn.begin()
            try:
                yield conn
            except BaseException:
                trans.rollback()
                raise
            trans.commit()
            run_after_commit(conn)
        finally:
            conn.info.pop("after_commit", None)
            conn.close()

    @contextlib.contextmanager
    def read(self):
        """A read-only transaction: on SQLite it never waits for a writer (WAL snapshot)."""
        conn = self.engine.connect().execution_options(tl_readonly=True)
        try:
            with conn.begin():
                yield conn
        finally:
            conn.close()

    def dispose(self):
        self.engine.dispose()


def _sqlite_on_connect(dbapi_conn, record):
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_on_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a commit survives an application crash; only a power loss can lose the
    # last transactions (the embedded default; production runs on MySQL).
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=0")
    cur.close()


def _sqlite_on_begin(conn):
    """Readers: BEGIN (deferred). Writers: BEGIN IMMEDIATE, taking the write lock up front
    so two writers serialise instead of failing when a reader upgrades — retried here with a
    cooperative sleep while another connection or process holds the lock."""
    if conn.get_execution_options().get("tl_readonly"):
        conn.exec_driver_sql("BEGIN")
        return
    deadline = time.monotonic() + SQLITE_LOCK_WAIT_SECONDS
    pause = 0.001
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except sa.exc.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.02)


