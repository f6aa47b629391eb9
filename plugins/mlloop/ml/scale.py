"""The score scale: tier probabilities -> the 0..100 ML score (the seed's mapping), the
confidence of a forecast, and the rules/ML blend. Pure numpy.

The ML score is not a probability: it is ``clamp(50 + 50 * EV, 0, 100)`` with
``EV = -1 p0 + 0 p1 + 0.5 p2 + 1 p3`` over the calibrated tier forecast (docs/mlloop-models.md).
"""
from __future__ import annotations

import math

import numpy as np

# big_loss, small_loss, small_win, big_win (the seed's InferenceEngine._probability_to_score)
TIER_WEIGHTS: tuple[float, float, float, float] = (-1.0, 0.0, 0.5, 1.0)


def probability_to_score(probs):
    """Tier probabilities -> 0..100 score: clamp(50 + 50 * EV, 0, 100), EV = sum p_k * w_k.

    ``probs`` is one vector of 4 (returns a float) or an (n, 4) array (returns an array).
    The sum is evaluated left to right in both cases, so one row scores bit-identically
    alone or inside a batch.
    """
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1:
        return float(score_rows(p[None, :])[0])
    return score_rows(p)


def confidence(probs):
    """1 - normalised entropy of the tier probabilities: 1 = certain, 0 = uniform.

    Chosen over max-probability because it uses the whole distribution (a 0.5/0.5 split
    between the two loss tiers is less uncertain than 0.5 spread over three tiers).
    """
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1:
        return float(confidence_rows(p[None, :])[0])
    return confidence_rows(p)


def blend(original, ml, weight: float):
    """(1 - weight) * original + weight * ml. Weight 0 (shadow) or no ML score -> original,
    returned unchanged (not recomputed), so shadow mode cannot perturb the ranking."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight must be in [0, 1], got {weight}")
    if weight == 0.0 or ml is None:
        return original
    if isinstance(ml, float) and math.isnan(ml):
        return original
    return (1.0 - weight) * original + weight * ml



_WEIGHTS = np.asarray(TIER_WEIGHTS)
_LOG_K = math.log(len(TIER_WEIGHTS))


def score_rows(p: np.ndarray) -> np.ndarray:
    # Row sums of 4 terms reduce left to right whatever n is, so a row scores the same alone
    # or in a batch (tested).
    return np.clip(50.0 + (p * _WEIGHTS).sum(axis=1) * 50.0, 0.0, 100.0)


def confidence_rows(p: np.ndarray) -> np.ndarray:
    t = p * np.log(np.where(p > 0, p, 1.0))  # 0 * log 0 = 0
    return np.clip(1.0 + t.sum(axis=1) / _LOG_K, 0.0, 1.0)



def blend_array(original, ml, weight):
    if original is None:
        return None
    if weight == 0.0:
        return original
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight must be in [0, 1], got {weight}")
    return np.where(np.isnan(ml), original, (1.0 - weight) * original + weight * ml)

