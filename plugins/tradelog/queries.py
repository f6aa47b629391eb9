"""TradeLog's read side for positions: representations, reading a position (current, as of a
system time, or at a version), listing, snapshots and rebuilding a snapshot from events.

Reads only: nothing here writes or emits. ``service`` re-exports every name, so
``service.get_position`` and friends work as before; the write side (create, change, fills,
close, marks) stays in ``service``. Every query is scoped to ``user_id``; another user's id
is "not found".
"""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import sqlalchemy as sa

from app import errors
from app.db import utcnow
from bus.envelope import parse_time
from plugins.tradelog import derived, lots, markettime
from plugins.tradelog.tables import fills, legs, marks, position_versions, positions


# -- representations --------------------------------------------------------------------
def leg_out(r) -> dict:
    m = r._mapping if hasattr(r, "_mapping") else r
    return {"id": m["id"], "position_id": m["position_id"], "instrument_type": m["instrument_type"],
            "expiry": m["expiry"], "strike": m["strike"], "right": m["option_right"],
            "quantity": m["quantity"], "multiplier": m["multiplier"],
            "open_quantity": m.get("open_quantity") or 0,
            "settlement_time": m.get("settlement_time"), "settlement_type": m.get("settlement_type"),
            "source_leg_id": m.get("source_leg_id")}


def fill_out(r) -> dict:
    m = r._mapping
    return {"id": m["id"], "leg_id": m["leg_id"], "price": m["price"], "quantity": m["quantity"],
            "fees": m["fees"], "occurred_at": m["occurred_at"], "recorded_at": m["recorded_at"],
            "kind": m["kind"] or "trade"}


def position_out(r, legs_: list[dict]) -> dict:
    m = r._mapping
    return {"id": m["id"], "user_id": m["user_id"], "status": m["status"], "symbol": m["symbol"],
            "underlying": m["underlying"], "version": m["version"], "opened_at": m["opened_at"],
            "closed_at": m["closed_at"], "tags": list(m["tags"] or []), "campaign_id": m["campaign_id"],
            "legs": legs_, "realized_pnl": m["realized_pnl"], "fees": m["fees"],
            "source_order_id": m["source_order_id"], "rolled_from": m["rolled_from"],
            "chain_id": m["chain_id"] or m["id"], "created_at": m["created_at"], "updated_at": m["updated_at"]}


def rehydrate(rep: dict) -> dict:
    """A stored (JSON) position representation back to Python types."""
    rep = dict(rep)
    for k in ("opened_at", "closed_at", "created_at", "updated_at"):
        rep[k] = parse_time(rep.get(k))
    for k in ("realized_pnl", "fees"):
        rep[k] = Decimal(rep[k]) if rep.get(k) is not None else None
    rep.setdefault("rolled_from", None)
    rep.setdefault("chain_id", rep["id"])
    rep["tags"] = list(rep.get("tags") or [])  # versions stored before tags were never null
    rep["legs"] = [{"open_quantity": 0, "settlement_time": None, "settlement_type": None, "source_leg_id": None,
                    **leg, "expiry": dt.date.fromisoformat(leg["expiry"]) if leg.get("expiry") else None,
                    "strike": Decimal(leg["strike"]) if leg.get("strike") is not None else None}
                   for leg in rep.get("legs") or []]
    return rep


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


def _fills(conn, position_id: str, as_of: dt.datetime | None = None, version: int | None = None) -> list[dict]:
    q = sa.select(fills).where(fills.c.position_id == position_id)
    if as_of is not None:
        q = q.where(fills.c.recorded_at <= as_of)
    if version is not None:
        q = q.where(fills.c.position_version <= version)
    return [fill_out(r) for r in conn.execute(q.order_by(fills.c.position_version, fills.c.seq))]


def _current(conn, user_id: int, position_id: str) -> dict | None:
    r = conn.execute(sa.select(positions).where(positions.c.id == position_id,
                                                positions.c.user_id == user_id)).first()
    return position_out(r, _legs(conn, [r.id])[r.id]) if r else None


def get_position(conn, user_id: int, position_id: str, as_of: dt.datetime | None = None,
                 version: int | None = None) -> dict:
    """The position with its legs; with ``as_of``, the version the system had recorded by
    then (404 if it did not exist yet); with ``version``, that version (404 if there is none)."""
    if version is not None:
        _row(conn, user_id, position_id)
        r = conn.execute(sa.select(position_versions.c.representation).where(
            position_versions.c.position_id == position_id, position_versions.c.user_id == user_id,
            position_versions.c.version == version)).first()
        if r is None:
            raise errors.NotFound(f"position {position_id} has no version {version}")
        rep = r.representation
        return rehydrate(json.loads(rep) if isinstance(rep, str) else rep)
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


def _marks(conn, position_id: str, as_of: dt.datetime | None = None) -> dict[str, dict]:
    """leg id -> its latest mark ``{price, marked_at}`` (as recorded by ``as_of``)."""
    q = sa.select(marks.c.leg_id, marks.c.price, marks.c.marked_at).where(marks.c.position_id == position_id)
    if as_of is not None:
        q = q.where(marks.c.recorded_at <= as_of)
    out: dict[str, dict] = {}
    for r in conn.execute(q.order_by(marks.c.marked_at, marks.c.recorded_at)):
        out[r.leg_id] = {"price": r.price, "marked_at": r.marked_at}
    return out


def snapshot(conn, user_id: int, position_id: str, as_of: dt.datetime | None = None,
             version: int | None = None) -> dict:
    """The authoritative snapshot for RiskGraph: legs with their open quantity, cost basis
    and realized P&L (FIFO lots), fills, and derived metadata of what is open. ``as_of``: as
    the system had recorded it by then; ``version``: as it was at that version (its fills up
    to it; DTE counted from the version's system time)."""
    rep = get_position(conn, user_id, position_id, as_of, version)
    fills_ = _fills(conn, position_id, as_of, version)
    at = as_of or (rep["updated_at"] if version is not None else None)
    return build_snapshot(rep, fills_, at or utcnow(), as_of, _marks(conn, position_id, at))


def leg_settlement(rep: dict, leg: dict) -> dict | None:
    return markettime.leg_settlement(rep["symbol"], rep["underlying"], leg)


def build_snapshot(rep: dict, fills_: list[dict], at: dt.datetime, as_of=None, marks_: dict | None = None) -> dict:
    """The snapshot of ``rep`` with ``fills_`` at the moment ``at`` (DTE counts from it)."""
    books_ = lots.books(rep["legs"], fills_)
    realized = lots.realized_by_fill(books_)
    marks_ = marks_ or {}
    out_legs = []
    for leg in rep["legs"]:
        b = books_[leg["id"]]
        s = leg_settlement(rep, leg)
        mark = marks_.get(leg["id"])
        out_legs.append(dict(
            leg, open_quantity=b.open_quantity, cost_basis=b.cost_basis, average_price=b.average_price,
            open_fees=b.open_fees, realized_pnl=b.realized_pnl,
            settlement_time=s["settlement_time"] if s else None, settlement_type=s["settlement_type"] if s else None,
            settles_at=s["settles_at"] if s else None,
            mark=mark["price"] if mark else None,
            unrealized_pnl=b.unrealized_pnl(mark["price"]) if mark and b.open_quantity else None))
    out_fills = [dict(f, realized_pnl=realized.get(f["id"])) for f in fills_]
    today = markettime.local_date(at, rep["symbol"])
    return {"position_id": rep["id"], "version": rep["version"], "status": rep["status"],
            "symbol": rep["symbol"], "underlying": rep["underlying"], "opened_at": rep["opened_at"],
            "closed_at": rep["closed_at"], "rolled_from": rep.get("rolled_from"),
            "chain_id": rep.get("chain_id") or rep["id"], "legs": out_legs, "fills": out_fills,
            "metadata": derived.metadata(out_legs, books_, at, today), "as_of": as_of}


def _fill_from_payload(f: dict) -> dict:
    return {"id": f["id"], "leg_id": f["leg_id"], "price": Decimal(f["price"]), "quantity": f["quantity"],
            "fees": Decimal(f["fees"]), "occurred_at": parse_time(f["occurred_at"]),
            "recorded_at": parse_time(f["recorded_at"]), "kind": f.get("kind") or "trade"}


def replay(events: list[dict], at: dt.datetime) -> dict:
    """Rebuild a position's snapshot from its events (envelopes as dicts, in order)."""
    rep, fills_ = None, []
    for ev in events:
        p = ev["payload"]
        if ev["type"] in ("PositionCreated", "PositionAdjusted"):
            rep = rehydrate(p["position"])
        elif ev["type"] == "FillRecorded":
            fills_.append(_fill_from_payload(p["fill"]))
            if rep["status"] == "planned":
                rep["status"], rep["opened_at"] = "open", parse_time(p["fill"]["occurred_at"])
        elif ev["type"] == "LegSettled":
            rep["legs"].extend(rehydrate({"id": rep["id"], "legs": p["legs_added"]})["legs"])
            fills_.extend(_fill_from_payload(f) for f in p["fills"])
        elif ev["type"] == "PositionClosed":
            rep["status"], rep["closed_at"] = "closed", parse_time(p["closed_at"])
        else:
            continue
        rep["version"] = ev["aggregate_version"]
    if rep is None:
        raise ValueError("no PositionCreated event")
    return build_snapshot(rep, fills_, at)
