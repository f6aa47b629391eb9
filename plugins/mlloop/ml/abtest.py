"""Champion/challenger experiments: routing, sample-ratio check, evaluation, stopping rules.

Pure functions over plain values and outcome tables. Routing uses SHA-256, not Python's
``hash()`` (salted per process), so every process routes an idea to the same arm. The
evaluation and stopping rules follow the seed's ExperimentManager; the sample-ratio-mismatch
guard is our addition. See docs/mlloop-models.md.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timezone
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import stats

CHAMPION = "champion"
CHALLENGER = "challenger"
ARMS = (CHAMPION, CHALLENGER)

SRM_ALPHA = 0.001  # flag a sample-ratio mismatch below this p-value
SIGNIFICANCE = 0.05  # the seed's winner rule
_BUCKETS = 2**64


def bucket(experiment_id, idea_id) -> float:
    """Stable uniform number in [0, 1) for (experiment, idea): first 8 bytes of
    sha256("<experiment_id>:<idea_id>") as a big-endian integer / 2**64."""
    digest = hashlib.sha256(f"{experiment_id}:{idea_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _BUCKETS


def route(experiment_id, idea_id, traffic_split: float) -> str:
    """"challenger" for a ``traffic_split`` share of ideas, else "champion"; same answer in
    every process and on every call."""
    if not 0.0 <= traffic_split <= 1.0:
        raise ValueError("traffic_split must be in [0, 1]")
    return CHALLENGER if bucket(experiment_id, idea_id) < traffic_split else CHAMPION


def srm_check(observed: Mapping[str, int], expected_shares: Mapping[str, float], *,
              alpha: float = SRM_ALPHA) -> dict:
    """Chi-square goodness of fit of observed arm counts against the declared split.

    Returns {"chi2", "p_value", "mismatch" (p < alpha), "observed", "expected", "alpha"}.
    """
    arms = list(expected_shares)
    counts = np.array([int(observed.get(a, 0)) for a in arms], dtype=float)
    shares = np.array([float(expected_shares[a]) for a in arms])
    if np.any(shares < 0) or not math.isclose(shares.sum(), 1.0, abs_tol=1e-9):
        raise ValueError("expected shares must be non-negative and sum to 1")
    total = counts.sum()
    expected = shares * total
    if total == 0:
        return {"chi2": 0.0, "p_value": 1.0, "mismatch": False, "alpha": alpha,
                "observed": dict(zip(arms, counts.astype(int).tolist())),
                "expected": dict(zip(arms, expected.tolist()))}
    live = shares > 0
    if np.any(counts[~live] > 0):  # traffic in an arm declared empty: as mismatched as it gets
        chi2, p = math.inf, 0.0
    elif live.sum() < 2:
        chi2, p = 0.0, 1.0
    else:
        chi2, p = stats.chisquare(counts[live], expected[live])
    return {"chi2": float(chi2), "p_value": float(p), "mismatch": bool(p < alpha), "alpha": alpha,
            "observed": dict(zip(arms, counts.astype(int).tolist())),
            "expected": dict(zip(arms, expected.tolist()))}


def arm_metrics(outcomes) -> dict:
    """n, win_rate, avg_rar (mean r2r_achieved), max_dd (the seed's: worst
    max_adverse_excursion, if recorded) and max_drawdown (peak-to-trough of cumulative
    r2r_achieved in decision_time order, in risk units)."""
    frame = _frame(outcomes)
    n = len(frame)
    out = {"n": n, "win_rate": None, "avg_rar": None, "max_dd": None, "max_drawdown": None}
    if n == 0:
        return out
    out["win_rate"] = float(frame["profitable"].astype(float).mean())
    r2r = frame["r2r_achieved"].astype(float)
    out["avg_rar"] = float(r2r.mean())
    if "max_adverse_excursion" in frame:
        out["max_dd"] = float(frame["max_adverse_excursion"].astype(float).max())
    if "decision_time" in frame:
        r2r = frame.sort_values("decision_time", kind="mergesort")["r2r_achieved"].astype(float)
    out["max_drawdown"] = max_drawdown(r2r.to_numpy())
    return out


def max_drawdown(returns: Sequence[float]) -> float:
    """Largest peak-to-trough fall of the running sum of ``returns`` (starting from 0)."""
    equity = np.concatenate([[0.0], np.cumsum(np.asarray(returns, dtype=float))])
    return float(np.max(np.maximum.accumulate(equity) - equity))


def evaluate(champion, challenger, *, alpha: float = SIGNIFICANCE) -> dict:
    """The seed's evaluation: Welch's t-test on r2r_achieved, win rates, drawdowns.

    ``champion``/``challenger`` are outcome tables (DataFrame or list of dicts) with
    ``r2r_achieved`` and ``profitable`` (``max_adverse_excursion``, ``decision_time``
    optional). Winner: challenger iff p < alpha and its mean r2r is higher; else champion.
    """
    a, b = _frame(champion), _frame(challenger)
    ma, mb = arm_metrics(a), arm_metrics(b)
    t_stat = p_value = dof = None
    if len(a) >= 2 and len(b) >= 2:
        x = a["r2r_achieved"].to_numpy(dtype=float)
        y = b["r2r_achieved"].to_numpy(dtype=float)
        res = stats.ttest_ind(x, y, equal_var=False)
        t_stat, p_value = float(res.statistic), float(res.pvalue)
        dof = float(getattr(res, "df", np.nan))
        if math.isnan(p_value):  # both arms constant: no evidence either way
            p_value = 1.0
    significant = p_value is not None and p_value < alpha
    challenger_better = (ma["avg_rar"] is not None and mb["avg_rar"] is not None
                         and mb["avg_rar"] > ma["avg_rar"])
    return {
        CHAMPION: ma,
        CHALLENGER: mb,
        "t_stat": _finite(t_stat),
        "p_value": p_value,
        "df": _finite(dof),
        "alpha": alpha,
        "significant": bool(significant),
        "winner": CHALLENGER if (significant and challenger_better) else CHAMPION,
    }


class StoppingDecision(NamedTuple):
    """(stop, reason, result); reason is one of max_duration, insufficient_samples,
    sample_ratio_mismatch, statistical_significance, continue."""

    stop: bool
    reason: str
    result: dict | None = None


def check_stopping(experiment, samples: Mapping[str, Any], now: datetime) -> StoppingDecision:
    """The seed's stopping rules, in order, as a pure function.

    ``experiment`` (mapping or object): started_at, max_duration_days (default 14),
    min_samples_per_arm (100), early_stop_threshold (0.01), traffic_split (optional; enables
    the SRM guard). ``samples``: {"champion": outcomes, "challenger": outcomes}.

    1. running >= max_duration_days -> stop, "max_duration" (result attached when evaluable);
    2. either arm below min_samples_per_arm -> continue, "insufficient_samples";
    3. arm counts inconsistent with traffic_split (SRM, p < 0.001) -> stop,
       "sample_ratio_mismatch": the assignment is broken, so the comparison is not trusted;
    4. Welch p < early_stop_threshold -> stop, "statistical_significance";
    5. otherwise continue, "continue".
    Unpacks as ``stop, reason, result = check_stopping(...)``.
    """
    started = _utc(_get(experiment, "started_at"))
    max_days = _get(experiment, "max_duration_days", 14)
    min_per_arm = _get(experiment, "min_samples_per_arm", 100)
    threshold = _get(experiment, "early_stop_threshold", 0.01)
    split = _get(experiment, "traffic_split", None)
    champion = _frame(samples.get(CHAMPION, []))
    challenger = _frame(samples.get(CHALLENGER, []))

    days_running = (_utc(now) - started).total_seconds() / 86_400
    if days_running >= max_days:
        evaluable = min(len(champion), len(challenger)) >= 2
        result = evaluate(champion, challenger) if evaluable else None
        return StoppingDecision(True, "max_duration", result)
    if min(len(champion), len(challenger)) < min_per_arm:
        return StoppingDecision(False, "insufficient_samples", None)
    result = evaluate(champion, challenger)
    if split is not None:
        srm = srm_check({CHAMPION: len(champion), CHALLENGER: len(challenger)},
                        {CHAMPION: 1.0 - float(split), CHALLENGER: float(split)})
        result["srm"] = srm
        if srm["mismatch"]:
            return StoppingDecision(True, "sample_ratio_mismatch", result)
    if result["p_value"] is not None and result["p_value"] < threshold:
        return StoppingDecision(True, "statistical_significance", result)
    return StoppingDecision(False, "continue", result)


# --------------------------------------------------------------------------- internals


def _frame(outcomes) -> pd.DataFrame:
    if isinstance(outcomes, pd.DataFrame):
        frame = outcomes
    else:
        frame = pd.DataFrame(list(outcomes))
    if len(frame):
        missing = {"r2r_achieved", "profitable"} - set(frame.columns)
        if missing:
            raise ValueError(f"outcomes lack {sorted(missing)}")
    else:
        frame = pd.DataFrame({"r2r_achieved": pd.Series(dtype=float),
                              "profitable": pd.Series(dtype=float)})
    return frame


def _get(obj, name, default=None):
    if isinstance(obj, Mapping):
        value = obj.get(name, default)
    else:
        value = getattr(obj, name, default)
    return default if value is None and default is not None else value


def _utc(ts) -> datetime:
    if ts is None:
        raise ValueError("experiment.started_at is required")
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.to_pydatetime().astimezone(timezone.utc)


def _finite(v):
    return None if v is None or not math.isfinite(v) else v


__all__ = ["CHAMPION", "CHALLENGER", "bucket", "route", "srm_check", "arm_metrics",
           "max_drawdown", "evaluate", "StoppingDecision", "check_stopping"]
