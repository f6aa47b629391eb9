"""A trade idea's geometry: one candidate structure (single / vertical / butterfly, call / put,
long / short) with its entry price, its legs and its expiry payoff.

Geometry conventions (per share; x100 and x quantity for money):
  single    K                                   long = bought, short = sold
  vertical  call: K and K+W, put: K and K-W     long = buy K / sell the other (a debit
                                                spread), short = the reverse (a credit spread)
  butterfly K-W, K (x2), K+W                    long = buy the wings, sell 2 at K (a debit)
`debit` is the net premium per share, signed: > 0 paid (long), < 0 received (short).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from optionsmath.decimals import to_decimal

STRATEGIES = ("single", "vertical", "butterfly")
SIDES = ("call", "put")
DIRECTIONS = ("long", "short")
STRATEGY_CODE = {name: i for i, name in enumerate(STRATEGIES)}
MULTIPLIER = 100


class InvalidIdea(ValueError):
    """A trade idea whose geometry or price is inconsistent."""


@dataclass(frozen=True, slots=True)
class TradeIdea:
    idea_id: str
    strategy: str                 # 'single' | 'vertical' | 'butterfly'
    side: str                     # 'call' | 'put'
    direction: str                # 'long' (debit) | 'short' (credit)
    strike: Decimal               # anchor strike (see module docstring)
    width: int | None             # points; None for singles
    expiration: date
    dte: int                      # calendar days from decision date to expiration
    debit: Decimal                # net premium per share, signed (+ paid, - received)
    quantity: int = 1
    symbol: str = "SPX"
    score: Decimal | None = None  # the rule score at decision time (original_score)
    decision_time: datetime | None = None
    context_id: str | None = None

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise InvalidIdea(f"strategy must be one of {STRATEGIES}, not {self.strategy!r}")
        if self.side not in SIDES:
            raise InvalidIdea(f"side must be one of {SIDES}, not {self.side!r}")
        if self.direction not in DIRECTIONS:
            raise InvalidIdea(f"direction must be one of {DIRECTIONS}, not {self.direction!r}")
        if self.strategy == "single":
            if self.width not in (None, 0):
                raise InvalidIdea("a single option has no width")
        elif self.width is None or self.width <= 0:
            raise InvalidIdea(f"a {self.strategy} needs a positive width")
        if self.quantity < 1:
            raise InvalidIdea("quantity must be >= 1")
        if self.direction == "long" and self.debit < 0:
            raise InvalidIdea("a long structure is bought: debit must be >= 0")
        if self.direction == "short" and self.debit > 0:
            raise InvalidIdea("a short structure is sold: debit must be <= 0 (a credit)")

    def legs(self) -> list[tuple[Decimal, str, int]]:
        """(strike, right, signed quantity per structure)."""
        return structure_legs(self.strategy, self.side, self.direction, self.strike, self.width)

    def value_at_expiry(self, underlying: Decimal | float | int) -> Decimal:
        """The structure's intrinsic value per share at expiry (signed like `debit`)."""
        from optionsmath.payoff import intrinsic  # numpy: loaded on first use, not at start-up
        u = to_decimal(underlying)
        return sum((q * intrinsic(right, k, u) for k, right, q in self.legs()), Decimal(0))

    def pnl_at_expiry(self, underlying: Decimal | float | int) -> Decimal:
        """Money P&L at expiry when entered at `debit` (no fees)."""
        return (self.value_at_expiry(underlying) - Decimal(self.debit)) * MULTIPLIER * self.quantity


def structure_legs(strategy: str, side: str, direction: str, strike, width) -> list[tuple[Decimal, str, int]]:
    """The legs of a structure: (strike, right, signed quantity per structure), per the
    geometry conventions above."""
    s = 1 if direction == "long" else -1
    k = to_decimal(strike)
    if strategy == "single":
        return [(k, side, s)]
    w = to_decimal(width)
    if strategy == "vertical":
        other = k + w if side == "call" else k - w
        return [(k, side, s), (other, side, -s)]
    return [(k - w, side, s), (k, side, -2 * s), (k + w, side, s)]


@functools.lru_cache(maxsize=1 << 14)
def pnl_range(strategy: str, side: str, direction: str, strike, width, debit, quantity: int = 1
              ) -> tuple[Decimal | None, Decimal | None]:
    """(max profit, max loss) in dollars of the structure entered at ``debit`` per share
    (signed: + paid) x ``MULTIPLIER`` x quantity, as P&L over every expiry price: max loss is
    the lowest P&L (negative for a loss); None where unbounded. ``optionsmath.payoff_extremes``.
    Cached (pure, immutable results): a scoring request bounds-checks each idea and then
    computes its risk unit from the same range."""
    from optionsmath.payoff import payoff_extremes  # numpy: loaded on first use, not at start-up
    legs = [{"right": right, "strike": k, "quantity": q * quantity, "multiplier": MULTIPLIER}
            for k, right, q in structure_legs(strategy, side, direction, strike, width)]
    return payoff_extremes(legs, to_decimal(debit) * MULTIPLIER * quantity)


def max_loss(strategy: str, side: str, direction: str, strike, width, debit, quantity: int = 1
             ) -> Decimal | None:
    """The structure's maximum loss in dollars (x ``MULTIPLIER`` x quantity), >= 0, over every
    expiry price; ``None`` when unbounded (a naked short call). From ``pnl_range``."""
    _, lowest = pnl_range(strategy, side, direction, strike, width, debit, quantity)
    if lowest is None:
        return None
    return max(-lowest, Decimal(0))
