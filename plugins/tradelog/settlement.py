"""Settlement of option legs as first-class events: expiration, exercise, assignment.

How an option leg ends when it is not closed by a trade (docs/tradelog.md, "Settlement"):

* **expiration** — at its settlement moment (``markettime``: AM or PM). Out of the money it
  closes at 0 (expired worthless); a cash-settled option in the money closes at its
  intrinsic value against the **settlement value** of the underlying (SET/SOQ for AM index
  options, the close for PM ones).
* **exercise** (a long option) / **assignment** (a short one) — physically settled options
  close at 0 and deliver ``contracts x multiplier`` shares at the strike into a stock leg
  (the position's own stock leg when it absorbs them, else a new one whose cost basis is
  the strike; ``source_leg_id`` names the option). Cash-settled (European index) options are
  exercised/assigned only at their settlement moment, at intrinsic value.

Each settlement is one change of the position: its closing fill(s) (``kind`` = the
settlement kind; the shares' fill ``delivery``) go through the same FIFO lots as trades, so
realized P&L and fees follow, and one ``LegSettled`` event carries the settlement, its fills
and any leg it added. Settling a leg that is already flat by a settlement of the same kind
answers that settlement again (200) and writes nothing.

``settle_expired`` is the end-of-day job (and the ``tradeloop tradelog settle-expired``
command): every open option leg whose settlement moment has passed is settled from the
**settlement price** recorded for its underlying and expiry (``PUT
/api/tradelog/settlement-prices``): OTM expire worthless, ITM cash-settled ones close at
intrinsic, ITM physical ones are exercised/assigned (OCC's exercise by exception, any amount
in the money). Legs without a recorded price wait and are listed; a position the job leaves
flat is closed at the settlement moment.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

import sqlalchemy as sa

from app import errors
from app.db import new_id, to_ms, utcnow
from plugins.tradelog import markettime, service
from plugins.tradelog.tables import legs, positions, settlement_prices, settlements

KINDS = ("expiration", "exercise", "assignment")
ZERO = Decimal(0)


def intrinsic(right: str, strike: Decimal, value: Decimal) -> Decimal:
    """Value at expiry per unit: max(S - K, 0) for a call, max(K - S, 0) for a put."""
    return max(value - strike, ZERO) if right == "call" else max(strike - value, ZERO)


def settlement_out(r) -> dict:
    m = r._mapping if hasattr(r, "_mapping") else r
    return {k: m[k] for k in ("id", "position_id", "leg_id", "kind", "settlement_type", "settlement_time",
                              "quantity", "price", "settlement_value", "delivered_leg_id", "delivered_quantity",
                              "occurred_at", "recorded_at")}


def _price_of(conn, user_id: int, underlying: str, expiry: dt.date, time: str) -> Decimal | None:
    return conn.execute(sa.select(settlement_prices.c.price).where(
        settlement_prices.c.user_id == user_id, settlement_prices.c.underlying == underlying,
        settlement_prices.c.expiry == expiry, settlement_prices.c.settlement_time == time)).scalar()


def _leg(legs_: list[dict], leg_id: str) -> dict:
    leg = next((x for x in legs_ if x["id"] == leg_id), None)
    if leg is None:
        raise errors.NotFound(f"leg {leg_id} is not a leg of this position")
    return leg


def _already(conn, position_id: str, leg_id: str, kind: str):
    return conn.execute(sa.select(settlements).where(settlements.c.position_id == position_id,
                                                     settlements.c.leg_id == leg_id, settlements.c.kind == kind)
                        .order_by(settlements.c.recorded_at.desc())).first()


def settle_leg(conn, user_id: int, position_id: str, leg_id: str, data: dict, expected: int) -> tuple[dict, bool]:
    """Settle an option leg (If-Match ``expected``): ``{kind, occurred_at?, settlement_value?,
    quantity?, fees?}``. Returns ``({settlement, position}, created)``.

    Errors: 404 unknown leg; 422 naming ``leg_id`` (not an option), ``kind`` (exercise of a
    short / assignment of a long; an ITM physical option can't just expire; an OTM one
    can't be exercised), ``settlement_value`` (a cash-settled exercise/assignment needs it),
    ``quantity`` (more than is open), ``occurred_at`` (in the future, or an expiration before
    the settlement moment); 409 ``not_expired`` when the settlement moment is still ahead;
    409 ``invalid_state`` when the leg is flat (by other means) or the position closed."""
    r = service._row(conn, user_id, position_id, lock=True)
    legs_ = service._legs(conn, [position_id])[position_id]
    leg = _leg(legs_, leg_id)
    if not leg["open_quantity"]:
        done = _already(conn, position_id, leg_id, data["kind"])
        if done is not None:
            return {"settlement": settlement_out(done), "position": service._current(conn, user_id, position_id)}, False
    service._refuse_closed(r, "its legs can't be settled")
    if r.version != expected:
        raise errors.VersionConflict(f"version {expected} is stale; current version is {r.version}",
                                     current=service._current(conn, user_id, position_id), current_version=r.version)
    result = _settle(conn, r, legs_, leg, data["kind"], occurred_at=data.get("occurred_at"),
                     value=data.get("settlement_value"), quantity=data.get("quantity"), fees=data.get("fees"))
    return result, True


def _settle(conn, r, legs_: list[dict], leg: dict, kind: str, *, occurred_at=None, value=None, quantity=None,
            fees=None, now: dt.datetime | None = None, fingerprints: tuple = (None, None)) -> dict:
    """One settlement of ``leg`` (see ``settle_leg``); ``fingerprints`` = (the option's closing
    fill, the shares' delivery fill): the import's execution fingerprints."""
    rep = service.position_out(r, legs_)
    s = service.leg_settlement(rep, leg)
    if s is None:
        raise errors.field_error("leg_id", f"a {leg['instrument_type']} leg does not settle; close it with a fill")
    held = leg["open_quantity"]
    if not held:
        raise errors.InvalidState(f"leg {leg['id']} is flat: nothing to settle", state="flat")
    now = now or utcnow()
    if quantity is not None and abs(quantity) > abs(held):
        raise errors.field_error("quantity", f"the leg holds {held}")
    units = abs(quantity) if quantity else abs(held)
    close_qty = -units if held > 0 else units
    style, settles_at = s["settlement_type"], s["settles_at"]
    strike, right, mult = Decimal(str(leg["strike"])), leg["right"], leg["multiplier"]
    if kind == "exercise" and held < 0:
        raise errors.field_error("kind", "only a long option is exercised (a short one is assigned)")
    if kind == "assignment" and held > 0:
        raise errors.field_error("kind", "only a short option is assigned (a long one is exercised)")
    at_moment = kind == "expiration" or style == "cash"
    if occurred_at is None:
        occurred_at = settles_at if at_moment else min(now, settles_at)
    occurred_at = to_ms(occurred_at)
    if at_moment and settles_at > now + service.CLOCK_SKEW:
        raise errors.Conflict(f"leg {leg['id']} settles at {settles_at.isoformat()}; it has not yet "
                              f"({'a European, cash-settled option settles only then' if style == 'cash' else 'expired'})",
                              code="not_expired", settles_at=settles_at.isoformat())
    if occurred_at > now + service.CLOCK_SKEW:
        raise errors.field_error("occurred_at", f"{occurred_at.isoformat()} is in the future")
    if at_moment and occurred_at < settles_at:
        raise errors.field_error("occurred_at", f"before the settlement moment {settles_at.isoformat()}")
    value = Decimal(str(value)) if value is not None else None
    worth = intrinsic(right, strike, value) if value is not None else None
    new_legs, fills_ = [], []
    delivered_leg_id = delivered = None
    if style == "cash":
        if kind != "expiration" and value is None:
            raise errors.field_error("settlement_value", "a cash-settled option settles against the settlement value")
        if kind != "expiration" and worth == 0:
            raise errors.field_error("kind", f"out of the money at {value}: it expires worthless")
        price = worth if worth is not None else ZERO
        fills_.append({"leg_id": leg["id"], "price": price, "quantity": close_qty, "fees": fees or ZERO,
                       "occurred_at": occurred_at, "kind": kind})
    else:
        price = ZERO
        if kind == "expiration" and worth:
            raise errors.field_error("kind", f"{worth} in the money at {value}: a physically settled option is "
                                             "exercised (long) or assigned (short), not expired")
        if kind != "expiration" and worth == 0:
            raise errors.field_error("kind", f"out of the money at {value}: it expires worthless")
        fills_.append({"leg_id": leg["id"], "price": ZERO, "quantity": close_qty, "fees": fees or ZERO,
                       "occurred_at": occurred_at, "kind": kind})
        if kind != "expiration":
            delivered = units * mult * (1 if right == "call" else -1) * (1 if kind == "exercise" else -1)
            stock = _stock_leg_for(legs_, delivered)
            if stock is None:
                stock = {"id": new_id(), "instrument_type": "stock", "expiry": None, "strike": None, "right": None,
                         "quantity": delivered, "multiplier": 1, "source_leg_id": leg["id"]}
                seq = conn.execute(sa.select(sa.func.max(legs.c.seq)).where(legs.c.position_id == r.id)).scalar()
                row = service._leg_rows(r.id, (seq or 0) + 1, [stock], now)[0]
                conn.execute(legs.insert().values(**row))
                stock = service.leg_out(row)
                legs_.append(stock)
                new_legs.append(stock)
            delivered_leg_id = stock["id"]
            fills_.append({"leg_id": stock["id"], "price": strike, "quantity": delivered, "fees": ZERO,
                           "occurred_at": occurred_at, "kind": "delivery"})
    sid = new_id()
    for f, fp in zip(fills_, fingerprints):
        f["settlement_id"], f["fingerprint"] = sid, fp
    for f in fills_[len(fingerprints):]:
        f["settlement_id"] = sid
    recorded = utcnow()
    version, fill_reps, position, books_ = service.append_fills(
        conn, r, legs_, fills_, now=recorded, fields=["quantity"] * len(fills_))
    row = dict(id=sid, user_id=r.user_id, position_id=r.id, leg_id=leg["id"], kind=kind, settlement_type=style,
               settlement_time=s["settlement_time"], quantity=close_qty, price=price, settlement_value=value,
               delivered_leg_id=delivered_leg_id, delivered_quantity=delivered, occurred_at=occurred_at,
               recorded_at=recorded, position_version=version)
    conn.execute(settlements.insert().values(**row))
    out = settlement_out(dict(row, price=service._money(price), settlement_value=service._money(value)))
    service.TOPIC.emit(conn, "LegSettled", aggregate_type="position", aggregate_id=r.id, aggregate_version=version,
                       user_id=r.user_id, occurred_at=occurred_at,
                       payload={"position_id": r.id, "settlement": out, "fills": fill_reps,
                   "legs_added": new_legs, "legs": [service.leg_state(books_[f["leg_id"]]) for f in fills_]})
    return {"settlement": out, "position": position}


def _stock_leg_for(legs_: list[dict], delivered: int) -> dict | None:
    """The stock leg that takes ``delivered`` shares: one it reduces without passing flat
    (shares called away from a covered call), else one held the same way."""
    stock = [x for x in legs_ if x["instrument_type"] == "stock"]
    for x in stock:
        if x["open_quantity"] * delivered < 0 and abs(x["open_quantity"]) >= abs(delivered):
            return x
    for x in stock:
        if x["quantity"] * delivered > 0:
            return x
    return None


def auto_kind(leg: dict, style: str, value: Decimal | None) -> tuple[str, Decimal | None]:
    """How an expired leg settles without anyone deciding: OTM (or no value) -> expiration;
    ITM cash -> expiration at intrinsic; ITM physical -> exercise (long) / assignment (short)."""
    if value is None:
        return "expiration", None
    worth = intrinsic(leg["right"], Decimal(str(leg["strike"])), value)
    if worth == 0 or style == "cash":
        return "expiration", value
    return ("exercise" if leg["open_quantity"] > 0 else "assignment"), value


def expire_on_close(conn, user_id: int, position_id: str, leg_id: str) -> dict:
    """Close's settlement of an option leg past its settlement moment: with a recorded
    settlement price as ``auto_kind`` decides, else expired worthless (closing says so)."""
    r = service._row(conn, user_id, position_id, lock=True)
    legs_ = service._legs(conn, [position_id])[position_id]
    leg = _leg(legs_, leg_id)
    s = service.leg_settlement(service.position_out(r, legs_), leg)
    value = _price_of(conn, user_id, r.underlying, leg["expiry"], s["settlement_time"])
    kind, value = auto_kind(leg, s["settlement_type"], value)
    return _settle(conn, r, legs_, leg, kind, value=value)


def settle_expired(conn, now: dt.datetime | None = None, *, user_id: int | None = None,
                   progress: Callable[..., None] | None = None) -> dict:
    """Settle every open option leg (of ``user_id``, or everyone's) whose settlement moment
    has passed by ``now``, from the recorded settlement prices; close positions left flat.
    Returns ``{checked, settled: [...], closed: [...], awaiting_settlement_price: [...]}``;
    ``progress(fraction, message)`` after each leg (the job system's convention). Safe to
    run again: settled legs are flat."""
    now = min(now or utcnow(), utcnow())  # never settle ahead of the real clock
    cond = [positions.c.status == "open", legs.c.instrument_type == "option", legs.c.open_quantity != 0,
            legs.c.expiry <= (now + dt.timedelta(days=1)).date()]
    if user_id is not None:
        cond.append(positions.c.user_id == user_id)
    rows = conn.execute(sa.select(legs.c.id, legs.c.position_id, positions.c.user_id)
                        .join(positions, positions.c.id == legs.c.position_id).where(*cond)
                        .order_by(positions.c.user_id, legs.c.position_id, legs.c.seq)).fetchall()
    report = {"checked": len(rows), "settled": [], "closed": [], "awaiting_settlement_price": []}
    touched: dict[str, int] = {}
    for i, row in enumerate(rows):
        r = service._row(conn, row.user_id, row.position_id, lock=True)
        legs_ = service._legs(conn, [r.id])[r.id]
        leg = _leg(legs_, row.id)
        s = service.leg_settlement(service.position_out(r, legs_), leg)
        if s["settles_at"] <= now:
            value = _price_of(conn, r.user_id, r.underlying, leg["expiry"], s["settlement_time"])
            if value is None:
                report["awaiting_settlement_price"].append({
                    "position_id": r.id, "leg_id": leg["id"], "underlying": r.underlying,
                    "expiry": leg["expiry"], "settlement_time": s["settlement_time"]})
            else:
                kind, value = auto_kind(leg, s["settlement_type"], value)
                done = _settle(conn, r, legs_, leg, kind, value=value, now=now)["settlement"]
                report["settled"].append({"position_id": r.id, "leg_id": leg["id"], "kind": kind,
                                          "price": done["price"], "settlement_value": value})
                touched[r.id] = r.user_id
        if progress:
            progress((i + 1) / len(rows), f"{i + 1} of {len(rows)} legs")
    for pid, uid in touched.items():
        cur = service._current(conn, uid, pid)
        if cur["status"] == "open" and all(not leg["open_quantity"] for leg in cur["legs"]):
            last = max(f["occurred_at"] for f in service._fills(conn, pid))
            service.close_position(conn, uid, pid, {"closed_at": last}, expected=cur["version"])
            report["closed"].append(pid)
    return report


def set_settlement_price(conn, user_id: int, data: dict) -> dict:
    """Record (or correct) the settlement price of ``underlying`` for options expiring
    ``expiry`` with ``settlement_time`` (AM/PM). Emits SettlementPriceRecorded."""
    now = utcnow()
    key = dict(user_id=user_id, underlying=data["underlying"], expiry=data["expiry"],
               settlement_time=data["settlement_time"])
    done = conn.execute(settlement_prices.update().where(*[settlement_prices.c[k] == v for k, v in key.items()])
                        .values(price=data["price"], recorded_at=now)).rowcount
    if not done:
        conn.execute(settlement_prices.insert().values(**key, price=data["price"], recorded_at=now))
    out = {k: v for k, v in key.items() if k != "user_id"} | {"price": service._money(data["price"]), "recorded_at": now}
    service.TOPIC.emit(conn, "SettlementPriceRecorded", aggregate_type="settlement_price", aggregate_id=f"{data['underlying']}:{data['expiry'].isoformat()}:{data['settlement_time']}", aggregate_version=None,
                       user_id=user_id, occurred_at=now,
                       payload=out)
    return out


def list_settlements(conn, user_id: int, position_id: str) -> list[dict]:
    service._row(conn, user_id, position_id)
    q = sa.select(settlements).where(settlements.c.position_id == position_id, settlements.c.user_id == user_id) \
        .order_by(settlements.c.occurred_at, settlements.c.recorded_at)
    return [settlement_out(r) for r in conn.execute(q)]
