"""mlloop use cases after the decision: the P&L ledger, settlement, user actions, outcome
labels and daily performance. No Flask; ``conn`` and ``user_id`` first.

* ``record_pnl_events``: append ``pnl_events`` rows (mark / fill / adjustment / settlement),
  move each idea's running path (``ledger.PathState``), take a ``tracked_idea_snapshots``
  row only when an event triggers one, and emit ``PnlRecorded`` on ``mlloop.pnl`` per event.
  Per idea, events must come in time order; nothing follows a settlement.
* ``settle_ideas``: the settlement event at expiry: the structure's value at the settlement
  price, entered at the idea's debit, net of the fees, slippage and adjustments recorded,
  minus what the ledger already holds -- so an idea's events always sum to its
  ``settlement_pnl``.
* ``label_ideas`` (consumer, on settlement): every seed label (labels.label_outcome), the
  cohort being the settled ideas scored against the same market context.
* ``recompute_days`` / ``materialize``: ``daily_performance`` from the ``pnl_events`` of
  traded ideas (``trade_id`` set); the consumer recomputes the days its events touch, the
  CLI every day -- the same function, so they agree.
"""
from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter, defaultdict
from decimal import Decimal

import sqlalchemy as sa
from optionsmath.decimals import to_decimal

from app import errors
from app.db import new_id, utcnow
from plugins.mlloop.domain import calendar as fx
from plugins.mlloop.domain import ideas, labels, ledger
from plugins.mlloop.events import PNL as PNL_TOPIC
from plugins.mlloop.service.common import chunks
from plugins.mlloop.tables import (
    daily_performance, ml_decisions, ml_labels, pnl_events, tracked_idea_snapshots, tracked_ideas,
    user_trade_actions,
)

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
_PATH_COLUMNS = ledger.PathState.FIELDS


def _d(x, default=ZERO) -> Decimal:
    if x is None:
        return default
    return to_decimal(x)


def _trade_idea(row) -> ideas.TradeIdea:
    return ideas.TradeIdea(
        idea_id=row["idea_id"], strategy=row["strategy"], side=row["side"], direction=row["direction"],
        strike=_d(row["strike"]), width=row["width"], expiration=row["expiration"], dte=row["dte"],
        debit=_d(row["entry_debit"]), quantity=row["quantity"], symbol=row["symbol"])


def settlement_pnl_at(row, state: ledger.PathState, price: Decimal) -> Decimal:
    """Net P&L at expiry: value at the settlement price entered at the idea's debit, less the
    fees and slippage recorded, plus recorded adjustments."""
    gross = _trade_idea(row).pnl_at_expiry(price)
    return (gross - state.total_fees - state.total_slippage + state.total_adjustments).quantize(CENT)


def _load_ideas(conn, user_id: int, idea_ids: list[str], *, lock: bool = True) -> dict[str, dict]:
    t = tracked_ideas.c
    out = {}
    for part in chunks(idea_ids):
        q = sa.select(tracked_ideas).where(t.user_id == user_id, t.idea_id.in_(part))
        if lock:
            q = q.with_for_update()
        for r in conn.execute(q):
            out[r.idea_id] = dict(r._mapping)
    missing = [i for i in idea_ids if i not in out]
    if missing:
        raise errors.NotFound(f"no tracked idea {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return out


def record_pnl_events(conn, user_id: int, events: list[dict]) -> dict:
    """Append P&L events (see the module docstring). An event with ``settlement_price`` and no
    ``pnl_delta`` is a settlement whose delta the ledger computes."""
    if not events:
        return {"recorded": 0, "snapshots": 0, "settled": [], "events": []}
    position = {id(e): i for i, e in enumerate(events)}
    given = [e["event_id"] for e in events if e.get("event_id")]
    if len(set(given)) != len(given):
        raise errors.field_error("events", "event ids must be unique within a request")
    already = set()
    for part in chunks(given):
        for r in conn.execute(sa.select(pnl_events).where(pnl_events.c.event_id.in_(part))):
            e = next(x for x in events if x.get("event_id") == r.event_id)
            if r.user_id != user_id or r.idea_id != e["idea_id"] or r.event_type != e["event_type"] \
                    or (e.get("pnl_delta") is not None and r.pnl_delta != _d(e["pnl_delta"]).quantize(CENT)):
                raise errors.Conflict(f"event {r.event_id} is already recorded with other values "
                                      "(pnl_events are append-only)", code="immutable_record")
            already.add(r.event_id)
    events = [e for e in events if e.get("event_id") not in already]
    ideas = _load_ideas(conn, user_id, sorted({e["idea_id"] for e in events}))
    by_idea: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        by_idea[e["idea_id"]].append(e)
    now = utcnow()
    pnl_rows, snap_rows, specs, out, settled, updates = [], [], [], [], [], []
    for idea_id, evs in by_idea.items():
        row = ideas[idea_id]
        if row["settlement_status"] == "settled":
            raise errors.InvalidState(f"idea {idea_id!r} is settled: its ledger is closed", code="idea_settled")
        state = ledger.PathState.from_row(row)
        trade_id = row["trade_id"]
        evs.sort(key=lambda e: e["event_time"])
        for e in evs:
            if row["settlement_status"] == "settled":
                raise errors.InvalidState(f"idea {idea_id!r}: an event after its settlement", code="idea_settled")
            etype = e["event_type"]
            t = fx.utc_ms(e["event_time"])
            fees, slip = _d(e.get("fees")), _d(e.get("slippage"))
            if e.get("pnl_delta") is None:
                if etype != "settlement" or e.get("settlement_price") is None:
                    raise errors.field_error("events", "pnl_delta is required (except for a settlement with a "
                                                       "settlement_price)")
                delta = settlement_pnl_at(row, state, _d(e["settlement_price"])) - state.cumulative_pnl
            else:
                delta = _d(e["pnl_delta"]).quantize(CENT)
            underlying = _d(e.get("underlying_price") if e.get("underlying_price") is not None
                            else e.get("settlement_price")).quantize(CENT)
            try:
                trigger = state.apply(etype, t, delta, fees, slip, underlying)
            except ledger.OutOfOrder as exc:
                raise errors.InvalidState(f"idea {idea_id!r}: {exc}", code="out_of_order")
            if etype == "settlement" and e.get("pnl_delta") is not None:
                _check_settlement(row, state, position[id(e)])
            if e.get("trade_id") and not trade_id:
                trade_id = e["trade_id"]
            event_id = e.get("event_id") or new_id()
            cum = state.cumulative_pnl
            pnl_rows.append(dict(
                event_id=event_id, user_id=user_id, idea_id=idea_id, tracked_idea_id=row["id"],
                trade_id=e.get("trade_id") or trade_id, strategy_id=e.get("strategy_id"), event_time=t,
                session_date=fx.session_date(t), event_type=etype, pnl_delta=delta, fees=fees, slippage=slip,
                underlying_price=underlying, cumulative_pnl=cum, recorded_at=now))
            specs.append(dict(
                type="PnlRecorded", aggregate_type="idea", aggregate_id=row["id"],
                aggregate_version=state.event_count, user_id=user_id, occurred_at=t, event_id=event_id,
                payload={"idea_id": idea_id, "trade_id": e.get("trade_id") or trade_id, "event_type": etype,
                         "pnl_delta": delta, "fees": fees, "slippage": slip, "underlying_price": underlying,
                         "event_time": t}))
            if trigger is not None:
                snap_rows.append(dict(
                    user_id=user_id, tracked_idea_id=row["id"], pnl_event_id=event_id, snapshot_time=t,
                    trigger_type=trigger, mark_price=e.get("mark_price"), underlying_price=underlying,
                    unrealized_pnl=cum, pnl_percent=ledger.pnl_percent(cum, state.risk_unit),
                    delta=e.get("delta"), gamma=e.get("gamma"), theta=e.get("theta"), vega=e.get("vega"),
                    vix_level=e.get("vix_level")))
            out.append({"event_id": event_id, "idea_id": idea_id, "event_type": etype, "event_time": t,
                        "pnl_delta": delta, "cumulative_pnl": cum, "snapshot_trigger": trigger})
            if etype == "settlement":
                row["settlement_status"] = "settled"
                row["settlement_pnl"] = cum
                row["settlement_price"] = underlying
                row["settled_at"] = t
                row["lifetime_minutes"] = ledger.trading_minutes_between(row["decision_time"], t)
                settled.append(idea_id)
        updates.append({"b_id": row["id"], **state.values(), "trade_id": trade_id,
                        "settlement_status": row["settlement_status"], "settlement_pnl": row["settlement_pnl"],
                        "settlement_price": row["settlement_price"], "settled_at": row["settled_at"],
                        "lifetime_minutes": row["lifetime_minutes"], "updated_at": now})
    for part in chunks(pnl_rows, 5000):
        conn.execute(pnl_events.insert(), part)
    for part in chunks(snap_rows, 5000):
        conn.execute(tracked_idea_snapshots.insert(), part)
    cols = [*_PATH_COLUMNS, "trade_id", "settlement_status", "settlement_pnl", "settlement_price", "settled_at",
            "lifetime_minutes", "updated_at"]
    stmt = tracked_ideas.update().where(tracked_ideas.c.id == sa.bindparam("b_id")).values(
        {**{c: sa.bindparam(c) for c in cols}, "version": tracked_ideas.c.version + 1})
    for part in chunks(updates, 5000):
        conn.execute(stmt, part)
    for part in chunks(specs, 5000):
        PNL_TOPIC.emit_many(conn, part)
    return {"recorded": len(pnl_rows), "snapshots": len(snap_rows), "settled": settled, "events": out}


def _check_settlement(row, state: ledger.PathState, index: int) -> None:
    """A settlement P&L must be one the structure can reach: its P&L at expiry before costs
    (the settlement P&L plus the recorded fees and slippage, less adjustments) lies within
    the structure's (max loss, max profit) entered at its debit; else 422 naming the event's
    ``pnl_delta``."""
    best, worst = ideas.pnl_range(row["strategy"], row["side"], row["direction"], row["strike"],
                                  row["width"], row["entry_debit"], row["quantity"])
    gross = state.cumulative_pnl + state.total_fees + state.total_slippage - state.total_adjustments
    if (best is not None and gross > best) or (worst is not None and gross < worst):
        bound = (f"at most {best.quantize(CENT)}" if best is not None and gross > best
                 else f"at least {worst.quantize(CENT)}")
        message = (f"a settlement P&L of {state.cumulative_pnl} for idea {row['idea_id']!r} is {gross} "
                   f"before costs: its structure settles {bound}")
        raise errors.Unprocessable(f"events.{index}.pnl_delta: {message}",
                                   errors={"json": {"events": {str(index): {"pnl_delta": [message]}}}})


def settle_ideas(conn, user_id: int, items: list[dict]) -> dict:
    """Settle ideas at expiry: one settlement event each (``settled_at`` defaults to the
    expiration's 16:00 New York close)."""
    ideas = _load_ideas(conn, user_id, sorted({i["idea_id"] for i in items}), lock=False)
    events = []
    for i in items:
        row = ideas[i["idea_id"]]
        if row["settlement_status"] == "settled":
            raise errors.InvalidState(f"idea {i['idea_id']!r} is already settled", code="idea_settled")
        at = i.get("settled_at") or fx.session_close_utc(row["expiration"])
        events.append(dict(idea_id=i["idea_id"], event_type="settlement", event_time=at, pnl_delta=None,
                           settlement_price=i["settlement_price"], underlying_price=i["settlement_price"],
                           trade_id=row["trade_id"], event_id=i.get("event_id")))
    return record_pnl_events(conn, user_id, events)


def settle_idea(conn, user_id: int, idea_id: str, data: dict) -> dict:
    settle_ideas(conn, user_id, [{**data, "idea_id": idea_id}])
    return get_idea(conn, user_id, idea_id)


def record_action(conn, user_id: int, idea_id: str, data: dict) -> dict:
    """Append a user action on an idea; ``traded`` with a trade_id links the idea to it."""
    row = _load_ideas(conn, user_id, [idea_id], lock=False)[idea_id]
    now = utcnow()
    values = dict(tracked_idea_id=row["id"], user_id=user_id, action=data["action"],
                  action_time=data.get("action_time") or now, fill_price=data.get("fill_price"),
                  fill_quantity=data.get("fill_quantity"), trade_id=data.get("trade_id"),
                  exit_price=data.get("exit_price"), realized_pnl=data.get("realized_pnl"), recorded_at=now)
    new_pk = conn.execute(user_trade_actions.insert().values(**values)).inserted_primary_key[0]
    if data["action"] == "traded" and data.get("trade_id") and not row["trade_id"]:
        conn.execute(tracked_ideas.update().where(tracked_ideas.c.id == row["id"]).values(
            trade_id=data["trade_id"], version=tracked_ideas.c.version + 1, updated_at=now))
    return {**values, "id": int(new_pk), "idea_id": idea_id}


def record_actions(conn, user_id: int, items: list[dict]) -> int:
    """Many actions at once (the simulator's fills)."""
    for i in items:
        record_action(conn, user_id, i["idea_id"], i)
    return len(items)


# -- reads ---------------------------------------------------------------------------------------
def get_idea(conn, user_id: int, idea_id: str) -> dict:
    return _load_ideas(conn, user_id, [idea_id], lock=False)[idea_id]


def idea_events(conn, user_id: int, idea_id: str) -> list[dict]:
    tid = get_idea(conn, user_id, idea_id)["id"]
    p = pnl_events.c
    return [dict(r._mapping) for r in conn.execute(
        sa.select(pnl_events).where(p.tracked_idea_id == tid, p.user_id == user_id).order_by(p.event_time, p.id))]


def idea_snapshots(conn, user_id: int, idea_id: str) -> list[dict]:
    tid = get_idea(conn, user_id, idea_id)["id"]
    s = tracked_idea_snapshots.c
    return [dict(r._mapping) for r in conn.execute(
        sa.select(tracked_idea_snapshots).where(s.tracked_idea_id == tid, s.user_id == user_id)
        .order_by(s.snapshot_time, s.id))]


def idea_actions(conn, user_id: int, idea_id: str) -> list[dict]:
    tid = get_idea(conn, user_id, idea_id)["id"]
    a = user_trade_actions.c
    return [{**dict(r._mapping), "idea_id": idea_id} for r in conn.execute(
        sa.select(user_trade_actions).where(a.tracked_idea_id == tid, a.user_id == user_id)
        .order_by(a.action_time, a.id))]


def idea_labels(conn, user_id: int, idea_id: str) -> dict:
    row = get_idea(conn, user_id, idea_id)
    r = conn.execute(sa.select(ml_labels).where(ml_labels.c.tracked_idea_id == row["id"],
                                                ml_labels.c.user_id == user_id)).first()
    if r is None:
        if row["settlement_status"] != "settled":
            raise errors.NotFound(f"idea {idea_id!r} is not settled yet: no labels")
        raise errors.NotFound(f"idea {idea_id!r} is settled; its labels are being computed")
    return dict(r._mapping)


# -- labels (consumer) ---------------------------------------------------------------------------
def _label_input(row: dict) -> dict:
    return {"settlement_status": row["settlement_status"], "settlement_pnl": row["settlement_pnl"],
            "max_pnl": row["max_pnl"], "min_pnl": row["min_pnl"],
            "time_to_max_pnl_minutes": row["time_to_max_pnl"],
            "time_in_drawdown_minutes": row["time_in_drawdown"], "lifetime_minutes": row["lifetime_minutes"],
            "strategy": row["strategy"], "direction": row["direction"], "side": row["side"],
            "strike": row["strike"], "width": row["width"], "debit": row["entry_debit"],
            "quantity": row["quantity"]}


def label_ideas(conn, pairs) -> int:
    """(Re)label the settled ideas of every (user, context) the given (user, tracked idea id)
    pairs belong to: the cohort labels move as more of the cohort settles."""
    pairs = set(pairs)
    if not pairs:
        return 0
    t = tracked_ideas.c
    contexts = set()
    by_user = defaultdict(list)
    for u, tid in pairs:
        by_user[u].append(tid)
    for u, tids in by_user.items():
        for part in chunks(tids):
            for r in conn.execute(sa.select(t.context_id).where(t.user_id == u, t.id.in_(part)).distinct()):
                contexts.add((u, r.context_id))
    now = utcnow()
    rows = []
    for u, cid in contexts:
        members = [dict(r._mapping) for r in conn.execute(sa.select(tracked_ideas).where(
            t.user_id == u, t.context_id == cid, t.settlement_status == "settled"))]
        cohort = labels.Cohort(m["settlement_pnl"] for m in members)
        for m in members:
            try:
                lab = labels.label_outcome(_label_input(m), cohort)
            except labels.UndefinedRisk:
                continue
            rows.append(dict(tracked_idea_id=m["id"], user_id=u, idea_id=m["idea_id"], context_id=cid,
                             settlement_pnl=m["settlement_pnl"], cohort_size=len(cohort), labelled_at=now, **lab))
    ids = [r["tracked_idea_id"] for r in rows]
    for part in chunks(ids):
        conn.execute(ml_labels.delete().where(ml_labels.c.tracked_idea_id.in_(part)))
    for part in chunks(rows, 5000):
        conn.execute(ml_labels.insert(), part)
    return len(rows)


# -- daily performance ---------------------------------------------------------------------------
def compute_day(conn, user_id: int, day: dt.date) -> dict | None:
    """daily_performance for one user and New York session date, from the pnl_events of
    traded ideas (trade_id set), in event-time order."""
    p = pnl_events.c
    rows = conn.execute(sa.select(p.event_time, p.id, p.pnl_delta, p.fees, p.slippage, p.event_type,
                                  p.cumulative_pnl, p.tracked_idea_id)
                        .where(p.user_id == user_id, p.session_date == day, p.trade_id.isnot(None))
                        .order_by(p.event_time, p.id)).all()
    if not rows:
        return None
    net = fees = ZERO
    cum = high = ZERO
    max_dd = ZERO
    settled = []
    for r in rows:
        net += r.pnl_delta
        fees += r.fees
        cum += r.pnl_delta
        high = max(high, cum)
        max_dd = max(max_dd, high - cum)
        if r.event_type == "settlement":
            settled.append((r.tracked_idea_id, r.cumulative_pnl))
    wins = sum(1 for _, pnl in settled if pnl > 0)
    dd_pct = None
    if high > 0:
        dd_pct = min(max_dd / high, Decimal("999999")).quantize(Decimal("0.0001"))
    primary, contribution = None, None
    if settled:
        t, d = tracked_ideas.c, ml_decisions.c
        ids = [tid for tid, _ in settled]
        models, with_ml = Counter(), 0
        for part in chunks(ids):
            for r in conn.execute(sa.select(d.model_id, d.ml_weight, d.ml_score)
                                  .select_from(tracked_ideas.join(ml_decisions, d.id == t.decision_id))
                                  .where(t.id.in_(part))):
                if r.model_id is not None:
                    models[r.model_id] += 1
                if r.ml_score is not None and (r.ml_weight or 0) > 0:
                    with_ml += 1
        if models:
            primary = sorted(models.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        contribution = (Decimal(with_ml) / Decimal(len(settled))).quantize(Decimal("0.0001"))
    return dict(user_id=user_id, date=day, net_pnl=net, gross_pnl=net + fees, total_fees=fees,
                high_water_pnl=high, max_drawdown=max_dd, drawdown_pct=dd_pct, trade_count=len(settled),
                win_count=wins, loss_count=len(settled) - wins, event_count=len(rows),
                primary_model_id=primary, ml_contribution_pct=contribution, updated_at=utcnow())


def recompute_days(conn, pairs) -> int:
    n = 0
    for user_id, day in sorted(set(pairs)):
        row = compute_day(conn, user_id, day)
        conn.execute(daily_performance.delete().where(daily_performance.c.user_id == user_id,
                                                      daily_performance.c.date == day))
        if row is not None:
            conn.execute(daily_performance.insert().values(**row))
            n += 1
    return n


def materialize(conn, user_id: int | None = None) -> int:
    """Rebuild daily_performance from pnl_events for every day (of one user, or everyone)."""
    p = pnl_events.c
    q = sa.select(p.user_id, p.session_date).where(p.trade_id.isnot(None)).distinct()
    if user_id is not None:
        q = q.where(p.user_id == user_id)
    pairs = [(r.user_id, r.session_date) for r in conn.execute(q)]
    stale = sa.select(daily_performance.c.user_id, daily_performance.c.date)
    if user_id is not None:
        stale = stale.where(daily_performance.c.user_id == user_id)
    pairs += [(r.user_id, r.date) for r in conn.execute(stale)]
    return recompute_days(conn, pairs)


def daily(conn, user_id: int, start: dt.date | None = None, end: dt.date | None = None) -> dict:
    """Your days in order, with the running cumulative net P&L (plot-friendly)."""
    d = daily_performance.c
    q = sa.select(daily_performance).where(d.user_id == user_id)
    if start:
        q = q.where(d.date >= start)
    if end:
        q = q.where(d.date <= end)
    days, cum = [], ZERO
    for r in conn.execute(q.order_by(d.date)):
        m = dict(r._mapping)
        cum += m["net_pnl"]
        m["cumulative_net_pnl"] = cum
        days.append(m)
    return {"days": days, "dates": [m["date"] for m in days],
            "net_pnl": [m["net_pnl"] for m in days], "cumulative_net_pnl": [m["cumulative_net_pnl"] for m in days]}


def new_event_id(*parts) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "mlloop-pnl:" + ":".join(map(str, parts))))
