"""FIFO lots: open quantity, cost basis and realized P&L of each leg, from its fills.

Pure functions (no database, no Flask), money in Decimal. The accounting, in the words of
the trade: every fill in the direction of its leg (buying a long leg, selling a short one)
opens a **lot** at its price with its fees; every fill against the leg's direction closes
the oldest open lots first (**FIFO**, by ``occurred_at``, ties in recording order). A leg's
direction is the sign of its planned ``quantity`` (the intent); its **open quantity** is the
signed sum of its fills. A fill that would carry a leg past flat (sell 5 of a 1-lot long)
raises :class:`PastFlat`.

Realized P&L of a closing fill that closes ``n`` units of a lot, per unit of multiplier ``m``::

    (close_price - lot_price) * n * m * direction   - the lot's fees allocated to those n units
                                                     - the closing fill's own fees

Fees are allocated to the lot they were paid on, pro rata by quantity, rounded to 4 places
with the last unit of a lot taking the remainder, so nothing is lost to rounding: when a leg
is flat, its realized P&L is exactly ``-(sum of price * quantity * m over its fills) -
(sum of fees)`` — the cash flows minus the fees, however the fills were split and ordered.

**Cost basis** of what is open = sum over open lots of ``price * remaining quantity * m``
(signed like a net debit: a short lot's is negative, a credit). **Unrealized P&L** at a mark
= ``(mark - lot_price) * remaining * m`` summed over open lots, minus the fees still sitting
on them, i.e. what closing at the mark (without closing fees) would realize.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal

ZERO = Decimal(0)
Q4 = Decimal("0.0001")


def _d(value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


class PastFlat(ValueError):
    """A fill would carry a leg past flat (or open it against its direction)."""

    def __init__(self, leg_id: str, open_quantity: int, quantity: int, fill_id: str | None):
        self.leg_id, self.open_quantity, self.quantity, self.fill_id = leg_id, open_quantity, quantity, fill_id
        super().__init__(f"a fill of {quantity} would carry leg {leg_id} past flat "
                         f"(open quantity {open_quantity} at that time)")


@dataclasses.dataclass
class Lot:
    fill_id: str | None
    quantity: int          # remaining, signed like the leg
    price: Decimal         # per unit, before the multiplier
    fees: Decimal          # fees still allocated to the remaining quantity
    opened_at: dt.datetime | None


@dataclasses.dataclass
class Closing:
    """What one closing fill realized."""
    fill_id: str | None
    quantity: int          # signed like the fill
    occurred_at: dt.datetime | None
    realized_pnl: Decimal  # net of the lot fees allocated to it and of its own fees
    fees: Decimal          # lot fees allocated + its own fees
    lots: list[tuple[str | None, int]]  # (opening fill id, units closed)


@dataclasses.dataclass
class LegBook:
    leg_id: str
    direction: int         # +1 long, -1 short
    multiplier: int
    lots: list[Lot] = dataclasses.field(default_factory=list)
    closings: list[Closing] = dataclasses.field(default_factory=list)
    realized_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO
    last_fill_at: dt.datetime | None = None

    @property
    def open_quantity(self) -> int:
        return sum(lot.quantity for lot in self.lots)

    @property
    def cost_basis(self) -> Decimal:
        """Signed dollars of the open lots (debit positive, credit negative)."""
        return sum((lot.price * lot.quantity * self.multiplier for lot in self.lots), ZERO)

    @property
    def open_fees(self) -> Decimal:
        return sum((lot.fees for lot in self.lots), ZERO)

    @property
    def average_price(self) -> Decimal | None:
        """Average open price per unit (before the multiplier), 6 places; None when flat."""
        q = self.open_quantity
        if not q:
            return None
        return (sum((lot.price * lot.quantity for lot in self.lots), ZERO) / q).quantize(Decimal("0.000001"))

    def unrealized_pnl(self, mark) -> Decimal:
        mark = _d(mark)
        return sum(((mark - lot.price) * lot.quantity * self.multiplier for lot in self.lots), ZERO) - self.open_fees

    # -- the one mutation -------------------------------------------------------------
    def apply(self, fill: dict) -> Closing | None:
        """Apply one fill (``id, price, quantity, fees, occurred_at``); returns the Closing
        it realized, or None for an opening fill. Raises PastFlat."""
        qty, price, fees = int(fill["quantity"]), _d(fill["price"]), _d(fill.get("fees") or 0)
        at = fill.get("occurred_at")
        self.fees_paid += fees
        self.last_fill_at = at if self.last_fill_at is None or (at and at > self.last_fill_at) else self.last_fill_at
        if qty * self.direction > 0:
            self.lots.append(Lot(fill.get("id"), qty, price, fees, at))
            return None
        if abs(qty) > abs(self.open_quantity):
            raise PastFlat(self.leg_id, self.open_quantity, qty, fill.get("id"))
        left, gross, lot_fees, used = abs(qty), ZERO, ZERO, []
        while left:
            lot = self.lots[0]
            n = min(left, abs(lot.quantity))
            if n == abs(lot.quantity):
                share = lot.fees
            else:
                share = (lot.fees * n / abs(lot.quantity)).quantize(Q4, rounding=ROUND_HALF_EVEN)
            gross += (price - lot.price) * n * self.multiplier * self.direction
            lot_fees += share
            lot.fees -= share
            lot.quantity -= n * self.direction
            used.append((lot.fill_id, n))
            if lot.quantity == 0:
                self.lots.pop(0)
            left -= n
        realized = gross - lot_fees - fees
        self.realized_pnl += realized
        closing = Closing(fill.get("id"), qty, at, realized, lot_fees + fees, used)
        self.closings.append(closing)
        return closing


def fill_order_key(fill: dict, index: int):
    """FIFO order: market time, then recording order (the index in the list given)."""
    at = fill.get("occurred_at")
    return (at is None, at or dt.datetime.min.replace(tzinfo=dt.timezone.utc), index)


def books(legs: list[dict], fills: list[dict]) -> dict[str, LegBook]:
    """One LegBook per leg, every fill applied in FIFO order. ``legs`` need ``id``,
    ``quantity`` (planned, its sign is the direction) and ``multiplier``; ``fills`` need
    ``leg_id, price, quantity, fees, occurred_at`` (and ``id``), in recording order.
    Raises PastFlat for the first fill that would carry its leg past flat."""
    out = {leg["id"]: LegBook(leg["id"], 1 if int(leg["quantity"]) > 0 else -1, int(leg["multiplier"]))
           for leg in legs}
    ordered = sorted(enumerate(fills), key=lambda pair: fill_order_key(pair[1], pair[0]))
    for _, f in ordered:
        book = out.get(f["leg_id"])
        if book is not None:
            book.apply(f)
    return out


def realized_by_fill(books_: dict[str, LegBook]) -> dict[str, Decimal]:
    """Closing fill id -> the realized P&L it booked."""
    return {c.fill_id: c.realized_pnl for b in books_.values() for c in b.closings if c.fill_id is not None}


def totals(books_: dict[str, LegBook]) -> dict:
    """Position-level figures: realized P&L (net of fees), fees paid, fees still on open
    lots, and the cost basis of what is open (the open net debit)."""
    return {"realized_pnl": sum((b.realized_pnl for b in books_.values()), ZERO),
            "fees": sum((b.fees_paid for b in books_.values()), ZERO),
            "open_fees": sum((b.open_fees for b in books_.values()), ZERO),
            "net_debit": sum((b.cost_basis for b in books_.values()), ZERO),
            "flat": all(b.open_quantity == 0 for b in books_.values())}
