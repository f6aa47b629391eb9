"""One day of scoring decisions end to end: the scorer (``decisions.score_ideas``, one request's
worth per market context) -> outbox -> relay -> Kafka -> the mlloop consumer -> ``ml_decisions``
+ ``ml_feature_snapshots`` rows, against raw confluent-kafka produce of the same payloads plus
raw ``executemany`` of the same rows, in the same run.

    python -m benchmarks.decisions [--n 20000] [--db mariadb|sqlite] [--partitions 3]

The ideas are one simulated day (simulator.World, seed 1). Broker: $KAFKA_BOOTSTRAP_SERVERS, else
a Tansu started here. Database: a fresh MariaDB database (TEST_MARIADB_URL server) or a SQLite
file. The relay and the consumer run in their own processes, as deployed, and have joined before
the clock starts; the clock runs from the first scoring request to the last row. The scoring
request also writes the ideas' ``tracked_ideas`` rows, so the raw baseline inserts those too.
Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

import sqlalchemy as sa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bus import relay_proc, serve_runner, start_broker  # noqa: E402


def make_app(kind, bootstrap, prefix):
    import tempfile
    from app import create_app
    from app.migrate import upgrade
    if kind == "sqlite":
        d = tempfile.mkdtemp(prefix="tl_bench_dec_")
        url, cleanup_db = f"sqlite:///{d}/bench.db", None
    else:
        server = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")
        name = f"tl_bench_{uuid.uuid4().hex[:8]}"
        eng = sa.create_engine(server + "/test")
        with eng.begin() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        url = f"{server}/{name}"

        def cleanup_db():
            with eng.begin() as c:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    app = create_app({"DATABASE_URL": url, "TRADELOOP_PLUGINS": ["mlloop"], "SECRET_KEY": "bench",
                      "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC_PREFIX": prefix})
    upgrade(app.extensions["tradeloop"], echo=None)
    return app, url, cleanup_db


def _consumer_proc(db_url, bootstrap, prefix, partitions, ready, stop, stats_q):
    from app.db import Database
    from bus.consumer import Group, Runner
    from bus.kafka import KafkaBus
    from plugins.mlloop import handlers
    bus = KafkaBus(bootstrap, client_id="bench-consumer", topic_prefix=prefix, partitions=partitions)
    subs = {k: v for k, v in handlers.SUBSCRIPTIONS.items() if "pnl" not in k}
    runner = Runner(Database(db_url), bus, Group.from_subscriptions("mlloop", subs))
    serve_runner(runner, ready, stop, stats_q)


def pipeline(app, url, bootstrap, prefix, partitions, n):
    import multiprocessing as mp

    from app import auth
    from plugins.mlloop.service import common, contexts, decisions
    from plugins.mlloop.sim.world import World
    from plugins.mlloop.tables import ml_decisions, ml_feature_snapshots
    ext = app.extensions["tradeloop"]
    db = ext.db
    ext.bus.ensure_topics([common.DECISIONS, common.FEATURES])
    day = World(1, ideas_per_day=n).day(0)
    with db.transaction() as c:
        user, _ = auth.create_user(c, f"bench_{uuid.uuid4().hex[:6]}")
        snaps = [s for s in day.history if s.time <= max(x.as_of for x in day.contexts.values())]
        contexts.create_contexts(c, user.id, {"symbol": "SPX", "snapshots": snaps, "contexts": [
            {"context_id": cid, "as_of": x.as_of} for cid, x in day.contexts.items()]}, history=day.history)
    requests = {}
    for i in day.ideas:
        requests.setdefault(i.context_id, []).append(dict(
            idea_id=i.idea_id, strategy=i.strategy, side=i.side, direction=i.direction, strike=i.strike,
            width=i.width, expiration=i.expiration, debit=i.debit, quantity=i.quantity, symbol=i.symbol))

    ctx = mp.get_context("spawn")
    stop, r_ready, c_ready, stats_q = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=relay_proc, args=(url, bootstrap, [common.DECISIONS, common.FEATURES], prefix,
                                                  partitions, r_ready, stop)),
             ctx.Process(target=_consumer_proc, args=(url, bootstrap, prefix, partitions, c_ready, stop, stats_q))]
    for p in procs:
        p.start()
    r_ready.wait(60)
    c_ready.wait(60)

    def count():
        with db.transaction() as c:
            a = c.execute(sa.select(sa.func.count()).select_from(ml_decisions)).scalar()
            b = c.execute(sa.select(sa.func.count()).select_from(ml_feature_snapshots)).scalar()
        return min(a, b)

    t0 = time.perf_counter()
    for cid, items in requests.items():
        with db.transaction() as c:
            decisions.score_ideas(c, user.id, {"context_id": cid, "ideas": items}, mode="normal")
    t_score = time.perf_counter() - t0
    while count() < n and time.perf_counter() - t0 < 600:
        time.sleep(0.01)
    total = time.perf_counter() - t0
    got = count()
    stop.set()
    stats = stats_q.get(timeout=60)
    for p in procs:
        p.join(30)
    return dict(total=total, scoring=t_score, rows=got, stats=stats, user_id=user.id, requests=len(requests))


def raw_baseline(app, bootstrap, partitions, user_id):
    """The same payloads produced with a bare confluent-kafka producer, and the same rows
    (decisions, feature snapshots, tracked ideas) inserted with a bare DB-API executemany."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from plugins.mlloop.tables import ml_decisions, ml_feature_snapshots, tracked_ideas
    from bus import outbox
    db = app.extensions["tradeloop"].db
    with db.transaction() as c:
        payloads = [(r.aggregate_id.encode(), r.payload.encode()) for r in c.execute(
            sa.select(outbox.outbox.c.aggregate_id, outbox.outbox.c.payload).where(
                outbox.outbox.c.stream.in_(["mlloop.decisions", "mlloop.features"])))]
    topic = f"raw_{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(10)
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                  "compression.type": "lz4"})
    t0 = time.perf_counter()
    for key, value in payloads:
        while True:
            try:
                p.produce(topic, key=key, value=value)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(60)
    t_produce = time.perf_counter() - t0

    # the same rows, copied into look-alike tables, then inserted again with a bare executemany
    t_rows, n_rows = 0.0, 0
    raw = db.engine.raw_connection()
    try:
        for table in (ml_decisions, ml_feature_snapshots, tracked_ideas):
            copy = f"raw_{table.name}"
            cols = [c.name for c in table.columns]
            cur = raw.cursor()
            cur.execute(f"DROP TABLE IF EXISTS {copy}")
            if db.dialect == "sqlite":
                cur.execute(f"CREATE TABLE {copy} AS SELECT * FROM {table.name} WHERE 0")
            else:
                cur.execute(f"CREATE TABLE {copy} LIKE {table.name}")
            cur.execute(f"SELECT {', '.join(cols)} FROM {table.name} WHERE user_id = {int(user_id)}")
            rows = cur.fetchall()
            mark = "?" if db.dialect == "sqlite" else "%s"
            sql = f"INSERT INTO {copy} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
            raw.commit()
            t0 = time.perf_counter()
            for i in range(0, len(rows), 5000):
                cur.executemany(sql, rows[i:i + 5000])
            raw.commit()
            t_rows += time.perf_counter() - t0
            n_rows += len(rows)
            cur.execute(f"DROP TABLE {copy}")
            raw.commit()
    finally:
        raw.close()
    return dict(produce=t_produce, messages=len(payloads), rows_seconds=t_rows, rows=n_rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--db", choices=["mariadb", "sqlite"], default="mariadb")
    ap.add_argument("--partitions", type=int, default=3)
    args = ap.parse_args()
    bootstrap, broker = start_broker()
    prefix = f"bd{uuid.uuid4().hex[:6]}."
    app, url, cleanup = make_app(args.db, bootstrap, prefix)
    try:
        p = pipeline(app, url, bootstrap, prefix, args.partitions, args.n)
        r = raw_baseline(app, bootstrap, args.partitions, p["user_id"])
    finally:
        app.extensions["tradeloop"].db.dispose()
        if cleanup:
            cleanup()
        if broker is not None:
            broker.terminate()
    n = args.n
    raw_total = r["produce"] + r["rows_seconds"]
    print(f"decisions benchmark: {n} decisions, one simulated day ({p['requests']} scoring requests), "
          f"db={args.db}, partitions={args.partitions}")
    print(f"  pipeline  score -> outbox -> relay -> Kafka -> consumer -> rows: {p['total']:.2f} s "
          f"= {n / p['total']:,.0f} decisions/s (scoring requests alone {p['scoring']:.2f} s = "
          f"{n / p['scoring']:,.0f}/s; rows written {p['rows']})")
    print(f"            consumer stats {json.dumps(p['stats'])}")
    print(f"  raw       produce {r['messages']} msgs {r['produce']:.2f} s ({r['messages'] / r['produce']:,.0f} msg/s) + "
          f"executemany {r['rows']} rows {r['rows_seconds']:.2f} s ({r['rows'] / r['rows_seconds']:,.0f} rows/s) "
          f"= {raw_total:.2f} s = {n / raw_total:,.0f} decisions/s")
    print(f"  ratio     pipeline / raw = {raw_total / p['total']:.2f}")


if __name__ == "__main__":
    main()
