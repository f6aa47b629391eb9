"""A generated idea stream for the model tests (not the project's simulator): the outcome
depends on a per-idea signal -- whether the idea's side agrees with the market bias the idea
was scored under (``bias_lfi``, a feature the loop records) -- with a tunable strength, and a
regime calendar in which one regime's early days are one-sided (mostly bearish) and its later
days bullish, so a sub-model fitted on its early days learns "puts win" and is wrong later.
Day-level market features (VIX level, term slope, days to opex, yesterday's return) are
(nearly) constant within a day, so on few days they identify the day."""
from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ["side", "strategy_type", "direction", "bias_lfi", "bias_direction", "vix_level",
            "vix_regime", "vix_term_slope", "days_to_monthly_opex", "spot_1d_return", "dte",
            "minutes_since_open", "original_score"]
CATS = ["side", "strategy_type", "direction", "bias_direction", "vix_regime"]
DAY_LEVEL = ["vix_level", "vix_regime", "vix_term_slope", "days_to_monthly_opex", "spot_1d_return"]
ONE_SIDED = "chaos"


def make_stream(seed: int = 0, days: int = 30, per_day: int = 100, signal: float = 1.5,
                split_day: int = 20, one_sided_days: int = 5) -> pd.DataFrame:
    """Settled ideas, one row each, with the labels the loop trains on. Before ``split_day``
    the one-sided regime has ``one_sided_days`` days, all bearish; after it a third
    of the days are that regime, all bullish."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2025-01-06", periods=days, tz="UTC")
    regime = np.where(rng.random(days) < 0.35, "goldilocks_2", "goldilocks_1").astype(object)
    early = rng.choice(np.arange(split_day), one_sided_days, replace=False)
    late = rng.choice(np.arange(split_day, days), max(2, (days - split_day) // 3), replace=False)
    regime[early] = ONE_SIDED
    regime[late] = ONE_SIDED
    bias = rng.normal(0, 0.6, days)
    for j, d in enumerate(sorted(early)):
        bias[d] = -abs(bias[d]) - 0.4
    bias[late] = np.abs(bias[late]) + 0.3
    vix_of = {"goldilocks_1": 16.0, "goldilocks_2": 23.0, ONE_SIDED: 34.0}
    frames = []
    for i, day in enumerate(dates):
        n = per_day
        t = day + pd.Timedelta(hours=14, minutes=30) + pd.to_timedelta(
            np.sort(rng.integers(0, 390 * 60, n)), unit="s")
        lfi = np.tanh(bias[i] + 0.5 * rng.normal(size=n))
        side = rng.choice(["call", "put"], n)
        agree = np.where(side == "call", 1.0, -1.0) * lfi
        r2r = 0.6 * (signal * agree + rng.normal(size=n)) + 0.3 * rng.normal(size=n)
        frames.append(pd.DataFrame({
            "idea_id": [f"s{seed}-{i}-{k}" for k in range(n)], "decision_time": t,
            "label_time": day + pd.Timedelta(hours=21), "regime": regime[i], "vix_regime": regime[i],
            "side": side, "strategy_type": rng.choice(["single", "vertical", "butterfly"], n),
            "direction": "long", "bias_lfi": np.round(lfi, 4),
            "bias_direction": np.where(lfi > 0.2, "bullish", np.where(lfi < -0.2, "bearish", "neutral")),
            "vix_level": np.round(vix_of[regime[i]] + rng.normal(0, 1.5) + 0.2 * rng.normal(size=n), 2),
            "vix_term_slope": np.round(rng.normal(0.05, 0.03) + 0.002 * rng.normal(size=n), 4),
            "days_to_monthly_opex": (18 - i) % 21,
            "spot_1d_return": np.round(rng.normal(0, 0.01) + 0.0005 * rng.normal(size=n), 6),
            "dte": rng.integers(0, 5, n), "minutes_since_open": rng.integers(0, 390, n),
            "original_score": np.round(50 + 10 * rng.normal(size=n), 2),
            "profit_tier": np.select([r2r <= -0.5, r2r <= 0, r2r < 1.0], [0, 1, 2], 3),
            "profitable": (r2r > 0).astype(int), "r2r_achieved": r2r, "pnl": 100 * r2r,
        }))
    return pd.concat(frames, ignore_index=True)


def split(frame: pd.DataFrame, n_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the first ``n_days`` days, the rest)."""
    day = frame["decision_time"].dt.floor("D")
    cut = sorted(day.unique())[n_days]
    return frame[day < cut].reset_index(drop=True), frame[day >= cut].reset_index(drop=True)
