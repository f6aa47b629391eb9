"""Outcome labels for settled ideas (the seed's section 2).

This module owns the risk unit (the structure's real maximum loss, money), the profit
tier, and `label_outcome`, which turns a settled idea's outcome into every label the seed
lists. Money is Decimal; ratios are floats (they are model targets, not money).

Differences from the seed's sketch (see docs/mlloop-domain.md): the risk unit is the real
max loss in dollars for every structure (the seed mixes a per-share debit with width x 100
and ignores credits), and the time percentages divide by the idea's life in trading
minutes (the seed divides by dte, which is 0 for the most common, same-day ideas).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from optionsmath.decimals import to_decimal

from plugins.mlloop.domain.ideas import TradeIdea, max_loss

TIER_NAMES = ("big_loss", "small_loss", "small_win", "big_win")
BIG_LOSS_R = Decimal("-0.5")   # pnl <= -0.5 R          -> 0 big_loss
#                                -0.5 R < pnl <= 0       -> 1 small_loss (flat is not a win)
BIG_WIN_R = Decimal("1")       # 0 < pnl < 1 R          -> 2 small_win;  pnl >= 1 R -> 3
STOP_R = Decimal("0.5")        # hit_stop:   min_pnl < -0.5 R  (the seed's rule)
TARGET_R = Decimal("2")        # hit_target: max_pnl >  2 R    (the seed's rule)

LABEL_KEYS = (
    "profitable", "profit_tier", "r2r_achieved", "risk_unit",
    "max_favorable_excursion", "max_adverse_excursion",
    "time_to_max_pnl_pct", "time_in_drawdown_pct",
    "hit_stop", "hit_target", "outperformed_median", "cohort_percentile",
)

_CENT = Decimal("0.01")


class UndefinedRisk(ValueError):
    """The structure's maximum loss is unbounded (e.g. a naked short call)."""


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _geometry(idea: Any) -> Any:
    """The object holding the geometry: an IdeaOutcome's idea, or the thing itself."""
    inner = _get(idea, "idea")
    return inner if inner is not None else idea


def compute_risk_unit(idea: Any) -> Decimal:
    """The structure's real maximum loss in dollars (x 100 multiplier x quantity), >= 0.

    single    long:  the debit paid          short put: (strike - credit)
              short call: unbounded -> UndefinedRisk
    vertical  long (debit spread):  the debit      short (credit spread): width - credit
    butterfly long:  the debit                     short: width - credit
    `idea` is a TradeIdea, an IdeaOutcome, or a mapping with strategy, direction, side,
    strike, width, debit (signed: + paid, - received) and quantity. Computed exactly by
    ``optionsmath.payoff_extremes`` over every expiry price (``ideas.max_loss``).
    """
    g = _geometry(idea)
    strategy = _get(g, "strategy")
    if strategy not in ("single", "vertical", "butterfly"):
        raise ValueError(f"no risk unit for strategy {strategy!r}")
    width = _get(g, "width")
    if strategy != "single" and width is None:
        raise ValueError(f"a {strategy} needs a width")
    loss = max_loss(strategy, _get(g, "side"), _get(g, "direction", "long"), _get(g, "strike"),
                    width, _get(g, "debit"), int(_get(g, "quantity", 1) or 1))
    if loss is None:
        raise UndefinedRisk("a naked short call has no maximum loss")
    return loss


def classify_profit_tier(pnl: Any, risk_unit: Any) -> int:
    """0 big_loss (<= -0.5R), 1 small_loss (<= 0), 2 small_win (< +1R), 3 big_win (>= +1R).

    Flat (pnl == 0) is a small loss so that tier >= 2 exactly when `profitable`.
    With no risk unit (<= 0) the R-based cuts are meaningless: 2 if pnl > 0 else 1.
    """
    pnl, r = to_decimal(pnl), to_decimal(risk_unit)
    if r <= 0:
        return 2 if pnl > 0 else 1
    if pnl <= BIG_LOSS_R * r:
        return 0
    if pnl <= 0:
        return 1
    if pnl < BIG_WIN_R * r:
        return 2
    return 3


@dataclass(frozen=True, slots=True)
class IdeaOutcome:
    """What happened to one tracked idea (hypothetical entry at `idea.debit`, no fees)."""

    idea: TradeIdea
    settlement_status: str                 # 'open' | 'settled'
    settlement_pnl: Decimal | None         # dollars, when settled
    max_pnl: Decimal                       # running max of unrealised P&L (>= 0: entry is 0)
    min_pnl: Decimal                       # running min (<= 0)
    time_to_max_pnl_minutes: int           # trading minutes from entry to the first max
    time_in_drawdown_minutes: int          # trading minutes with P&L < 0
    lifetime_minutes: int                  # trading minutes from entry to expiry close
    settled_at: datetime | None = None
    settlement_price: Decimal | None = None  # the underlying's settlement price

    @property
    def idea_id(self) -> str:
        return self.idea.idea_id


class Cohort:
    """Outcomes of the ideas generated at the same time, sorted once for O(log n) labels."""

    __slots__ = ("_sorted",)

    def __init__(self, outcomes: Iterable[Any]):
        self._sorted = sorted(to_decimal(o) for o in outcomes)

    def __len__(self) -> int:
        return len(self._sorted)

    @property
    def median(self) -> Decimal:
        """The seed's median: sorted(outcomes)[len // 2] (the upper median)."""
        return self._sorted[len(self._sorted) // 2]

    def percentile(self, pnl: Any) -> float:
        """Share of the cohort strictly below pnl."""
        return bisect.bisect_left(self._sorted, to_decimal(pnl)) / len(self._sorted)


def _ratio(num: Decimal, den: Decimal) -> float:
    return round(float(num / den), 6) if den else 0.0


def label_outcome(idea: Any, cohort_outcomes: Cohort | Sequence[Any] | None = None) -> dict | None:
    """Every label the seed lists, or None while the idea is not settled.

    `idea` is an IdeaOutcome or a mapping with its fields (a tracked_ideas row: the
    geometry fields at top level or under 'idea'). `cohort_outcomes` are the settlement
    P&Ls of the ideas generated at the same time (a list or a prebuilt Cohort); without
    one, outperformed_median and cohort_percentile are None.
    """
    if _get(idea, "settlement_status") != "settled":
        return None
    final = to_decimal(_get(idea, "settlement_pnl"))
    risk = compute_risk_unit(idea)
    max_profit = to_decimal(_get(idea, "max_pnl") or 0)
    max_loss = to_decimal(_get(idea, "min_pnl") or 0)
    life = int(_get(idea, "lifetime_minutes") or 0)
    t_max = int(_get(idea, "time_to_max_pnl_minutes") or 0)
    t_dd = int(_get(idea, "time_in_drawdown_minutes") or 0)

    labels: dict[str, Any] = {
        "profitable": 1 if final > 0 else 0,
        "profit_tier": classify_profit_tier(final, risk),
        "r2r_achieved": _ratio(final, risk),
        "risk_unit": risk.quantize(_CENT),
        "max_favorable_excursion": _ratio(max_profit, risk),
        "max_adverse_excursion": _ratio(abs(max_loss), risk),
        "time_to_max_pnl_pct": round(t_max / life, 6) if life else 0.0,
        "time_in_drawdown_pct": round(t_dd / life, 6) if life else 0.0,
        "hit_stop": 1 if max_loss < -risk * STOP_R else 0,
        "hit_target": 1 if max_profit > risk * TARGET_R else 0,
        "outperformed_median": None,
        "cohort_percentile": None,
    }
    if cohort_outcomes is not None and len(cohort_outcomes):
        cohort = cohort_outcomes if isinstance(cohort_outcomes, Cohort) else Cohort(cohort_outcomes)
        labels["outperformed_median"] = 1 if final > cohort.median else 0
        labels["cohort_percentile"] = round(cohort.percentile(final), 6)
    return labels
