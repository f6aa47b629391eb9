"""TradeLog use cases for positions: load -> check -> change -> save + events, in the
caller's transaction.

No Flask here: every function takes ``conn`` (a Connection in an open transaction) and
``user_id`` first, so views, CLI commands, jobs, bus handlers, demo data and tests share
them. Every query is scoped to ``user_id``; another user's id is "not found".

Each change to a position bumps its version, stores the new representation in
``tl_position_versions`` with the system time (for ``as_of``) and emits one event whose
``aggregate_version`` is that version, so replaying a position's events in order rebuilds it.

Open quantities, cost basis and realized P&L come from the fills by FIFO lots
(``plugins.tradelog.lots``); every fill is checked against them before it is written.
Reading (representations, get/list, as-of versions, snapshots, replay) lives in
``queries.py`` and is re-exported here. Orders live in ``orders.py``, settlement in
``settlement.py``, rolls in ``rolls.py``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
from decimal import Decimal

import sqlalchemy as sa

import optionsmath
from app import errors
from app.concurrency import versioned_update
from app.db import new_id, to_ms, utcnow
from bus import outbox
from bus.envelope import dumps
from plugins.tradelog import derived, lots, markettime, schemas
# The read side (representations, get/list, as-of, snapshots, replay) lives in queries.py;
# re-exported here so ``service.<name>`` keeps working for every caller.
from plugins.tradelog.queries import (  # noqa: F401
    _current, _fill_from_payload, _fills, _legs, _marks, _row, build_snapshot, fill_out, get_position,
    leg_out, leg_settlement, list_positions, position_out, rehydrate, replay, snapshot,
)
from plugins.tradelog.tables import (
    fills, legs, marks, position_versions, positions, risk_artifacts,
)

ZERO = Decimal(0)
#: How far in the future a fill's (or close's) market time may be: clocks differ a little.
CLOCK_SKEW = dt.timedelta(minutes=5)


_Q4 = Decimal("0.0001")


def _money(value) -> Decimal | None:
    """What a Money column gives back (4 places), without reading it back."""
    return None if value is None else Decimal(str(value)).quantize(_Q4)


def _jsonable(value):
    return json.loads(dumps(value))


def position_events(conn, user_id: int, position_id: str) -> list[dict]:
    _row(conn, user_id, position_id)
    return [e.to_dict() for e in outbox.read(conn, TOPIC.name, 0, user_id=user_id, aggregate_id=position_id,
                                             limit=100_000)]


# -- positions: changing ----------------------------------------------------------------
def _save_version(conn, rep: dict) -> None:
    row = dict(position_id=rep["id"], version=rep["version"], user_id=rep["user_id"],
               recorded_at=rep["updated_at"], representation=_jsonable(rep))
    buf = conn.info.get(BUFFER)
    if buf is not None:
        buf["versions"].append(row)
    else:
        conn.execute(position_versions.insert().values(**row))


BUFFER = "tradelog.write_buffer"


class _Topic:
    """``schemas.TOPIC`` whose ``emit`` is held back during bulk work (``buffered``)."""

    def __init__(self, topic):
        self._topic = topic

    def __getattr__(self, name):
        return getattr(self._topic, name)

    def emit(self, conn, type, **kw):
        buf = conn.info.get(BUFFER)
        if buf is None:
            return self._topic.emit(conn, type, **kw)
        self._topic._check(type)
        buf["events"].append(dict(kw, type=type))
        return None


TOPIC = _Topic(schemas.TOPIC)


@contextlib.contextmanager
def buffered(conn):
    """Bulk work (an import): the version rows and events of many changes are written with
    one multi-row insert each (and one counter bump of the stream) when the block ends —
    still in the caller's transaction, in the order the changes happened. Yields the buffer
    (``{"versions": [...], "events": [...]}``) so a caller that rolls a part back to a
    savepoint can drop that part's entries too."""
    buf = {"versions": [], "events": []}
    conn.info[BUFFER] = buf
    try:
        yield buf
    finally:
        conn.info.pop(BUFFER, None)
    if buf["versions"]:
        conn.execute(position_versions.insert(), buf["versions"])
    schemas.TOPIC.emit_many(conn, buf["events"])


def check_leg_specs(symbol: str, specs: list[dict], field: str = "legs") -> None:
    """An option's expiry must be a trading day of its exchange (422 naming the leg's
    ``expiry``, with the previous trading day it would settle on)."""
    bad = {}
    for i, spec in enumerate(specs):
        if spec.get("instrument_type") == "option" and spec.get("expiry") is not None:
            expiry = spec["expiry"]
            try:
                trading = markettime.is_trading_day(expiry, symbol)
            except ValueError as exc:  # outside the calendar's years
                bad[str(i)] = {"expiry": [str(exc).split(": ", 1)[-1]]}
                continue
            if not trading:
                before = markettime.previous_trading_day(expiry, symbol)
                bad[str(i)] = {"expiry": [f"{expiry.isoformat()} is not a trading day of the exchange "
                                          f"(the previous one is {before.isoformat()})"]}
    if bad:
        raise errors.Unprocessable(f"{field}: an expiry is not a trading day", errors={"json": {field: bad}})


def _leg_rows(position_id: str, first_seq: int, specs: list[dict], now) -> list[dict]:
    return [dict(id=s.get("id") or new_id(), position_id=position_id, seq=first_seq + i,
                 instrument_type=s["instrument_type"], expiry=s.get("expiry"), strike=s.get("strike"),
                 option_right=s.get("right"), quantity=s["quantity"],
                 multiplier=s.get("multiplier") or derived.DEFAULT_MULTIPLIER[s["instrument_type"]],
                 settlement_time=s.get("settlement_time"), settlement_type=s.get("settlement_type"),
                 source_leg_id=s.get("source_leg_id"), open_quantity=0, created_at=now)
            for i, s in enumerate(specs)]


def create_position(conn, user_id: int, data: dict, *, order_id: str | None = None,
                    rolled_from: str | None = None, chain_id: str | None = None,
                    position_id: str | None = None) -> dict:
    """A new planned position (with its legs, if given). Emits PositionCreated. 422 when an
    option leg expires on a day the exchange does not trade."""
    check_leg_specs(data["symbol"], data.get("legs") or [])
    now, pid = utcnow(), position_id or new_id()
    underlying = data.get("underlying") or optionsmath.default_underlying(data["symbol"])
    tags = list(data.get("tags") or [])  # never null: no tags is []
    conn.execute(positions.insert().values(
        id=pid, user_id=user_id, status="planned", symbol=data["symbol"],
        underlying=underlying, version=1, tags=tags,
        campaign_id=data.get("campaign_id"), source_order_id=order_id, rolled_from=rolled_from,
        chain_id=chain_id or pid, created_at=now, updated_at=now))
    rows = _leg_rows(pid, 1, data.get("legs") or [], now)
    if rows:
        conn.execute(legs.insert(), rows)
    rep = {"id": pid, "user_id": user_id, "status": "planned", "symbol": data["symbol"],
           "underlying": underlying, "version": 1, "opened_at": None,
           "closed_at": None, "tags": tags, "campaign_id": data.get("campaign_id"),
           "legs": [leg_out(dict(r, strike=_money(r["strike"]))) for r in rows], "realized_pnl": None,
           "fees": None, "source_order_id": order_id, "rolled_from": rolled_from, "chain_id": chain_id or pid,
           "created_at": now, "updated_at": now}
    _save_version(conn, rep)
    TOPIC.emit(conn, "PositionCreated", aggregate_type="position", aggregate_id=pid, aggregate_version=1,
               user_id=user_id, occurred_at=now,
               payload={"position": rep})
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
    if "tags" in values:
        values["tags"] = list(values["tags"] or [])  # null clears them: []
    if data.get("status") == "open" and r.status == "planned":
        values.update(status="open", opened_at=now)
    current_legs = {leg["id"]: leg for leg in _legs(conn, [position_id])[position_id]}
    for i, change in enumerate(data.get("update_legs") or []):
        if change["id"] not in current_legs:
            raise errors.Unprocessable(f"update_legs.{i}.id: not a leg of this position",
                                       errors={"json": {"update_legs": {str(i): {"id": ["not a leg of this position"]}}}})
        held = current_legs[change["id"]]["open_quantity"]
        if held and held * change["quantity"] < 0:
            raise errors.Unprocessable(
                f"update_legs.{i}.quantity: the leg holds {held}; its direction can't change",
                errors={"json": {"update_legs": {str(i): {"quantity": [
                    f"the leg holds {held}: a planned quantity of the other sign would turn it around"]}}}})
    check_leg_specs(values.get("symbol") or r.symbol, data.get("add_legs") or [], "add_legs")
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
    TOPIC.emit(conn, "PositionAdjusted", aggregate_type="position", aggregate_id=position_id, aggregate_version=version,
               user_id=user_id, occurred_at=now,
               payload={"position": rep, "change": change})
    return rep


# -- fills --------------------------------------------------------------------------------
def _check_fill_time(rep: dict, leg: dict, occurred_at: dt.datetime, now: dt.datetime, field: str,
                     kind: str = "trade") -> None:
    if occurred_at > now + CLOCK_SKEW:
        raise errors.field_error(field, f"{occurred_at.isoformat()} is in the future "
                                        f"(more than {int(CLOCK_SKEW.total_seconds())} s ahead of the server's clock)")
    if kind == "trade":
        s = leg_settlement(rep, leg)
        if s is not None and occurred_at > s["last_trade_at"]:
            raise errors.field_error(field, f"after the option's last trade ({s['last_trade_at'].isoformat()}): "
                                            "settle the leg instead (POST .../legs/{leg_id}/settle)")


def append_changes(conn, r, legs_: list[dict], changes: list[list[dict]], *, now: dt.datetime,
                   fields: list[list[str]] | None = None) -> list[tuple[int, list[dict], dict, dict]]:
    """Write fills as successive changes of the locked position row ``r`` — each change (a
    list of fill dicts: ``leg_id, price, quantity, fees, occurred_at`` and optional ``kind,
    order_id, slippage, settlement_id, fingerprint, id``) one version — with one read of the
    position's fills and one write per table for all of them.

    Every change is checked against the FIFO lots of all fills before it (422 naming
    ``fields[c][i]``, default ``quantity``, when a fill would carry a leg past flat); each
    leg's open quantity and the position's realized P&L and fees follow; a planned position
    opens at its first fill. Each version's representation is stored (``as_of``); events are
    the caller's. Returns, per change, ``(version, fill representations, position
    representation, books after it)``."""
    existing = [dict(f._mapping) for f in conn.execute(
        sa.select(fills.c.id, fills.c.leg_id, fills.c.price, fills.c.quantity, fills.c.fees, fills.c.occurred_at)
        .where(fills.c.position_id == r.id).order_by(fills.c.position_version, fills.c.seq))]
    values: dict = {}
    version, status, opened_at = r.version, r.status, r.opened_at
    out, rows, touched, books_ = [], [], set(), None
    for c_i, new in enumerate(changes):
        ids = [f.get("id") or new_id() for f in new]
        candidates = [dict(f, id=i, kind=f.get("kind") or "trade", fees=f.get("fees") or ZERO,
                           occurred_at=to_ms(f["occurred_at"])) for f, i in zip(new, ids)]
        try:
            books_ = lots.books(legs_, existing + candidates)
        except lots.PastFlat as exc:
            # the new fill itself, or an earlier-dated new fill that leaves a later one past flat
            idx = ids.index(exc.fill_id) if exc.fill_id in ids else 0
            names = fields[c_i] if fields else ["quantity"] * len(new)
            err = errors.field_error(names[idx], str(exc))
            err.extra["item"] = c_i  # which change (record_fills: which fill) it was
            raise err from None
        existing = existing + candidates
        version += 1
        totals = lots.totals(books_)
        values = {"version": version, "updated_at": now, "realized_pnl": totals["realized_pnl"], "fees": totals["fees"]}
        if status == "planned":
            status, opened_at = "open", min(c["occurred_at"] for c in candidates)
        values.update(status=status, opened_at=opened_at)
        for leg in legs_:
            if leg["id"] in {c["leg_id"] for c in candidates}:
                leg["open_quantity"] = books_[leg["id"]].open_quantity
                touched.add(leg["id"])
        rows += [dict(id=c["id"], position_id=r.id, user_id=r.user_id, leg_id=c["leg_id"], price=c["price"],
                      quantity=c["quantity"], fees=c["fees"], occurred_at=c["occurred_at"], recorded_at=now,
                      order_id=c.get("order_id"), slippage=c.get("slippage"), position_version=version,
                      kind=c["kind"], settlement_id=c.get("settlement_id"), fingerprint=c.get("fingerprint"), seq=n)
                 for n, c in enumerate(candidates)]
        realized = lots.realized_by_fill(books_)
        reps = [{"id": c["id"], "leg_id": c["leg_id"], "price": _money(c["price"]), "quantity": c["quantity"],
                 "fees": _money(c["fees"]), "occurred_at": c["occurred_at"], "recorded_at": now, "kind": c["kind"],
                 "realized_pnl": _money(realized.get(c["id"]))} for c in candidates]
        rep = position_out(r, [dict(leg) for leg in legs_]) | {
            k: (_money(v) if k in ("realized_pnl", "fees") else v) for k, v in values.items()}
        _save_version(conn, rep)
        out.append((version, reps, rep, books_))
    conn.execute(positions.update().where(positions.c.id == r.id, positions.c.user_id == r.user_id).values(**values))
    for leg in legs_:
        if leg["id"] in touched:
            conn.execute(legs.update().where(legs.c.id == leg["id"]).values(open_quantity=leg["open_quantity"]))
    conn.execute(fills.insert(), rows)
    return out


def append_fills(conn, r, legs_: list[dict], new: list[dict], *, now: dt.datetime,
                 fields: list[str] | None = None) -> tuple[int, list[dict], dict, dict]:
    """``new`` fills as one change (see ``append_changes``): ``(version, fill
    representations, position representation, books)``."""
    return append_changes(conn, r, legs_, [new], now=now, fields=[fields] if fields else None)[0]


def leg_state(book: lots.LegBook) -> dict:
    """A leg's lot figures after a change (carried on FillRecorded / LegSettled)."""
    return {"leg_id": book.leg_id, "open_quantity": book.open_quantity, "cost_basis": _money(book.cost_basis),
            "average_price": book.average_price, "realized_pnl": _money(book.realized_pnl)}


def record_fill(conn, user_id: int, position_id: str, data: dict, *, order_id: str | None = None,
                slippage: Decimal | None = None, fingerprint: str | None = None) -> dict:
    """Record a fill on one of the position's legs; the first fill opens a planned position.

    422 naming ``occurred_at`` when it is in the future (beyond ``CLOCK_SKEW``) or after an
    option's last trade; naming ``quantity`` when it would carry the leg past flat (FIFO
    lots, see ``lots``). Emits FillRecorded (with the leg's open quantity and cost basis and
    the P&L a closing fill realized). Returns ``{fill, position}``."""
    return record_fills(conn, user_id, position_id, [dict(data, order_id=order_id, slippage=slippage,
                                                          fingerprint=fingerprint)])[0]


def record_fills(conn, user_id: int, position_id: str, items: list[dict]) -> list[dict]:
    """Several fills on one position, each its own change (version and FillRecorded), with
    the reads and writes done once (``append_changes``): what an order's legs or an import
    record. Items are ``record_fill``'s data plus optional ``order_id, slippage,
    fingerprint``; errors name the field (``quantity``, ``occurred_at``, ``leg_id``)."""
    r = _row(conn, user_id, position_id, lock=True)
    _refuse_closed(r, "fills can't be recorded")
    legs_ = _legs(conn, [position_id])[position_id]
    by_id = {x["id"]: x for x in legs_}
    now = utcnow()
    rep0 = position_out(r, legs_)
    for i, item in enumerate(items):
        try:
            leg = by_id.get(item["leg_id"])
            if leg is None:
                raise errors.field_error("leg_id", "not a leg of this position")
            _check_fill_time(rep0, leg, to_ms(item["occurred_at"]), now, "occurred_at")
        except errors.Unprocessable as err:
            err.extra["item"] = i
            raise
    done = append_changes(conn, r, legs_, [[item] for item in items], now=now)
    out = []
    for item, (version, (fill_rep,), rep, books_) in zip(items, done):
        TOPIC.emit(conn, "FillRecorded", aggregate_type="position", aggregate_id=position_id,
                   aggregate_version=version, user_id=user_id, occurred_at=fill_rep["occurred_at"],
                   payload={"position_id": position_id, "fill": fill_rep, "slippage": _money(item.get("slippage")),
                            "leg": leg_state(books_[item["leg_id"]])})
        out.append({"fill": fill_rep, "position": rep})
    return out


# -- close --------------------------------------------------------------------------------
def close_position(conn, user_id: int, position_id: str, data: dict, expected: int) -> dict:
    """Close the position (If-Match ``expected``) and fix its realized P&L (FIFO, net of fees).

    Every leg must be flat, except option legs whose settlement moment has passed by
    ``closed_at``: those are settled as expired worthless first (one LegSettled each) unless
    a recorded settlement price puts them in the money (then settle them explicitly).
    Otherwise ``409 position_not_flat`` naming the leg. ``closed_at`` may not be in the
    future nor before the last fill (422). Emits PositionClosed."""
    from plugins.tradelog import settlement
    r = _row(conn, user_id, position_id, lock=True)
    _refuse_closed(r, "it can't be closed again")
    if r.version != expected:
        cur = _current(conn, user_id, position_id)
        raise errors.VersionConflict(f"version {expected} is stale; current version is {r.version}",
                                     current=cur, current_version=r.version)
    now = utcnow()
    fills_ = _fills(conn, position_id)
    last = max((f["occurred_at"] for f in fills_), default=None)
    # no closed_at: now, or the last fill's time when a client's clock put it a little ahead
    closed_at = to_ms(data.get("closed_at") or max(now, last or now))
    if closed_at > now + CLOCK_SKEW:
        raise errors.field_error("closed_at", f"{closed_at.isoformat()} is in the future")
    if last is not None and closed_at < last:
        raise errors.field_error("closed_at", f"before the position's last fill ({last.isoformat()})")
    legs_ = _legs(conn, [position_id])[position_id]
    rep = position_out(r, legs_)
    for leg in legs_:
        if not leg["open_quantity"]:
            continue
        s = leg_settlement(rep, leg)
        if s is None or closed_at < s["settles_at"]:
            what = "record a closing fill first" if s is None else \
                f"it is alive until its settlement moment {s['settles_at'].isoformat()}: close it with a fill"
            raise errors.Conflict(
                f"leg {leg['id']} ({leg['instrument_type']}) still holds {leg['open_quantity']}; {what}",
                code="position_not_flat", leg_id=leg["id"])
    for leg in legs_:
        if leg["open_quantity"]:
            settlement.expire_on_close(conn, user_id, position_id, leg["id"])
    r = _row(conn, user_id, position_id, lock=True)
    legs_ = _legs(conn, [position_id])[position_id]
    fills_ = _fills(conn, position_id)
    books_ = lots.books(legs_, fills_)
    totals = lots.totals(books_)
    version = versioned_update(
        conn, positions, id_value=position_id, user_id=user_id, expected=r.version,
        values=dict(status="closed", closed_at=closed_at, realized_pnl=totals["realized_pnl"], fees=totals["fees"],
                    initial_risk=derived.initial_risk(legs_, fills_), updated_at=now),
        current=lambda: _current(conn, user_id, position_id))
    rep = _current(conn, user_id, position_id)
    _save_version(conn, rep)
    TOPIC.emit(conn, "PositionClosed", aggregate_type="position", aggregate_id=position_id, aggregate_version=version,
               user_id=user_id, occurred_at=closed_at,
               payload={"position_id": position_id, "realized_pnl": rep["realized_pnl"], "fees": rep["fees"],
           "closed_at": closed_at})
    return rep


# -- marks (for unrealized P&L) -------------------------------------------------------------
def record_marks(conn, user_id: int, position_id: str, data: dict) -> dict:
    """Record market prices of legs (``{marked_at, marks: [{leg_id, price}]}``), for
    unrealized P&L in the snapshot and marked P&L per day. A reference to the market, not
    a change of the position: its version is unchanged. Emits LegsMarked."""
    r = _row(conn, user_id, position_id)
    ids = {leg["id"] for leg in _legs(conn, [position_id])[position_id]}
    bad = {str(i): {"leg_id": ["not a leg of this position"]} for i, m in enumerate(data["marks"]) if m["leg_id"] not in ids}
    if bad:
        raise errors.Unprocessable("marks: not a leg of this position", errors={"json": {"marks": bad}})
    now = utcnow()
    marked_at = to_ms(data.get("marked_at") or now)
    if marked_at > now + CLOCK_SKEW:
        raise errors.field_error("marked_at", "is in the future")
    rows = [dict(id=new_id(), user_id=user_id, position_id=position_id, leg_id=m["leg_id"], price=m["price"],
                 marked_at=marked_at, recorded_at=now) for m in data["marks"]]
    conn.execute(marks.insert(), rows)
    out = {"position_id": position_id, "marked_at": marked_at,
           "marks": [{"leg_id": m["leg_id"], "price": _money(m["price"])} for m in rows]}
    TOPIC.emit(conn, "LegsMarked", aggregate_type="position", aggregate_id=position_id, aggregate_version=r.version,
               user_id=user_id, occurred_at=marked_at,
               payload=out)
    return out


# -- risk artifact references (Pattern A; TradeLog holds no risk math) -------------------
def _artifact_out(r) -> dict:
    return {"position_id": r.position_id, "artifact_id": r.artifact_id, "computed_at": r.computed_at,
            "linked_at": r.linked_at, "position_version": r.position_version}


def link_risk_artifact(conn, user_id: int, position_id: str, data: dict) -> tuple[dict, bool]:
    """Keep a reference to a RiskGraph artifact. Returns ``(reference, created)``; linking
    the same artifact again returns the first reference and emits nothing."""
    r = _row(conn, user_id, position_id, lock=True)
    existing = conn.execute(sa.select(risk_artifacts).where(
        risk_artifacts.c.position_id == position_id, risk_artifacts.c.artifact_id == data["artifact_id"])).first()
    if existing is not None:
        return _artifact_out(existing), False
    now = utcnow()
    version = data.get("source_version")
    conn.execute(risk_artifacts.insert().values(position_id=position_id, artifact_id=data["artifact_id"],
                                                user_id=user_id, computed_at=data["computed_at"], linked_at=now,
                                                position_version=version))
    TOPIC.emit(conn, "RiskArtifactLinked", aggregate_type="position", aggregate_id=position_id,
               aggregate_version=r.version, user_id=user_id,
               payload={"position_id": position_id, "artifact_id": data["artifact_id"],
                        "computed_at": data["computed_at"]})
    return {"position_id": position_id, "artifact_id": data["artifact_id"],
            "computed_at": data["computed_at"], "linked_at": now, "position_version": version}, True


def list_risk_artifacts(conn, user_id: int, position_id: str) -> list[dict]:
    _row(conn, user_id, position_id)
    q = sa.select(risk_artifacts).where(risk_artifacts.c.position_id == position_id,
                                        risk_artifacts.c.user_id == user_id).order_by(risk_artifacts.c.computed_at)
    return [_artifact_out(r) for r in conn.execute(q)]
