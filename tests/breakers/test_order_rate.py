"""Order rate: with a limit of L per second and many concurrent executes, no one-second window
of committed executions holds more than L (threads against each stack's real database)."""
from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

from plugins.breakers import tables


class Vetoed(Exception):
    pass


def hammer(desk, *, threads: int, seconds: float, work: float = 0.002):
    """Executes from many threads for ``seconds``: each is a transaction that asks the hook,
    then (allowed) does some work before committing, or (vetoed) rolls back like the host."""
    ext, uid = desk.ext, desk.uid
    allowed, refused, errors = [], [], []
    stop = time.monotonic() + seconds

    def worker():
        while time.monotonic() < stop:
            oid = str(uuid.uuid4())
            try:
                with ext.db.transaction() as conn:
                    vetoes = ext.check_order_allowed(conn, uid, {"order_id": oid, "reduces_position": False})
                    if vetoes:
                        raise Vetoed(vetoes)
                    time.sleep(work)  # the rest of the execute, inside the same transaction
                allowed.append(oid)
            except Vetoed as exc:
                refused.append(exc.args[0])
                time.sleep(0.001)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]
    return allowed, refused


def max_in_any_window(stamps: list[dt.datetime], width=dt.timedelta(seconds=1)) -> int:
    """The most timestamps any half-open window [s, s + width) holds (checking windows that
    start at each stamp suffices)."""
    stamps = sorted(stamps)
    best, j = 0, 0
    for i, s in enumerate(stamps):
        while j < len(stamps) and stamps[j] < s + width:
            j += 1
        best = max(best, j - i)
    return best


def test_max_in_any_window_helper():
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    ms = dt.timedelta(milliseconds=1)
    assert max_in_any_window([t0, t0 + 999 * ms, t0 + 1000 * ms]) == 2
    assert max_in_any_window([t0, t0 + 500 * ms, t0 + 999 * ms, t0 + 1999 * ms]) == 3


def test_order_rate_is_exact_under_concurrent_executes(desk):
    limit = 4
    desk.set_limit("order_rate", limit)
    allowed, refused = hammer(desk, threads=12, seconds=2.2)
    rows = desk.table(tables.order_log, user_id=desk.uid)
    assert sorted(r.order_id for r in rows) == sorted(allowed), "exactly the committed executions are logged"
    assert max_in_any_window([r.executed_at for r in rows]) <= limit
    assert len(allowed) >= limit and refused, (len(allowed), len(refused))
    v = refused[0][0]
    assert v.source == "order_rate" and f"limit is {limit}/s" in v.message
    # The breaker tripped (warning: rules-only scoring) each time the window filled up.
    assert desk.events("BreakerTripped")[0].payload["breaker"] == "order_rate"


def test_order_rate_critical_halts_while_the_window_is_full_then_resets_itself(desk, monkeypatch):
    from plugins.breakers import service
    t0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    clock = {"now": t0}
    monkeypatch.setattr(service, "now", lambda: clock["now"])
    desk.set_limit("order_rate", 2, severity="critical")
    assert desk.check() == [] and desk.check() == []
    st = desk.status()
    assert st["trading_state"]["state"] == "HALTED"
    assert [v.source for v in desk.check(reduces=True)] == ["order_rate"]
    clock["now"] = t0 + dt.timedelta(milliseconds=999)
    assert desk.check() != []
    clock["now"] = t0 + dt.timedelta(milliseconds=1000)   # the first two left the window
    assert desk.breaker("order_rate")["tripped"] is False
    assert desk.check() == []
    assert [(e.payload["from_state"], e.payload["to_state"]) for e in desk.events("TradingStateChanged")] == [
        ("ACTIVE", "HALTED"), ("HALTED", "ACTIVE")]
    r = desk.c.post("/api/breakers/order_rate/clear", json={"reason": "x"})
    assert r.status_code == 409
