"""Walk-forward training of the trade-selector models (pure: DataFrames in, bytes out).

Owns: the walk-forward windows with purging and embargo, the CatBoost fits (MultiClass on
``profit_tier`` and Logloss on ``profitable``), the per-window and aggregated metrics, the
probability calibration decision, per-regime models, and :class:`TrainedModel`, whose
``to_blob()``/``from_blob()`` is the only serialised form the registry stores.

No Flask, database or bus here: the service layer loads the labelled ideas, calls
:func:`train_model`, and stores ``model.to_blob()``. See docs/mlloop-models.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

# Profit tiers, worst first (the seed's classify_profit_tier): the class order of every
# probability vector this package produces.
CLASS_ORDER: tuple[int, ...] = (0, 1, 2, 3)
TIER_NAMES: tuple[str, ...] = ("big_loss", "small_loss", "small_win", "big_win")
LABEL_COLUMNS: tuple[str, ...] = ("profit_tier", "profitable", "r2r_achieved", "pnl")
GLOBAL = "__global__"  # key of the model used for every regime without its own
# What a missing categorical value becomes, in training and in scoring.
MISSING_CATEGORY = "__missing__"

DEFAULT_PARAMS: dict = {
    "iterations": 200,
    "depth": 6,
    "learning_rate": 0.1,
    "l2_leaf_reg": 3.0,
    "border_count": 128,
    "random_seed": 42,
    "thread_count": 2,
}

BLOB_FORMAT = "tradeloop.mlloop.model/1"

ProgressFn = Callable[[int, int, str], None]


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Window:
    """One walk-forward split. Index arrays are positions (``iloc``) into the input frame."""

    index: int
    train_start: pd.Timestamp
    val_start: pd.Timestamp  # also the (exclusive) end of the training range
    val_end: pd.Timestamp  # exclusive
    train_idx: np.ndarray
    val_idx: np.ndarray
    purged_idx: np.ndarray
    embargoed_idx: np.ndarray

    def describe(self) -> dict:
        return {
            "window": self.index,
            "train_start": _iso(self.train_start),
            "val_start": _iso(self.val_start),
            "val_end": _iso(self.val_end),
            "n_train": int(len(self.train_idx)),
            "n_val": int(len(self.val_idx)),
            "n_purged": int(len(self.purged_idx)),
            "n_embargoed": int(len(self.embargoed_idx)),
        }


def purge_and_embargo(
    decision_time: pd.Series | np.ndarray,
    label_time: pd.Series | np.ndarray,
    train_idx: np.ndarray,
    val_start: pd.Timestamp,
    val_end: pd.Timestamp,
    embargo: pd.Timedelta = pd.Timedelta(0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split candidate training positions into (kept, purged, embargoed).

    Purged: the row's information interval ``[decision_time, label_time]`` overlaps the
    validation interval ``[val_start, val_end)`` -- i.e. ``decision_time < val_end`` and
    ``label_time >= val_start``. A missing label_time counts as "not known yet" (+inf).
    Embargoed: not purged, and ``val_end <= decision_time < val_end + embargo`` (López de
    Prado's embargo on rows just after the test set, whose features may still carry the
    test period's information through serial correlation).
    """
    dt = _as_utc_ns(decision_time)
    lt = _as_utc_ns(label_time)
    idx = np.asarray(train_idx, dtype=np.int64)
    d = dt[idx]
    lab = lt[idx]
    vs, ve = _ns(val_start), _ns(val_end)
    emb = int(pd.Timedelta(embargo).value)
    label_unknown = lab == _NAT
    overlaps = (d < ve) & ((lab >= vs) | label_unknown)
    embargoed = ~overlaps & (d >= ve) & (d < ve + emb)
    kept = ~overlaps & ~embargoed
    return idx[kept], idx[overlaps], idx[embargoed]


def walk_forward_windows(
    data: pd.DataFrame,
    *,
    train_days: int = 5,
    val_days: int = 1,
    step_days: int = 1,
    embargo: pd.Timedelta | str = "1D",
    min_train_samples: int = 0,
    max_windows: int | None = None,
) -> list[Window]:
    """Walk-forward windows over the trading days present in ``data.decision_time``.

    Days are UTC dates that have at least one idea (so weekends and holidays do not eat a
    window). Window *i* trains on ``train_days`` days, validates on the next ``val_days``
    days, and the next window starts ``step_days`` later. Training rows are then purged and
    embargoed against the validation interval (:func:`purge_and_embargo`), so no training
    row's label_time reaches the validation start. Windows whose training set ends up
    smaller than ``min_train_samples`` or whose validation set is empty are skipped.
    ``max_windows`` keeps the most recent ones.
    """
    if train_days < 1 or val_days < 1 or step_days < 1:
        raise ValueError("train_days, val_days and step_days must be >= 1")
    dt = _as_utc_ns(data["decision_time"])
    lt = _as_utc_ns(data["label_time"]) if "label_time" in data else np.full(len(dt), _NAT)
    day_ns = 86_400 * 10**9
    days = np.unique(dt // day_ns) * day_ns
    embargo = pd.Timedelta(embargo)
    windows: list[Window] = []
    last_start = len(days) - train_days - val_days
    for start in range(0, last_start + 1, step_days):
        train_start = days[start]
        val_start = days[start + train_days]
        val_end = days[start + train_days + val_days - 1] + day_ns
        candidates = np.flatnonzero((dt >= train_start) & (dt < val_start))
        kept, purged, embargoed = purge_and_embargo(
            dt, lt, candidates, _ts(val_start), _ts(val_end), embargo
        )
        val_idx = np.flatnonzero((dt >= val_start) & (dt < val_end))
        if len(kept) < max(min_train_samples, 1) or len(val_idx) == 0:
            continue
        windows.append(
            Window(len(windows), _ts(train_start), _ts(val_start), _ts(val_end),
                   kept, val_idx, purged, embargoed)
        )
    if max_windows is not None and len(windows) > max_windows:
        windows = windows[len(windows) - max_windows:]
        windows = [
            Window(i, w.train_start, w.val_start, w.val_end, w.train_idx, w.val_idx,
                   w.purged_idx, w.embargoed_idx)
            for i, w in enumerate(windows)
        ]
    return windows


# --------------------------------------------------------------------------- metrics


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
    onehot = _onehot(y)
    return [float(v) for v in np.mean((probs - onehot) ** 2, axis=0)]


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


# --------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    """Per-tier probability calibration plus the record of why it is (not) applied.

    ``method`` is "none", "isotonic", "platt" or "temperature". ``params`` holds plain
    floats/lists only, so the whole object is JSON.
    """

    method: str = "none"
    params: dict = field(default_factory=dict)
    decision: dict = field(default_factory=dict)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrate an (n, 4) or (4,) probability array; rows renormalised to sum to 1."""
        if self.method == "none":
            return probs
        p = np.asarray(probs, dtype=float)
        single = p.ndim == 1
        if single:
            p = p[None, :]
        arrays = self._arrays()
        if self.method == "temperature":
            z = np.log(np.maximum(p, _P_EPS)) * arrays["inv_t"]
            z -= z.max(axis=1, keepdims=True)
            q = np.exp(z)
        elif self.method == "platt":
            q = _sigmoid(arrays["a"] * _logit(p) + arrays["b"])
        elif self.method == "isotonic":
            q = np.empty_like(p)
            for i, (xs, ys) in enumerate(arrays["knots"]):
                q[:, i] = np.interp(p[:, i], xs, ys)
        else:
            raise ValueError(f"unknown calibration method {self.method!r}")
        q = np.maximum(q, _P_EPS)
        q /= q.sum(axis=1, keepdims=True)
        return q[0] if single else q

    def _arrays(self) -> dict:
        # Parameters as numpy once, not per call: the fast path applies this per idea.
        cached = self.__dict__.get("_cache")
        if cached is None:
            cached = {}
            if self.method == "temperature":
                cached["inv_t"] = 1.0 / self.params["temperature"]
            elif self.method == "platt":
                cached["a"] = np.asarray(self.params["a"], dtype=float)
                cached["b"] = np.asarray(self.params["b"], dtype=float)
            elif self.method == "isotonic":
                cached["knots"] = [(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
                                   for x, y in zip(self.params["x"], self.params["y"])]
            self.__dict__["_cache"] = cached
        return cached

    def to_json(self) -> dict:
        return {"method": self.method, "params": self.params, "decision": self.decision}

    @classmethod
    def from_json(cls, data: Mapping) -> "Calibration":
        return cls(data["method"], dict(data["params"]), dict(data["decision"]))


CALIBRATION_METHODS = ("isotonic", "platt", "temperature")


def fit_calibrator(method: str, probs: np.ndarray, y: np.ndarray) -> Calibration:
    """Fit one calibration method on (probs, y) with no decision logic."""
    p = np.asarray(probs, dtype=float)
    onehot = _onehot(y)
    if method == "none":
        return Calibration("none")
    if method == "isotonic":
        xs, ys = [], []
        for i in range(p.shape[1]):
            x_knots, y_knots = _isotonic_fit(p[:, i], onehot[:, i])
            xs.append(x_knots)
            ys.append(y_knots)
        return Calibration("isotonic", {"x": xs, "y": ys})
    if method == "platt":
        a_s, b_s = [], []
        for i in range(p.shape[1]):
            a, b = _platt_fit(_logit(p[:, i]), onehot[:, i])
            a_s.append(a)
            b_s.append(b)
        return Calibration("platt", {"a": a_s, "b": b_s})
    if method == "temperature":
        logp = np.log(np.clip(p, _P_EPS, 1.0))
        yi = np.argmax(onehot, axis=1)

        def nll(log_t: float) -> float:
            z = logp / math.exp(log_t)
            z -= z.max(axis=1, keepdims=True)
            lse = np.log(np.exp(z).sum(axis=1))
            return float(np.mean(lse - z[np.arange(len(z)), yi]))

        res = optimize.minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
        return Calibration("temperature", {"temperature": float(math.exp(res.x))})
    raise ValueError(f"unknown calibration method {method!r}")


def fit_calibration(
    probs: np.ndarray,
    y: np.ndarray,
    *,
    method: str = "auto",
    fit_fraction: float = 0.5,
    min_rows: int = 200,
) -> Calibration:
    """Choose and fit a calibration on held-out predictions, applying it only if it helps.

    ``probs``/``y`` must be out-of-sample predictions in time order. The first
    ``fit_fraction`` of rows fits each candidate (``method="auto"``: isotonic, Platt and
    temperature; otherwise just ``method``); the rest is the evaluation slice. The candidate
    with the lowest mean per-tier Brier on the evaluation slice is applied only if that is
    strictly lower than the uncalibrated Brier on the same slice; it is then refitted on all
    rows. Otherwise the result is method "none". Either way ``decision`` records the numbers.
    """
    p = np.asarray(probs, dtype=float)
    y = np.asarray(y)
    n = len(y)
    decision: dict = {"n_rows": int(n), "requested": method}
    if method == "none":
        decision.update(applied=False, reason="calibration disabled")
        return Calibration("none", {}, decision)
    n_fit = int(n * fit_fraction)
    if n < min_rows or n_fit < 2 or n - n_fit < 2:
        decision.update(applied=False, reason=f"fewer than {min_rows} held-out predictions")
        return Calibration("none", {}, decision)
    p_fit, y_fit, p_eval, y_eval = p[:n_fit], y[:n_fit], p[n_fit:], y[n_fit:]
    before = brier_per_tier(y_eval, p_eval)
    candidates = CALIBRATION_METHODS if method == "auto" else (method,)
    results = {}
    for m in candidates:
        cal = fit_calibrator(m, p_fit, y_fit)
        results[m] = brier_per_tier(y_eval, cal.apply(p_eval))
    best = min(candidates, key=lambda m: (float(np.mean(results[m])), candidates.index(m)))
    decision.update(
        n_fit=n_fit,
        n_eval=n - n_fit,
        brier_uncalibrated=float(np.mean(before)),
        brier_uncalibrated_per_tier=before,
        candidates={m: {"brier": float(np.mean(v)), "brier_per_tier": v}
                    for m, v in results.items()},
        best=best,
    )
    if float(np.mean(results[best])) < float(np.mean(before)):
        final = fit_calibrator(best, p, y)
        decision.update(applied=True, reason=f"{best} lowered held-out Brier")
        return Calibration(best, final.params, decision)
    decision.update(applied=False, reason="no method lowered held-out Brier")
    return Calibration("none", {}, decision)


# --------------------------------------------------------------------------- the model


@dataclass
class TrainedModel:
    """A trained selector model: CatBoost sub-models (global + per regime) and calibration.

    ``tier_models``/``profitable_models`` map a regime (or :data:`GLOBAL`) to the CatBoost
    model's ``.cbm`` bytes, kept verbatim so ``from_blob(blob).to_blob() == blob``.
    """

    feature_list: list[str]
    cat_features: list[str]
    hyperparameters: dict
    tier_models: dict[str, bytes]
    profitable_models: dict[str, bytes]
    calibration: Calibration
    metrics: dict
    data_range: dict
    regime_column: str = "regime"
    class_order: list[int] = field(default_factory=lambda: list(CLASS_ORDER))
    version: str | None = None
    _loaded: dict = field(default_factory=dict, repr=False, compare=False)

    # -- identity and serialisation

    @property
    def model_id(self) -> str:
        """Content hash of what determines predictions (sub-models, calibration, features)."""
        h = hashlib.sha256()
        h.update(_dumps({"features": self.feature_list, "cat": self.cat_features,
                         "classes": self.class_order, "regime_column": self.regime_column,
                         "calibration": [self.calibration.method, self.calibration.params]}))
        for kind, models in (("tier", self.tier_models), ("profitable", self.profitable_models)):
            for key in sorted(models):
                h.update(f"{kind}:{key}:".encode())
                h.update(models[key])
        return h.hexdigest()[:16]

    def to_blob(self) -> bytes:
        manifest = {
            "format": BLOB_FORMAT,
            "model_id": self.model_id,
            "version": self.version,
            "feature_list": self.feature_list,
            "cat_features": self.cat_features,
            "class_order": self.class_order,
            "tier_names": list(TIER_NAMES),
            "regime_column": self.regime_column,
            "hyperparameters": self.hyperparameters,
            "calibration": self.calibration.to_json(),
            "metrics": self.metrics,
            "data_range": self.data_range,
            "tier_models": {k: f"tier_{i}.cbm" for i, k in enumerate(sorted(self.tier_models))},
            "profitable_models": {
                k: f"profitable_{i}.cbm" for i, k in enumerate(sorted(self.profitable_models))
            },
        }
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            _zip_write(zf, "manifest.json", _dumps(manifest))
            for kind, models in (("tier_models", self.tier_models),
                                 ("profitable_models", self.profitable_models)):
                for key, name in manifest[kind].items():
                    _zip_write(zf, name, models[key])
        return buf.getvalue()

    @classmethod
    def from_blob(cls, blob: bytes) -> "TrainedModel":
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            manifest = json.loads(zf.read("manifest.json"))
            if manifest.get("format") != BLOB_FORMAT:
                raise ValueError(f"not a {BLOB_FORMAT} blob")
            tier = {k: zf.read(v) for k, v in manifest["tier_models"].items()}
            prof = {k: zf.read(v) for k, v in manifest["profitable_models"].items()}
        model = cls(
            feature_list=list(manifest["feature_list"]),
            cat_features=list(manifest["cat_features"]),
            hyperparameters=manifest["hyperparameters"],
            tier_models=tier,
            profitable_models=prof,
            calibration=Calibration.from_json(manifest["calibration"]),
            metrics=manifest["metrics"],
            data_range=manifest["data_range"],
            regime_column=manifest["regime_column"],
            class_order=list(manifest["class_order"]),
            version=manifest["version"],
        )
        if model.model_id != manifest["model_id"]:
            raise ValueError("model blob is corrupt: model_id does not match its content")
        return model

    # -- prediction (batch; the single-idea fast path lives in inference.FastScorer)

    def catboost(self, kind: str, key: str):
        """The loaded CatBoost model for ``kind`` ("tier"/"profitable") and regime key."""
        cache_key = (kind, key)
        if cache_key not in self._loaded:
            models = self.tier_models if kind == "tier" else self.profitable_models
            self._loaded[cache_key] = _load_catboost(models[key])
        return self._loaded[cache_key]

    def model_key_for(self, regime) -> str:
        """Which sub-model scores an idea of this regime."""
        if regime is not None and not _is_missing(regime) and str(regime) in self.tier_models:
            return str(regime)
        return GLOBAL

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's feature frame from ``frame`` (missing columns become missing values)."""
        return prepare_features(frame, self.feature_list, self.cat_features)

    def model_keys(self, frame: pd.DataFrame) -> np.ndarray:
        """Per row, the sub-model key (:meth:`model_key_for` of its regime), vectorised."""
        if self.regime_column not in frame:
            return np.full(len(frame), GLOBAL, dtype=object)
        regimes = frame[self.regime_column]
        as_str = np.array([v if type(v) is str else str(v) for v in regimes.to_numpy(dtype=object)],
                          dtype=object)
        own = pd.Series(as_str).isin([k for k in self.tier_models if k != GLOBAL]).to_numpy()
        return np.where(own & ~regimes.isna().to_numpy(), as_str, GLOBAL).astype(object)

    def predict_proba(self, frame: pd.DataFrame, *, calibrated: bool = True,
                      keys: np.ndarray | None = None) -> np.ndarray:
        """(n, 4) tier probabilities in :attr:`class_order`, routed per regime."""
        keys = self.model_keys(frame) if keys is None else keys
        probs = _predict_routed(self, "tier", self.prepare(frame), keys)
        return self.calibration.apply(probs) if calibrated else probs

    def predict_profitable(self, frame: pd.DataFrame) -> np.ndarray:
        """P(profitable) per row from the Logloss models."""
        probs = _predict_routed(self, "profitable", self.prepare(frame), self.model_keys(frame))
        return probs[:, 1]


# --------------------------------------------------------------------------- training


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
        probs = _predict_models(tier_m, X.iloc[w.val_idx], val_keys)
        p_prof = _predict_models(prof_m, X.iloc[w.val_idx], val_keys)[:, 1]
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
        tier_models={k: _catboost_bytes(m) for k, m in tier_final.items()},
        profitable_models={k: _catboost_bytes(m) for k, m in prof_final.items()},
        calibration=cal,
        metrics=_jsonable(metrics),
        data_range={
            "min_decision_time": _iso(frame["decision_time"].min()),
            "max_decision_time": _iso(frame["decision_time"].max()),
            "max_label_time": _iso(frame["label_time"].max()),
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


def evaluate_predictions(
    rows: pd.DataFrame, probs: np.ndarray, p_profitable: np.ndarray | None,
    score_column: str | None,
) -> dict:
    """Every model metric for one validation set (and the rule score's, if given)."""
    from plugins.mlloop.inference import probability_to_score  # one mapping for both sides

    y = rows["profit_tier"].to_numpy()
    profitable = rows["profitable"].astype(int).to_numpy()
    pnl = rows["pnl"].to_numpy(dtype=float)
    r2r = rows["r2r_achieved"].to_numpy(dtype=float)
    day = _as_utc_ns(rows["decision_time"]) // (86_400 * 10**9)
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


# --------------------------------------------------------------------------- features


def infer_cat_features(frame: pd.DataFrame, feature_list: Sequence[str]) -> list[str]:
    """Features whose dtype is object, string or category."""
    return [
        f for f in feature_list
        if f in frame and (isinstance(frame[f].dtype, pd.CategoricalDtype)
                           or pd.api.types.is_object_dtype(frame[f])
                           or pd.api.types.is_string_dtype(frame[f]))
    ]


def prepare_features(frame: pd.DataFrame, feature_list: Sequence[str],
                     cat_features: Sequence[str]) -> pd.DataFrame:
    """Categoricals as str (missing -> ``__missing__``), numerics as float64 (missing -> NaN).

    Element for element the same conversion as :func:`category_value` and ``float()``, which
    the single-idea fast path uses, so a row scores identically either way.
    """
    cats = set(cat_features)
    n = len(frame)
    dtypes = dict(zip(frame.columns, frame.dtypes))
    plain = [f for f in feature_list
             if f not in cats and f in dtypes and pd.api.types.is_numeric_dtype(dtypes[f])
             and not pd.api.types.is_bool_dtype(dtypes[f])]
    # One 2-D conversion for the plain numeric columns: per-column access dominates otherwise.
    block = frame[plain].to_numpy(dtype=float, na_value=np.nan) if plain else None
    where = {f: i for i, f in enumerate(plain)}
    cols = {}
    for f in feature_list:
        if f in where:
            cols[f] = block[:, where[f]]
        elif f not in frame:
            cols[f] = (np.full(n, MISSING_CATEGORY, dtype=object) if f in cats
                       else np.full(n, np.nan))
        elif f in cats:
            values = frame[f].to_numpy(dtype=object)
            missing = pd.isna(values)
            if not missing.any() and pd.api.types.infer_dtype(values, skipna=False) == "string":
                cols[f] = values  # the common case: already all str
            else:
                cols[f] = np.array([MISSING_CATEGORY if m else (v if type(v) is str else str(v))
                                    for v, m in zip(values, missing)], dtype=object)
        else:
            cols[f] = pd.to_numeric(frame[f], errors="coerce").to_numpy(dtype=float,
                                                                       na_value=np.nan)
    return pd.DataFrame(cols, index=frame.index, columns=list(feature_list), copy=False)


def category_value(v) -> str:
    """How a categorical value is presented to CatBoost (the same in training and scoring)."""
    if _is_missing(v):
        return MISSING_CATEGORY
    return str(v)


# --------------------------------------------------------------------------- internals

_NAT = np.iinfo(np.int64).min
_P_EPS = 1e-12


def _catboost_classifier(hp: Mapping, loss: str):
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
    model = _catboost_classifier(hp, loss)
    model.fit(X, y, cat_features=list(cats))
    return model


def _regime_keys_for_training(frame: pd.DataFrame, regime_column: str,
                              min_samples: int) -> np.ndarray:
    if regime_column not in frame:
        return np.full(len(frame), GLOBAL, dtype=object)
    regimes = np.array([None if _is_missing(r) else str(r) for r in frame[regime_column]],
                       dtype=object)
    counts = pd.Series(regimes).value_counts(dropna=True)
    eligible = {r for r, c in counts.items() if c >= min_samples}
    return np.array([r if r in eligible else GLOBAL for r in regimes], dtype=object)


def _route(frame: pd.DataFrame, regime_column: str, models: Mapping) -> np.ndarray:
    if regime_column not in frame:
        return np.full(len(frame), GLOBAL, dtype=object)
    return np.array([str(r) if (not _is_missing(r) and str(r) in models) else GLOBAL
                     for r in frame[regime_column]], dtype=object)


def _predict_models(models: Mapping, X: pd.DataFrame, keys: np.ndarray) -> np.ndarray:
    out = None
    for key in pd.unique(keys):
        mask = keys == key
        p = models[key].predict_proba(X[mask])
        if out is None:
            out = np.empty((len(X), p.shape[1]))
        out[mask] = p
    return out if out is not None else np.empty((0, len(CLASS_ORDER)))


def _predict_routed(model: TrainedModel, kind: str, X: pd.DataFrame,
                    keys: np.ndarray) -> np.ndarray:
    models = model.tier_models if kind == "tier" else model.profitable_models
    loaded = {k: model.catboost(kind, k if k in models else GLOBAL) for k in pd.unique(keys)}
    return _predict_models(loaded, X, keys)


def _catboost_bytes(model) -> bytes:
    # CatBoost stamps each fit with a finish time and a random GUID; drop both so the same
    # data, parameters and seed give the same bytes (and so the same model_id).
    meta = model.get_metadata()
    for key in ("train_finish_time", "model_guid"):
        if key in meta:
            del meta[key]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.cbm")
        model.save_model(path)
        with open(path, "rb") as fh:
            return fh.read()


def _load_catboost(blob: bytes):
    from catboost import CatBoostClassifier

    model = CatBoostClassifier()
    model.load_model(blob=blob)
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


def _isotonic_fit(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Pool-adjacent-violators on (x, y); returns knots for ``np.interp`` (clipped ends)."""
    order = np.argsort(x, kind="mergesort")
    xs, ys = x[order], y[order].astype(float)
    # Collapse equal x first so the fit is a function of x.
    ux, start = np.unique(xs, return_index=True)
    sums = np.add.reduceat(ys, start)
    counts = np.diff(np.append(start, len(xs))).astype(float)
    vals, wts, lo = [], [], []
    for i in range(len(ux)):
        vals.append(sums[i] / counts[i])
        wts.append(counts[i])
        lo.append(i)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w
            vals[-2:] = [v]
            wts[-2:] = [w]
            lo.pop()
    bounds = lo + [len(ux)]
    knots_x, knots_y = [], []
    for j, v in enumerate(vals):
        a, b = bounds[j], bounds[j + 1] - 1
        knots_x.append(float(ux[a]))
        knots_y.append(float(v))
        if b != a:
            knots_x.append(float(ux[b]))
            knots_y.append(float(v))
    return knots_x, knots_y


def _platt_fit(z: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Logistic regression of t on z (one feature), a lightly regularised Newton fit."""
    t = t.astype(float)

    def loss(ab):
        a, b = ab
        s = a * z + b
        return float(np.mean(np.logaddexp(0, s) - t * s) + 1e-6 * (a * a + b * b))

    def grad(ab):
        a, b = ab
        p = _sigmoid(a * z + b)
        return np.array([np.mean((p - t) * z) + 2e-6 * a, np.mean(p - t) + 2e-6 * b])

    res = optimize.minimize(loss, x0=np.array([1.0, 0.0]), jac=grad, method="BFGS")
    return float(res.x[0]), float(res.x[1])


def _logit(p):
    p = np.clip(p, _P_EPS, 1 - _P_EPS)
    return np.log(p / (1.0 - p))


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _onehot(y) -> np.ndarray:
    y = np.asarray(y)
    return (y[:, None] == np.asarray(CLASS_ORDER)[None, :]).astype(float)


def _as_utc_ns(values) -> np.ndarray:
    """int64 nanoseconds since the epoch (UTC); NaT -> _NAT (which is numpy's NaT bit pattern)."""
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return values
    s = pd.to_datetime(pd.Series(values), utc=True).astype("datetime64[ns, UTC]")
    return s.dt.tz_localize(None).to_numpy("datetime64[ns]").view(np.int64)


def _ns(ts) -> int:
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return int(t.as_unit("ns").value)


def _ts(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC")


def _iso(ts) -> str | None:
    if ts is None or pd.isna(ts):
        return None
    ts = pd.Timestamp(ts)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_missing(v) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _jsonable(obj):
    """Plain JSON types, NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _dumps(obj) -> bytes:
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode()


def _zip_write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: same model, same bytes
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def _report(progress: ProgressFn | None, done: int, total: int, message: str) -> None:
    if progress is not None:
        progress(done, total, message)


def _fmt(v) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


__all__: Iterable[str] = [
    "CLASS_ORDER", "TIER_NAMES", "GLOBAL", "DEFAULT_PARAMS", "Window", "Calibration",
    "TrainedModel", "walk_forward_windows", "purge_and_embargo", "train_model",
    "shuffled_label_control", "fit_calibration", "fit_calibrator", "evaluate_predictions",
    "classification_metrics", "roc_auc", "auc_ovr_macro", "brier_per_tier", "top_k_utility",
    "infer_cat_features", "prepare_features", "category_value",
]
