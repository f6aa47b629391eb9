"""Per-regime sub-models must earn their place (issue 17).

A regime may get its own sub-model only when its training rows span enough *days* and
*conditions*: at least ``min_samples`` rows on at least ``min_days`` distinct days, and, when
a ``condition_column`` is given (default ``bias_direction``), at least two of its day-level
conditions (a day's most frequent value), the rarer of them on at least ``min_condition_share``
of the regime's days -- a regime seen on five days, four of them bearish, has learned "puts
win", not the regime. An eligible regime's sub-model is then fitted inside every
walk-forward window too and compared with the global model on that regime's held-out rows:
it is kept only if it had at least ``min_val_rows`` of them and its multi-class Brier there is
lower than the global model's by at least ``min_improvement`` (relative). Otherwise the global
model serves the regime. Every number is recorded. Pure.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from plugins.mlloop.ml.data import GLOBAL, as_utc_ns, is_missing

DAY_NS = 86_400 * 10**9


def regime_labels(frame: pd.DataFrame, regime_column: str) -> np.ndarray:
    """Per row the regime as str, or None when missing / no column."""
    if regime_column not in frame:
        return np.full(len(frame), None, dtype=object)
    return np.array([None if is_missing(r) else str(r) for r in frame[regime_column]], dtype=object)


def eligibility(frame: pd.DataFrame, regime_column: str, *, min_samples: int, min_days: int,
                condition_column: str | None = "bias_direction",
                min_condition_share: float = 0.25) -> dict[str, dict]:
    """Per regime present: rows, days, the day conditions and whether it may have a sub-model
    (``eligible``) with the reason when not."""
    regimes = regime_labels(frame, regime_column)
    day = as_utc_ns(frame["decision_time"]) // DAY_NS if len(frame) else np.zeros(0, np.int64)
    cond = (frame[condition_column].astype(str).where(frame[condition_column].notna(), None).to_numpy()
            if condition_column and condition_column in frame else None)
    out = {}
    for r in sorted({x for x in regimes if x is not None}):
        mask = regimes == r
        days = np.unique(day[mask])
        info = {"rows": int(mask.sum()), "days": int(len(days)), "conditions": None}
        reasons = []
        if info["rows"] < min_samples:
            reasons.append(f"{info['rows']} rows < {min_samples}")
        if info["days"] < min_days:
            reasons.append(f"{info['days']} days < {min_days}")
        if cond is not None:
            per_day = pd.Series(cond[mask]).groupby(day[mask]).agg(
                lambda v: v.value_counts().index[0] if v.notna().any() else None)
            counts = per_day.dropna().value_counts()
            info["conditions"] = {str(k): int(v) for k, v in counts.items()}
            if len(counts) < 2:
                reasons.append(f"one {condition_column} condition on all its days")
            elif counts.iloc[-1] / counts.sum() < min_condition_share:
                reasons.append(f"its rarest {condition_column} condition is on "
                               f"{counts.iloc[-1]}/{int(counts.sum())} days < {min_condition_share:.0%}")
        info["eligible"] = not reasons
        info["reason"] = "; ".join(reasons) or None
        out[r] = info
    return out


def training_keys(frame: pd.DataFrame, regime_column: str, eligible) -> np.ndarray:
    """Per row the sub-model key: its regime when eligible, else GLOBAL."""
    regimes = regime_labels(frame, regime_column)
    ok = set(eligible)
    return np.array([r if r in ok else GLOBAL for r in regimes], dtype=object)


def earned(held_out: dict[str, dict], *, min_val_rows: int, min_improvement: float) -> dict[str, dict]:
    """Decide which eligible regimes keep their sub-model. ``held_out[regime]`` has ``n``
    (held-out rows scored by both), ``brier_sub`` and ``brier_global`` (multi-class Brier,
    summed over tiers, on those rows). Returns the decision per regime."""
    out = {}
    for r, h in sorted(held_out.items()):
        n, sub, glob = h.get("n", 0), h.get("brier_sub"), h.get("brier_global")
        if n < min_val_rows or sub is None or glob is None:
            keep, reason = False, f"{n} held-out rows < {min_val_rows}: the global model serves"
        elif sub <= glob * (1.0 - min_improvement):
            keep, reason = True, f"held-out Brier {sub:.4f} <= global {glob:.4f} x (1 - {min_improvement:g})"
        else:
            keep, reason = False, (f"held-out Brier {sub:.4f} not below global {glob:.4f} "
                                   f"x (1 - {min_improvement:g}): the global model serves")
        out[r] = {**h, "kept": keep, "reason": reason}
    return out
