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

from plugins.mlloop.ml import regimes as rg
from plugins.mlloop.ml import walkforward as wf
from plugins.mlloop.ml.calibration import fit_calibration
from plugins.mlloop.ml.data import (
    CLASS_ORDER, GLOBAL, LABEL_COLUMNS, infer_cat_features, iso, prepare_features,
)
from plugins.mlloop.ml.jsonable import jsonable
from plugins.mlloop.ml.model import TrainedModel, catboost_bytes
from plugins.mlloop.ml.skill import base_rates
from plugins.mlloop.ml.walkforward import Rules
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
    window: str = "sliding",
    calibration: str = "auto",
    regime_column: str = "regime",
    min_regime_samples: int = 500,
    regime_min_days: int = 10,
    regime_condition_column: str | None = "bias_direction",
    regime_min_condition_share: float = 0.25,
    regime_min_val_rows: int = 200,
    regime_min_improvement: float | None = 0.01,
    day_feature_min_days: int = 60,
    control: bool = False,
    control_seed: int = 0,
    bootstrap: int = 1000,
    progress: ProgressFn | None = None,
    version: str | None = None,
) -> TrainedModel:
    """Walk-forward evaluate, calibrate and fit the final selector model.

    1. Windows from :func:`walk_forward_windows` (``window``: "sliding" or "expanding");
       ``walkforward.evaluate`` fits and scores each (the day-level guard, eligible regimes'
       sub-models), decides which sub-models earned their place, scores the deployed
       (walk-forward calibrated) forecast against the base rate with a bootstrap bound.
    2. The final calibrator on every window's out-of-sample output (time order).
    3. Final models on all rows: the global model (features through the day-level guard)
       plus the sub-models of regimes that are eligible on all rows and earned their place.
    4. ``control``: the same walk-forward evaluation on labels permuted across rows (seeded,
       no final fit): ``metrics["control"]``, what a useless model scores here.

    ``progress(done, total, message)`` at the start, after each window (the control's too)
    and after the final fit. ``score_column`` is the rule score compared on the same windows.
    Regime and guard knobs: ``walkforward.Rules``; ``regime_min_improvement=None`` keeps
    every eligible sub-model without the held-out test.
    """
    frame = _validate(data, feature_list, score_column, regime_column)
    frame = frame.sort_values("decision_time", kind="mergesort").reset_index(drop=True)
    feature_list = list(feature_list)
    cats = infer_cat_features(frame, feature_list) if cat_features is None else list(cat_features)
    unknown = set(cats) - set(feature_list)
    if unknown:
        raise ValueError(f"cat_features not in feature_list: {sorted(unknown)}")
    hp = {**DEFAULT_PARAMS, **(params or {})}
    rules = Rules(regime_column=regime_column, min_regime_samples=min_regime_samples,
                  regime_min_days=regime_min_days, regime_condition_column=regime_condition_column,
                  regime_min_condition_share=regime_min_condition_share,
                  regime_min_val_rows=regime_min_val_rows,
                  regime_min_improvement=regime_min_improvement,
                  day_feature_min_days=day_feature_min_days, calibration=calibration,
                  bootstrap=bootstrap)
    X = prepare_features(frame, feature_list, cats)
    windows = walk_forward_windows(
        frame, train_days=train_days, val_days=val_days, step_days=step_days, embargo=embargo,
        min_train_samples=min_train_samples, max_windows=max_windows, window=window)
    total = len(windows) * (2 if control else 1) + 1
    done = [0]
    _report(progress, 0, total, f"{len(windows)} walk-forward windows")

    def fit(Xf, y, kcats, loss):
        return _fit_one(Xf, y, kcats, hp, loss)

    def step(label):
        def on_window(i, info):
            done[0] += 1
            _report(progress, done[0], total, f"{label}window {i + 1}/{len(windows)}")
        return on_window

    result = wf.evaluate(frame, X, feature_list, cats, windows, rules, fit,
                         score_column=score_column, on_window=step(""))
    if result.oos_probs is not None:
        cal = fit_calibration(result.oos_probs, result.oos_y, method=calibration)
    else:
        cal = fit_calibration(np.empty((0, 4)), np.empty(0), method=calibration)
    control_summary = None
    if control:
        shuffled = _shuffled(frame, control_seed)
        c = wf.evaluate(shuffled, X, feature_list, cats, windows, rules, fit,
                        score_column=score_column, on_window=step("control "))
        control_summary = {**wf.summary(c), "seed": control_seed}

    kept, guard_final = rules.features(frame, feature_list, cats)
    kcats = [c for c in cats if c in kept]
    eligible = {r for r, i in rules.eligible(frame).items() if i["eligible"]}
    # with no held-out rule every eligible regime keeps its sub-model (the old row-count rule)
    serve = sorted(eligible if regime_min_improvement is None else eligible & result.earned)
    keys = rg.training_keys(frame, regime_column, serve)
    Xk = X[kept]
    tier_final = _fit_routed(Xk, frame["profit_tier"].to_numpy(), keys, kcats, hp, "MultiClass")
    prof_final = _fit_routed(Xk, frame["profitable"].astype(int).to_numpy(), keys, kcats, hp, "Logloss")
    _report(progress, total, total, "final model trained")

    regime_counts = (
        frame[regime_column].astype(str).value_counts().sort_index().to_dict()
        if regime_column in frame else {}
    )
    metrics = {
        "n_windows": len(windows),
        "windows": result.windows,
        "aggregate": _aggregate(result.windows),
        "pooled": result.pooled,
        "held_out": result.held_out,
        "control": control_summary,
        "calibration": cal.decision,
        "regimes": {
            "counts": {str(k): int(v) for k, v in regime_counts.items()},
            "min_samples": min_regime_samples,
            "eligibility": rules.eligible(frame),
            "held_out": result.regimes,
            "models": sorted(k for k in tier_final if k != GLOBAL),
        },
        "day_level_guard": {"final": guard_final, "windows": result.guard},
        "feature_importance": _importance(tier_final[GLOBAL], kept),
        "window_spec": {"window": window, "train_days": train_days, "val_days": val_days,
                        "step_days": step_days, "embargo": str(pd.Timedelta(embargo)),
                        "min_train_samples": min_train_samples, "max_windows": max_windows},
        "rules": rules.spec(),
        # the tier frequencies of the training rows: the base-rate forecast live scores face
        "base_rate": [float(v) for v in base_rates(frame["profit_tier"].to_numpy())],
    }
    model = TrainedModel(
        feature_list=kept,
        cat_features=kcats,
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


def _shuffled(data: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``data`` with its label columns permuted across rows together (seeded)."""
    frame = data.reset_index(drop=True).copy()
    perm = np.random.default_rng(seed).permutation(len(frame))
    cols = [c for c in LABEL_COLUMNS if c in frame]
    frame[cols] = frame[cols].iloc[perm].to_numpy()
    for c in cols:
        frame[c] = frame[c].astype(data[c].dtype)
    return frame


def shuffled_label_control(
    data: pd.DataFrame, feature_list: Sequence[str], *, seed: int = 0, **train_kwargs
) -> TrainedModel:
    """The same pipeline on labels permuted across rows (seeded): AUC should sit at ~0.5.

    The label columns move together (a row keeps a consistent label set) while features,
    times and the rule score stay put, so any skill left over is leakage or overfitting.
    """
    return train_model(_shuffled(data, seed), feature_list, **train_kwargs)



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

