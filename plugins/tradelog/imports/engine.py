"""Executions -> the trade log: grouping into positions and legs, FIFO matching of closing
executions, settlements, rolls, idempotency and the reconciliation report.

Everything goes through the trade log's own service functions (``record_fill``,
``create_position``, the settlement and close rules), so an imported position is exactly what
the API would have recorded: FIFO lots, realized P&L, events on ``tradelog.events``.

How executions become positions (docs/tradelog.md, "Importing executions"):

1. Executions are taken in market-time order and grouped into **orders**: by the file's order
   id where it has one, else by underlying and time (to the second).
2. An execution against the open quantity of a contract (same underlying, instrument, expiry,
   strike, right, multiplier) the user holds **closes** it, FIFO across positions (oldest
   first) — also positions recorded before this import. What it closes beyond the open
   quantity opens the other way, unless the file says it only closes (then the row is bad).
3. The rest **opens**: into the position one order just closed legs of (a **roll**: a new
   position ``rolled_from`` it), else into the one position already holding all of those
   contracts the same way (adding to it), else into a new position with a leg per contract.
4. Expirations, exercises and assignments become **settlements** of the option leg; the
   shares' row of an exercise/assignment is matched to its option row and recorded as the
   settlement's delivery (an unmatched one imports as a trade, with a warning).
5. A position the import leaves flat is closed at its last execution.

Idempotent: each execution's fingerprint is kept on the fill it wrote (unique per user), so a
row already imported — by this file or an overlapping export — is reported as a duplicate and
skipped. The whole import is one transaction (nothing half-written on a crash); a dry run is
rolled back to a savepoint and answers the same report; a bad row rejects the file (422 with
line and column) unless ``skip_bad_rows``, which rolls back just that row's order.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal

import sqlalchemy as sa

from app import errors
from plugins.tradelog import service, settlement
from plugins.tradelog.imports.formats import Execution, RowError, parse
from plugins.tradelog.tables import fills, legs, positions

ZERO = Decimal(0)
NS = uuid.UUID("6f1d3c2a-5b7e-4c1d-9a8e-2f4b6d8c0e1a")  # namespace of the import's stable ids
COLUMNS = {  # the column each format names for a field, in error messages
    "generic": {"quantity": "quantity", "expiry": "expiry", "symbol": "symbol", "price": "price",
                "occurred_at": "occurred_at", "fees": "fees"},
    "ibkr_flex": {"quantity": "Quantity", "expiry": "Expiry", "symbol": "Symbol", "price": "TradePrice",
                  "occurred_at": "DateTime", "fees": "IBCommission"},
    "tastytrade": {"quantity": "Quantity", "expiry": "Expiration Date", "symbol": "Symbol", "price": "Average Price",
                   "occurred_at": "Date", "fees": "Fees"},
}


class ImportRejected(errors.Unprocessable):
    """The file has bad rows: nothing was imported (the rows are listed with line and column)."""
    code = "import_rejected"


@dataclasses.dataclass
class OpenLeg:
    position_id: str
    leg_id: str
    open_quantity: int
    opened_at: dt.datetime


class Book:
    """The user's open legs by contract, kept up to date as the import writes fills."""

    def __init__(self, conn, user_id: int):
        self.by_contract: dict[tuple, list[OpenLeg]] = {}
        self.preexisting: set[str] = set()
        self.held: dict[str, set[str]] = {}  # position id -> its legs with an open quantity
        q = sa.select(legs.c.id, legs.c.position_id, legs.c.instrument_type, legs.c.expiry, legs.c.strike,
                      legs.c.option_right, legs.c.multiplier, legs.c.open_quantity, positions.c.underlying,
                      positions.c.symbol, positions.c.opened_at, positions.c.created_at) \
            .join(positions, positions.c.id == legs.c.position_id) \
            .where(positions.c.user_id == user_id, positions.c.status != "closed", legs.c.open_quantity != 0)
        for r in conn.execute(q):
            self.preexisting.add(r.position_id)
            self.held.setdefault(r.position_id, set()).add(r.id)
            key = contract_key(r.underlying, r.instrument_type, r.expiry, r.strike, r.option_right, r.multiplier)
            self.by_contract.setdefault(key, []).append(
                OpenLeg(r.position_id, r.id, r.open_quantity, r.opened_at or r.created_at))
        for v in self.by_contract.values():
            v.sort(key=lambda x: x.opened_at)

    def holding(self, key: tuple) -> list[OpenLeg]:
        return [x for x in self.by_contract.get(key, []) if x.open_quantity]

    def update(self, key: tuple, position_id: str, leg_id: str, open_quantity: int, at: dt.datetime) -> None:
        held = self.held.setdefault(position_id, set())
        if open_quantity:
            held.add(leg_id)
        else:
            held.discard(leg_id)
        items = self.by_contract.setdefault(key, [])
        for x in items:
            if x.leg_id == leg_id:
                x.open_quantity = open_quantity
                return
        items.append(OpenLeg(position_id, leg_id, open_quantity, at))


def _root(text: str | None) -> str:
    t = (text or "").strip().upper()
    return t[2:] if t.startswith("I:") else t


def contract_key(underlying, instrument, expiry, strike, right, multiplier) -> tuple:
    return (_root(underlying), instrument, expiry, Decimal(str(strike)).normalize() if strike is not None else None,
            right, int(multiplier))


def _key(e: Execution) -> tuple:
    return contract_key(e.underlying, e.instrument_type, e.expiry, e.strike, e.right, e.multiplier)


def _delivered(option: Execution) -> int:
    """Shares an exercise/assignment row delivers: + received, - given."""
    units = abs(option.quantity) * option.multiplier
    return units * (1 if option.right == "call" else -1) * (1 if option.event == "exercise" else -1)


def match_deliveries(executions: list[Execution]) -> dict[int, Execution]:
    """option row line -> the shares' row of the same exercise/assignment (same underlying,
    quantity, strike as price, within three days); those share rows are not trades."""
    options = [e for e in executions if e.instrument_type == "option" and e.event in ("exercise", "assignment")
               and not e.cash_settled]
    shares = [e for e in executions if e.instrument_type == "stock" and e.event in ("exercise", "assignment")]
    out, used = {}, set()
    for o in options:
        for s in shares:
            if s.line in used or _root(s.underlying) != _root(o.underlying) or s.event != o.event:
                continue
            if s.quantity == _delivered(o) and s.price == o.strike \
                    and abs((s.occurred_at - o.occurred_at).total_seconds()) <= 3 * 86400:
                out[o.line] = s
                used.add(s.line)
                break
    return out


def _orders(executions: list[Execution]) -> list[list[Execution]]:
    """Executions grouped by order id, else by underlying and second; in time order."""
    groups: dict[tuple, list[Execution]] = {}
    for e in executions:
        key = ("order", e.order_id) if e.order_id else ("time", _root(e.underlying), e.occurred_at.replace(microsecond=0))
        groups.setdefault(key, []).append(e)
    return sorted(groups.values(), key=lambda g: (g[0].occurred_at, g[0].line))


class Importer:
    def __init__(self, conn, user_id: int, fmt: str, report: dict):
        self.conn, self.user_id, self.fmt, self.report = conn, user_id, fmt, report
        self.cols = COLUMNS[fmt]
        self.book = Book(conn, user_id)
        self.created: set[str] = set()
        self.realized = ZERO
        self.buffer: dict = {}

    def fail(self, e: Execution, field: str, message: str) -> RowError:
        return RowError(e.line, self.cols.get(field, field), message)

    # -- writing -----------------------------------------------------------------------------
    def _fills(self, position_id: str, items: list[tuple]) -> None:
        """Record ``items`` — (execution, leg id, signed quantity, fees, fingerprint) — on one
        position in one go (``service.record_fills``); keeps the book and the report."""
        try:
            done = service.record_fills(self.conn, self.user_id, position_id, [
                {"leg_id": leg_id, "price": e.price, "quantity": qty, "fees": fees, "occurred_at": e.occurred_at,
                 "fingerprint": fp} for e, leg_id, qty, fees, fp in items])
        except (errors.Unprocessable, errors.Conflict) as exc:
            e = items[exc.extra.get("item", 0)][0]
            field = next(iter(((exc.errors or {}).get("json") or {"symbol": 0})), "symbol")
            raise self.fail(e, field, exc.message.split(": ", 1)[-1]) from None
        for (e, leg_id, qty, _, _), out in zip(items, done):
            self.report["fills_recorded"] += 1
            self.realized += out["fill"]["realized_pnl"] or ZERO
            if position_id in self.book.preexisting:
                self.report["fills_matched"].append({"line": e.line, "position_id": position_id, "leg_id": leg_id,
                                                     "quantity": qty, "price": e.price})
            self.book.update(_key(e), position_id, leg_id,
                             next(x["open_quantity"] for x in out["position"]["legs"] if x["id"] == leg_id),
                             e.occurred_at)

    def order(self, group: list[Execution]) -> set[str]:
        """One order's trades; returns the positions it touched."""
        closing: dict[str, list[tuple]] = {}
        opening: list[tuple[Execution, int, Decimal, str]] = []
        planned: dict[str, int] = {}  # leg id -> open quantity after the closings planned so far
        for e in group:
            left, fees, n = e.quantity, e.fees, 0
            if e.open_close != "open":
                for held in self.book.holding(_key(e)):
                    have = planned.get(held.leg_id, held.open_quantity)
                    if not left or not have or have * left > 0:
                        continue
                    take = -have if abs(left) >= abs(have) else left
                    part = fees if take == left else (fees * Decimal(abs(take)) / abs(e.quantity)).quantize(Decimal("0.0001"))
                    fp = e.fingerprint if n == 0 else f"{e.fingerprint}#{n + 1}"
                    closing.setdefault(held.position_id, []).append((e, held.leg_id, take, part, fp))
                    planned[held.leg_id] = have + take
                    left -= take
                    fees -= part
                    n += 1
            if left and e.open_close == "close":
                raise self.fail(e, "quantity", f"closes {abs(left)} more than the open quantity of "
                                               f"{e.root} {e.expiry or ''} {e.strike or ''} {e.right or ''}".rstrip())
            if left:
                opening.append((e, left, fees, e.fingerprint if n == 0 else f"{e.fingerprint}#{n + 1}"))
        for pid, items in closing.items():
            self._fills(pid, items)
        touched = set(closing)
        if opening:
            touched |= self._open(group, opening, set(closing))
        return touched

    def _open(self, group, opening, closed_from: set[str]) -> set[str]:
        first = opening[0][0]
        target, rolled_from = None, None
        keys = {_key(e) for e, *_ in opening}
        if len(closed_from) == 1:
            rolled_from = next(iter(closed_from))
        else:
            holders = {x.position_id for k in keys for x in self.book.holding(k)
                       if x.open_quantity * next(q for e, q, *_ in opening if _key(e) == k) > 0}
            if len(holders) == 1 and all(any(x.position_id in holders for x in self.book.holding(k)) for k in keys):
                target = next(iter(holders))
        if target is None:
            specs, seen = [], {}
            for e, qty, *_ in opening:
                k = _key(e)
                if k in seen:
                    seen[k]["quantity"] += qty
                    continue
                seen[k] = {"instrument_type": e.instrument_type, "expiry": e.expiry, "strike": e.strike,
                           "right": e.right, "quantity": qty, "multiplier": e.multiplier}
                specs.append(seen[k])
            pid = str(uuid.uuid5(NS, f"{self.user_id}:{first.fingerprint}"))
            for i, spec in enumerate(specs):
                spec["id"] = str(uuid.uuid5(NS, f"{pid}:{i}"))
            chain = None
            if rolled_from:
                chain = self.conn.execute(sa.select(positions.c.chain_id).where(
                    positions.c.id == rolled_from)).scalar() or rolled_from
            try:
                created = service.create_position(self.conn, self.user_id, {
                    "symbol": first.root[:20], "underlying": first.underlying[:20], "legs": specs},
                    rolled_from=rolled_from, chain_id=chain, position_id=pid)
            except errors.Unprocessable as exc:
                raise self.fail(first, "expiry", exc.message.split(": ", 1)[-1]) from None
            self.created.add(pid)
            self.report["positions_created"].append({
                "position_id": pid, "symbol": created["symbol"], "underlying": created["underlying"],
                "legs": len(specs), "opened_at": first.occurred_at, "rolled_from": rolled_from, "line": first.line})
            leg_of = {k: spec["id"] for k, spec in seen.items()}
            target = pid
        else:
            leg_of = {}
            for k in keys:
                leg_of[k] = next(x.leg_id for x in self.book.holding(k) if x.position_id == target)
        self._fills(target, [(e, leg_of[_key(e)], qty, fees, fp) for e, qty, fees, fp in opening])
        return {target}

    def settle(self, e: Execution, delivery: Execution | None) -> set[str]:
        units, touched, n = abs(e.quantity), set(), 0
        held_total = sum(abs(x.open_quantity) for x in self.book.holding(_key(e)))
        if held_total < units:
            raise self.fail(e, "symbol", f"{e.event} of {units} {e.root} {e.expiry} {e.strike} {e.right}: only "
                                         f"{held_total} open (the position must be in the trade log or this file)")
        value = None
        if e.cash_settled or (e.event == "expiration" and e.price > 0):
            value = e.strike + e.price if e.right == "call" else e.strike - e.price
        for held in list(self.book.holding(_key(e))):
            if not units:
                break
            take = min(units, abs(held.open_quantity))
            r = service._row(self.conn, self.user_id, held.position_id, lock=True)
            legs_ = service._legs(self.conn, [held.position_id])[held.position_id]
            leg = next(x for x in legs_ if x["id"] == held.leg_id)
            s = service.leg_settlement(service.position_out(r, legs_), leg)
            at = None if e.event == "expiration" or e.cash_settled else min(e.occurred_at, s["settles_at"])
            fps = (e.fingerprint if n == 0 else f"{e.fingerprint}#{n + 1}",
                   (delivery.fingerprint if n == 0 else f"{delivery.fingerprint}#{n + 1}") if delivery else None)
            try:
                done = settlement._settle(self.conn, r, legs_, leg, "expiration" if e.cash_settled else e.event,
                                          occurred_at=at, value=value, quantity=take, fees=e.fees if n == 0 else ZERO,
                                          fingerprints=fps)
            except (errors.Unprocessable, errors.Conflict) as exc:
                field = next(iter((exc.errors or {}).get("json", {})), "symbol") if exc.errors else "symbol"
                raise self.fail(e, field if field in self.cols else "symbol", exc.message) from None
            st = done["settlement"]
            self.realized += (done["position"]["realized_pnl"] or ZERO) - (r.realized_pnl or ZERO)
            self.report["settlements"].append({"line": e.line, "position_id": held.position_id, "leg_id": leg["id"],
                                               "kind": st["kind"], "quantity": st["quantity"], "price": st["price"],
                                               "delivered_quantity": st["delivered_quantity"],
                                               "delivery_line": delivery.line if delivery else None})
            self.report["fills_recorded"] += 1 + (1 if st["delivered_quantity"] else 0)
            for x in done["position"]["legs"]:
                spec = x
                self.book.update(contract_key(r.underlying, spec["instrument_type"], spec["expiry"], spec["strike"],
                                              spec["right"], spec["multiplier"]),
                                 held.position_id, spec["id"], spec["open_quantity"], e.occurred_at)
            touched.add(held.position_id)
            units -= take
            n += 1
        return touched

    def close_flat(self, touched: set[str], at: dt.datetime) -> None:
        for pid in sorted(touched):
            if self.book.held.get(pid):
                continue
            version = service._row(self.conn, self.user_id, pid).version
            closed = service.close_position(self.conn, self.user_id, pid, {"closed_at": at}, expected=version)
            if closed:
                self.report["positions_closed"].append({"position_id": pid, "closed_at": closed["closed_at"],
                                                        "realized_pnl": closed["realized_pnl"]})
                self.book.held.pop(pid, None)


def empty_report(fmt: str, timezone: str, dry_run: bool) -> dict:
    return {"format": fmt, "timezone": timezone, "dry_run": dry_run, "rows": 0, "executions": 0,
            "positions_created": [], "fills_matched": [], "fills_recorded": 0, "settlements": [],
            "positions_closed": [], "duplicates": [], "rejected": [], "warnings": [], "realized_pnl": ZERO}


def run_import(conn, user_id: int, text: str, *, fmt: str, timezone: str, dry_run: bool = False,
               skip_bad_rows: bool = False, progress: Callable[..., None] | None = None) -> dict:
    """Import a broker file's executions for ``user_id`` in ``conn``'s transaction and return
    the reconciliation report (see the module docstring and docs/tradelog.md). Raises
    ``ImportRejected`` (422, every bad row with line and column) unless ``skip_bad_rows``;
    ``progress(fraction, message)`` as orders are applied."""
    report = empty_report(fmt, timezone, dry_run)
    try:
        executions, bad = parse(text, fmt, timezone)
    except RowError as exc:
        raise ImportRejected(f"file: {exc}", errors={"files": {"file": [str(exc)]}},
                             rejected=[exc.as_dict()]) from None
    report["rows"] = len(executions) + len(bad)
    report["executions"] = len(executions)
    rejected = [x.as_dict() for x in bad]
    if bad and not skip_bad_rows:
        _reject(rejected)
    # duplicates: already imported (by this or an earlier file), or twice in this file
    fps = [e.fingerprint for e in executions]
    known: set[str] = set()
    for i in range(0, len(fps), 500):
        known |= set(conn.execute(sa.select(fills.c.fingerprint).where(
            fills.c.user_id == user_id, fills.c.fingerprint.in_(fps[i:i + 500]))).scalars())
    fresh, seen = [], set()
    for e in executions:
        if e.fingerprint in known or e.fingerprint in seen:
            report["duplicates"].append({"line": e.line, "fingerprint": e.fingerprint})
        else:
            fresh.append(e)
            seen.add(e.fingerprint)
    deliveries = match_deliveries(fresh)
    delivery_lines = {d.line for d in deliveries.values()}
    for e in fresh:
        if e.instrument_type == "stock" and e.event in ("exercise", "assignment") and e.line not in delivery_lines:
            report["warnings"].append({"line": e.line, "reason": f"shares of an {e.event} without its option row: "
                                                                 "imported as a trade"})
    sequence = [e for e in fresh if e.line not in delivery_lines]
    savepoint = conn.begin_nested() if dry_run else None
    imp = Importer(conn, user_id, fmt, report)
    units: list[tuple[str, list[Execution]]] = []
    trades = [e for e in sequence if not (e.instrument_type == "option" and e.event != "trade")]
    events = [e for e in sequence if e.instrument_type == "option" and e.event != "trade"]
    for g in _orders(trades):
        units.append(("order", g))
    for e in events:
        units.append(("settle", [e]))
    units.sort(key=lambda u: (u[1][0].occurred_at, 0 if u[0] == "order" else 1, u[1][0].line))
    try:
        with service.buffered(conn) as buf:
            imp.buffer = buf
            _apply(conn, imp, units, deliveries, rejected, skip_bad_rows, progress)
    except BaseException:
        if savepoint is not None and savepoint.is_active:
            savepoint.rollback()
        raise
    report["rejected"] = sorted(rejected, key=lambda x: x["line"])
    report["realized_pnl"] = imp.realized
    if savepoint is not None:
        savepoint.rollback()
    return report


def _apply(conn, imp: Importer, units, deliveries, rejected, skip_bad_rows, progress) -> None:
    """Apply the orders and settlements in time order; a bad one rejects the file, or (with
    ``skip_bad_rows``) is rolled back to its savepoint and listed."""
    for i, (kind, group) in enumerate(units):
        unit = conn.begin_nested() if skip_bad_rows else None
        saved = _state(imp) if unit is not None else None
        try:
            touched = imp.order(group) if kind == "order" else imp.settle(group[0], deliveries.get(group[0].line))
            imp.close_flat(touched, max(e.occurred_at for e in group))
        except RowError as exc:
            if unit is None:
                rejected.append(exc.as_dict())
                _reject(rejected)
            unit.rollback()
            _restore(imp, saved)  # the order is skipped whole: the book and the report forget it too
            rejected.append(exc.as_dict())
            continue
        if unit is not None:
            unit.commit()
        if progress and (i % 50 == 0 or i == len(units) - 1):
            progress((i + 1) / len(units), f"{i + 1} of {len(units)} orders")


def _state(imp: Importer):
    r = imp.report
    return (copy.deepcopy(imp.book.by_contract), copy.deepcopy(imp.book.held), imp.realized,
            {k: len(v) for k, v in r.items() if isinstance(v, list)}, r["fills_recorded"],
            {k: len(v) for k, v in imp.buffer.items()})


def _restore(imp: Importer, saved) -> None:
    imp.book.by_contract, imp.book.held, imp.realized, lengths, imp.report["fills_recorded"], buffered = saved
    for k, n in lengths.items():
        del imp.report[k][n:]
    for k, n in buffered.items():
        del imp.buffer[k][n:]


def _reject(rejected: list[dict]) -> None:
    rows = sorted(rejected, key=lambda x: x["line"])
    first = rows[0]
    raise ImportRejected(
        f"file: {len(rows)} bad row(s), nothing was imported; line {first['line']}, column {first['column']}: "
        f"{first['reason']}", errors={"files": {"file": [f"line {x['line']}, column {x['column']}: {x['reason']}"
                                                        for x in rows[:100]]}}, rejected=rows[:100])

