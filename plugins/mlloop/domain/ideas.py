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

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

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
        s = 1 if self.direction == "long" else -1
        k = Decimal(self.strike)
        if self.strategy == "single":
            return [(k, self.side, s)]
        w = Decimal(self.width)
        if self.strategy == "vertical":
            other = k + w if self.side == "call" else k - w
            return [(k, self.side, s), (other, self.side, -s)]
        return [(k - w, self.side, s), (k, self.side, -2 * s), (k + w, self.side, s)]

    def value_at_expiry(self, underlying: Decimal | float | int) -> Decimal:
        """The structure's intrinsic value per share at expiry (signed like `debit`)."""
        u = Decimal(str(underlying)) if isinstance(underlying, float) else Decimal(underlying)
        total = Decimal(0)
        for k, right, q in self.legs():
            intrinsic = max(u - k, Decimal(0)) if right == "call" else max(k - u, Decimal(0))
            total += q * intrinsic
        return total

    def pnl_at_expiry(self, underlying: Decimal | float | int) -> Decimal:
        """Money P&L at expiry when entered at `debit` (no fees)."""
        return (self.value_at_expiry(underlying) - Decimal(self.debit)) * MULTIPLIER * self.quantity

