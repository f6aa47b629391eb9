"""Walk-forward training of the trade-selector models: the CatBoost fits (MultiClass on
``profit_tier`` and Logloss on ``profitable``), per-window and aggregated metrics, the
calibration decision, per-regime models and the shuffled-label control.

Pure (DataFrames in, a :class:`TrainedModel` out): the service layer loads the labelled ideas,
calls :func:`train_model`, and stores ``model.to_blob()``. See docs/mlloop-models.md.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from plugins.mlloop.ml.calibration import fit_calibration
from plugins.mlloop.ml.data import (
    CLASS_ORDER, GLOBAL, LABEL_COLUMNS, infer_cat_features, is_missing, iso, prepare_features,
)
from plugins.mlloop.ml.jsonable import jsonable
from plugins.mlloop.ml.metrics import evaluate_predictions
from plugins.mlloop.ml.model import TrainedModel, catboost_bytes, predict_models
from plugins.mlloop.ml.windows import walk_forward_windows

DEFAULT_PARAMS: dict = {
    "iterations": 200,
    "depth": 6,
    "learning_rate": 0.1,
    "l2_leaf_reg": 3.0,
    "border_count": 128,
    "random_seed": 42,
    "thread_count": 2,
}

ProgressFn = Callable[[int, int, str], None]


def train_model(
    data: pd.DataFrame,
    feature_list: Sequence[str],
    *,
    cat_features: Sequence[str] | None = None,
    score_column: str | None = None,
    params: Mapping | None = None,
    train_days: int = 5,
    val_days: int = 1,
    step_days: int = 1,
    embargo: pd.Timedelta | str = "1D",
    min_train_samples: int = 500,
    max_windows: int | None = None,
    calibration: str = "auto",
    regime_column: str = "regime",
    min_regime_samples: int = 500,
    progress: ProgressFn | None = None,
    version: str | None = None,
) -> TrainedModel:
    """Walk-forward evaluate, calibrate and fit the final selector model.

    1. Windows from :func:`walk_forward_windows`; in each, fit the routed models (global,
       plus one per regime with >= ``min_regime_samples`` training rows) and score the
       validation days: metrics per window, and the out-of-sample probabilities are kept.
    2. :func:`fit_calibration` on the pooled out-of-sample probabilities (time order).
    3. Final routed models on all rows (regimes with >= ``min_regime_samples`` rows).

    ``progress(done, total, message)`` is called once at the start, after each window and
    after the final fit. ``score_column`` is the rule score compared on the same windows.
    """
    frame = _validate(data, feature_list, score_column, regime_column)
    frame = frame.sort_values("decision_time", kind="mergesort").reset_index(drop=True)
    feature_list = list(feature_list)
    cats = infer_cat_features(frame, feature_list) if cat_features is None else list(cat_features)
    unknown = set(cats) - set(feature_list)
    if unknown:
        raise ValueError(f"cat_features not in feature_list: {sorted(unknown)}")
    hp = {**DEFAULT_PARAMS, **(params or {})}
    X = prepare_features(frame, feature_list, cats)
    windows = walk_forward_windows(
        frame, train_days=train_days, val_days=val_days, step_days=step_days,
        embargo=embargo, min_train_samples=min_train_samples, max_windows=max_windows,
    )
    total = len(windows) + 1
    _report(progress, 0, total, f"{len(windows)} walk-forward windows")

    window_metrics: list[dict] = []
    oos_pos: list[np.ndarray] = []
    oos_probs: list[np.ndarray] = []
    oos_prof: list[np.ndarray] = []
    for w in windows:
        train, val = frame.iloc[w.train_idx], frame.iloc[w.val_idx]
        keys_train = _regime_keys_for_training(train, regime_column, min_regime_samples)
        tier_m = _fit_routed(X.iloc[w.train_idx], train["profit_tier"].to_numpy(), keys_train,
                             cats, hp, "MultiClass")
        prof_m = _fit_routed(X.iloc[w.train_idx], train["profitable"].astype(int).to_numpy(),
                             keys_train, cats, hp, "Logloss")
        val_keys = _route(val, regime_column, tier_m)
        probs = predict_models(tier_m, X.iloc[w.val_idx], val_keys)
        p_prof = predict_models(prof_m, X.iloc[w.val_idx], val_keys)[:, 1]
        m = {**w.describe(), "regime_models": sorted(k for k in tier_m if k != GLOBAL)}
        m.update(evaluate_predictions(val, probs, p_prof, score_column))
        window_metrics.append(m)
        oos_pos.append(w.val_idx)
        oos_probs.append(probs)
        oos_prof.append(p_prof)
        _report(progress, w.index + 1, total,
                f"window {w.index + 1}/{len(windows)}: auc_ovr={_fmt(m['auc_ovr'])}")

    pooled: dict = {}
    if oos_pos:
        pos = np.concatenate(oos_pos)
        probs_all = np.concatenate(oos_probs)
        prof_all = np.concatenate(oos_prof)
        # Windows overlap when step < val_days: keep each row's latest out-of-sample prediction.
        last = pd.Series(np.arange(len(pos))).groupby(pos).last().to_numpy()
        order = last[np.argsort(pos[last], kind="mergesort")]  # time order (frame is sorted)
        pos, probs_all, prof_all = pos[order], probs_all[order], prof_all[order]
        pooled = evaluate_predictions(frame.iloc[pos], probs_all, prof_all, score_column)
        cal = fit_calibration(probs_all, frame["profit_tier"].to_numpy()[pos], method=calibration)
    else:
        cal = fit_calibration(np.empty((0, 4)), np.empty(0), method=calibration)

    keys_all = _regime_keys_for_training(frame, regime_column, min_regime_samples)
    tier_final = _fit_routed(X, frame["profit_tier"].to_numpy(), keys_all, cats, hp, "MultiClass")
    prof_final = _fit_routed(X, frame["profitable"].astype(int).to_numpy(), keys_all, cats, hp,
                             "Logloss")
    _report(progress, total, total, "final model trained")

    regime_counts = (
        frame[regime_column].astype(str).value_counts().sort_index().to_dict()
        if regime_column in frame else {}
    )
    metrics = {
        "n_windows": len(windows),
        "windows": window_metrics,
        "aggregate": _aggregate(window_metrics),
        "pooled": pooled,
        "calibration": cal.decision,
        "regimes": {
            "counts": {str(k): int(v) for k, v in regime_counts.items()},
            "min_samples": min_regime_samples,
            "models": sorted(k for k in tier_final if k != GLOBAL),
        },
        "feature_importance": _importance(tier_final[GLOBAL], feature_list),
        "window_spec": {"train_days": train_days, "val_days": val_days, "step_days": step_days,
                        "embargo": str(pd.Timedelta(embargo)),
                        "min_train_samples": min_train_samples, "max_windows": max_windows},
    }
    model = TrainedModel(
        feature_list=feature_list,
        cat_features=cats,
        hyperparameters=hp,
        tier_models={k: catboost_bytes(m) for k, m in tier_final.items()},
        profitable_models={k: catboost_bytes(m) for k, m in prof_final.items()},
        calibration=cal,
        metrics=jsonable(metrics),
        data_range={
            "min_decision_time": iso(frame["decision_time"].min()),
            "max_decision_time": iso(frame["decision_time"].max()),
            "max_label_time": iso(frame["label_time"].max()),
            "rows": int(len(frame)),
        },
        regime_column=regime_column,
        version=version,
    )
    for kind, models in (("tier", tier_final), ("profitable", prof_final)):
        for key, m in models.items():
            model._loaded[(kind, key)] = m
    return model


def shuffled_label_control(
    data: pd.DataFrame, feature_list: Sequence[str], *, seed: int = 0, **train_kwargs
) -> TrainedModel:
    """The same pipeline on labels permuted across rows (seeded): AUC should sit at ~0.5.

    The label columns move together (a row keeps a consistent label set) while features,
    times and the rule score stay put, so any skill left over is leakage or overfitting.
    """
    frame = data.reset_index(drop=True).copy()
    perm = np.random.default_rng(seed).permutation(len(frame))
    cols = [c for c in LABEL_COLUMNS if c in frame]
    frame[cols] = frame[cols].iloc[perm].to_numpy()
    for c in cols:
        frame[c] = frame[c].astype(data[c].dtype)
    return train_model(frame, feature_list, **train_kwargs)



def catboost_classifier(hp: Mapping, loss: str):
    from catboost import CatBoostClassifier

    kwargs = dict(hp)
    kwargs.update(loss_function=loss, verbose=False, allow_writing_files=False)
    if loss == "MultiClass":
        kwargs["class_names"] = list(CLASS_ORDER)
    return CatBoostClassifier(**kwargs)


def _fit_routed(X: pd.DataFrame, y: np.ndarray, keys: np.ndarray, cats: Sequence[str],
                hp: Mapping, loss: str) -> dict:
    """The global model on all rows plus one model per regime key present in ``keys``."""
    models = {GLOBAL: _fit_one(X, y, cats, hp, loss)}
    for key in sorted(set(keys) - {GLOBAL}):
        mask = keys == key
        if len(np.unique(y[mask])) < 2:
            continue  # a one-outcome regime has nothing to learn: the global model serves it
        models[key] = _fit_one(X[mask], y[mask], cats, hp, loss)
    return models


def _fit_one(X, y, cats, hp, loss):
    if len(np.unique(y)) < 2:
        raise ValueError(f"cannot fit {loss}: the training labels have a single value")
    model = catboost_classifier(hp, loss)
    model.fit(X, y, cat_features=list(cats))
    return model


def _regime_keys_for_training(frame: pd.DataFrame, regime_column: str,
                              min_samples: int) -> np.ndarray:
    if regime_column not in frame:
        return np.full(len(frame), GLOBAL, dtype=object)
    regimes = np.array([None if is_missing(r) else str(r) for r in frame[regime_column]],
                       dtype=object)
    counts = pd.Series(regimes).value_counts(dropna=True)
    eligible = {r for r, c in counts.items() if c >= min_samples}
    return np.array([r if r in eligible else GLOBAL for r in regimes], dtype=object)


def _route(frame: pd.DataFrame, regime_column: str, models: Mapping) -> np.ndarray:
    if regime_column not in frame:
        return np.full(len(frame), GLOBAL, dtype=object)
    return np.array([str(r) if (not is_missing(r) and str(r) in models) else GLOBAL
                     for r in frame[regime_column]], dtype=object)




def _importance(model, feature_list: Sequence[str]) -> dict:
    values = model.get_feature_importance()
    pairs = sorted(zip(feature_list, values), key=lambda p: -p[1])
    return {name: float(v) for name, v in pairs}


def _aggregate(window_metrics: list[dict]) -> dict:
    """Mean over windows of every numeric metric (NaNs ignored)."""
    skip = {"window", "n_train", "n_val", "n_purged", "n_embargoed"}
    keys = [k for k, v in (window_metrics[0].items() if window_metrics else [])
            if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {}
    for k in keys:
        vals = np.array([w[k] for w in window_metrics if w.get(k) is not None], dtype=float)
        vals = vals[~np.isnan(vals)]
        out[k] = float(vals.mean()) if len(vals) else None
    return out


def _validate(data: pd.DataFrame, feature_list, score_column, regime_column) -> pd.DataFrame:
    required = {"decision_time", "label_time", "idea_id", *LABEL_COLUMNS}
    if score_column:
        required.add(score_column)
    missing = required - set(data.columns)
    if missing:
        raise ValueError(f"training data lacks columns: {sorted(missing)}")
    absent = [f for f in feature_list if f not in data.columns]
    if absent:
        raise ValueError(f"feature_list names columns not in the data: {absent}")
    if not len(feature_list):
        raise ValueError("feature_list is empty")
    tiers = set(pd.unique(data["profit_tier"]))
    if not tiers <= set(CLASS_ORDER):
        raise ValueError(f"profit_tier must be in {CLASS_ORDER}, "
                         f"found {sorted(tiers - set(CLASS_ORDER))}")
    frame = data.copy()
    for c in ("decision_time", "label_time"):
        frame[c] = pd.to_datetime(frame[c], utc=True)
    if frame["decision_time"].isna().any():
        raise ValueError("decision_time has missing values")
    return frame



def _report(progress: ProgressFn | None, done: int, total: int, message: str) -> None:
    if progress is not None:
        progress(done, total, message)


def _fmt(v) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

