"""Rolls and roll chains.

A **roll** closes some legs of a position and opens new ones in one request, atomically
(one transaction: all of it or nothing): closing fills on the old position (which is closed
when they leave it flat), a new position with ``rolled_from`` = the old one and the same
``chain_id``, its opening fills, and a ``PositionRolled`` event naming both.

A **chain** is every position rolled from the first one (``chain_id`` = the first
position's id). Its figures, cumulative along the chain in roll order: ``net_credit`` (cash
received minus paid, before fees: ``-(sum of price x quantity x multiplier)`` over every
fill), ``fees`` and ``realized_pnl`` (FIFO, net of fees).
"""
from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from app import errors
from app.db import to_ms, utcnow
from plugins.tradelog import lots, service
from plugins.tradelog.tables import fills, positions

ZERO = Decimal(0)


def _nested(exc: errors.Unprocessable, field: str, index: int) -> errors.Unprocessable:
    inner = (exc.errors or {}).get("json") or {"_schema": [exc.message]}
    return errors.Unprocessable(f"{field}.{index}: {exc.message}", errors={"json": {field: {str(index): inner}}})


def roll_position(conn, user_id: int, position_id: str, data: dict, expected: int) -> dict:
    """Roll (If-Match ``expected`` on the old position): ``{occurred_at?, close: [{leg_id,
    price, quantity?, fees?}], open: [{<leg>, price, fees?}], symbol?, underlying?, tags?}``.
    ``quantity`` defaults to the leg's whole open quantity. Returns ``{from, to, roll}``.
    Errors name the item (``close.0.quantity``, ``open.1.expiry``...); 409 on a closed or
    changed position. Emits the closing FillRecorded(s), [PositionClosed], PositionCreated,
    the opening FillRecorded(s) and PositionRolled."""
    r = service._row(conn, user_id, position_id, lock=True)
    service._refuse_closed(r, "it can't be rolled")
    if r.version != expected:
        raise errors.VersionConflict(f"version {expected} is stale; current version is {r.version}",
                                     current=service._current(conn, user_id, position_id), current_version=r.version)
    now = utcnow()
    at = to_ms(data.get("occurred_at") or now)
    by_id = {leg["id"]: leg for leg in service._legs(conn, [position_id])[position_id]}
    seen = set()
    for i, item in enumerate(data["close"]):
        leg = by_id.get(item["leg_id"])
        if leg is None or item["leg_id"] in seen:
            why = "not a leg of this position" if leg is None else "listed twice"
            raise errors.Unprocessable(f"close.{i}.leg_id: {why}",
                                       errors={"json": {"close": {str(i): {"leg_id": [why]}}}})
        seen.add(item["leg_id"])
        held = leg["open_quantity"]
        qty = item.get("quantity") or -held
        if not held or qty * held > 0:
            why = f"the leg holds {held}: a roll's closing fill must reduce it"
            raise errors.Unprocessable(f"close.{i}.quantity: {why}",
                                       errors={"json": {"close": {str(i): {"quantity": [why]}}}})
        item["quantity"] = qty
    closing = []
    for i, item in enumerate(data["close"]):
        try:
            closing.append(service.record_fill(conn, user_id, position_id, {
                "leg_id": item["leg_id"], "price": item["price"], "quantity": item["quantity"],
                "fees": item.get("fees") or ZERO, "occurred_at": at})["fill"])
        except errors.Unprocessable as exc:
            raise _nested(exc, "close", i) from None
    old = service._current(conn, user_id, position_id)
    if all(not leg["open_quantity"] for leg in old["legs"]):
        old = service.close_position(conn, user_id, position_id, {"closed_at": at}, expected=old["version"])
    specs = [{k: v for k, v in item.items() if k not in ("price", "fees")} for item in data["open"]]
    try:
        new = service.create_position(conn, user_id, {
            "symbol": data.get("symbol") or r.symbol, "underlying": data.get("underlying") or r.underlying,
            "tags": data["tags"] if "tags" in data else r.tags, "campaign_id": r.campaign_id, "legs": specs},
            rolled_from=position_id, chain_id=r.chain_id or r.id)
    except errors.Unprocessable as exc:
        inner = (exc.errors or {}).get("json", {}).get("legs") or {}
        raise errors.Unprocessable(f"open: {exc.message}", errors={"json": {"open": inner}}) from None
    opening = []
    for i, (leg, item) in enumerate(zip(new["legs"], data["open"])):
        try:
            opening.append(service.record_fill(conn, user_id, new["id"], {
                "leg_id": leg["id"], "price": item["price"], "quantity": leg["quantity"],
                "fees": item.get("fees") or ZERO, "occurred_at": at})["fill"])
        except errors.Unprocessable as exc:
            raise _nested(exc, "open", i) from None
    new = service._current(conn, user_id, new["id"])
    mult = {leg["id"]: leg["multiplier"] for leg in list(by_id.values()) + new["legs"]}
    credit = -sum((f["price"] * f["quantity"] * mult[f["leg_id"]] for f in closing + opening), ZERO)
    roll = {"from_position_id": position_id, "to_position_id": new["id"], "chain_id": new["chain_id"],
            "occurred_at": at, "net_credit": service._money(credit),
            "fees": service._money(sum((f["fees"] for f in closing + opening), ZERO)),
            "realized_pnl": service._money(sum((f["realized_pnl"] or ZERO for f in closing), ZERO)),
            "closing_fill_ids": [f["id"] for f in closing], "opening_fill_ids": [f["id"] for f in opening]}
    service.TOPIC.emit(conn, "PositionRolled", aggregate_type="position", aggregate_id=position_id, aggregate_version=old["version"],
                       user_id=user_id, occurred_at=at,
                       payload=roll)
    return {"from": old, "to": new, "roll": roll}


def chain(conn, user_id: int, position_id: str) -> dict:
    """The roll chain a position belongs to, in roll order, with cumulative figures."""
    r = service._row(conn, user_id, position_id)
    chain_id = r.chain_id or r.id
    rows = conn.execute(sa.select(positions).where(positions.c.user_id == user_id, positions.c.chain_id == chain_id)
                        .order_by(positions.c.created_at, positions.c.id)).fetchall()
    ids = [x.id for x in rows]
    legs_by = service._legs(conn, ids)
    fills_by: dict[str, list[dict]] = {i: [] for i in ids}
    for f in conn.execute(sa.select(fills).where(fills.c.position_id.in_(ids))
                          .order_by(fills.c.position_version, fills.c.seq)):
        fills_by[f.position_id].append(service.fill_out(f))
    out, cum_credit, cum_fees, cum_pnl = [], ZERO, ZERO, ZERO
    for x in rows:
        books_ = lots.books(legs_by[x.id], fills_by[x.id])
        t = lots.totals(books_)
        mult = {leg["id"]: leg["multiplier"] for leg in legs_by[x.id]}
        credit = -sum((f["price"] * f["quantity"] * mult[f["leg_id"]] for f in fills_by[x.id]), ZERO)
        cum_credit, cum_fees, cum_pnl = cum_credit + credit, cum_fees + t["fees"], cum_pnl + t["realized_pnl"]
        out.append({"position_id": x.id, "rolled_from": x.rolled_from, "status": x.status, "opened_at": x.opened_at,
                    "closed_at": x.closed_at, "net_credit": credit, "fees": t["fees"],
                    "realized_pnl": t["realized_pnl"], "cumulative_net_credit": cum_credit,
                    "cumulative_fees": cum_fees, "cumulative_realized_pnl": cum_pnl})
    return {"chain_id": chain_id, "positions": out, "rolls": max(len(out) - 1, 0), "net_credit": cum_credit,
            "fees": cum_fees, "realized_pnl": cum_pnl, "open": any(x.status != "closed" for x in rows)}


def chain_of(conn, user_id: int, position_ids: list[str]) -> dict[str, str]:
    """position id -> chain id (for stats)."""
    if not position_ids:
        return {}
    q = sa.select(positions.c.id, positions.c.chain_id).where(positions.c.user_id == user_id,
                                                              positions.c.id.in_(position_ids))
    return {r.id: r.chain_id or r.id for r in conn.execute(q)}

