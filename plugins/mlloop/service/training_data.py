"""The data models learn from and are judged on: one row per settled idea (the features of the
decision that first scored it, point in time, and its labels), logged decisions joined to
their outcomes, recent feature snapshots (for drift), the dataset's lineage hash and the
drift reference sample. Every user's data (the selector is one model for all). No Flask."""
from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal
from typing import Mapping

import numpy as np
import pandas as pd
import sqlalchemy as sa

from plugins.mlloop.domain import features
from plugins.mlloop.ml.data import LABEL_COLUMNS
from plugins.mlloop.ml.model import TrainedModel
from plugins.mlloop.ml.scale import probability_to_score
from plugins.mlloop.tables import (
    ml_decisions, ml_feature_snapshots, ml_labels, tracked_ideas,
)

REGIME_COLUMN = "vix_regime"  # per-regime sub-models and champions are keyed by VIX regime

FEATURE_LIST = list(features.DEFAULT_FEATURE_LIST)

CAT_FEATURES = [f for f in FEATURE_LIST if f in features.CATEGORICAL_FEATURES]

REFERENCE_ROWS = 1000  # rows of the training data kept with a model as its drift reference

_NOT_FEATURES = frozenset({"id", "user_id", "tracked_idea_id", "decision_id", "recorded_at",
                           "snapshot_time", "feature_set_version", "feature_extractor_version",
                           "gex_calc_version", "vix_regime_classifier_version"})


def feature_dict(snapshot: Mapping) -> dict:
    """The model's feature dict from a stored ``ml_feature_snapshots`` row: exactly what the
    selector's extraction produced (part 1 stores features at extraction's precision), plus a
    declared feature set's extra values."""
    out = {k: (float(v) if isinstance(v, Decimal) else v)
           for k, v in snapshot.items() if k not in _NOT_FEATURES and k != "extra_features"}
    extras = snapshot.get("extra_features")
    if isinstance(extras, str):
        extras = json.loads(extras)
    out.update(extras or {})
    return out


def feature_columns(fset) -> tuple[list[str], list[str]]:
    """(feature list, categorical features) a model of feature set ``fset`` learns from: the
    built-in ones, then the set's extra numeric and categorical ones."""
    return FEATURE_LIST + list(fset.extras), CAT_FEATURES + list(fset.categorical)


def load_training_frame(conn, *, regime: str | None = None, since=None, until=None,
                        feature_set=None) -> pd.DataFrame:
    """One row per settled idea (every user's) scored under ``feature_set`` (default the
    built-in one): the features of the decision that first scored it (its snapshot, taken at
    decision time: point in time; a declared set's extras as columns), the rule score and the
    labels. ``label_time`` is the settlement time (what purging needs)."""
    fset = feature_set or _builtin()
    ti, fs, lb = tracked_ideas, ml_feature_snapshots, ml_labels
    feats = [c for c in fs.c if c.name not in _NOT_FEATURES]
    q = (sa.select(ti.c.idea_id, ti.c.decision_time, ti.c.settled_at, ti.c.regime,
                   fs.c.snapshot_time, lb.c.profit_tier, lb.c.profitable, lb.c.r2r_achieved,
                   lb.c.settlement_pnl, *feats)
         .select_from(ti.join(fs, fs.c.decision_id == ti.c.decision_id)
                      .join(lb, lb.c.tracked_idea_id == ti.c.id))
         .where(ti.c.settlement_status == "settled", fs.c.snapshot_time <= ti.c.decision_time,
                fs.c.feature_set_version == fset.version))
    if regime is not None:
        q = q.where(ti.c.regime == regime)
    if since is not None:
        q = q.where(ti.c.decision_time >= since)
    if until is not None:
        q = q.where(ti.c.decision_time < until)
    rows = []
    for r in conn.execute(q.order_by(ti.c.decision_time, ti.c.id)):
        m = r._mapping
        f = feature_dict({c.name: m[c.name] for c in feats})
        f.update(idea_id=m["idea_id"], decision_time=m["decision_time"],
                 label_time=m["settled_at"], regime=m["regime"],
                 profit_tier=int(m["profit_tier"]), profitable=int(m["profitable"]),
                 r2r_achieved=float(m["r2r_achieved"]), pnl=float(m["settlement_pnl"]))
        rows.append(f)
    return _to_frame(rows, fset) if rows else _empty_frame(fset)


def _builtin():
    from plugins.mlloop.service.feature_sets import BUILTIN
    return BUILTIN


def _empty_frame(fset=None) -> pd.DataFrame:
    names, _ = feature_columns(fset or _builtin())
    return pd.DataFrame(columns=["idea_id", "decision_time", "label_time", "regime",
                                 *LABEL_COLUMNS, *names])


def _to_frame(rows: list[dict], fset=None) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    names, cats = feature_columns(fset or _builtin())
    for f in names:
        if f not in frame:
            frame[f] = None
        if f in cats:
            frame[f] = frame[f].astype(object)
        else:
            frame[f] = pd.to_numeric(frame[f].map(
                lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v), errors="coerce")
    for c in ("decision_time", "label_time"):
        if c in frame:
            frame[c] = pd.to_datetime(frame[c], utc=True)
    return frame


def decision_frame(conn, *, settled_only: bool = True, since=None, until=None,
                   experiment_id: int | None = None, user_id: int | None = None,
                   model_id: int | None = None) -> pd.DataFrame:
    """Logged decisions (every user's, or ``user_id``'s; every model's, or ``model_id``'s)
    joined to their idea's outcome and labels."""
    cols = ["decision_id", "user_id", "idea_id", "decision_time", "model_id", "model_version",
            "original_score", "ml_score", "final_score", "p_profitable", "tier_probabilities",
            "experiment_id", "experiment_arm", "exploration", "regime", "settled", "pnl",
            "profitable", "profit_tier", "r2r_achieved", "max_adverse_excursion"]
    md, ti, lb = ml_decisions, tracked_ideas, ml_labels
    join = md.join(ti, ti.c.id == md.c.tracked_idea_id, isouter=not settled_only)
    join = join.join(lb, lb.c.tracked_idea_id == md.c.tracked_idea_id, isouter=True)
    q = sa.select(
        md.c.id.label("decision_id"), md.c.user_id, md.c.idea_id, md.c.decision_time, md.c.model_id,
        md.c.model_version, md.c.original_score, md.c.ml_score, md.c.final_score,
        md.c.p_profitable, md.c.tier_probabilities, md.c.experiment_id, md.c.experiment_arm, md.c.exploration, ti.c.regime,
        (ti.c.settlement_status == "settled").label("settled"), lb.c.settlement_pnl.label("pnl"),
        lb.c.profitable, lb.c.profit_tier, lb.c.r2r_achieved, lb.c.max_adverse_excursion,
    ).select_from(join)
    if settled_only:
        q = q.where(ti.c.settlement_status == "settled", lb.c.tracked_idea_id.is_not(None))
    if since is not None:
        q = q.where(md.c.decision_time >= since)
    if until is not None:
        q = q.where(md.c.decision_time < until)
    if experiment_id is not None:
        q = q.where(md.c.experiment_id == experiment_id)
    if user_id is not None:
        q = q.where(md.c.user_id == user_id)
    if model_id is not None:
        q = q.where(md.c.model_id == model_id)
    frame = pd.DataFrame([dict(r._mapping) for r in conn.execute(q.order_by(md.c.id))],
                         columns=cols)
    for c in ("original_score", "ml_score", "final_score", "p_profitable", "pnl", "r2r_achieved",
              "max_adverse_excursion"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    if len(frame):
        frame["decision_time"] = pd.to_datetime(frame["decision_time"], utc=True)
    return frame


def load_recent_features(conn, *, since, until, regime=None, feature_set=None) -> pd.DataFrame:
    """Feature snapshots of every decision made in [since, until) (settled or not) under
    ``feature_set`` (default the built-in one)."""
    fset = feature_set or _builtin()
    fs, md = ml_feature_snapshots, ml_decisions
    feats = [c for c in fs.c if c.name not in _NOT_FEATURES]
    q = (sa.select(*feats).select_from(fs.join(md, md.c.id == fs.c.decision_id))
         .where(md.c.decision_time >= since, md.c.decision_time < until,
                fs.c.feature_set_version == fset.version))
    if regime is not None:
        q = q.where(fs.c.vix_regime == regime)
    rows = [feature_dict(dict(r._mapping)) for r in conn.execute(q.order_by(md.c.decision_time))]
    return _to_frame(rows, fset) if rows else _empty_frame(fset)


def dataset_hash(frame: pd.DataFrame, feature_list=FEATURE_LIST) -> str:
    """SHA-256 over the rows a model was trained on (ids, times, labels, features), in idea
    order: the lineage record of "which data made this model"."""
    cols = ["idea_id", "decision_time", "label_time", *LABEL_COLUMNS,
            *[f for f in feature_list if f in frame]]
    view = frame[cols].sort_values("idea_id", kind="mergesort").reset_index(drop=True)
    h = hashlib.sha256(json.dumps(cols).encode())
    h.update(pd.util.hash_pandas_object(view.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()


def reference_sample(frame: pd.DataFrame, model: TrainedModel, *,
                     n: int = REFERENCE_ROWS, seed: int = 0) -> dict:
    """A seeded sample of the training features plus the model's scores on it: what drift
    checks compare recent data against."""
    idx = np.sort(np.random.default_rng(seed).choice(len(frame), size=min(n, len(frame)),
                                                     replace=False))
    sample = frame.iloc[idx]
    scores = probability_to_score(model.predict_proba(sample))
    cols = {}
    for f in model.feature_list:
        vals = sample[f].tolist() if f in sample else [None] * len(sample)
        cols[f] = [_json_value(v) for v in vals]
    return {"n": int(len(sample)), "features": cols, "cat_features": list(model.cat_features),
            "scores": [float(s) for s in scores]}


def _json_value(v):
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating, Decimal)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, float) or (not isinstance(v, str) and pd.isna(v)):
        return None
    return str(v)
