"""Model metrics: ROC AUC (Mann-Whitney), one-vs-rest AUC, Brier per tier, top-k utility, and
every metric of one validation set (``evaluate_predictions``). Pure. See docs/mlloop-models.md.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from plugins.mlloop.ml.data import CLASS_ORDER, as_utc_ns, onehot
from plugins.mlloop.ml.scale import probability_to_score


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Binary ROC AUC (Mann-Whitney U with average ranks for ties); NaN if one class only."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=float)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_ovr_macro(y: np.ndarray, probs: np.ndarray) -> float:
    """One-vs-rest AUC averaged over the tiers present (with both outcomes) in ``y``."""
    aucs = [roc_auc(np.asarray(y) == k, probs[:, i]) for i, k in enumerate(CLASS_ORDER)]
    aucs = [a for a in aucs if not math.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def brier_per_tier(y: np.ndarray, probs: np.ndarray) -> list[float]:
    target = onehot(y)
    return [float(v) for v in np.mean((probs - target) ** 2, axis=0)]


def top_k_utility(
    score: np.ndarray, pnl: np.ndarray, r2r: np.ndarray, day: np.ndarray, k: int
) -> tuple[float, float]:
    """Mean realised (pnl, r2r) of each day's top-k ideas by ``score``, averaged over days.

    Ties are broken by input order, so the figure is deterministic. A day with fewer than k
    ideas contributes all of them.
    """
    frame = pd.DataFrame(
        {"score": np.asarray(score, float), "pnl": np.asarray(pnl, float),
         "r2r": np.asarray(r2r, float), "day": np.asarray(day), "pos": np.arange(len(score))}
    )
    if frame.empty:
        return float("nan"), float("nan")
    frame = frame.sort_values(["day", "score", "pos"], ascending=[True, False, True],
                              kind="mergesort")
    per_day = frame.groupby("day", sort=True).head(k).groupby("day")[["pnl", "r2r"]].mean()
    return float(per_day["pnl"].mean()), float(per_day["r2r"].mean())


def classification_metrics(y: np.ndarray, probs: np.ndarray) -> dict:
    """AUC (OvR macro), accuracy, Brier per tier and precision on the big-loss tier."""
    y = np.asarray(y)
    pred = np.asarray(CLASS_ORDER)[np.argmax(probs, axis=1)]
    out = {"auc_ovr": auc_ovr_macro(y, probs), "accuracy": float(np.mean(pred == y))}
    for k, b in zip(CLASS_ORDER, brier_per_tier(y, probs)):
        out[f"brier_tier_{k}"] = b
    predicted_big_loss = pred == CLASS_ORDER[0]
    n_pred = int(predicted_big_loss.sum())
    out["precision_big_loss"] = (
        float(np.mean(y[predicted_big_loss] == CLASS_ORDER[0])) if n_pred else 0.0
    )
    out["n_predicted_big_loss"] = n_pred
    return out


def evaluate_predictions(
    rows: pd.DataFrame, probs: np.ndarray, p_profitable: np.ndarray | None,
    score_column: str | None,
) -> dict:
    """Every model metric for one validation set (and the rule score's, if given)."""
    y = rows["profit_tier"].to_numpy()
    profitable = rows["profitable"].astype(int).to_numpy()
    pnl = rows["pnl"].to_numpy(dtype=float)
    r2r = rows["r2r_achieved"].to_numpy(dtype=float)
    day = as_utc_ns(rows["decision_time"]) // (86_400 * 10**9)
    ml = probability_to_score(probs)
    out = classification_metrics(y, probs)
    out["n"] = int(len(rows))
    out["auc_profitable"] = roc_auc(profitable, p_profitable) if p_profitable is not None else None
    out["score_auc_profitable"] = roc_auc(profitable, ml)
    for k in (10, 20):
        out[f"top_{k}_pnl"], out[f"top_{k}_r2r"] = top_k_utility(ml, pnl, r2r, day, k)
    out["base_pnl"] = float(np.mean(pnl)) if len(pnl) else float("nan")
    out["base_r2r"] = float(np.mean(r2r)) if len(r2r) else float("nan")
    if score_column is not None:
        rule = rows[score_column].to_numpy(dtype=float)
        out["rule_auc_profitable"] = roc_auc(profitable, rule)
        for k in (10, 20):
            out[f"rule_top_{k}_pnl"], out[f"rule_top_{k}_r2r"] = top_k_utility(
                rule, pnl, r2r, day, k)
    return out
