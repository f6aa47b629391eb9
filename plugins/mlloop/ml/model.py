"""A trained selector model: :class:`TrainedModel` (CatBoost sub-models, global and per regime,
plus calibration) and its blob, the only serialised form the registry stores. Batch
prediction lives here; the single-idea fast path is ``ml.inference.FastScorer``.
Pure: no Flask, database or bus. See docs/mlloop-models.md.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from plugins.mlloop.ml.calibration import Calibration
from plugins.mlloop.ml.data import (
    CLASS_ORDER, GLOBAL, TIER_NAMES, is_missing, prepare_features,
)
from plugins.mlloop.ml.jsonable import jsonable

BLOB_FORMAT = "tradeloop.mlloop.model/1"


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
        if regime is not None and not is_missing(regime) and str(regime) in self.tier_models:
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


def predict_models(models: Mapping, X: pd.DataFrame, keys: np.ndarray) -> np.ndarray:
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
    return predict_models(loaded, X, keys)


def catboost_bytes(model) -> bytes:
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



def _dumps(obj) -> bytes:
    return json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode()


def _zip_write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: same model, same bytes
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)
