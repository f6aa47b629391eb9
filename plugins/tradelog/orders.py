"""Pending orders: create, cancel, execute — into a new position, or into an existing one.

An order with ``position_id`` executes into that position: each template leg that matches
one of its legs (same instrument, expiry, strike, right and multiplier) fills that leg, any
other is added as a new leg. The order **reduces the position** (``reduces_position`` true,
which the host's ``check_order_allowed`` hook sees, so a REDUCING breaker lets it through)
when every template leg matches a leg and trades against its open quantity without carrying
it past flat. A reducing order that leaves the position flat closes it at the fill time.
"""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import sqlalchemy as sa

import optionsmath
from app import errors
from app.concurrency import versioned_update
from app.db import new_id, utcnow
from plugins.tradelog import derived, service
from plugins.tradelog.tables import legs, orders

ZERO = Decimal(0)


def _order_out(r) -> dict:
    m = r._mapping
    tpl = m["position_template"]
    tpl = json.loads(tpl) if isinstance(tpl, str) else tpl
    return {k: m[k] for k in ("id", "user_id", "status", "order_type", "limit_price", "version", "position_id",
                              "fill_price", "slippage", "filled_at", "cancelled_at", "created_at", "updated_at")} \
        | {"position_template": tpl, "reduces_position": bool(m["reduces_position"])}


def _order_row(conn, user_id: int, order_id: str, *, lock: bool = False):
    q = sa.select(orders).where(orders.c.id == order_id, orders.c.user_id == user_id)
    if lock:
        q = q.with_for_update()
    r = conn.execute(q).first()
    if r is None:
        raise errors.NotFound(f"order {order_id} not found")
    return r


def get_order(conn, user_id: int, order_id: str) -> dict:
    return _order_out(_order_row(conn, user_id, order_id))


def _get_order_or_none(conn, user_id, order_id):
    r = conn.execute(sa.select(orders).where(orders.c.id == order_id, orders.c.user_id == user_id)).first()
    return _order_out(r) if r else None


def _same_contract(a: dict, b: dict) -> bool:
    def key(x):
        expiry = x.get("expiry")
        expiry = expiry.isoformat() if isinstance(expiry, dt.date) else (str(expiry)[:10] if expiry else None)
        strike = x.get("strike")
        return (x["instrument_type"], expiry, Decimal(str(strike)) if strike is not None else None,
                x.get("right"), int(x.get("multiplier") or derived.DEFAULT_MULTIPLIER[x["instrument_type"]]))
    return key(a) == key(b)


def match_legs(position_legs: list[dict], tpl_legs: list[dict]) -> tuple[list[dict | None], bool]:
    """For each template leg, the position's leg it trades (or None: a new leg), and whether
    the whole order only reduces open quantities."""
    matched, reduces = [], True
    for t in tpl_legs:
        leg = next((p for p in position_legs if _same_contract(p, t)), None)
        matched.append(leg)
        held = leg["open_quantity"] if leg else 0
        if leg is None or not held or held * t["quantity"] > 0 or abs(t["quantity"]) > abs(held):
            reduces = False
    return matched, reduces


def _refuse_if_vetoed(vetoes) -> None:
    if vetoes:
        listed = [{"source": v.source, "message": v.message, "detail": v.detail} for v in vetoes]
        raise errors.Forbidden("order vetoed: " + "; ".join(f"{v['source']}: {v['message']}" for v in listed),
                               code="order_vetoed", vetoes=listed)


def create_order(conn, user_id: int, data: dict, check_order_allowed=None) -> dict:
    """A pending order carrying a position template; with ``position_id``, one that will
    execute into that open position. Emits OrderCreated. ``check_order_allowed`` (the host's
    veto hook, with ``stage: "create"``) may refuse it: 403 ``order_vetoed`` (e.g. the orders
    kill switch is engaged)."""
    now, oid = utcnow(), new_id()
    tpl = dict(data["position_template"])
    tpl["underlying"] = tpl.get("underlying") or optionsmath.default_underlying(tpl["symbol"])
    tpl["tags"] = list(tpl.get("tags") or [])
    tpl["legs"] = [dict(leg, multiplier=leg.get("multiplier") or derived.DEFAULT_MULTIPLIER[leg["instrument_type"]])
                   for leg in tpl["legs"]]
    target, reduces = data.get("position_id"), False
    if target:
        r = service._row(conn, user_id, target)
        service._refuse_closed(r, "an order can't trade it")
        if tpl["symbol"] != r.symbol:
            raise errors.Unprocessable("position_template.symbol: differs from the position's",
                                       errors={"json": {"position_template": {"symbol": [
                                           f"the position trades {r.symbol}"]}}})
        _, reduces = match_legs(service._legs(conn, [target])[target], tpl["legs"])
    else:
        service.check_leg_specs(tpl["symbol"], tpl["legs"], "position_template")
    if check_order_allowed is not None:
        _refuse_if_vetoed(check_order_allowed(conn, user_id, {
            "stage": "create", "order_id": oid, "symbol": tpl["symbol"], "legs": tpl["legs"],
            "limit_price": data.get("limit_price"), "reduces_position": reduces, "position_id": target}))
    conn.execute(orders.insert().values(
        id=oid, user_id=user_id, status="pending", order_type=data.get("order_type") or "limit",
        limit_price=data.get("limit_price"), position_template=service._jsonable(tpl), version=1,
        position_id=target, reduces_position=reduces, created_at=now, updated_at=now))
    rep = get_order(conn, user_id, oid)
    service.TOPIC.emit(conn, "OrderCreated", aggregate_type="order", aggregate_id=oid, aggregate_version=1,
                       user_id=user_id, occurred_at=now,
                       payload={"order": rep})
    return rep


def active_orders(conn, user_id: int) -> list[dict]:
    q = sa.select(orders).where(orders.c.user_id == user_id, orders.c.status == "pending") \
        .order_by(orders.c.created_at, orders.c.id)
    return [_order_out(r) for r in conn.execute(q)]


def _refuse_settled(r, action: str) -> None:
    if r.status != "pending":
        raise errors.InvalidState(f"order {r.id} is {r.status}; {action}", state=r.status)


def cancel_order(conn, user_id: int, order_id: str, expected: int) -> dict:
    """Cancel a pending order (If-Match ``expected``). Emits OrderCancelled."""
    r = _order_row(conn, user_id, order_id, lock=True)
    _refuse_settled(r, "only a pending order can be cancelled")
    now = utcnow()
    version = versioned_update(conn, orders, id_value=order_id, user_id=user_id, expected=expected,
                               values=dict(status="cancelled", cancelled_at=now, updated_at=now),
                               current=lambda: _get_order_or_none(conn, user_id, order_id))
    service.TOPIC.emit(conn, "OrderCancelled", aggregate_type="order", aggregate_id=order_id, aggregate_version=version,
                       user_id=user_id, occurred_at=now,
                       payload={"order_id": order_id})
    return get_order(conn, user_id, order_id)


def _execution_prices(r, tpl_legs: list[dict], data: dict) -> tuple[list[Decimal], Decimal]:
    """Per-leg fill prices and the net fill price per combo unit."""
    qty = [leg["quantity"] for leg in tpl_legs]
    units = derived.combo_units(qty)
    if data.get("leg_prices"):
        prices = list(data["leg_prices"])
        if len(prices) != len(tpl_legs):
            raise errors.field_error("leg_prices", f"give one price per leg ({len(tpl_legs)})")
        net = sum((p * q for p, q in zip(prices, qty)), ZERO) / units
        if data.get("fill_price") is not None and data["fill_price"] != net:
            raise errors.field_error("fill_price", f"does not match leg_prices (net {net})")
        return prices, net
    if len(tpl_legs) > 1:
        raise errors.field_error("leg_prices", "a multi-leg order needs a fill price per leg")
    net = data.get("fill_price") if data.get("fill_price") is not None else r.limit_price
    if net is None:
        raise errors.field_error("fill_price", "a market order needs the fill price")
    price = net if qty[0] > 0 else -net
    if price < 0:
        raise errors.field_error("fill_price", "positive when buying, negative when selling")
    return [price], net


def _typed(tpl_legs: list[dict]) -> list[dict]:
    return [dict(leg, expiry=dt.date.fromisoformat(leg["expiry"]) if leg.get("expiry") else None,
                 strike=Decimal(leg["strike"]) if leg.get("strike") is not None else None) for leg in tpl_legs]


def execute_order(conn, user_id: int, order_id: str, data: dict, check_order_allowed) -> dict:
    """Execute a pending order in one transaction: ask ``check_order_allowed`` (the host's
    veto hook) first; then create the position (or, for an order with ``position_id``, add
    any new legs to it), record its fills (at the given prices or the limit) and mark the
    order filled; a reducing order that leaves its position flat closes it. Emits
    PositionCreated or PositionAdjusted, FillRecorded per leg, [PositionClosed], OrderFilled."""
    r = _order_row(conn, user_id, order_id, lock=True)
    _refuse_settled(r, "only a pending order can be executed")
    order = _order_out(r)
    tpl = order["position_template"]
    prices, net = _execution_prices(r, tpl["legs"], data)
    slippage = (net - r.limit_price) if r.limit_price is not None else None
    target, matched, reduces = r.position_id, [None] * len(tpl["legs"]), False
    if target:
        pos = service._row(conn, user_id, target, lock=True)
        service._refuse_closed(pos, "the order can't trade it")
        matched, reduces = match_legs(service._legs(conn, [target])[target], tpl["legs"])
    _refuse_if_vetoed(check_order_allowed(conn, user_id, {
        "stage": "execute", "order_id": order_id, "symbol": tpl["symbol"], "legs": tpl["legs"],
        "limit_price": r.limit_price, "reduces_position": reduces, "position_id": target}))
    occurred_at = data.get("occurred_at") or utcnow()
    if target is None:
        created = service.create_position(conn, user_id, dict(tpl, legs=_typed(tpl["legs"])), order_id=order_id)
        pid, leg_ids = created["id"], [leg["id"] for leg in created["legs"]]
    else:
        new = [leg for leg, m in zip(_typed(tpl["legs"]), matched) if m is None]
        if new:
            version = service._row(conn, user_id, target).version
            service.update_position(conn, user_id, target, {"add_legs": new}, expected=version)
        added = iter(conn.execute(sa.select(legs.c.id).where(legs.c.position_id == target)
                                  .order_by(legs.c.seq.desc()).limit(len(new))).scalars().all()[::-1]) \
            if new else iter(())
        pid, leg_ids = target, [m["id"] if m is not None else next(added) for m in matched]
    fee = data.get("fees") or ZERO
    done = service.record_fills(conn, user_id, pid, [
        {"leg_id": leg_id, "price": price, "quantity": t["quantity"], "fees": fee if i == 0 else ZERO,
         "occurred_at": occurred_at, "order_id": order_id,
         "slippage": (slippage if i == 0 else ZERO) if slippage is not None else None}
        for i, (leg_id, t, price) in enumerate(zip(leg_ids, tpl["legs"], prices))])
    position = done[-1]["position"]
    if reduces and all(not leg["open_quantity"] for leg in position["legs"]):
        position = service.close_position(conn, user_id, position["id"], {"closed_at": occurred_at},
                                          expected=position["version"])
    now = utcnow()
    done = conn.execute(orders.update().where(orders.c.id == order_id, orders.c.user_id == user_id,
                                              orders.c.status == "pending")
                        .values(status="filled", version=orders.c.version + 1, position_id=position["id"],
                                reduces_position=reduces, fill_price=net, slippage=slippage,
                                filled_at=occurred_at, updated_at=now)).rowcount
    if not done:  # pragma: no cover - the row lock above makes this a can't-happen
        raise errors.InvalidState(f"order {order_id} is no longer pending")
    order = get_order(conn, user_id, order_id)
    service.TOPIC.emit(conn, "OrderFilled", aggregate_type="order", aggregate_id=order_id, aggregate_version=order["version"],
                       user_id=user_id, occurred_at=occurred_at,
                       payload={"order_id": order_id, "position_id": position["id"], "limit_price": r.limit_price,
                   "fill_price": order["fill_price"], "slippage": order["slippage"], "filled_at": occurred_at,
                   "reduces_position": reduces})
    return {"order": order, "position": position}

