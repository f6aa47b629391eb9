"""Connection settings -> the engine's behaviour, on a real MariaDB: no TLS context built per
connection on loopback, a kept pool with no overflow churn, a ping only after idling, a
rollback on return only when a transaction is open (app.db.Database)."""
from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from app.db import Database, mysql_tls_args


def _session_counter(conn, name: str) -> int:
    return int(conn.exec_driver_sql(f"SHOW SESSION STATUS LIKE '{name}'").first()[1])


def _pooled_counter(db, name: str) -> int:
    """A session counter of the (one) pooled connection, read through the bare driver so the
    reading adds no ROLLBACK of its own (SHOW STATUS opens no transaction)."""
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(f"SHOW SESSION STATUS LIKE '{name}'")
        value = int(cur.fetchone()[1])
        cur.close()
        return value
    finally:
        raw.close()


@pytest.fixture
def counted(mariadb_url):
    """``counted(**settings)`` -> (Database, connects) where ``connects`` counts new connections."""
    made = []

    def make(**settings):
        db = Database(mariadb_url, **settings)
        connects = []
        sa.event.listen(db.engine, "connect", lambda dbapi_conn, record: connects.append(dbapi_conn))
        made.append(db)
        return db, connects
    yield make
    for db in made:
        db.dispose()


def test_loopback_connections_build_no_tls_context(counted, monkeypatch):
    """pymysql's default ("preferred" TLS) builds an SSLContext for every new connection;
    to a loopback address none is built at all."""
    import pymysql.connections
    built = []
    real = pymysql.connections.Connection._create_ssl_ctx
    monkeypatch.setattr(pymysql.connections.Connection, "_create_ssl_ctx",
                        lambda self, sslp: built.append(sslp) or real(self, sslp))
    db, connects = counted(pool_size=3)
    conns = [db.engine.connect() for _ in range(3)]
    for c in conns:
        assert c.exec_driver_sql("SELECT 1").scalar() == 1
        c.close()
    assert len(connects) == 3 and built == []


def test_tls_on_requires_it_and_remote_hosts_share_one_context(counted):
    """``tls="on"`` is required TLS: this loopback server has TLS disabled, so connecting
    fails naming SSL instead of silently going plain. A remote host gets TLS by default, with
    one SSLContext shared by every connection and every Database."""
    db, _ = counted(tls="on")
    with pytest.raises(sa.exc.OperationalError, match="(?i)ssl"):
        db.engine.connect()
    remote = sa.engine.make_url("mysql+pymysql://u@db.internal.example:3306/x")
    a, b = mysql_tls_args(remote, "auto", None), mysql_tls_args(remote, "auto", None)
    assert a["ssl"] is b["ssl"]
    assert mysql_tls_args(remote, "off", None) == {"ssl_disabled": True}
    assert mysql_tls_args(sa.engine.make_url("mysql+pymysql://u@localhost/x?unix_socket=/run/m.sock"),
                          "auto", None) == {"ssl_disabled": True}
    with pytest.raises(ValueError, match="DATABASE_TLS"):
        mysql_tls_args(remote, "maybe", None)


def test_bursts_reuse_the_kept_connections_and_wait_beyond_them(counted):
    """Two bursts of 8 concurrent transactions on a pool of 4 with no overflow: 4 connections
    are opened in all (the other 4 requests of a burst wait for a free one), none per burst."""
    db, connects = counted(pool_size=4, max_overflow=0, pool_timeout=20)
    errors = []

    def work(barrier):
        try:
            barrier.wait(10)
            with db.transaction() as c:
                c.exec_driver_sql("SELECT SLEEP(0.05)")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    for _burst in range(2):
        barrier = threading.Barrier(8)
        threads = [threading.Thread(target=work, args=(barrier,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert errors == []
    assert len(connects) == 4
    assert db.engine.pool.checkedout() == 0


def test_ping_only_after_idle_and_a_connection_killed_while_idle_is_replaced(counted, mariadb_url):
    """A busy connection is not pinged (COM_PING shows in Com_admin_commands); one idle longer
    than ``ping_after_idle`` is, and if the server dropped it meanwhile the pool reconnects
    before the caller sees an error."""
    db, connects = counted(pool_size=1, ping_after_idle=0.3)
    with db.engine.connect() as c:
        conn_id = c.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
        before = _session_counter(c, "Com_admin_commands")
    for _ in range(3):  # back-to-back checkouts: no ping
        with db.engine.connect() as c:
            assert c.exec_driver_sql("SELECT CONNECTION_ID()").scalar() == conn_id
    with db.engine.connect() as c:
        assert _session_counter(c, "Com_admin_commands") == before
    time.sleep(0.4)
    with db.engine.connect() as c:  # idle: pinged once
        assert _session_counter(c, "Com_admin_commands") == before + 1
    killer = sa.create_engine(mariadb_url)
    try:
        with killer.connect() as k:
            k.exec_driver_sql(f"KILL {conn_id}")
    finally:
        killer.dispose()
    time.sleep(0.4)
    with db.transaction() as c:  # no error: the dead connection failed its ping and was replaced
        assert c.exec_driver_sql("SELECT CONNECTION_ID()").scalar() != conn_id
    assert len(connects) == 2


def test_rollback_on_return_only_when_a_transaction_is_open(counted):
    """After a COMMIT the connection goes back to the pool without a ROLLBACK round trip;
    a connection returned with a transaction still open (the raw driver's) is rolled back,
    so its write is gone and the next user starts clean."""
    db, _ = counted(pool_size=1)
    with db.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE IF NOT EXISTS test_db_reset (id INT PRIMARY KEY)")
        c.exec_driver_sql("DELETE FROM test_db_reset")
    rollbacks = _pooled_counter(db, "Com_rollback")
    for i in range(3):
        with db.transaction() as c:
            c.exec_driver_sql(f"INSERT INTO test_db_reset VALUES ({i})")
    assert _pooled_counter(db, "Com_rollback") == rollbacks
    raw = db.engine.raw_connection()
    cur = raw.cursor()
    cur.execute("INSERT INTO test_db_reset VALUES (99)")
    cur.close()
    raw.close()  # returned mid-transaction
    assert _pooled_counter(db, "Com_rollback") == rollbacks + 1
    with db.engine.connect() as c:
        assert sorted(r[0] for r in c.exec_driver_sql("SELECT id FROM test_db_reset")) == [0, 1, 2]
        c.exec_driver_sql("DROP TABLE test_db_reset")
