"""The P&L ledger's path logic, pure: an idea's running state, event by event.

Owns how one ``pnl_events`` row moves a tracked idea's path (cumulative net P&L, running
max / min with the entry counting as 0, trading minutes to the first max and in drawdown)
and whether it triggers a ``tracked_idea_snapshots`` row. Snapshots are event-based, never
time-based flooding; the first rule that applies names the trigger:

* ``fill``: a fill event;
* ``stop_touch``: the first time P&L < -0.5 R;  ``target_touch``: the first time P&L > 2 R;
* ``tier_boundary``: the profit tier (labels.classify_profit_tier) changes, with a 0.05 R
  hysteresis so a P&L hovering on a boundary does not flap;
* ``significant_move``: the underlying moved more than 1% since the idea's last snapshot
  (or its entry);
* ``periodic``: 120 trading minutes without a snapshot (sparse).

Settlement events never snapshot (the settlement row is the final record). The rules match
the simulator's (simulator.py) so a replayed world snapshots where it says it would.
No database, no Flask: service code loads the state, applies events, saves it.
"""
from __future__ import annotations

import dataclasses
import functools
from datetime import date, datetime, timedelta
from decimal import Decimal

from plugins.mlloop.domain.calendar import (
    is_trading_day, session_close_utc, session_date, session_open_utc,
)

EVENT_TYPES = ("mark", "fill", "settlement", "adjustment")
TRIGGER_TYPES = ("fill", "tier_boundary", "stop_touch", "target_touch", "significant_move", "periodic")
STOP_R = Decimal("0.5")
TARGET_R = Decimal("2")
TIER_HYSTERESIS = Decimal("0.05")
SIGNIFICANT_MOVE = Decimal("0.01")
PERIODIC_MINUTES = 120
ZERO = Decimal("0.00")
CENT = Decimal("0.01")


class OutOfOrder(ValueError):
    """An event older than the idea's last event (the ledger is a path: time order)."""


@functools.lru_cache(maxsize=4096)
def _session_bounds(d: date) -> tuple[datetime, datetime] | None:
    if not is_trading_day(d):
        return None
    return session_open_utc(d), session_close_utc(d)


def trading_minutes_between(t0: datetime, t1: datetime) -> int:
    """Whole trading minutes (New York sessions 09:30-16:00, weekdays) between two times."""
    if t1 <= t0:
        return 0
    d, end = session_date(t0), session_date(t1)
    total = 0.0
    while d <= end:
        b = _session_bounds(d)
        if b is not None:
            lo, hi = max(t0, b[0]), min(t1, b[1])
            if hi > lo:
                total += (hi - lo).total_seconds()
        d += timedelta(days=1)
    return int(total // 60)


def tier(pnl: Decimal, risk: Decimal) -> int:
    """classify_profit_tier: 0 <= -0.5R < 1 <= 0 < 2 < +1R <= 3 (no risk: 2 if > 0 else 1)."""
    if risk <= 0:
        return 2 if pnl > 0 else 1
    if pnl <= -STOP_R * risk:
        return 0
    if pnl <= 0:
        return 1
    if pnl < risk:
        return 2
    return 3


@dataclasses.dataclass
class PathState:
    """The running part of a ``tracked_ideas`` row."""
    decision_time: datetime
    entry_spot: Decimal
    risk_unit: Decimal
    cumulative_pnl: Decimal = ZERO
    max_pnl: Decimal = ZERO
    min_pnl: Decimal = ZERO
    time_to_max_pnl: int = 0
    time_in_drawdown: int = 0
    event_count: int = 0
    last_event_time: datetime | None = None
    last_tier: int = 1                     # entry: flat = small_loss
    stop_touched: bool = False
    target_touched: bool = False
    last_snapshot_time: datetime | None = None
    last_snapshot_underlying: Decimal | None = None
    total_fees: Decimal = ZERO
    total_slippage: Decimal = ZERO
    total_adjustments: Decimal = ZERO

    FIELDS = ("cumulative_pnl", "max_pnl", "min_pnl", "time_to_max_pnl", "time_in_drawdown",
              "event_count", "last_event_time", "last_tier", "stop_touched", "target_touched",
              "last_snapshot_time", "last_snapshot_underlying", "total_fees", "total_slippage",
              "total_adjustments")

    @classmethod
    def from_row(cls, row) -> "PathState":
        m = row if isinstance(row, dict) else row._mapping
        return cls(decision_time=m["decision_time"], entry_spot=m["entry_spot"],
                   risk_unit=m["risk_unit"], **{f: m[f] for f in cls.FIELDS})

    def values(self) -> dict:
        return {f: getattr(self, f) for f in self.FIELDS}

    def apply(self, event_type: str, event_time: datetime, pnl_delta: Decimal, fees: Decimal,
              slippage: Decimal, underlying: Decimal) -> str | None:
        """Move the path by one event; return the snapshot trigger (or None)."""
        last = self.last_event_time or self.decision_time
        if event_time < last:
            raise OutOfOrder(f"event at {event_time.isoformat()} is before the idea's last event "
                             f"({last.isoformat()})")
        if self.cumulative_pnl < 0:
            self.time_in_drawdown += trading_minutes_between(last, event_time)
        self.cumulative_pnl += pnl_delta
        cum = self.cumulative_pnl
        self.event_count += 1
        self.last_event_time = event_time
        self.total_fees += fees
        self.total_slippage += slippage
        if event_type == "adjustment":
            self.total_adjustments += pnl_delta
        if cum > self.max_pnl:
            self.max_pnl = cum
            self.time_to_max_pnl = trading_minutes_between(self.decision_time, event_time)
        if cum < self.min_pnl:
            self.min_pnl = cum
        if event_type == "settlement":
            return None
        trigger = self._trigger(event_type, event_time, cum, underlying)
        if trigger is not None:
            self.last_snapshot_time = event_time
            self.last_snapshot_underlying = underlying
        return trigger

    def _trigger(self, event_type, event_time, cum, underlying) -> str | None:
        r = self.risk_unit
        h = TIER_HYSTERESIS * r
        stop = not self.stop_touched and cum < -STOP_R * r
        target = not self.target_touched and cum > TARGET_R * r
        up, down = tier(cum - h, r), tier(cum + h, r)
        new_tier = up if up > self.last_tier else (down if down < self.last_tier else self.last_tier)
        tier_changed = new_tier != self.last_tier
        self.last_tier = new_tier
        self.stop_touched |= stop
        self.target_touched |= target
        ref = self.last_snapshot_underlying or self.entry_spot
        move = bool(ref) and abs(underlying / ref - 1) > SIGNIFICANT_MOVE
        since = self.last_snapshot_time or self.decision_time
        periodic = trading_minutes_between(since, event_time) >= PERIODIC_MINUTES
        if event_type == "fill":
            return "fill"
        for name, hit in (("stop_touch", stop), ("target_touch", target), ("tier_boundary", tier_changed),
                          ("significant_move", move), ("periodic", periodic)):
            if hit:
                return name
        return None


def pnl_percent(unrealized: Decimal, risk: Decimal) -> Decimal:
    if not risk:
        return Decimal("0.0000")
    value = (unrealized * 100 / risk).quantize(Decimal("0.0001"))
    return max(min(value, Decimal("999999.9999")), Decimal("-999999.9999"))
