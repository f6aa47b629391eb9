"""Scoring with a trained selector model: the fast path, the deep path and replay.

Owns :class:`FastScorer` (one idea in well under a millisecond, with market context cached per context id), the
batch "deep" function the async worker calls, and :func:`replay`, which re-scores logged
features with a stored model blob and says whether the logged score is reproduced exactly.
Pure: no Flask, database or bus.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from plugins.mlloop.ml.data import CLASS_ORDER, MISSING_CATEGORY, category_value
from plugins.mlloop.ml.model import TrainedModel
from plugins.mlloop.ml.scale import blend, blend_array, confidence_rows, score_rows

MODES = ("blend", "shadow", "rules_only")


@dataclass(frozen=True)
class ScoreResult:
    """One scored idea. ``ml_score`` None means the rules decided alone (see ``fallback``)."""

    idea_id: str | None
    original_score: float
    ml_score: float | None
    final_score: float
    tier_probabilities: tuple[float, ...] | None
    confidence: float | None
    model_id: str | None
    model_version: str | None
    model_key: str | None  # "__global__" or the regime whose model scored it
    context_id: str | None
    ml_weight: float
    fallback: str | None  # None, "rules_only", "no_model", "missing_context", "model_error: ..."

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["tier_probabilities"] is not None:
            d["tier_probabilities"] = list(d["tier_probabilities"])
        return d


class _Context:
    __slots__ = ("row", "regime")

    def __init__(self, row: list, regime):
        self.row = row
        self.regime = regime


class FastScorer:
    """Synchronous single-idea scoring with a model loaded once.

    ``mode``: "blend" (final = blend(original, ml, ml_weight)), "shadow" (ML computed and
    reported, final == original) or "rules_only" (no ML at all). Market-context features are
    converted once per context id by :meth:`cache_context` and merged under each idea's own
    features (the idea's value wins on a clash). Features absent from both are missing
    values, which CatBoost handles as it did in training.
    """

    def __init__(self, model: TrainedModel | bytes | None = None, *, ml_weight: float = 0.0,
                 mode: str = "blend", max_contexts: int = 1024):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if not 0.0 <= ml_weight <= 1.0:
            raise ValueError("ml_weight must be in [0, 1]")
        if isinstance(model, (bytes, bytearray)):
            model = TrainedModel.from_blob(bytes(model))
        self.model = model
        self.mode = mode
        self.ml_weight = ml_weight
        self.max_contexts = max_contexts
        self._contexts: OrderedDict[str, _Context] = OrderedDict()
        if model is None:
            return
        self.model_id = model.model_id
        self.model_version = model.version
        cats = set(model.cat_features)
        self._features = list(model.feature_list)
        self._index = {f: i for i, f in enumerate(self._features)}
        self._convert = [category_value if f in cats else _to_float for f in self._features]
        self._blank = [MISSING_CATEGORY if f in cats else math.nan for f in self._features]
        self._regime_column = model.regime_column
        self._models = {key: model.catboost("tier", key) for key in model.tier_models}
        self._calibration = model.calibration

    @property
    def effective_weight(self) -> float:
        return self.ml_weight if self.mode == "blend" else 0.0

    # -- market context

    def cache_context(self, context_id: str, features: Mapping) -> None:
        """Convert and keep a market context's features (call once per context, not per idea)."""
        if self.model is None:
            return
        row = list(self._blank)
        self._fill(row, features)
        self._contexts[context_id] = _Context(row, features.get(self._regime_column))
        self._contexts.move_to_end(context_id)
        while len(self._contexts) > self.max_contexts:
            self._contexts.popitem(last=False)

    def drop_context(self, context_id: str) -> None:
        self._contexts.pop(context_id, None)

    def has_context(self, context_id: str) -> bool:
        return context_id in self._contexts

    # -- scoring

    def score(self, features: Mapping, original_score: float, *, context_id: str | None = None,
              idea_id: str | None = None, regime=None) -> ScoreResult:
        """Score one idea. Never raises for model trouble: it falls back to the rule score."""
        if self.mode == "rules_only":
            return self._fallback(idea_id, original_score, context_id, "rules_only")
        if self.model is None:
            return self._fallback(idea_id, original_score, context_id, "no_model")
        if context_id is not None:
            ctx = self._contexts.get(context_id)
            if ctx is None:
                return self._fallback(idea_id, original_score, context_id, "missing_context")
            row = list(ctx.row)
            ctx_regime = ctx.regime
        else:
            row = list(self._blank)
            ctx_regime = None
        self._fill(row, features)
        if regime is None:
            regime = features.get(self._regime_column, ctx_regime)
        key = self.model.model_key_for(regime)
        try:
            probs = self._models[key].predict_proba(np.array([row], dtype=object), thread_count=1)
            probs = self._calibration.apply(probs)
        except Exception as exc:  # degrade to rules rather than fail the selector
            return self._fallback(idea_id, original_score, context_id,
                                  f"model_error: {type(exc).__name__}: {exc}")
        ml = float(score_rows(probs)[0])
        weight = self.effective_weight
        return ScoreResult(
            idea_id=idea_id,
            original_score=original_score,
            ml_score=ml,
            final_score=blend(original_score, ml, weight),
            tier_probabilities=tuple(probs[0].tolist()),
            confidence=float(confidence_rows(probs)[0]),
            model_id=self.model_id,
            model_version=self.model_version,
            model_key=key,
            context_id=context_id,
            ml_weight=weight,
            fallback=None,
        )

    def score_batch(self, frame: pd.DataFrame, original_scores: Sequence[float] | None = None, *,
                    context_id: str | None = None, original_score_column: str | None = None
                    ) -> pd.DataFrame:
        """Score many ideas through the DataFrame path; one output row per input row.

        Columns: ml_score, final_score, p_tier_0..3, confidence, model_key, fallback.
        Context features (if ``context_id``) fill the columns the frame does not have.
        """
        original = _originals(frame, original_scores, original_score_column)
        reason = None
        if self.mode == "rules_only":
            reason = "rules_only"
        elif self.model is None:
            reason = "no_model"
        elif context_id is not None and context_id not in self._contexts:
            reason = "missing_context"
        if reason is not None:
            return _fallback_frame(frame.index, original, reason)
        merged = frame
        if context_id is not None:
            ctx = self._contexts[context_id]
            extra = {f: ctx.row[i] for f, i in self._index.items() if f not in frame.columns}
            if self._regime_column not in frame.columns:
                extra[self._regime_column] = ctx.regime
            merged = frame.assign(**extra) if extra else frame
        keys = self.model.model_keys(merged)
        probs = self.model.predict_proba(merged, keys=keys)
        out = pd.DataFrame(index=frame.index)
        out["ml_score"] = score_rows(probs)
        out["final_score"] = blend_array(original, out["ml_score"].to_numpy(),
                                          self.effective_weight)
        for i, k in enumerate(CLASS_ORDER):
            out[f"p_tier_{k}"] = probs[:, i]
        out["confidence"] = confidence_rows(probs)
        out["model_key"] = keys
        out["fallback"] = None
        return out

    # -- internals

    def _fill(self, row: list, features: Mapping) -> None:
        index, convert = self._index, self._convert
        for name, value in features.items():
            i = index.get(name)
            if i is not None:
                row[i] = convert[i](value)

    def _fallback(self, idea_id, original, context_id, reason) -> ScoreResult:
        model = self.model
        return ScoreResult(
            idea_id=idea_id, original_score=original, ml_score=None, final_score=original,
            tier_probabilities=None, confidence=None,
            model_id=model.model_id if model is not None else None,
            model_version=model.version if model is not None else None,
            model_key=None, context_id=context_id, ml_weight=self.effective_weight,
            fallback=reason,
        )


def score_deep(model: TrainedModel | bytes | None, frame: pd.DataFrame, *,
               original_scores: Sequence[float] | None = None,
               original_score_column: str | None = None, ml_weight: float = 0.0,
               idea_id_column: str = "idea_id") -> list[dict]:
    """Deep path for a batch (a plain function the async worker calls).

    Returns one JSON-ready dict per row: idea_id, original_score, ml_score, final_score,
    tier_probabilities (list of 4, class order 0..3), confidence, p_profitable, model_id,
    model_version, model_key, fallback. With no model every row falls back to the rules.
    """
    if isinstance(model, (bytes, bytearray)):
        model = TrainedModel.from_blob(bytes(model))
    original = _originals(frame, original_scores, original_score_column)
    ids = frame[idea_id_column].tolist() if idea_id_column in frame else [None] * len(frame)
    if model is None:
        return [
            {"idea_id": i, "original_score": o, "ml_score": None, "final_score": o,
             "tier_probabilities": None, "confidence": None, "p_profitable": None,
             "model_id": None, "model_version": None, "model_key": None, "fallback": "no_model"}
            for i, o in zip(ids, _list(original, len(frame)))
        ]
    probs = model.predict_proba(frame)
    scores = score_rows(probs)
    conf = confidence_rows(probs)
    p_prof = model.predict_profitable(frame)
    keys = model.model_keys(frame)
    finals = blend_array(original, scores, ml_weight)
    model_id = model.model_id
    return [
        {"idea_id": ids[j], "original_score": _opt(original, j), "ml_score": float(scores[j]),
         "final_score": _opt(finals, j), "tier_probabilities": [float(v) for v in probs[j]],
         "confidence": float(conf[j]), "p_profitable": float(p_prof[j]), "model_id": model_id,
         "model_version": model.version, "model_key": str(keys[j]), "fallback": None}
        for j in range(len(frame))
    ]


def replay(blob: bytes, features: Mapping, logged_ml_score: float | None, *,
           logged_model_id: str | None = None, regime=None, decimals: int | None = None) -> dict:
    """Re-score logged features with the stored model blob through the fast path.

    ``matches`` is True when the recomputed ml_score equals the logged one exactly (or after
    rounding both to ``decimals``, for stores that keep fixed-point scores) and, if
    ``logged_model_id`` is given, the blob is that model.
    """
    scorer = FastScorer(blob, mode="shadow")
    result = scorer.score(features, 0.0, regime=regime)
    recomputed = result.ml_score
    same_model = logged_model_id is None or logged_model_id == scorer.model_id
    if recomputed is None or logged_ml_score is None:
        equal = recomputed is None and logged_ml_score is None
    elif decimals is None:
        equal = recomputed == float(logged_ml_score)
    else:
        equal = round(recomputed, decimals) == round(float(logged_ml_score), decimals)
    return {
        "matches": bool(equal and same_model),
        "model_id": scorer.model_id,
        "model_matches": same_model,
        "recomputed_ml_score": recomputed,
        "logged_ml_score": logged_ml_score,
        "abs_diff": (abs(recomputed - float(logged_ml_score))
                     if recomputed is not None and logged_ml_score is not None else None),
        "tier_probabilities": (list(result.tier_probabilities)
                               if result.tier_probabilities else None),
        "model_key": result.model_key,
        "fallback": result.fallback,
    }


def _to_float(v) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _originals(frame, original_scores, column):
    if original_scores is not None:
        return np.asarray(original_scores, dtype=float)
    if column is not None:
        return frame[column].to_numpy(dtype=float)
    return None



def _fallback_frame(index, original, reason) -> pd.DataFrame:
    out = pd.DataFrame(index=index)
    out["ml_score"] = np.nan
    out["final_score"] = original if original is not None else np.nan
    for k in CLASS_ORDER:
        out[f"p_tier_{k}"] = np.nan
    out["confidence"] = np.nan
    out["model_key"] = None
    out["fallback"] = reason
    return out


def _list(a, n: int) -> list:
    return [None] * n if a is None else [float(v) for v in a]


def _opt(a, j):
    return None if a is None else float(a[j])


__all__ = ["MODES", "ScoreResult", "FastScorer", "score_deep", "replay"]
