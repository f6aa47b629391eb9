"""Drive the simulated market (``sim.world.World``) through the real use cases: market
contexts, scoring (decisions and features on their topics), fills, the P&L ledger,
settlement -- the same service functions and topics as real traffic; ``drain`` then runs the
consumers to completion.

Per simulated day: store the day's market snapshots and its 78 contexts; score the ideas one
context at a time (``decisions.score_ideas``, one request's worth each); record the fills of the
traded subset (``user_trade_actions``); append every idea's ledger events (fills and marks at
the simulator's trigger points; ``ledger="traded"`` keeps marks for traded ideas only) and
settle each idea at its expiry print (``outcomes.settle_ideas``). The ledger's settlement
P&L is checked against the simulator's own outcome for every idea.
"""
from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from typing import Callable

from plugins.mlloop.domain.calendar import session_close_utc
from plugins.mlloop.service import contexts, decisions, outcomes
from plugins.mlloop.sim.world import World

IDEAS_PER_TX = 2000


@dataclasses.dataclass
class Summary:
    days: int = 0
    ideas: int = 0
    contexts: int = 0
    traded: int = 0
    pnl_events: int = 0
    snapshots: int = 0
    settled: int = 0
    settlement_mismatches: int = 0
    consumed: int = 0
    seconds: dict = dataclasses.field(default_factory=lambda: defaultdict(float))

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["seconds"] = {k: round(v, 2) for k, v in self.seconds.items()}
        return d


def run(db, user_id: int, *, days: int, ideas_per_day: int, seed: int, ledger: str = "all",
        mode: str = "normal", progress: Callable[[float, str], None] | None = None,
        trade_fraction: float = 0.005, start_day: int = 0) -> Summary:
    """Simulate ``days`` days for ``user_id`` through the use cases, in transactions of
    ``db`` (an ``app.db.Database``): no Flask, so a CLI command or a background job runs it.
    ``mode`` is the scoring mode the caller decided once (``rules_only`` or ``normal``);
    ``progress(fraction 0..1, message)`` after each scoring request and ledger chunk. The
    consumers are not run here (``drain``). ``start_day`` continues an earlier run of the same
    ``seed`` (its days ``start_day``, ``start_day + 1``, ...)."""
    world = World(seed, ideas_per_day=ideas_per_day, trade_fraction=trade_fraction)
    out = Summary()
    stored_until = None
    total = days * ideas_per_day
    done = 0

    def report(n: int, message: str) -> None:
        nonlocal done
        done += n
        if progress:
            progress(min(done / total, 1.0), message)

    for d in range(start_day, start_day + days):
        t0 = time.perf_counter()
        day = world.day(d)
        close = session_close_utc(day.date)
        snaps = [s for s in world.history if s.time <= close and (stored_until is None or s.time > stored_until)]
        stored_until = close
        refs = [{"context_id": cid, "as_of": ctx.as_of} for cid, ctx in day.contexts.items()]
        with db.transaction() as c:
            contexts.create_contexts(c, user_id, {"symbol": "SPX", "snapshots": snaps, "contexts": refs},
                                     history=world.history)
        out.contexts += len(refs)
        out.seconds["market"] += time.perf_counter() - t0

        # -- scoring, one context (one request's worth) at a time
        t0 = time.perf_counter()
        by_context: dict[str, list] = defaultdict(list)
        for idea in day.ideas:
            by_context[idea.context_id].append(idea)
        for cid, ideas in by_context.items():
            items = [dict(idea_id=i.idea_id, strategy=i.strategy, side=i.side, direction=i.direction,
                          strike=i.strike, width=i.width, expiration=i.expiration, debit=i.debit,
                          quantity=i.quantity, symbol=i.symbol) for i in ideas]
            with db.transaction() as c:
                decisions.score_ideas(c, user_id, {"context_id": cid, "ideas": items}, mode=mode)
            report(len(items) // 2, f"day {d + 1 - start_day}/{days}: scored context {cid}")
        out.ideas += len(day)
        out.seconds["scoring"] += time.perf_counter() - t0

        # -- fills, ledgers, settlement
        t0 = time.perf_counter()
        trades = day.trades
        out.traded += len(trades)
        with db.transaction() as c:
            outcomes.record_actions(c, user_id, [dict(
                idea_id=t.idea_id, action="traded", action_time=t.fill_time, fill_price=t.fill_price,
                fill_quantity=t.quantity, trade_id=t.trade_id) for t in trades])
        traded = set(int(i) for i in day.traded_indices)
        n = len(day)
        for lo in range(0, n, IDEAS_PER_TX):
            hi = min(n, lo + IDEAS_PER_TX)
            events, settle, expected = [], [], {}
            for i in range(lo, hi):
                ledger_events = day.pnl_events(i)
                if ledger == "all" or i in traded:
                    marks = {}
                    if i in traded:
                        marks = {s.snapshot_time: s for s in day.snapshot_triggers(i)}
                    for e in ledger_events[:-1]:
                        ev = dict(idea_id=e.idea_id, trade_id=e.trade_id, event_type=e.event_type,
                                  event_time=e.event_time, pnl_delta=e.pnl_delta, fees=e.fees,
                                  slippage=e.slippage, underlying_price=e.underlying_price)
                        s = marks.get(e.event_time)
                        if s is not None:
                            ev.update(mark_price=s.mark_price, delta=float(s.delta), gamma=float(s.gamma),
                                      theta=float(s.theta), vega=float(s.vega), vix_level=float(s.vix_level))
                        events.append(ev)
                last = ledger_events[-1]
                settle.append(dict(idea_id=last.idea_id, settlement_price=last.underlying_price,
                                   settled_at=last.event_time))
                expected[last.idea_id] = last.cumulative_pnl
            with db.transaction() as c:
                r = outcomes.record_pnl_events(c, user_id, events)
                out.pnl_events += r["recorded"]
                out.snapshots += r["snapshots"]
                s = outcomes.settle_ideas(c, user_id, settle)
                out.pnl_events += s["recorded"]
                out.settled += len(s["settled"])
                for e in s["events"]:
                    if e["cumulative_pnl"] != expected[e["idea_id"]]:
                        out.settlement_mismatches += 1
            report((hi - lo) - (hi - lo) // 2, f"day {d + 1 - start_day}/{days}: ledger of ideas {lo}..{hi - 1}")
        out.seconds["ledger"] += time.perf_counter() - t0
        out.days += 1
    return out


def drain(ext, *, max_events: int = 5000) -> int:
    """Run the enabled plugins' consumer groups in this process until nothing is left (relaying
    the outbox first when the bus is Kafka)."""
    from bus.consumer import Group, Runner
    relay = None
    if ext.config.get("KAFKA_BOOTSTRAP_SERVERS"):
        from bus.relay import Relay
        relay = Relay(ext.db, ext.bus, ext.topic_names())
    runners = [Runner(ext.db, ext.bus, Group.from_subscriptions(g, subs))
               for g, subs in ext.plugins.subscriptions().items()]
    total, idle = 0, 0
    try:
        while idle < (3 if relay is None else 20):
            if relay is not None:
                while relay.run_once():
                    pass
            n = sum(r.run_once(timeout=0 if relay is None else 0.5, max_events=max_events) for r in runners)
            total += n
            idle = idle + 1 if n == 0 else 0
    finally:
        for r in runners:
            r.close()
    return total
