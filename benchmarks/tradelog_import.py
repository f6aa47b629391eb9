"""How long a 10,000-execution broker file takes to import (issue 19).

Run as ``python -m benchmarks.tradelog_import [--stack embedded|production] [--rows N]``. It
writes a synthetic file in the generic format — N executions: 2-leg XYZ put credit spreads,
each opened by one order and closed by another a day later, on trading days — and runs the
import service function (``plugins.tradelog.imports.import_file``: parsing, grouping, FIFO
matching, fills, events, all in one transaction) on a fresh database, then the same file
again (every row a duplicate). As the raw primitive it measures, in the same run and
database, inserting N rows of the same width into a scratch table with one ``executemany``
in one transaction. Prints seconds, rows/s and the ratio; asserts nothing about timings.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
import uuid


def synthetic_file(rows: int) -> str:
    """``rows`` executions (a multiple of 4): put credit spreads opened and closed."""
    from optionsmath import markettime
    out = ["execution_id,order_id,occurred_at,symbol,side,quantity,price,fees,open_close"]
    day = dt.date(2024, 1, 2)
    n = 0
    while n < rows:
        while not markettime.is_trading_day(day):
            day += dt.timedelta(days=1)
        expiry = markettime.next_trading_day(day + dt.timedelta(days=28))
        nxt = markettime.next_trading_day(day)
        for k in range(min(40, (rows - n) // 4)):  # 40 spreads a day, a minute apart
            t_open = dt.datetime.combine(day, dt.time(15, k), dt.timezone.utc)
            t_close = dt.datetime.combine(nxt, dt.time(15, k), dt.timezone.utc)
            short, long_ = 400 + k, 395 + k
            sym = lambda s: f"XYZ   {expiry:%y%m%d}P{s * 1000:08d}"  # noqa: E731
            o, c = f"o{n}", f"c{n}"
            out += [f"{n},{o},{t_open:%Y-%m-%dT%H:%M:%SZ},{sym(short)},sell,1,2.10,0.65,open",
                    f"{n + 1},{o},{t_open:%Y-%m-%dT%H:%M:%SZ},{sym(long_)},buy,1,1.20,0.65,open",
                    f"{n + 2},{c},{t_close:%Y-%m-%dT%H:%M:%SZ},{sym(short)},buy,1,1.00,0.65,close",
                    f"{n + 3},{c},{t_close:%Y-%m-%dT%H:%M:%SZ},{sym(long_)},sell,1,0.55,0.65,close"]
            n += 4
        day = nxt
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", choices=["embedded", "production"], default="embedded")
    ap.add_argument("--rows", type=int, default=10_000)
    args = ap.parse_args(argv)
    rows = max(4, min(args.rows, 20_000) // 4 * 4)
    import sqlalchemy as sa
    from app import auth, create_app
    from app.migrate import upgrade
    from plugins.tradelog import imports

    tmp = tempfile.mkdtemp(prefix="tl_import_bench_")
    admin = db_name = None
    if args.stack == "embedded":
        cfg = {"DATABASE_URL": f"sqlite:///{tmp}/bench.db", "REDIS_URL": None}
    else:
        base = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")
        db_name = f"tl_import_bench_{os.getpid()}"
        admin = sa.create_engine(base + "/test")
        with admin.begin() as c:
            c.exec_driver_sql(f"CREATE DATABASE {db_name} CHARACTER SET utf8mb4")
        cfg = {"DATABASE_URL": f"{base}/{db_name}", "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")}
    try:
        app = create_app({**cfg, "KAFKA_BOOTSTRAP_SERVERS": None, "TRADELOOP_PLUGINS": ["tradelog"], "SECRET_KEY": "b"})
        ext = app.extensions["tradeloop"]
        upgrade(ext, echo=None)
        with ext.db.transaction() as conn:
            user, _ = auth.create_user(conn, f"bench_{uuid.uuid4().hex[:8]}")
        text = synthetic_file(rows)
        content = text.encode()
        print(f"tradelog import benchmark: stack={args.stack} rows={rows} ({len(content) / 1e6:.2f} MB, generic format)")

        # the raw primitive: N rows of the same width, one executemany, one transaction
        scratch = sa.Table("bench_scratch", sa.MetaData(), *[sa.Column(f"c{i}", sa.String(40)) for i in range(9)])
        scratch.create(ext.db.engine)
        lines = [line.split(",") for line in text.splitlines()[1:]]
        t0 = time.perf_counter()
        with ext.db.transaction() as conn:
            conn.execute(scratch.insert(), [{f"c{i}": v for i, v in enumerate(cells)} for cells in lines])
        raw = time.perf_counter() - t0
        scratch.drop(ext.db.engine)

        marks = []
        t0 = time.perf_counter()
        with ext.db.transaction() as conn:
            record = imports.import_file(conn, user.id, content, {"format": "generic"},
                                         progress=lambda f, m="": marks.append((time.perf_counter() - t0, f)))
        took = time.perf_counter() - t0
        rep = record["report"]
        t0 = time.perf_counter()
        with ext.db.transaction() as conn:
            again = imports.import_file(conn, user.id, content, {"format": "generic"})
        took_again = time.perf_counter() - t0
        print(f"  raw executemany of {rows} rows        {raw:7.2f} s = {rows / raw:9.0f} rows/s")
        print(f"  import (positions, fills, events)     {took:7.2f} s = {rows / took:9.0f} rows/s  "
              f"(ratio to raw {raw / took:.3f})")
        print(f"    -> {len(rep['positions_created'])} positions created, {rep['fills_recorded']} fills, "
              f"{len(rep['positions_closed'])} closed, realized {rep['realized_pnl']}")
        print(f"  the same file again (all duplicates)  {took_again:7.2f} s = {rows / took_again:9.0f} rows/s  "
              f"({len(again['report']['duplicates'])} duplicates)")
        if marks:
            half = next(t for t, f in marks if f >= 0.5)
            print(f"  progress: half the orders after {half:.2f} s, {len(marks)} progress reports")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if admin is not None:
            with admin.begin() as c:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS {db_name}")


if __name__ == "__main__":
    main()
