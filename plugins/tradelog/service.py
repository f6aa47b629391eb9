"""TradeLog use cases: load -> check -> change -> save + events, in the caller's transaction.

No Flask here: every function takes ``conn`` (a Connection in an open transaction) and
``user_id`` first, so views, CLI commands, bus handlers, demo data and tests share them.
Every query is scoped to ``user_id``; another user's id is "not found".

Each change to a position bumps its version, stores the new representation in
``tl_position_versions`` with the system time (for ``as_of``) and emits one event whose
``aggregate_version`` is that version, so replaying a position's events in order rebuilds it.
"""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import sqlalchemy as sa

from app import errors
from app.concurrency import versioned_update
from app.db import new_id, to_ms, utcnow
from bus import outbox
from bus.envelope import dumps, parse_time
from plugins.tradelog import derived
from plugins.tradelog.tables import (
    fills, journal_entries, legs, orders, position_versions, positions, risk_artifacts,
)

TOPIC = "tradelog.events"
ZERO = Decimal(0)


# -- representations --------------------------------------------------------------------
def leg_out(r) -> dict:
    m = r._mapping if hasattr(r, "_mapping") else r
    return {"id": m["id"], "position_id": m["position_id"], "instrument_type": m["instrument_type"],
            "expiry": m["expiry"], "strike": m["strike"], "right": m["option_right"],
            "quantity": m["quantity"], "multiplier": m["multiplier"]}


def fill_out(r) -> dict:
    m = r._mapping
    return {"id": m["id"], "leg_id": m["leg_id"], "price": m["price"], "quantity": m["quantity"],
            "fees": m["fees"], "occurred_at": m["occurred_at"], "recorded_at": m["recorded_at"]}


def position_out(r, legs_: list[dict]) -> dict:
    m = r._mapping
    return {"id": m["id"], "user_id": m["user_id"], "status": m["status"], "symbol": m["symbol"],
            "underlying": m["underlying"], "version": m["version"], "opened_at": m["opened_at"],
            "closed_at": m["closed_at"], "tags": m["tags"], "campaign_id": m["campaign_id"],
            "legs": legs_, "realized_pnl": m["realized_pnl"], "fees": m["fees"],
            "source_order_id": m["source_order_id"], "created_at": m["created_at"],
            "updated_at": m["updated_at"]}


def rehydrate(rep: dict) -> dict:
    """A stored (JSON) position representation back to Python types."""
    rep = dict(rep)
    for k in ("opened_at", "closed_at", "created_at", "updated_at"):
        rep[k] = parse_time(rep.get(k))
    for k in ("realized_pnl", "fees"):
        rep[k] = Decimal(rep[k]) if rep.get(k) is not None else None
    rep["legs"] = [dict(leg, expiry=dt.date.fromisoformat(leg["expiry"]) if leg.get("expiry") else None,
                        strike=Decimal(leg["strike"]) if leg.get("strike") is not None else None)
                   for leg in rep.get("legs") or []]
    return rep


_Q4 = Decimal("0.0001")


def _money(value) -> Decimal | None:
    """What a Money column gives back (4 places), without reading it back."""
    return None if value is None else Decimal(str(value)).quantize(_Q4)


def _jsonable(value):
    return json.loads(dumps(value))


# -- positions: reading -----------------------------------------------------------------
def _row(conn, user_id: int, position_id: str, *, lock: bool = False):
    q = sa.select(positions).where(positions.c.id == position_id, positions.c.user_id == user_id)
    if lock:
        q = q.with_for_update()
    r = conn.execute(q).first()
    if r is None:
        raise errors.NotFound(f"position {position_id} not found")
    return r


def _legs(conn, position_ids: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {p: [] for p in position_ids}
    if position_ids:
        q = sa.select(legs).where(legs.c.position_id.in_(position_ids)).order_by(legs.c.position_id, legs.c.seq)
        for r in conn.execute(q):
            out[r.position_id].append(leg_out(r))
    return out


def _fills(conn, position_id: str, as_of: dt.datetime | None = None) -> list[dict]:
    q = sa.select(fills).where(fills.c.position_id == position_id)
    if as_of is not None:
        q = q.where(fills.c.recorded_at <= as_of)
    return [fill_out(r) for r in conn.execute(q.order_by(fills.c.position_version))]


def _current(conn, user_id: int, position_id: str) -> dict | None:
    r = conn.execute(sa.select(positions).where(positions.c.id == position_id,
                                                positions.c.user_id == user_id)).first()
    return position_out(r, _legs(conn, [r.id])[r.id]) if r else None


def get_position(conn, user_id: int, position_id: str, as_of: dt.datetime | None = None) -> dict:
    """The position with its legs; with ``as_of``, the version the system had recorded by
    then (404 if it did not exist yet)."""
    if as_of is None:
        rep = _current(conn, user_id, position_id)
        if rep is None:
            raise errors.NotFound(f"position {position_id} not found")
        return rep
    _row(conn, user_id, position_id)
    r = conn.execute(
        sa.select(position_versions.c.representation)
        .where(position_versions.c.position_id == position_id, position_versions.c.user_id == user_id,
               position_versions.c.recorded_at <= as_of)
        .order_by(position_versions.c.version.desc()).limit(1)).first()
    if r is None:
        raise errors.NotFound(f"position {position_id} had not been recorded by {as_of:%Y-%m-%dT%H:%M:%S}Z")
    rep = r.representation
    return rehydrate(json.loads(rep) if isinstance(rep, str) else rep)


def list_positions(conn, user_id: int, *, status: str | None = None, symbol: str | None = None,
                   page: int = 1, page_size: int = 50) -> tuple[list[dict], int]:
    cond = [positions.c.user_id == user_id]
    if status:
        cond.append(positions.c.status == status)
    if symbol:
        cond.append(positions.c.symbol == symbol)
    total = conn.execute(sa.select(sa.func.count()).select_from(positions).where(*cond)).scalar_one()
    rows = conn.execute(sa.select(positions).where(*cond)
                        .order_by(positions.c.created_at.desc(), positions.c.id)
                        .limit(page_size).offset((page - 1) * page_size)).fetchall()
    by_id = _legs(conn, [r.id for r in rows])
    return [position_out(r, by_id[r.id]) for r in rows], int(total)


def snapshot(conn, user_id: int, position_id: str, as_of: dt.datetime | None = None) -> dict:
    """The authoritative snapshot for RiskGraph: legs, fills and derived metadata."""
    rep = get_position(conn, user_id, position_id, as_of)
    fills_ = _fills(conn, position_id, as_of)
    return build_snapshot(rep, fills_, (as_of or utcnow()).date(), as_of)


def build_snapshot(rep: dict, fills_: list[dict], today: dt.date, as_of=None) -> dict:
    return {"position_id": rep["id"], "version": rep["version"], "status": rep["status"],
            "symbol": rep["symbol"], "underlying": rep["underlying"], "opened_at": rep["opened_at"],
            "closed_at": rep["closed_at"], "legs": rep["legs"], "fills": fills_,
            "metadata": derived.metadata(rep["legs"], fills_, today), "as_of": as_of}


def position_events(conn, user_id: int, position_id: str) -> list[dict]:
    _row(conn, user_id, position_id)
    return [e.to_dict() for e in outbox.read(conn, TOPIC, 0, user_id=user_id, aggregate_id=position_id,
                                             limit=100_000)]


def replay(events: list[dict], today: dt.date) -> dict:
    """Rebuild a position's snapshot from its events (envelopes as dicts, in order)."""
    rep, fills_ = None, []
    for ev in events:
        p = ev["payload"]
        if ev["type"] in ("PositionCreated", "PositionAdjusted"):
            rep = rehydrate(p["position"])
        elif ev["type"] == "FillRecorded":
            f = p["fill"]
            fills_.append({"id": f["id"], "leg_id": f["leg_id"], "price": Decimal(f["price"]),
                           "quantity": f["quantity"], "fees": Decimal(f["fees"]),
                           "occurred_at": parse_time(f["occurred_at"]), "recorded_at": parse_time(f["recorded_at"])})
            if rep["status"] == "planned":
                rep["status"], rep["opened_at"] = "open", parse_time(f["occurred_at"])
        elif ev["type"] == "PositionClosed":
            rep["status"], rep["closed_at"] = "closed", parse_time(p["closed_at"])
        else:
            continue
        rep["version"] = ev["aggregate_version"]
    if rep is None:
        raise ValueError("no PositionCreated event")
    return build_snapshot(rep, fills_, today)


# -- positions: changing ----------------------------------------------------------------
def _save_version(conn, rep: dict) -> None:
    conn.execute(position_versions.insert().values(
        position_id=rep["id"], version=rep["version"], user_id=rep["user_id"],
        recorded_at=rep["updated_at"], representation=_jsonable(rep)))


def _emit(conn, user_id, type_, aggregate_type, aggregate_id, version, payload, occurred_at=None):
    outbox.emit(conn, TOPIC, type_, aggregate_type=aggregate_type, aggregate_id=aggregate_id,
                aggregate_version=version, payload=payload, user_id=user_id, occurred_at=occurred_at)


def _leg_rows(position_id: str, first_seq: int, specs: list[dict], now) -> list[dict]:
    return [dict(id=new_id(), position_id=position_id, seq=first_seq + i, instrument_type=s["instrument_type"],
                 expiry=s.get("expiry"), strike=s.get("strike"), option_right=s.get("right"),
                 quantity=s["quantity"],
                 multiplier=s.get("multiplier") or derived.DEFAULT_MULTIPLIER[s["instrument_type"]],
                 created_at=now)
            for i, s in enumerate(specs)]


def create_position(conn, user_id: int, data: dict, *, order_id: str | None = None) -> dict:
    """A new planned position (with its legs, if given). Emits PositionCreated."""
    now, pid = utcnow(), new_id()
    conn.execute(positions.insert().values(
        id=pid, user_id=user_id, status="planned", symbol=data["symbol"],
        underlying=data.get("underlying") or data["symbol"], version=1, tags=data.get("tags"),
        campaign_id=data.get("campaign_id"), source_order_id=order_id, created_at=now, updated_at=now))
    rows = _leg_rows(pid, 1, data.get("legs") or [], now)
    if rows:
        conn.execute(legs.insert(), rows)
    rep = {"id": pid, "user_id": user_id, "status": "planned", "symbol": data["symbol"],
           "underlying": data.get("underlying") or data["symbol"], "version": 1, "opened_at": None,
           "closed_at": None, "tags": data.get("tags"), "campaign_id": data.get("campaign_id"),
           "legs": [leg_out(dict(r, strike=_money(r["strike"]))) for r in rows], "realized_pnl": None,
           "fees": None, "source_order_id": order_id, "created_at": now, "updated_at": now}
    _save_version(conn, rep)
    _emit(conn, user_id, "PositionCreated", "position", pid, 1, {"position": rep}, now)
    return rep


def _refuse_closed(r, action: str) -> None:
    if r.status == "closed":
        raise errors.InvalidState(f"position {r.id} is closed; {action}", state="closed")


def update_position(conn, user_id: int, position_id: str, data: dict, expected: int) -> dict:
    """Change attributes, open a planned position, add legs or change leg quantities
    (If-Match ``expected``). Emits PositionAdjusted."""
    r = _row(conn, user_id, position_id, lock=True)
    _refuse_closed(r, "it can't be changed")
    now = utcnow()
    values = {k: data[k] for k in ("symbol", "underlying", "tags", "campaign_id") if k in data}
    if data.get("status") == "open" and r.status == "planned":
        values.update(status="open", opened_at=now)
    current_legs = {leg["id"]: leg for leg in _legs(conn, [position_id])[position_id]}
    for i, change in enumerate(data.get("update_legs") or []):
        if change["id"] not in current_legs:
            raise errors.Unprocessable(f"update_legs.{i}.id: not a leg of this position",
                                       errors={"json": {"update_legs": {str(i): {"id": ["not a leg of this position"]}}}})
    version = versioned_update(conn, positions, id_value=position_id, user_id=user_id, expected=expected,
                               values={**values, "updated_at": now},
                               current=lambda: _current(conn, user_id, position_id))
    if data.get("add_legs"):
        conn.execute(legs.insert(), _leg_rows(position_id, len(current_legs) + 1, data["add_legs"], now))
    for change in data.get("update_legs") or []:
        conn.execute(legs.update().where(legs.c.id == change["id"]).values(quantity=change["quantity"]))
    change = "legs_added" if data.get("add_legs") else "legs_changed" if data.get("update_legs") else "updated"
    rep = _current(conn, user_id, position_id)
    _save_version(conn, rep)
    _emit(conn, user_id, "PositionAdjusted", "position", position_id, version, {"position": rep, "change": change}, now)
    return rep


def record_fill(conn, user_id: int, position_id: str, data: dict, *, order_id: str | None = None,
                slippage: Decimal | None = None) -> dict:
    """Record a fill on one of the position's legs; the first fill opens a planned position.
    Emits FillRecorded. Returns ``{fill, position}``."""
    r = _row(conn, user_id, position_id, lock=True)
    _refuse_closed(r, "fills can't be recorded")
    legs_ = _legs(conn, [position_id])[position_id]
    if data["leg_id"] not in {leg["id"] for leg in legs_}:
        raise errors.field_error("leg_id", "not a leg of this position")
    now, version, occurred_at = utcnow(), r.version + 1, to_ms(data["occurred_at"])
    values = {"version": version, "updated_at": now}
    if r.status == "planned":
        values.update(status="open", opened_at=occurred_at)
    conn.execute(positions.update().where(positions.c.id == position_id, positions.c.user_id == user_id)
                 .values(**values))
    fill = dict(id=new_id(), position_id=position_id, leg_id=data["leg_id"], price=data["price"],
                quantity=data["quantity"], fees=data.get("fees") or ZERO, occurred_at=occurred_at,
                recorded_at=now, order_id=order_id, slippage=slippage, position_version=version)
    conn.execute(fills.insert().values(**fill))
    fill_rep = {"id": fill["id"], "leg_id": fill["leg_id"], "price": _money(fill["price"]),
                "quantity": fill["quantity"], "fees": _money(fill["fees"]), "occurred_at": fill["occurred_at"],
                "recorded_at": now}
    rep = position_out(r, legs_) | values
    _save_version(conn, rep)
    _emit(conn, user_id, "FillRecorded", "position", position_id, version,
          {"position_id": position_id, "fill": fill_rep, "slippage": _money(slippage)}, occurred_at)
    return {"fill": fill_rep, "position": rep}


def close_position(conn, user_id: int, position_id: str, data: dict, expected: int) -> dict:
    """Close the position (If-Match ``expected``) and fix its realised P&L. Stock and future
    legs must be flat; option legs still held must have expired by ``closed_at`` (they
    settle at 0 — record a closing fill for any other outcome). Emits PositionClosed."""
    r = _row(conn, user_id, position_id, lock=True)
    _refuse_closed(r, "it can't be closed again")
    closed_at = data.get("closed_at") or utcnow()
    legs_ = _legs(conn, [position_id])[position_id]
    fills_ = _fills(conn, position_id)
    held = {leg["id"]: 0 for leg in legs_}
    for f in fills_:
        held[f["leg_id"]] += f["quantity"]
    for leg in legs_:
        if held[leg["id"]] and (leg["instrument_type"] != "option" or leg["expiry"] > closed_at.date()):
            raise errors.Conflict(
                f"leg {leg['id']} ({leg['instrument_type']}) still holds {held[leg['id']]}; "
                "record a closing fill first", code="position_not_flat", leg_id=leg["id"])
    fees_ = derived.fees(fills_)
    pnl = -derived.net_debit(legs_, fills_) - fees_
    now = utcnow()
    version = versioned_update(
        conn, positions, id_value=position_id, user_id=user_id, expected=expected,
        values=dict(status="closed", closed_at=closed_at, realized_pnl=pnl, fees=fees_,
                    initial_risk=derived.initial_risk(legs_, fills_), updated_at=now),
        current=lambda: _current(conn, user_id, position_id))
    rep = _current(conn, user_id, position_id)
    _save_version(conn, rep)
    _emit(conn, user_id, "PositionClosed", "position", position_id, version,
          {"position_id": position_id, "realized_pnl": rep["realized_pnl"], "fees": rep["fees"],
           "closed_at": closed_at}, closed_at)
    return rep


# -- risk artifact references (Pattern A; TradeLog holds no risk math) -------------------
def _artifact_out(r) -> dict:
    return {"position_id": r.position_id, "artifact_id": r.artifact_id, "computed_at": r.computed_at,
            "linked_at": r.linked_at}


def link_risk_artifact(conn, user_id: int, position_id: str, data: dict) -> tuple[dict, bool]:
    """Keep a reference to a RiskGraph artifact. Returns ``(reference, created)``; linking
    the same artifact again returns the first reference and emits nothing."""
    r = _row(conn, user_id, position_id, lock=True)
    existing = conn.execute(sa.select(risk_artifacts).where(
        risk_artifacts.c.position_id == position_id, risk_artifacts.c.artifact_id == data["artifact_id"])).first()
    if existing is not None:
        return _artifact_out(existing), False
    now = utcnow()
    conn.execute(risk_artifacts.insert().values(position_id=position_id, artifact_id=data["artifact_id"],
                                                user_id=user_id, computed_at=data["computed_at"], linked_at=now))
    _emit(conn, user_id, "RiskArtifactLinked", "position", position_id, r.version,
          {"position_id": position_id, "artifact_id": data["artifact_id"], "computed_at": data["computed_at"]})
    return {"position_id": position_id, "artifact_id": data["artifact_id"],
            "computed_at": data["computed_at"], "linked_at": now}, True


def list_risk_artifacts(conn, user_id: int, position_id: str) -> list[dict]:
    _row(conn, user_id, position_id)
    q = sa.select(risk_artifacts).where(risk_artifacts.c.position_id == position_id,
                                        risk_artifacts.c.user_id == user_id).order_by(risk_artifacts.c.computed_at)
    return [_artifact_out(r) for r in conn.execute(q)]


# -- journal -----------------------------------------------------------------------------
def _journal_out(r) -> dict:
    return {"id": r.id, "position_id": r.position_id, "object_of_reflection": r.object_of_reflection,
            "bias_flags": r.bias_flags, "notes": r.notes, "phase": r.phase, "created_at": r.created_at}


def create_journal_entry(conn, user_id: int, data: dict) -> dict:
    _row(conn, user_id, data["position_id"])
    row = dict(id=new_id(), user_id=user_id, position_id=data["position_id"],
               object_of_reflection=data["object_of_reflection"], bias_flags=data.get("bias_flags"),
               notes=data.get("notes"), phase=data["phase"], created_at=utcnow())
    conn.execute(journal_entries.insert().values(**row))
    return {k: row[k] for k in ("id", "position_id", "object_of_reflection", "bias_flags", "notes", "phase",
                                "created_at")}


def list_journal_entries(conn, user_id: int, position_id: str) -> list[dict]:
    _row(conn, user_id, position_id)
    q = sa.select(journal_entries).where(journal_entries.c.position_id == position_id,
                                         journal_entries.c.user_id == user_id) \
        .order_by(journal_entries.c.created_at, journal_entries.c.id)
    return [_journal_out(r) for r in conn.execute(q)]


# -- orders ------------------------------------------------------------------------------
def _order_out(r) -> dict:
    m = r._mapping
    tpl = m["position_template"]
    tpl = json.loads(tpl) if isinstance(tpl, str) else tpl
    return {k: m[k] for k in ("id", "user_id", "status", "order_type", "limit_price", "version", "position_id",
                              "fill_price", "slippage", "filled_at", "cancelled_at", "created_at", "updated_at")} \
        | {"position_template": tpl}


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


def _refuse_if_vetoed(vetoes) -> None:
    if vetoes:
        listed = [{"source": v.source, "message": v.message, "detail": v.detail} for v in vetoes]
        raise errors.Forbidden("order vetoed: " + "; ".join(f"{v['source']}: {v['message']}" for v in listed),
                               code="order_vetoed", vetoes=listed)


def create_order(conn, user_id: int, data: dict, check_order_allowed=None) -> dict:
    """A pending order carrying a position template. Emits OrderCreated. ``check_order_allowed``
    (the host's veto hook, with ``stage: "create"``) may refuse it: 403 ``order_vetoed`` (e.g. the
    orders kill switch is engaged)."""
    now, oid = utcnow(), new_id()
    tpl = dict(data["position_template"])
    tpl["underlying"] = tpl.get("underlying") or tpl["symbol"]
    tpl["legs"] = [dict(leg, multiplier=leg.get("multiplier") or derived.DEFAULT_MULTIPLIER[leg["instrument_type"]])
                   for leg in tpl["legs"]]
    if check_order_allowed is not None:
        _refuse_if_vetoed(check_order_allowed(conn, user_id, {
            "stage": "create", "order_id": oid, "symbol": tpl["symbol"], "legs": tpl["legs"],
            "limit_price": data.get("limit_price"), "reduces_position": False, "position_id": None}))
    conn.execute(orders.insert().values(
        id=oid, user_id=user_id, status="pending", order_type=data.get("order_type") or "limit",
        limit_price=data.get("limit_price"), position_template=_jsonable(tpl), version=1,
        created_at=now, updated_at=now))
    rep = get_order(conn, user_id, oid)
    _emit(conn, user_id, "OrderCreated", "order", oid, 1, {"order": rep}, now)
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
    _emit(conn, user_id, "OrderCancelled", "order", order_id, version, {"order_id": order_id}, now)
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


def execute_order(conn, user_id: int, order_id: str, data: dict, check_order_allowed) -> dict:
    """Execute a pending order in one transaction: ask ``check_order_allowed`` (the host's
    veto hook) first; then create the position, its fills (at the given prices or the
    limit) and mark the order filled. Emits PositionCreated, FillRecorded..., OrderFilled."""
    r = _order_row(conn, user_id, order_id, lock=True)
    _refuse_settled(r, "only a pending order can be executed")
    order = _order_out(r)
    tpl = order["position_template"]
    prices, net = _execution_prices(r, tpl["legs"], data)
    slippage = (net - r.limit_price) if r.limit_price is not None else None
    _refuse_if_vetoed(check_order_allowed(conn, user_id, {
        "stage": "execute", "order_id": order_id, "symbol": tpl["symbol"], "legs": tpl["legs"],
        "limit_price": r.limit_price, "reduces_position": False, "position_id": None}))
    occurred_at = data.get("occurred_at") or utcnow()
    template = dict(tpl, legs=[dict(leg, expiry=dt.date.fromisoformat(leg["expiry"]) if leg.get("expiry") else None,
                                    strike=Decimal(leg["strike"]) if leg.get("strike") is not None else None)
                               for leg in tpl["legs"]])
    position = create_position(conn, user_id, template, order_id=order_id)
    fee = data.get("fees") or ZERO
    for i, (leg, price) in enumerate(zip(position["legs"], prices)):
        result = record_fill(conn, user_id, position["id"],
                             {"leg_id": leg["id"], "price": price, "quantity": leg["quantity"],
                              "fees": fee if i == 0 else ZERO, "occurred_at": occurred_at},
                             order_id=order_id, slippage=(slippage if i == 0 else ZERO) if slippage is not None else None)
        position = result["position"]
    now = utcnow()
    done = conn.execute(orders.update().where(orders.c.id == order_id, orders.c.user_id == user_id,
                                              orders.c.status == "pending")
                        .values(status="filled", version=orders.c.version + 1, position_id=position["id"],
                                fill_price=net, slippage=slippage, filled_at=occurred_at, updated_at=now)).rowcount
    if not done:  # pragma: no cover - the row lock above makes this a can't-happen
        raise errors.InvalidState(f"order {order_id} is no longer pending")
    order = get_order(conn, user_id, order_id)
    _emit(conn, user_id, "OrderFilled", "order", order_id, order["version"],
          {"order_id": order_id, "position_id": position["id"], "limit_price": r.limit_price,
           "fill_price": order["fill_price"], "slippage": order["slippage"], "filled_at": occurred_at,
           "reduces_position": False}, occurred_at)
    return {"order": order, "position": position}
