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

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from bus.sql import (  # noqa: F401  (re-exported: plugins import types from app.db)
    JSONType, Money, UtcDateTime, is_duplicate_key, new_id, on_commit, run_after_commit,
    to_ms, utcnow, uuid_column,
)

class Database:
    """An engine plus the transaction helpers every layer uses."""

    def __init__(self, url: str, *, echo: bool = False):
        self.url = sa.engine.make_url(url)
        kwargs: dict = {"echo": echo, "future": True}
        if self.url.get_backend_name() == "sqlite":
            # One connection per process: SQLite has a single writer, and its busy handler
            # sleeps in C, which would stall a gevent loop; queueing on the pool does not.
            kwargs.update(poolclass=QueuePool, pool_size=1, max_overflow=0, pool_timeout=60,
                          connect_args={"check_same_thread": False, "timeout": 60})
        else:
            kwargs.update(pool_size=10, max_overflow=40, pool_pre_ping=True, pool_recycle=3600,
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

    def dispose(self):
        self.engine.dispose()


def _sqlite_on_connect(dbapi_conn, record):
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_on_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()


def _sqlite_on_begin(conn):
    # BEGIN IMMEDIATE: take the write lock up front so two writers serialise instead of
    # failing with "database is locked" when a reader upgrades.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


