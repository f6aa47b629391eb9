"""Skill of a probabilistic tier forecast against the base-rate forecast.

The multi-class Brier score of a forecast ``p`` (n x K, rows summing to 1) for outcomes
``y`` is ``BS = mean_i sum_k (p_ik - o_ik)^2`` (Brier 1950; summed over the K = 4 tiers, so
it lies in [0, 2]). The reference is the base-rate ("climatology") forecast: every row gets
the tier frequencies of the data the model was trained on. The Brier skill score is
``BSS = 1 - BS / BS_ref`` (Wilks, *Statistical Methods in the Atmospheric Sciences*, 8.4):
> 0 beats the base rate, 0 is no better, < 0 is worse. Per tier the same with the binary
Brier ``(p_k - o_k)^2`` against the base rate of that tier.

"Above zero" must be distinguishable from zero: ``bootstrap_bss`` resamples whole days
(outcomes on one day are correlated, so rows are not independent) and reports a one-sided
lower bound. Pure numpy.
"""
from __future__ import annotations

import numpy as np

from plugins.mlloop.ml.data import CLASS_ORDER, onehot


def base_rates(y) -> np.ndarray:
    """Tier frequencies of ``y`` in class order (a base-rate forecast row)."""
    y = np.asarray(y)
    if len(y) == 0:
        return np.full(len(CLASS_ORDER), 1.0 / len(CLASS_ORDER))
    return onehot(y).mean(axis=0)


def row_brier(y, probs) -> np.ndarray:
    """Per row: the multi-class Brier ``sum_k (p_k - o_k)^2``."""
    return ((np.asarray(probs, float) - onehot(y)) ** 2).sum(axis=1)


def skill(y, probs, reference) -> dict:
    """Brier (multi-class and per tier) of ``probs`` and of ``reference`` (n x 4, or one row
    broadcast), and the skill scores. Empty input -> None values."""
    y = np.asarray(y)
    n = len(y)
    if n == 0:
        return {"n": 0, "brier": None, "brier_base": None, "bss": None,
                "tiers": {str(k): {"brier": None, "brier_base": None, "bss": None} for k in CLASS_ORDER}}
    p = np.asarray(probs, float)
    ref = np.broadcast_to(np.asarray(reference, float), p.shape)
    o = onehot(y)
    per_model = ((p - o) ** 2).mean(axis=0)
    per_base = ((ref - o) ** 2).mean(axis=0)
    bs, bs_ref = float(per_model.sum()), float(per_base.sum())
    tiers = {}
    for i, k in enumerate(CLASS_ORDER):
        tiers[str(k)] = {"brier": float(per_model[i]), "brier_base": float(per_base[i]),
                         "bss": _bss(per_model[i], per_base[i])}
    return {"n": int(n), "brier": bs, "brier_base": bs_ref, "bss": _bss(bs, bs_ref), "tiers": tiers}


def bootstrap_bss(y, probs, reference, day, *, n_boot: int = 1000, alpha: float = 0.05,
                  seed: int = 0) -> dict:
    """Day-block bootstrap of the multi-class BSS: ``n_boot`` resamples of the days (with
    replacement), each BSS = 1 - sum(model Brier) / sum(reference Brier) over the resampled
    days' rows. Returns the ``alpha`` and ``1 - alpha`` quantiles (a one-sided 95% lower
    bound by default) and how many days were resampled. Seeded: deterministic."""
    y = np.asarray(y)
    if len(y) == 0:
        return {"lower": None, "upper": None, "n_days": 0, "n_boot": n_boot, "alpha": alpha}
    model = row_brier(y, probs)
    ref = row_brier(y, np.broadcast_to(np.asarray(reference, float), np.asarray(probs).shape))
    _, d = np.unique(np.asarray(day), return_inverse=True)
    n_days = int(d.max()) + 1
    m_day = np.bincount(d, weights=model, minlength=n_days)
    r_day = np.bincount(d, weights=ref, minlength=n_days)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n_days, size=(n_boot, n_days))
    counts = np.zeros((n_boot, n_days))
    np.add.at(counts, (np.arange(n_boot)[:, None], pick), 1.0)
    num, den = counts @ m_day, counts @ r_day
    with np.errstate(divide="ignore", invalid="ignore"):
        bss = np.where(den > 0, 1.0 - num / den, np.nan)
    bss = bss[np.isfinite(bss)]
    if len(bss) == 0:
        return {"lower": None, "upper": None, "n_days": n_days, "n_boot": n_boot, "alpha": alpha}
    return {"lower": float(np.quantile(bss, alpha)), "upper": float(np.quantile(bss, 1 - alpha)),
            "n_days": n_days, "n_boot": n_boot, "alpha": alpha}


def _bss(bs: float, ref: float) -> float | None:
    return None if ref <= 0 else float(1.0 - bs / ref)
