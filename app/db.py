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
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


class Database:
    """An engine plus the transaction helpers every layer uses.

    Connections (MySQL/MariaDB and other servers; SQLite keeps 8 and its own locking):

    * ``pool_size`` connections, opened on demand and kept; ``max_overflow`` beyond them are
      closed on return, so the default is none: a burst waits (cooperatively, up to
      ``pool_timeout`` s) for a kept connection instead of paying a connect per request.
      Size the pool to the number of requests one process runs in a transaction at once.
    * ``tls``: ``"auto"`` (no TLS to a loopback address or a unix socket; TLS to any other
      host), ``"on"`` or ``"off"``. With TLS every connection shares one ``SSLContext``,
      verifying the server's certificate and name against ``tls_ca`` when given (else
      encrypting without verification, as the driver's default did). pymysql otherwise builds
      a context per connection (~25-50 ms of CPU that blocks the whole gevent process).
      TLS options in the URL's query (``?ssl_ca=...``) are left to the driver.
    * A connection is pinged on checkout only when it sat idle for ``ping_after_idle``
      seconds (a busy pool is known to be alive; a dead one is replaced by the pool on the
      first error), and rolled back on return only when a transaction is still open on it.
    """

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 50, max_overflow: int = 0,
                 pool_timeout: float = 30.0, tls: str = "auto", tls_ca: str | None = None,
                 ping_after_idle: float = 10.0):
        self.url = sa.engine.make_url(url)
        backend = self.url.get_backend_name()
        kwargs: dict = {"echo": echo}
        if backend == "sqlite":
            # SQLite has one writer. Its busy handler sleeps in C, which would stall a gevent
            # loop, so the busy timeout is 0 and writers retry BEGIN IMMEDIATE in Python
            # (a cooperative sleep); readers use plain BEGIN, which WAL never blocks.
            kwargs.update(poolclass=QueuePool, pool_size=8, max_overflow=0, pool_timeout=60,
                          connect_args={"check_same_thread": False, "timeout": 0})
        else:
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout,
                          pool_recycle=3600, pool_reset_on_return=None, isolation_level="READ COMMITTED")
            if backend in ("mysql", "mariadb"):
                kwargs["connect_args"] = {"charset": "utf8mb4", **mysql_tls_args(self.url, tls, tls_ca)}
                if self.url.get_driver_name() == "pymysql":
                    from pymysql.constants import CLIENT
                    # FOUND_ROWS as SQLAlchemy sets it; MULTI_STATEMENTS for the outbox's one-round-trip
                    # bump + insert + COMMIT (bus.outbox.flush_and_commit). Every statement we send
                    # binds its values (none is built from input), so stacking cannot be injected.
                    kwargs["connect_args"]["client_flag"] = CLIENT.FOUND_ROWS | CLIENT.MULTI_STATEMENTS
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        else:
            self.ping_after_idle = float(ping_after_idle)
            event.listen(self.engine, "checkout", self._ping_if_idle)
            event.listen(self.engine, "checkin", _stamp_checkin)
            event.listen(self.engine, "reset", _rollback_if_in_transaction)
            event.listen(self.engine, "handle_error", _mark_error)
            _skip_commit_done_by_flush(self.engine.dialect)

    def _ping_if_idle(self, dbapi_conn, record, proxy):
        """Pre-ping, only for a connection that sat idle longer than ``ping_after_idle``."""
        last = record.info.get("tl_checked_in")
        if last is None or time.monotonic() - last <= self.ping_after_idle:
            return  # just connected, or busy: known to be alive
        dialect = self.engine.dialect
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError(f"connection failed its ping: {exc}") from exc  # the pool reconnects

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


def mysql_tls_args(url, tls: str, tls_ca: str | None) -> dict:
    """pymysql connect arguments for ``tls`` (see ``Database``): one shared SSLContext, or
    TLS off (``ssl_disabled``: no context built per connection)."""
    if url.get_driver_name() != "pymysql" or any(k.startswith("ssl") for k in url.query):
        return {}
    tls = (tls or "auto").lower()
    if tls not in ("auto", "on", "off"):
        raise ValueError(f"DATABASE_TLS must be auto, on or off, not {tls!r}")
    local = (url.host or "localhost") in LOOPBACK_HOSTS or "unix_socket" in url.query
    if tls == "off" or (tls == "auto" and local):
        return {"ssl_disabled": True}
    return {"ssl": _shared_ssl_context(tls_ca)}


_ssl_contexts: dict = {}


def _shared_ssl_context(ca: str | None):
    ctx = _ssl_contexts.get(ca)
    if ctx is None:
        import ssl
        if ca:  # verify the server's certificate and its name
            ctx = ssl.create_default_context(cafile=ca)
        else:  # encrypt; nothing to verify against (what the driver's default did)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _ssl_contexts[ca] = ctx
    return ctx


def _stamp_checkin(dbapi_conn, record):
    if record is not None:
        record.info["tl_checked_in"] = time.monotonic()


def _rollback_if_in_transaction(dbapi_conn, record, reset_state):
    """The pool's reset on return (``pool_reset_on_return=None`` hands it to us): ROLLBACK
    only when the server says a transaction is open — after a COMMIT it costs a round trip
    for nothing. pymysql keeps the server's status flags from the last OK reply; an error
    reply carries none, so after an error it always rolls back."""
    if reset_state.terminate_only:
        return
    status = getattr(dbapi_conn, "server_status", None)
    errored = record is not None and record.info.pop("tl_error", False)
    if status is not None and not status & 1 and not errored:  # SERVER_STATUS_IN_TRANS
        return
    dbapi_conn.rollback()


def _mark_error(context):
    """A statement failed: the driver's status flags may be stale until the next OK reply."""
    if context.connection is not None and not context.connection.closed:
        try:
            context.connection.info["tl_error"] = True
        except Exception:  # (an invalidated connection has no info to mark)
            pass


def _skip_commit_done_by_flush(dialect) -> None:
    """``bus.outbox.flush_and_commit`` sends COMMIT with the outbox insert and marks the
    connection; the transaction's own commit then sends nothing."""
    plain = dialect.do_commit

    def do_commit(dbapi_connection):
        if dbapi_connection.info.pop("bus_committed", False):
            return
        plain(dbapi_connection)
    dialect.do_commit = do_commit


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


