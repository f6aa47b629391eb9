"""Stream positions are gapless and commit-ordered: a reader polling ``seq > last_seen``
misses nothing even when writers' transactions start and finish out of order (DESIGN.md
"Stream positions"). Run for real on MariaDB (InnoDB row locks, READ COMMITTED) and SQLite."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from app.db import Database
from bus import outbox


def _engines(app):
    """Two independent writers and a plain reader on the app's database."""
    url = app.extensions["tradeloop"].db.url
    a, b = Database(str(url.render_as_string(hide_password=False))), Database(str(url.render_as_string(hide_password=False)))
    if url.get_backend_name() == "sqlite":
        reader = sa.create_engine(url)  # deferred transactions: WAL readers never block
    else:
        reader = sa.create_engine(url, isolation_level="READ COMMITTED")
    return a, b, reader


def _poll(reader, stream, last):
    with reader.connect() as c:
        return [(e.event_seq, e.payload["writer"]) for e in outbox.read(c, stream, last)]


def _emit(conn, stream, writer):
    return outbox.emit(conn, stream, "Thing", aggregate_type="thing", aggregate_id=writer,
                       aggregate_version=1, payload={"writer": writer}, user_id=1)


def test_a_writer_that_started_first_but_commits_last_is_not_skipped(app_factory):
    """A opens its transaction and writes first; B writes and commits while A is still open;
    then A emits and commits. Auto-increment ids would give A the lower id and a poller that
    saw B would skip A forever. Positions are taken at emit under the counter row's lock, so
    A's event gets the next position *after* B's, and the poller sees both."""
    app = app_factory(["tests.plugins.notes.plugin"])
    stream = f"pos{uuid.uuid4().hex[:8]}.events"
    a, b, reader = _engines(app)
    with a.transaction() as c:
        outbox.ensure_streams(c, [stream])
    seen = []
    last = 0
    try:
        with a.engine.connect() as ca:
            ta = ca.begin()
            ca.execute(outbox.cursors.select().limit(1))  # A is in its transaction, not yet emitting
            if a.dialect != "sqlite":  # (on SQLite A holds the write lock from BEGIN IMMEDIATE)
                with b.transaction() as cb:
                    _emit(cb, stream, "B")
                got = _poll(reader, stream, last)
                seen += got
                last = got[-1][0]
                assert got == [(1, "B")]
            _emit(ca, stream, "A")
            ta.commit()
        if a.dialect == "sqlite":
            with b.transaction() as cb:
                _emit(cb, stream, "B")
        got = _poll(reader, stream, last)
        seen += got
    finally:
        a.dispose(); b.dispose(); reader.dispose()
    assert sorted(w for _, w in seen) == ["A", "B"]
    assert [s for s, _ in seen] == [1, 2]


def test_a_second_writer_waits_for_the_first_and_positions_follow_commit_order(app_factory):
    """A has reserved a position and holds its transaction open; B's emit blocks on the
    counter row until A commits, so B cannot commit a higher position while A's is invisible.
    A poller reading while A is open sees nothing it could later skip over."""
    app = app_factory(["tests.plugins.notes.plugin"])
    stream = f"pos{uuid.uuid4().hex[:8]}.events"
    a, b, reader = _engines(app)
    with a.transaction() as c:
        outbox.ensure_streams(c, [stream])
    b_done = threading.Event()
    b_result = {}

    def writer_b():
        try:
            with b.transaction() as cb:
                b_result["seq"] = _emit(cb, stream, "B").event_seq
        except Exception as exc:  # pragma: no cover - surfaced by the assertion below
            b_result["error"] = exc
        b_done.set()

    try:
        with a.engine.connect() as ca:
            ta = ca.begin()
            ev_a = _emit(ca, stream, "A")
            t = threading.Thread(target=writer_b)
            t.start()
            # B is blocked behind A's lock (not failed, not finished) ...
            assert not b_done.wait(0.5)
            # ... and a poller sees nothing yet: no position beyond an invisible one exists.
            assert _poll(reader, stream, 0) == []
            ta.commit()
        t.join(30)
        assert b_done.is_set() and "error" not in b_result, b_result
        assert (ev_a.event_seq, b_result["seq"]) == (1, 2)
        assert _poll(reader, stream, 0) == [(1, "A"), (2, "B")]
    finally:
        a.dispose(); b.dispose(); reader.dispose()


def test_a_rolled_back_writer_leaves_no_gap(app_factory):
    app = app_factory(["tests.plugins.notes.plugin"])
    db = app.extensions["tradeloop"].db
    stream = f"pos{uuid.uuid4().hex[:8]}.events"
    with db.transaction() as c:
        _emit(c, stream, "kept-1")
    try:
        with db.transaction() as c:
            _emit(c, stream, "rolled-back")
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    with db.transaction() as c:
        _emit(c, stream, "kept-2")
        assert [(e.event_seq, e.payload["writer"]) for e in outbox.read(c, stream, 0)] == [(1, "kept-1"), (2, "kept-2")]
        assert outbox.head(c, stream) == 2


def test_many_concurrent_writers_produce_gapless_positions_and_a_live_poller_misses_none(app_factory):
    app = app_factory(["tests.plugins.notes.plugin"])
    db = app.extensions["tradeloop"].db
    stream = f"pos{uuid.uuid4().hex[:8]}.events"
    _, _, reader = _engines(app)
    writers, per_writer = 4, 15
    stop = threading.Event()
    polled: list[int] = []

    def poller():
        last = 0
        while True:
            done = stop.is_set()
            with reader.connect() as c:
                for e in outbox.read(c, stream, last):
                    polled.append(e.event_seq)
                    last = e.event_seq
            if done:
                return
            time.sleep(0.002)

    dbs = [Database(str(db.url.render_as_string(hide_password=False))) for _ in range(writers)]

    failures: list[BaseException] = []

    def write(i):
        try:
            for j in range(per_writer):
                with dbs[i].transaction() as c:
                    _emit(c, stream, f"w{i}-{j}")
        except BaseException as exc:  # surfaced below: a dead writer must fail the test by name
            failures.append(exc)

    p = threading.Thread(target=poller)
    p.start()
    ts = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    stop.set()
    p.join(30)
    for d in dbs:
        d.dispose()
    reader.dispose()
    assert not failures, f"a writer failed: {failures[0]!r}"
    assert not any(t.is_alive() for t in ts), "a writer did not finish"
    assert polled == list(range(1, writers * per_writer + 1))


def _deferred(db):
    """A transaction whose positions are taken at flush, as the host's request transaction's."""
    c = db.engine.connect()
    outbox.defer_positions(c)
    c.begin()
    return c


def _flush_and_commit(c):
    outbox.flush(c)
    c.commit()
    outbox.discard(c)
    c.close()


def test_a_deferred_writer_takes_its_position_at_commit_and_a_poller_misses_nothing(app_factory):
    """A emits first but defers its position: it holds no counter lock yet. On MariaDB, B
    emits and commits meanwhile without waiting and gets 1; A's flush, the last statements
    before its COMMIT, takes 2. A poller that saw B's event then sees A's: nothing skipped.
    (On SQLite A holds the write lock from BEGIN IMMEDIATE, so B follows A: 1 then 2.)"""
    app = app_factory(["tests.plugins.notes.plugin"])
    stream = f"pos{uuid.uuid4().hex[:8]}.events"
    a, b, reader = _engines(app)
    seen, last = [], 0
    try:
        ca = _deferred(a)
        ev_a = _emit(ca, stream, "A")
        assert ev_a.event_seq is None  # not taken yet
        if a.dialect != "sqlite":
            done = {}

            def writer_b():
                with b.transaction() as cb:
                    done["ev"] = _emit(cb, stream, "B")
            t = threading.Thread(target=writer_b)
            t.start()
            t.join(10)
            assert "ev" in done, "B waited on the counter although A had not taken a position"
            assert done["ev"].event_seq == 1
            got = _poll(reader, stream, last)
            assert got == [(1, "B")]
            seen, last = got, 1
        _flush_and_commit(ca)
        if a.dialect == "sqlite":
            with b.transaction() as cb:
                _emit(cb, stream, "B")
        seen += _poll(reader, stream, last)
    finally:
        a.dispose(); b.dispose(); reader.dispose()
    assert ev_a.event_seq == (1 if a.dialect == "sqlite" else 2)
    assert [s for s, _ in seen] == [1, 2] and sorted(w for _, w in seen) == ["A", "B"]


def test_a_savepoint_keeps_earlier_deferred_events_and_its_rollback_drops_only_its_own(app_factory):
    """x is deferred; a savepoint starts (x takes position 1 first, so rolling the savepoint
    back cannot take x with it); "inside" is emitted in the savepoint (position 2) and rolled
    back with it; z, deferred after it, takes 2 at commit. Gapless: 1 x, 2 z."""
    app = app_factory(["tests.plugins.notes.plugin"])
    db = app.extensions["tradeloop"].db
    stream = f"pos{uuid.uuid4().hex[:8]}.events"
    c = _deferred(db)
    x = _emit(c, stream, "x")
    sp = c.begin_nested()
    assert x.event_seq == 1
    assert _emit(c, stream, "inside").event_seq == 2
    sp.rollback()
    z = _emit(c, stream, "z")
    _flush_and_commit(c)
    assert z.event_seq == 2
    with db.read() as r:
        assert [(e.event_seq, e.payload["writer"]) for e in outbox.read(r, stream, 0)] == [(1, "x"), (2, "z")]
        assert outbox.head(r, stream) == 2


def test_flush_and_commit_takes_positions_of_two_streams_in_one_round_trip(app_factory):
    """Two streams, three events: on MariaDB the bumps, the insert and COMMIT go as one
    multi-statement (returns True; the transaction's own commit then sends nothing); on
    SQLite a plain flush (False). Either way: positions 1, 2 on one stream and 1 on the other,
    committed. A failing insert (an event id used before) commits nothing: the bumps roll back."""
    app = app_factory(["tests.plugins.notes.plugin"])
    db = app.extensions["tradeloop"].db
    s1, s2 = f"pos{uuid.uuid4().hex[:8]}.events", f"pos{uuid.uuid4().hex[:8]}.events"
    c = _deferred(db)
    a, b, other = _emit(c, s1, "a"), _emit(c, s1, "b"), _emit(c, s2, "o")
    assert outbox.flush_and_commit(c) is (db.dialect != "sqlite")
    c.commit()
    outbox.discard(c)
    c.close()
    assert (a.event_seq, b.event_seq, other.event_seq) == (1, 2, 1)
    c = _deferred(db)
    dup = outbox.emit(c, s1, "Thing", aggregate_type="thing", aggregate_id="x", aggregate_version=1,
                      payload={"writer": "dup"}, user_id=1, event_id=a.event_id)
    with pytest.raises(sa.exc.IntegrityError):
        outbox.flush_and_commit(c)
        c.commit()
    c.rollback()
    outbox.discard(c)
    c.close()
    with db.read() as r:
        assert [(e.event_seq, e.payload["writer"]) for e in outbox.read(r, s1, 0)] == [(1, "a"), (2, "b")]
        assert [e.payload["writer"] for e in outbox.read(r, s2, 0)] == ["o"]
        assert (outbox.head(r, s1), outbox.head(r, s2)) == (2, 1)
    assert dup.event_id == a.event_id


def test_no_deferred_event_is_lost_however_the_transaction_ends(app_factory):
    """A deferred connection's events are collected until ``flush``. Two ways a caller could
    lose them, both closed: (1) committing without calling ``flush`` — the commit flushes
    first, so the event is stored with position 1; (2) giving the connection back to the pool
    still marked (a request that failed between marking and its BEGIN) — ``conn.info`` lives as
    long as the pooled connection, so the next user of it would collect events nobody flushes:
    the pool's check-in forgets the mark, and the next transaction's event is stored at once
    (position 2, with its ``event_seq`` known at emit)."""
    app = app_factory(["tests.plugins.notes.plugin"])
    stream = f"pos{uuid.uuid4().hex[:8]}.events"
    url = app.extensions["tradeloop"].db.url.render_as_string(hide_password=False)
    db = Database(url, pool_size=1)  # one pooled connection: the next checkout is the same one
    _, _, reader = _engines(app)
    try:
        c = _deferred(db)
        assert _emit(c, stream, "committed-without-flush").event_seq is None
        c.commit()  # no flush, no discard
        c.close()
        assert _poll(reader, stream, 0) == [(1, "committed-without-flush")]

        c = db.engine.connect()
        outbox.defer_positions(c)
        c.close()  # marked, then given back without discard
        with db.transaction() as c2:
            assert not c2.info.get("bus_defer")
            assert _emit(c2, stream, "next-user").event_seq == 2
        assert _poll(reader, stream, 0) == [(1, "committed-without-flush"), (2, "next-user")]
    finally:
        db.dispose()
        reader.dispose()
