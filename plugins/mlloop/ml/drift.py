"""Feature and score drift between a reference sample (training data) and a current one.

Per feature: PSI always; for numeric features also the two-sample KS statistic and p-value
and the Wasserstein distance normalised by the reference standard deviation; for
categorical ones also the chi-square p-value and the Jensen-Shannon distance. Which of them
decides "drifted" follows Evidently's defaults (see :class:`DriftConfig`), and a dataset
drifts when at least ``drift_share`` of its features do. The report is plain JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from plugins.mlloop.ml.jsonable import jsonable


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds; defaults are Evidently's.

    ``numeric_stattest`` / ``categorical_stattest``: "auto" picks as Evidently does --
    reference with <= ``small_sample`` rows: KS (numeric) / chi-square (categorical), both
    at p < ``p_value``; larger: normalised Wasserstein >= ``wasserstein_threshold`` (numeric)
    / Jensen-Shannon distance >= ``jensenshannon_threshold`` (categorical). A numeric
    feature with <= ``max_categorical_unique`` distinct reference values is treated as
    categorical. Or name one test: "psi", "ks", "wasserstein" / "psi", "chisquare",
    "jensenshannon".
    """

    psi_threshold: float = 0.1
    psi_bins: int = 10
    psi_eps: float = 1e-4
    p_value: float = 0.05
    wasserstein_threshold: float = 0.1
    jensenshannon_threshold: float = 0.1
    drift_share: float = 0.5
    small_sample: int = 1000
    max_categorical_unique: int = 5
    numeric_stattest: str = "auto"
    categorical_stattest: str = "auto"
    score_psi_threshold: float = 0.1


# --------------------------------------------------------------------------- statistics


def psi_from_percents(ref: np.ndarray, cur: np.ndarray, eps: float = 1e-4) -> float:
    """sum((ref - cur) * ln(ref / cur)) with empty buckets set to ``eps`` (Evidently's 1e-4)."""
    r = np.where(np.asarray(ref, float) == 0, eps, ref)
    c = np.where(np.asarray(cur, float) == 0, eps, cur)
    return float(np.sum((r - c) * np.log(r / c)))


def quantile_edges(reference: np.ndarray, bins: int = 10) -> np.ndarray:
    """Inner bin edges at the reference's 1/bins ... (bins-1)/bins quantiles (deduplicated);
    the outer bins are open, so every current value lands somewhere."""
    ref = np.asarray(reference, dtype=float)
    qs = np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def numeric_percents(reference, current, bins: int = 10) -> tuple[np.ndarray, np.ndarray, list]:
    """Share of each sample per reference-quantile bin; bin i holds edges[i-1] <= x < edges[i]."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    edges = quantile_edges(ref, bins)
    nb = len(edges) + 1
    rc = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=nb)
    cc = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=nb)
    return rc / max(len(ref), 1), cc / max(len(cur), 1), edges.tolist()


def categorical_percents(reference, current) -> tuple[np.ndarray, np.ndarray, list]:
    """Share of each category (union of both samples, sorted by str) in each sample."""
    ref = pd.Series(reference).astype(str)
    cur = pd.Series(current).astype(str)
    keys = sorted(set(ref.unique()) | set(cur.unique()))
    rc = ref.value_counts().reindex(keys, fill_value=0).to_numpy()
    cc = cur.value_counts().reindex(keys, fill_value=0).to_numpy()
    return rc / max(len(ref), 1), cc / max(len(cur), 1), keys


def psi(reference, current, *, categorical: bool = False, bins: int = 10,
        eps: float = 1e-4) -> float:
    """Population stability index of ``current`` against ``reference``."""
    if categorical:
        r, c, _ = categorical_percents(reference, current)
    else:
        r, c, _ = numeric_percents(reference, current, bins)
    return psi_from_percents(r, c, eps)


def wasserstein_norm(reference, current) -> float:
    """Wasserstein-1 distance / std(reference) (floored at 0.001, as Evidently does)."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    return float(stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001))


# --------------------------------------------------------------------------- reports


def feature_drift(reference, current, *, categorical: bool | None = None,
                  config: DriftConfig = DriftConfig()) -> dict:
    """Drift statistics for one feature; ``categorical=None`` decides from the dtype."""
    ref = pd.Series(reference).reset_index(drop=True)
    cur = pd.Series(current).reset_index(drop=True)
    if categorical is None:
        categorical = not pd.api.types.is_numeric_dtype(ref) or pd.api.types.is_bool_dtype(ref)
    out: dict = {
        "type": "categorical" if categorical else "numeric",
        "reference_n": int(len(ref)), "current_n": int(len(cur)),
        "reference_missing_share": _share(ref.isna()), "current_missing_share": _share(cur.isna()),
    }
    ref_v, cur_v = ref.dropna(), cur.dropna()
    if len(ref_v) == 0 or len(cur_v) == 0:
        out.update(drifted=False, stattest=None, note="no non-missing values to compare")
        return out
    if not categorical and ref_v.nunique() <= config.max_categorical_unique:
        categorical = True  # few distinct values: compare as categories (Evidently's rule)
        out["treated_as"] = "categorical"
    if categorical:
        r, c, keys = categorical_percents(ref_v, cur_v)
        out["psi"] = psi_from_percents(r, c, config.psi_eps)
        out["categories"] = {k: {"reference": float(a), "current": float(b)}
                             for k, a, b in zip(keys, r, c)}
        expected = np.where(r == 0, config.psi_eps, r)
        expected = expected / expected.sum() * len(cur_v)
        observed = c * len(cur_v)
        out["chisquare_p_value"] = float(stats.chisquare(observed, expected).pvalue)
        out["jensenshannon"] = float(distance.jensenshannon(r, c))
        test = config.categorical_stattest
        if test == "auto":
            test = "chisquare" if len(ref_v) <= config.small_sample else "jensenshannon"
    else:
        x = ref_v.to_numpy(dtype=float)
        y = cur_v.to_numpy(dtype=float)
        r, c, edges = numeric_percents(x, y, config.psi_bins)
        out["psi"] = psi_from_percents(r, c, config.psi_eps)
        out["psi_bin_edges"] = edges
        ks = stats.ks_2samp(x, y)
        out["ks_statistic"] = float(ks.statistic)
        out["ks_p_value"] = float(ks.pvalue)
        out["wasserstein"] = float(stats.wasserstein_distance(x, y))
        out["wasserstein_norm"] = wasserstein_norm(x, y)
        out["reference_mean"], out["current_mean"] = float(x.mean()), float(y.mean())
        test = config.numeric_stattest
        if test == "auto":
            test = "ks" if len(x) <= config.small_sample else "wasserstein"
    out["stattest"] = test
    out["drifted"] = _decide(out, test, config)
    return out


def drift_report(reference: pd.DataFrame, current: pd.DataFrame,
                 features: Sequence[str] | None = None, *,
                 cat_features: Sequence[str] | None = None,
                 reference_scores=None, current_scores=None,
                 config: DriftConfig = DriftConfig()) -> dict:
    """JSON-ready drift report.

    {"drift_detected": dataset_drift or score drift, "dataset_drift": share >= drift_share,
     "share_drifted", "n_features", "n_drifted", "drifted_features": [...],
     "features": {name: feature_drift(...)}, "score": {...} or None, "config": {...}}
    """
    features = list(features) if features is not None else [
        c for c in reference.columns if c in current.columns]
    cats = set(cat_features or [])
    per_feature = {}
    for f in features:
        per_feature[f] = feature_drift(reference[f], current[f],
                                       categorical=True if f in cats else None, config=config)
    drifted = [f for f, r in per_feature.items() if r["drifted"]]
    share = len(drifted) / len(features) if features else 0.0
    dataset_drift = bool(features) and share >= config.drift_share
    score = None
    if reference_scores is not None and current_scores is not None:
        score = score_drift(reference_scores, current_scores, config=config)
    return jsonable({
        "drift_detected": bool(dataset_drift or (score is not None and score["drifted"])),
        "dataset_drift": dataset_drift,
        "share_drifted": share,
        "n_features": len(features),
        "n_drifted": len(drifted),
        "drifted_features": drifted,
        "features": per_feature,
        "score": score,
        "config": asdict(config),
    })


def score_drift(reference_scores, current_scores, *, config: DriftConfig = DriftConfig()) -> dict:
    """PSI of model scores (reference-quantile bins); drifted at >= score_psi_threshold."""
    ref = pd.Series(reference_scores, dtype=float).dropna().to_numpy()
    cur = pd.Series(current_scores, dtype=float).dropna().to_numpy()
    if len(ref) == 0 or len(cur) == 0:
        return {"psi": None, "drifted": False, "threshold": config.score_psi_threshold,
                "reference_n": int(len(ref)), "current_n": int(len(cur))}
    r, c, edges = numeric_percents(ref, cur, config.psi_bins)
    value = psi_from_percents(r, c, config.psi_eps)
    return {"psi": value, "drifted": bool(value >= config.score_psi_threshold),
            "threshold": config.score_psi_threshold, "bin_edges": edges,
            "reference_mean": float(ref.mean()), "current_mean": float(cur.mean()),
            "reference_n": int(len(ref)), "current_n": int(len(cur))}


# --------------------------------------------------------------------------- internals


def _decide(out: dict, test: str, config: DriftConfig) -> bool:
    if test == "psi":
        return out["psi"] >= config.psi_threshold
    if test == "ks":
        return out["ks_p_value"] < config.p_value
    if test == "wasserstein":
        return out["wasserstein_norm"] >= config.wasserstein_threshold
    if test == "chisquare":
        return out["chisquare_p_value"] < config.p_value
    if test == "jensenshannon":
        return out["jensenshannon"] >= config.jensenshannon_threshold
    raise ValueError(f"stattest {test!r} does not apply to a {out['type']} feature")


def _share(mask: pd.Series) -> float:
    return float(mask.mean()) if len(mask) else 0.0


__all__ = ["DriftConfig", "psi", "psi_from_percents", "quantile_edges", "numeric_percents",
           "categorical_percents", "wasserstein_norm", "feature_drift", "drift_report",
           "score_drift"]
