"""The guard against features that only identify the day.

Market-wide features that are (almost) constant within a day -- VIX level, term slope, days
to opex, yesterday's return -- take one value per day. Trained on a few days, a model can use
them as a day id: it learns "day 3 went well" instead of the per-idea signal, and that does
not carry over to new days. A feature is *day-level* when the days explain at least
``min_share`` of its variance (numeric: the between-day share of the variance, the
correlation ratio eta^2; categorical: the share of days on which it takes one value) and it
varies across days at all. While the training data spans fewer than ``min_days`` days,
day-level features are left out of the fit (the report says which and why). Pure.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from plugins.mlloop.ml.data import as_utc_ns

DAY_NS = 86_400 * 10**9


def day_level_shares(frame: pd.DataFrame, features: Sequence[str], cat_features: Sequence[str]
                     ) -> dict[str, float]:
    """Per feature, the share of it the day explains (0..1); features that never vary across
    rows are left out (nothing to identify)."""
    day = as_utc_ns(frame["decision_time"]) // DAY_NS
    cats = set(cat_features)
    out = {}
    for f in features:
        if f not in frame:
            continue
        col = frame[f]
        if f in cats:
            values = col.astype(str).where(col.notna(), "__missing__")
            if values.nunique() < 2:
                continue
            per_day = values.groupby(day).nunique()
            out[f] = float((per_day == 1).mean())
        else:
            x = pd.to_numeric(col, errors="coerce").astype(float)
            ok = x.notna().to_numpy()
            if ok.sum() < 2:
                continue
            x, d = x[ok], day[ok]
            total = float(x.var(ddof=0))
            if not total > 0:
                continue
            between = float(x.groupby(d).transform("mean").var(ddof=0))
            out[f] = min(1.0, between / total)
    return out


def guard(frame: pd.DataFrame, features: Sequence[str], cat_features: Sequence[str], *,
          min_days: int, min_share: float = 0.95) -> tuple[list[str], dict]:
    """(the features to fit, the report). With ``min_days`` 0 the guard is off."""
    n_days = int(len(np.unique(as_utc_ns(frame["decision_time"]) // DAY_NS))) if len(frame) else 0
    shares = day_level_shares(frame, features, cat_features) if min_days else {}
    day_level = sorted(f for f, s in shares.items() if s >= min_share)
    active = bool(min_days) and n_days < min_days
    dropped = day_level if active else []
    kept = [f for f in features if f not in dropped]
    report = {"n_days": n_days, "min_days": min_days, "min_share": min_share, "active": active,
              "day_level": {f: round(shares[f], 4) for f in day_level}, "dropped": dropped}
    return kept, report
