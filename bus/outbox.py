"""The transactional outbox and the gapless, commit-ordered stream positions.

``emit(conn, ...)`` writes an event in the caller's transaction, so an event exists exactly
when the state change it describes does. Positions come from a per-stream counter row bumped
inside that same transaction, in one statement (``reserve``). The row lock it takes is held
until commit, so a second writer of the stream waits, and positions are handed out in commit
order with no gaps (a rolled-back writer's bump rolls back with it). A reader polling
``seq > last_seen`` therefore never skips an event — unlike an auto-increment id, which InnoDB
assigns at insert time, before commit order is known.

The lock is held from the bump to COMMIT, and every writer of the stream queues on it, so the
bump comes as late as it can: a transaction whose owner will call ``flush(conn)`` right before
committing marks its connection with ``defer_positions(conn)``; ``emit`` then only collects
its events, and ``flush`` bumps each stream once (the last statements before COMMIT: the bump
and the outbox insert). The host's HTTP request transaction does so: a view's work after its
emit (the response, the Idempotency-Key record) then runs without holding the counter. On any
other connection, inside a savepoint, or before a read of the outbox in the same transaction,
positions are taken at once. A deferred event's ``event_seq`` is None until ``flush``.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
import weakref
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql  # noqa: F401  (upserts in reserve)
import sqlalchemy.dialects.sqlite  # noqa: F401
from sqlalchemy.engine import Connection

from bus.envelope import Event, dumps, parse_time
from bus.sql import UtcDateTime, is_duplicate_key, on_commit, utcnow

metadata = sa.MetaData()

streams = sa.Table(
    "bus_streams", metadata,
    sa.Column("stream", sa.String(120), primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False, default=0),
)

outbox = sa.Table(
    "bus_outbox", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("stream", sa.String(120), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("aggregate_type", sa.String(60), nullable=False),
    sa.Column("aggregate_id", sa.String(64), nullable=False),
    sa.Column("aggregate_version", sa.Integer),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("user_id", sa.Integer),
    sa.Column("schema_version", sa.Integer, nullable=False, default=1),
    sa.Column("payload", sa.Text().with_variant(sa.dialects.mysql.LONGTEXT(), "mysql", "mariadb"), nullable=False),
    sa.UniqueConstraint("stream", "seq", name="uq_bus_outbox_stream_seq"),
    sa.Index("ix_bus_outbox_stream_user_seq", "stream", "user_id", "seq"),
    sa.Index("ix_bus_outbox_aggregate", "aggregate_id", "stream", "seq"),
)

# Where a publisher (the relay) has got to in each stream, per destination.
cursors = sa.Table(
    "bus_cursors", metadata,
    sa.Column("name", sa.String(120), primary_key=True),
    sa.Column("stream", sa.String(120), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False, default=0),
)

# Consumer-side: one row per (group, event) handled, written in the handler's transaction.
processed = sa.Table(
    "bus_processed", metadata,
    sa.Column("consumer_group", sa.String(120), primary_key=True),
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("processed_at", UtcDateTime, nullable=False),
)

dead_letters = sa.Table(
    "bus_dead_letters", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("consumer_group", sa.String(120), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("stream", sa.String(120), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("envelope", sa.Text().with_variant(sa.dialects.mysql.LONGTEXT(), "mysql", "mariadb"), nullable=False),
    sa.Column("failed_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False, default="dead"),  # dead | requeued
    sa.Index("ix_bus_dead_letters_group_status", "consumer_group", "status"),
)


# -- commit notifications (in-process; the host adds a cross-process one) -------------
_listeners: list = []
_listeners_lock = threading.Lock()


def add_commit_listener(fn) -> None:
    """``fn(stream_names)`` is called after any transaction that emitted events commits."""
    with _listeners_lock:
        _listeners.append(fn)


def remove_commit_listener(fn) -> None:
    with _listeners_lock:
        if fn in _listeners:
            _listeners.remove(fn)


def _notify(conn: Connection, stream: str) -> None:
    pending = conn.info.get("bus_emitted")
    if pending is None:
        pending = conn.info["bus_emitted"] = set()

        def fire():
            names = conn.info.pop("bus_emitted", set())
            for fn in list(_listeners):
                fn(names)
        on_commit(conn, fire)
    pending.add(stream)


# -- positions -------------------------------------------------------------------------
def ensure_streams(conn: Connection, names: Iterable[str]) -> None:
    """Create counter rows for streams (idempotent; done at start-up and on first emit)."""
    existing = {r[0] for r in conn.execute(sa.select(streams.c.stream))}
    for name in names:
        if name not in existing:
            try:
                with conn.begin_nested():
                    conn.execute(streams.insert().values(stream=name, last_seq=0))
            except sa.exc.IntegrityError as exc:
                if not is_duplicate_key(exc):
                    raise


class _Bump:
    """The counter bump for one dialect, built once: one statement that creates the row on a
    stream's first event (an UPDATE-then-INSERT fallback would let concurrent first writers of
    a new stream deadlock on MySQL) and returns the new last position without a SELECT
    (MySQL/MariaDB: ``LAST_INSERT_ID(expr)``, read from the reply; SQLite/PostgreSQL:
    ``RETURNING``)."""

    def __init__(self, dialect: str):
        self.returning = dialect in ("sqlite", "postgresql")
        if dialect in ("mysql", "mariadb"):
            self.stmt = sa.text(
                "INSERT INTO bus_streams (stream, last_seq) VALUES (:stream, LAST_INSERT_ID(:n)) "
                "ON DUPLICATE KEY UPDATE last_seq = LAST_INSERT_ID(last_seq + :n)")
        elif self.returning:
            self.stmt = sa.text(
                "INSERT INTO bus_streams (stream, last_seq) VALUES (:stream, :n) ON CONFLICT (stream) "
                "DO UPDATE SET last_seq = bus_streams.last_seq + excluded.last_seq RETURNING last_seq")
        else:  # pragma: no cover - other backends
            self.stmt = None

    def __call__(self, conn: Connection, stream: str, n: int) -> int:
        params = {"stream": stream, "n": n}
        if self.stmt is None:  # pragma: no cover - other backends: update, creating the row if missing
            if not conn.execute(streams.update().where(streams.c.stream == stream)
                                .values(last_seq=streams.c.last_seq + n)).rowcount:
                ensure_streams(conn, [stream])
                return self(conn, stream, n)
            return conn.execute(sa.select(streams.c.last_seq).where(streams.c.stream == stream)).scalar_one()
        result = conn.execute(self.stmt, params)
        return int(result.scalar_one() if self.returning else result.lastrowid)


_BUMPS: dict[str, _Bump] = {}


def reserve(conn: Connection, stream: str, n: int = 1) -> int:
    """Bump the stream's counter by ``n`` inside this transaction (one statement); return the
    first of the ``n`` positions. Its row lock orders commits (see the module docstring)."""
    dialect = conn.dialect.name
    bump = _BUMPS.get(dialect)
    if bump is None:
        bump = _BUMPS[dialect] = _Bump(dialect)
    return bump(conn, stream, n) - n + 1


# -- writing ---------------------------------------------------------------------------
def emit(conn: Connection, stream: str, type: str, *, aggregate_type: str, aggregate_id: str,
         aggregate_version: int | None, payload: dict, user_id: int | None,
         occurred_at: dt.datetime | None = None, schema_version: int = 1,
         event_id: str | None = None) -> Event:
    """Write one event to the outbox in the caller's transaction and return it."""
    return emit_many(conn, stream, [dict(
        type=type, aggregate_type=aggregate_type, aggregate_id=aggregate_id,
        aggregate_version=aggregate_version, payload=payload, user_id=user_id,
        occurred_at=occurred_at, schema_version=schema_version, event_id=event_id)])[0]


def emit_many(conn: Connection, stream: str, specs: Sequence[dict]) -> Sequence[Event]:
    """Write several events to one stream with one counter bump and one multi-row insert
    (one executemany). Returns the events in order, each built on first access with its
    payload as every consumer will see it (parsed from the stored text: Decimals as strings,
    times ISO), so a caller that ignores the result -- a scoring batch of thousands -- never
    parses back what it just serialised. On a connection marked ``defer_positions`` the rows
    wait for ``flush`` (their positions, and the events' ``event_seq``, are taken there)."""
    if not specs:
        return []
    now = utcnow()
    rows = []
    for spec in specs:
        rows.append(dict(
            stream=stream, seq=None, event_id=spec.get("event_id") or str(uuid.uuid4()),
            type=spec["type"], aggregate_type=spec["aggregate_type"], aggregate_id=str(spec["aggregate_id"]),
            aggregate_version=spec.get("aggregate_version"),
            occurred_at=parse_time(spec.get("occurred_at")) or now,
            recorded_at=now, user_id=spec.get("user_id"), schema_version=spec.get("schema_version") or 1,
            payload=dumps(spec.get("payload") or {})))
    emitted = _Emitted(rows)
    info = conn.info
    if info.get("bus_defer") and not conn.in_nested_transaction():
        info.setdefault("bus_pending", {}).setdefault(stream, []).append(emitted)
    else:
        flush(conn)  # earlier deferred events of this transaction keep their place before these
        emitted.number(reserve(conn, stream, len(rows)))
        conn.execute(_INSERT, rows)
    _notify(conn, stream)
    return emitted


_INSERT = outbox.insert()


def defer_positions(conn: Connection) -> None:
    """Take this transaction's positions in ``flush`` instead of at each ``emit`` (see the
    module docstring). The caller must call ``flush(conn)`` just before committing, and
    ``discard(conn)`` when it rolls back or gives the connection up. A savepoint flushes
    first (a rolled-back savepoint must not take earlier events with it), and events emitted
    inside one take their positions at once."""
    engine = conn.engine
    if engine not in _savepoint_hooked:
        sa.event.listen(engine, "savepoint", _flush_before_savepoint)
        # No collected event is lost, whoever ends the transaction: a plain commit flushes
        # first, and a connection going back to the pool forgets the deferral (conn.info
        # lives as long as the pooled connection, so a mark left by a request that failed
        # half-way would otherwise make the next user of it collect events nobody flushes).
        sa.event.listen(engine, "commit", _flush_before_savepoint)
        sa.event.listen(engine, "checkin", _forget_on_checkin)
        _savepoint_hooked.add(engine)
    conn.info["bus_defer"] = True


_savepoint_hooked: weakref.WeakSet = weakref.WeakSet()


def _flush_before_savepoint(conn: Connection, *_name) -> None:
    if conn.info.get("bus_pending"):
        flush(conn)


def _forget_on_checkin(dbapi_conn, record) -> None:
    if record is not None:
        for key in ("bus_pending", "bus_defer", "bus_committed"):
            record.info.pop(key, None)


def flush(conn: Connection) -> None:
    """Take the positions of the events collected on ``conn`` and insert them: per stream one
    counter bump (streams in name order, so two transactions never wait on each other's
    counters in a cycle), then one insert of all the rows. Call it last before COMMIT."""
    pending = conn.info.pop("bus_pending", None)
    if not pending:
        return
    rows = []
    for stream in sorted(pending):
        batches = pending[stream]
        first = reserve(conn, stream, sum(len(b) for b in batches))
        for emitted in batches:
            first = emitted.number(first)
            rows.extend(emitted._rows)
    conn.execute(_INSERT, rows)


_OUTBOX_COLUMNS = ("stream", "seq", "event_id", "type", "aggregate_type", "aggregate_id", "aggregate_version",
                   "occurred_at", "recorded_at", "user_id", "schema_version", "payload")
_MULTI_STATEMENTS = 1 << 16  # pymysql.constants.CLIENT.MULTI_STATEMENTS


def flush_and_commit(conn: Connection) -> bool:
    """On MySQL/MariaDB through pymysql with multi-statements enabled: send this transaction's
    counter bumps, its outbox insert and COMMIT as one round trip, so the counter rows are
    locked only while the server runs those statements — not for three round trips plus the
    time a busy gevent loop takes to resume the greenlet after each. Returns True when it
    committed (the caller then ends its SQLAlchemy transaction, which sends nothing more);
    False when there was nothing to flush or the driver cannot, after a plain ``flush``."""
    pending = conn.info.get("bus_pending")
    dbapi = conn.connection.dbapi_connection
    if (not pending or conn.dialect.name not in ("mysql", "mariadb")
            or not getattr(dbapi, "client_flag", 0) & _MULTI_STATEMENTS):
        flush(conn)
        return False
    conn.info.pop("bus_pending")
    times = UtcDateTime()
    statements, args, order = [], [], []
    for stream in sorted(pending):
        batches = pending[stream]
        rows = [row for emitted in batches for row in emitted._rows]
        n = len(rows)
        statements.append("INSERT INTO bus_streams (stream, last_seq) VALUES (%s, LAST_INSERT_ID(%s)) "
                          "ON DUPLICATE KEY UPDATE last_seq = LAST_INSERT_ID(last_seq + %s)")
        args += [stream, n, n]
        statements.append("SET @tl_last_seq = LAST_INSERT_ID()")
        values = []
        for i, row in enumerate(rows):
            values.append("(%s, @tl_last_seq - %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
            args += [stream, n - 1 - i, row["event_id"], row["type"], row["aggregate_type"], row["aggregate_id"],
                     row["aggregate_version"], times.process_bind_param(row["occurred_at"], conn.dialect),
                     times.process_bind_param(row["recorded_at"], conn.dialect), row["user_id"],
                     row["schema_version"], row["payload"]]
        statements.append(f"INSERT INTO bus_outbox ({', '.join(_OUTBOX_COLUMNS)}) VALUES {', '.join(values)}")
        order.append((batches, n))
    statements.append("COMMIT")
    sql = ";\n".join(statements)
    cursor = dbapi.cursor()
    try:
        cursor.execute(sql, args)
        lasts = []
        for k in range(len(statements)):
            if k % 3 == 0 and k < len(statements) - 1:
                lasts.append(int(cursor.lastrowid))  # a bump's reply carries LAST_INSERT_ID(expr)
            if not cursor.nextset():
                break
    except conn.dialect.loaded_dbapi.Error as exc:  # raised as SQLAlchemy raises a statement's
        conn.info["tl_error"] = True  # (the driver's status flags are stale: roll back on return)
        invalidated = conn.dialect.is_disconnect(exc, dbapi, cursor)
        if invalidated:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(sql[:200], None, exc, conn.dialect.loaded_dbapi.Error,
                                         connection_invalidated=invalidated, dialect=conn.dialect) from exc
    finally:
        try:
            cursor.close()  # (reads any results left after an error)
        except Exception:
            pass
    for (batches, n), last in zip(order, lasts):
        first = last - n + 1
        for emitted in batches:
            first = emitted.number(first)
    conn.info["bus_committed"] = True
    return True


def discard(conn: Connection) -> None:
    """Forget the deferral and any collected events (the transaction rolled back or ended)."""
    conn.info.pop("bus_pending", None)
    conn.info.pop("bus_defer", None)
    conn.info.pop("bus_committed", None)


class _Emitted(Sequence):
    """The events ``emit_many`` wrote, each made from its outbox row when first read."""
    __slots__ = ("_rows", "_events")

    def __init__(self, rows: list[dict]):
        self._rows = rows
        self._events: list[Event | None] = [None] * len(rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self._rows)))]
        ev = self._events[i]
        if ev is None:
            ev = self._events[i] = _event_of_row(self._rows[i])
        return ev

    def number(self, first: int) -> int:
        """Give the rows (and any event already handed out) positions ``first, first + 1,
        ...``; return the next free position. Before this a deferred event's ``event_seq``
        is None."""
        for i, row in enumerate(self._rows):
            row["seq"] = first + i
            ev = self._events[i]
            if ev is not None:
                object.__setattr__(ev, "event_seq", first + i)  # (frozen for everyone else)
        return first + len(self._rows)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"<{len(self._rows)} emitted events>"


def _event_of_row(m: dict) -> Event:
    return Event(event_id=m["event_id"], event_seq=None if m["seq"] is None else int(m["seq"]), stream=m["stream"], type=m["type"],
                 aggregate_type=m["aggregate_type"], aggregate_id=m["aggregate_id"],
                 aggregate_version=m["aggregate_version"], occurred_at=m["occurred_at"],
                 recorded_at=m["recorded_at"], user_id=m["user_id"],
                 schema_version=m["schema_version"], payload=json.loads(m["payload"]))


def row_of(ev: Event, payload_text: str | None = None) -> dict:
    return dict(stream=ev.stream, seq=ev.event_seq, event_id=ev.event_id, type=ev.type,
                aggregate_type=ev.aggregate_type, aggregate_id=ev.aggregate_id,
                aggregate_version=ev.aggregate_version, occurred_at=ev.occurred_at,
                recorded_at=ev.recorded_at, user_id=ev.user_id,
                schema_version=ev.schema_version,
                payload=payload_text if payload_text is not None else dumps(ev.payload))


def event_of(row) -> Event:
    m = row._mapping
    return Event(event_id=m["event_id"], event_seq=int(m["seq"]), stream=m["stream"], type=m["type"],
                 aggregate_type=m["aggregate_type"], aggregate_id=m["aggregate_id"],
                 aggregate_version=m["aggregate_version"], occurred_at=m["occurred_at"],
                 recorded_at=m["recorded_at"], user_id=m["user_id"],
                 schema_version=m["schema_version"], payload=json.loads(m["payload"]))


# -- reading ---------------------------------------------------------------------------
def read(conn: Connection, stream: str, after_seq: int = 0, *, user_id: int | None = None,
         limit: int = 1000, aggregate_id: str | None = None,
         aggregate_ids: Sequence[str] | None = None) -> list[Event]:
    """Events of a stream with ``seq > after_seq`` in order (optionally one user's, one
    aggregate's or several aggregates')."""
    flush(conn)  # this transaction's own deferred events are part of what it reads
    q = sa.select(outbox).where(outbox.c.stream == stream, outbox.c.seq > after_seq)
    if user_id is not None:
        q = q.where(outbox.c.user_id == user_id)
    if aggregate_id is not None:
        q = q.where(outbox.c.aggregate_id == aggregate_id)
    if aggregate_ids is not None:
        q = q.where(outbox.c.aggregate_id.in_(list(aggregate_ids)))
    q = q.order_by(outbox.c.seq).limit(limit)
    return [event_of(r) for r in conn.execute(q)]


def read_many(conn: Connection, positions: dict[str, int], limit: int = 1000) -> list[Event]:
    """Events after each stream's position, several streams in one query."""
    if not positions:
        return []
    flush(conn)
    cond = sa.or_(*[sa.and_(outbox.c.stream == s, outbox.c.seq > p) for s, p in positions.items()])
    q = sa.select(outbox).where(cond).order_by(outbox.c.stream, outbox.c.seq).limit(limit)
    return [event_of(r) for r in conn.execute(q)]


def head(conn: Connection, stream: str) -> int:
    """The last committed position of a stream (0 when empty)."""
    flush(conn)
    v = conn.execute(sa.select(streams.c.last_seq).where(streams.c.stream == stream)).scalar()
    return int(v or 0)


def get_cursor(conn: Connection, name: str, stream: str) -> int:
    v = conn.execute(sa.select(cursors.c.seq).where(cursors.c.name == name, cursors.c.stream == stream)).scalar()
    return int(v or 0)


def advance_cursor(conn: Connection, name: str, stream: str, seq: int) -> None:
    """Move a cursor forward to ``seq`` (never back: a slower second publisher finishing
    late must not make the first one resend what it already delivered)."""
    moved = conn.execute(cursors.update().where(cursors.c.name == name, cursors.c.stream == stream,
                                                cursors.c.seq < seq).values(seq=seq)).rowcount
    if not moved and get_cursor_row(conn, name, stream) is None:
        set_cursor(conn, name, stream, seq)


def get_cursor_row(conn: Connection, name: str, stream: str):
    return conn.execute(sa.select(cursors.c.seq).where(cursors.c.name == name, cursors.c.stream == stream)).first()


def set_cursor(conn: Connection, name: str, stream: str, seq: int) -> None:
    done = conn.execute(cursors.update().where(cursors.c.name == name, cursors.c.stream == stream)
                        .values(seq=seq)).rowcount
    if not done:
        try:
            with conn.begin_nested():
                conn.execute(cursors.insert().values(name=name, stream=stream, seq=seq))
        except sa.exc.IntegrityError as exc:
            if not is_duplicate_key(exc):
                raise
            conn.execute(cursors.update().where(cursors.c.name == name, cursors.c.stream == stream)
                         .values(seq=seq))
