"""Model operations (mlloop part 2): the scoring plan the selector uses, training, the model
registry, experiments, drift, exploration, evaluation and replay.

No Flask: every function takes a SQLAlchemy ``conn`` in an open transaction (the request's,
a CLI command's or a job's). Models, experiments and settings are system-wide: they are
admin operations, and the training set / evaluation data are every user's settled ideas
(docs/mlloop-ops.md). The ML itself is in the pure modules (training, inference, drift,
abtest); this module loads rows, calls them and stores what they return.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import threading
from collections import OrderedDict
from decimal import Decimal
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import sqlalchemy as sa

from app import errors
from app.db import utcnow
from plugins.mlloop import abtest, drift, features, inference, training
from plugins.mlloop.inference import FastScorer
from plugins.mlloop.registry import (
    SETTINGS_DEFAULTS, TOPIC, ml_drift_reports, ml_experiments, ml_model_audit, ml_models,
    ml_settings,
)

MODEL_NAME = "trade_selector"
MODEL_TYPE = "catboost"
REGIME_COLUMN = "vix_regime"  # per-regime sub-models and champions are keyed by VIX regime
FEATURE_LIST = list(features.DEFAULT_FEATURE_LIST)
CAT_FEATURES = [f for f in FEATURE_LIST if f in features.CATEGORICAL_FEATURES]
REFERENCE_ROWS = 1000  # rows of the training data kept with a model as its drift reference
SCORE_BUCKETS = ((0, 20), (20, 40), (40, 60), (60, 80), (80, 100))
_LOCK_ROW = "_registry_lock"  # an ml_settings row whose row lock serialises registry changes


# =========================================================================================
# Settings
# =========================================================================================


def get_settings(conn) -> dict:
    """The blend weight, exploration rate and low-data threshold (defaults if never set)."""
    out = dict(SETTINGS_DEFAULTS)
    for r in conn.execute(sa.select(ml_settings.c.name, ml_settings.c.value)):
        if r.name in out:
            out[r.name] = float(r.value)
    return out


def update_settings(conn, values: Mapping, *, actor_user_id: int | None = None) -> dict:
    for name, value in values.items():
        if name not in SETTINGS_DEFAULTS:
            raise errors.field_error(name, "unknown setting")
        _upsert_setting(conn, name, float(value), actor_user_id)
    return get_settings(conn)


def _upsert_setting(conn, name: str, value: float, actor_user_id=None) -> None:
    now = utcnow()
    done = conn.execute(ml_settings.update().where(ml_settings.c.name == name)
                        .values(value=value, updated_at=now, updated_by=actor_user_id)).rowcount
    if not done:
        conn.execute(ml_settings.insert().values(name=name, value=value, updated_at=now,
                                                 updated_by=actor_user_id))


def _lock_registry(conn) -> None:
    """Serialise promotions, rollbacks and experiment changes: an UPDATE of one row holds its
    lock until commit, so two admins promoting at once take turns (and see each other)."""
    bumped = conn.execute(ml_settings.update().where(ml_settings.c.name == _LOCK_ROW)
                          .values(value=ml_settings.c.value + 1)).rowcount
    if not bumped:  # first use: create it (a concurrent first use fails on the primary key)
        conn.execute(ml_settings.insert().values(name=_LOCK_ROW, value=0.0, updated_at=utcnow()))


# =========================================================================================
# The scoring plan (the interface part 1's selector calls)
# =========================================================================================


@dataclasses.dataclass(frozen=True)
class Assignment:
    """How one idea is scored: the model (``scorer`` None: rules only), the experiment arm,
    the blend weight, and whether the idea was picked for exploration."""
    scorer: FastScorer | None
    model_id: int | None
    model_version: int | None
    experiment_id: int | None
    arm: str | None
    ml_weight: float
    exploration: bool


_SCORERS: "OrderedDict[str, FastScorer]" = OrderedDict()
_SCORERS_LOCK = threading.Lock()
_MAX_SCORERS = 16


def load_scorer(conn, model_id: int, content_id: str | None = None) -> FastScorer | None:
    """The FastScorer of registry row ``model_id``, cached in-process by the model's content
    hash (loading a blob costs tens of ms; the hash names the exact model, whatever database
    or row it came from, so the cache cannot serve a wrong model). In shadow mode: callers
    blend with the assignment's ``ml_weight``."""
    if content_id is None:
        content_id = conn.execute(sa.select(ml_models.c.content_id)
                                  .where(ml_models.c.id == model_id)).scalar()
        if content_id is None:
            return None
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(content_id)
        if scorer is not None:
            _SCORERS.move_to_end(content_id)
            return scorer
    row = conn.execute(sa.select(ml_models.c.model_blob).where(ml_models.c.id == model_id)).first()
    if row is None:
        return None
    scorer = FastScorer(bytes(row.model_blob), mode="shadow")
    if scorer.model_id != content_id:
        raise errors.Conflict(f"model {model_id}'s blob does not match its content id")
    with _SCORERS_LOCK:
        _SCORERS[content_id] = scorer
        while len(_SCORERS) > _MAX_SCORERS:
            _SCORERS.popitem(last=False)
    return scorer


def stable_unit(*parts) -> float:
    """A uniform number in [0, 1) from SHA-256 of the parts: the same in every process."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ScoringPlan:
    """Champions (per regime, else global), running experiments and settings, loaded once
    per batch of ideas; ``for_idea`` is then pure and cheap."""

    def __init__(self, conn, user_id, *, champions: dict, experiments: list, settings: dict,
                 rules_only: bool = False, low_data_regimes: frozenset = frozenset()):
        self._conn = conn
        self.user_id = user_id
        self.champions = champions  # regime (None = global) -> {"id", "model_version"}
        self.experiments = experiments
        self.settings = settings
        self.rules_only = rules_only
        self.low_data_regimes = low_data_regimes
        self._scorers: dict = {}

    def champion_for(self, regime):
        return self.champions.get(regime) if regime in self.champions else self.champions.get(None)

    def for_idea(self, idea_id: str, regime: str | None = None) -> Assignment:
        exploration = self.should_explore(idea_id, regime)
        weight = float(self.settings["ml_weight"])
        if self.rules_only:
            return Assignment(None, None, None, None, None, 0.0, exploration)
        model_row, experiment_id, arm = self.champion_for(regime), None, None
        for exp in self.experiments:
            if exp["regime"] is not None and exp["regime"] != regime:
                continue
            experiment_id = exp["id"]
            arm = abtest.route(exp["id"], idea_id, float(exp["traffic_split"]))
            side = "challenger" if arm == abtest.CHALLENGER else "champion"
            mid = exp[f"{side}_model_id"]
            model_row = None if mid is None else {"id": mid, "model_version": exp[f"{side}_version"],
                                                  "content_id": exp[f"{side}_content_id"]}
            if exp.get(f"{side}_ml_weight") is not None:
                weight = float(exp[f"{side}_ml_weight"])
            break
        if model_row is None:
            return Assignment(None, None, None, experiment_id, arm, weight, exploration)
        scorer = self._scorers.get(model_row["id"])
        if scorer is None:
            scorer = load_scorer(self._conn, model_row["id"], model_row["content_id"])
            self._scorers[model_row["id"]] = scorer
        if scorer is None:
            return Assignment(None, None, None, experiment_id, arm, weight, exploration)
        return Assignment(scorer, int(model_row["id"]), int(model_row["model_version"]),
                          experiment_id, arm, weight, exploration)

    def should_explore(self, idea_id: str, regime: str | None) -> bool:
        """The seed's ExplorationManager: ideas of a low-data regime are always tracked, plus
        an ``exploration_rate`` share picked by a stable hash of the idea id (so the same idea
        gets the same answer in every process and on every replay)."""
        if regime is not None and regime in self.low_data_regimes:
            return True
        return stable_unit("explore", idea_id) < float(self.settings["exploration_rate"])


def scoring_plan(conn, user_id) -> ScoringPlan:
    """Load champions, running experiments, settings and low-data regimes once for a batch.

    Rules-only when the host's ``scoring_mode`` hook says so (breakers, kill switches)."""
    settings = get_settings(conn)
    rules_only = False
    try:
        from flask import current_app  # the host's hook, when called inside the app
        rules_only = current_app.extensions["tradeloop"].scoring_mode(conn, user_id) == "rules_only"
    except (RuntimeError, KeyError):
        pass
    champions = {}
    for r in conn.execute(sa.select(ml_models.c.id, ml_models.c.model_version, ml_models.c.regime,
                                    ml_models.c.content_id)
                          .where(ml_models.c.status == "champion")):
        champions[r.regime] = {"id": r.id, "model_version": r.model_version,
                               "content_id": r.content_id}
    experiments = []
    rows = conn.execute(sa.select(ml_experiments).where(ml_experiments.c.status == "running")
                        .order_by(ml_experiments.c.id)).all()
    if rows:
        ids = {i for r in rows for i in (r.champion_model_id, r.challenger_model_id) if i is not None}
        info = {r.id: r for r in conn.execute(
            sa.select(ml_models.c.id, ml_models.c.model_version, ml_models.c.content_id)
            .where(ml_models.c.id.in_(ids)))}
        for r in rows:
            e = dict(r._mapping)
            for side in ("champion", "challenger"):
                m = info.get(e[f"{side}_model_id"])
                e[f"{side}_version"] = m.model_version if m else None
                e[f"{side}_content_id"] = m.content_id if m else None
            experiments.append(e)
    return ScoringPlan(conn, user_id, champions=champions, experiments=experiments,
                       settings=settings, rules_only=rules_only,
                       low_data_regimes=low_data_regimes(conn, settings["low_data_threshold"]))


def low_data_regimes(conn, threshold: float) -> frozenset:
    """VIX regimes with fewer than ``threshold`` settled ideas (the seed's "< 50 similar").
    Regimes never seen at all are low-data too (handled by the caller: unknown -> explore)."""
    p1 = _part1()
    if p1 is None:
        return frozenset()
    ti = p1.tracked_ideas
    counts = dict(conn.execute(
        sa.select(ti.c.regime, sa.func.count()).where(ti.c.settlement_status == "settled")
        .group_by(ti.c.regime)).all())
    return frozenset(r for r in features.VIX_REGIMES if counts.get(r, 0) < threshold)


# =========================================================================================
# Registry
# =========================================================================================

_LIST_COLUMNS = [c for c in ml_models.c if c.name not in ("model_blob", "reference", "metrics")]


def list_models(conn, *, status: str | None = None, regime: str | None = None) -> list[dict]:
    q = sa.select(*_LIST_COLUMNS).order_by(ml_models.c.id.desc())
    if status:
        q = q.where(ml_models.c.status == status)
    if regime:
        q = q.where(ml_models.c.regime == regime)
    return [_model_out(r._mapping) for r in conn.execute(q)]


def get_model(conn, model_id: int, *, with_metrics: bool = True) -> dict:
    cols = _LIST_COLUMNS + ([ml_models.c.metrics] if with_metrics else [])
    r = conn.execute(sa.select(*cols).where(ml_models.c.id == model_id)).first()
    if r is None:
        raise errors.NotFound(f"model {model_id} not found")
    return _model_out(r._mapping)


def champion(conn, regime: str | None = None) -> dict | None:
    r = conn.execute(sa.select(*_LIST_COLUMNS).where(ml_models.c.status == "champion",
                                                     _scope(regime))).first()
    return _model_out(r._mapping) if r else None


def model_audit(conn, model_id: int | None = None, limit: int = 100) -> list[dict]:
    q = sa.select(ml_model_audit).order_by(ml_model_audit.c.id.desc()).limit(limit)
    if model_id is not None:
        q = q.where(ml_model_audit.c.model_id == model_id)
    return [dict(r._mapping) for r in conn.execute(q)]


def _model_out(m) -> dict:
    d = dict(m)
    for k in ("train_auc", "val_auc"):
        if d.get(k) is not None:
            d[k] = float(d[k])
    return d


def _scope(regime):
    return ml_models.c.regime.is_(None) if regime is None else ml_models.c.regime == regime


def _audit(conn, model_id, action, from_status, to_status, *, regime=None, replaced=None,
           actor=None, reason=None) -> None:
    conn.execute(ml_model_audit.insert().values(
        model_id=model_id, action=action, from_status=from_status, to_status=to_status,
        regime=regime, replaced_model_id=replaced, actor_user_id=actor,
        reason=(reason or None) and reason[:500], at=utcnow()))


def _set_status(conn, model_id: int, status: str, **values) -> None:
    conn.execute(ml_models.update().where(ml_models.c.id == model_id)
                 .values(status=status, **values))


def register_model(conn, model: training.TrainedModel, *, regime: str | None, dataset_hash: str,
                   reference: dict | None, actor_user_id: int | None = None,
                   description: str | None = None, name: str = MODEL_NAME,
                   feature_set_version: str = features.FEATURE_SET_VERSION) -> dict:
    """Store a trained model as a new version (status validating), audited, ModelTrained."""
    version = (conn.execute(sa.select(sa.func.max(ml_models.c.model_version))
                            .where(ml_models.c.model_name == name)).scalar() or 0) + 1
    model.version = str(version)
    blob = model.to_blob()
    parent = champion(conn, regime) or (champion(conn, None) if regime else None)
    agg = model.metrics.get("aggregate") or {}
    pooled = model.metrics.get("pooled") or {}
    rng = model.data_range
    now = utcnow()
    values = dict(
        model_name=name, model_version=version, model_type=MODEL_TYPE, model_blob=blob,
        feature_list=list(model.feature_list), cat_features=list(model.cat_features),
        hyperparameters=model.hyperparameters, train_auc=None,
        val_auc=_dec4(agg.get("auc_ovr")), train_samples=int(rng.get("rows") or 0),
        val_samples=int(pooled.get("n") or 0), status="validating", created_at=now,
        content_id=model.model_id, feature_set_version=feature_set_version, regime=regime,
        data_start=_parse_time(rng.get("min_decision_time")),
        data_end=_parse_time(rng.get("max_decision_time")),
        label_end=_parse_time(rng.get("max_label_time")),
        metrics=model.metrics, parent_model_id=parent["id"] if parent else None,
        dataset_hash=dataset_hash,
        reference=json.dumps(reference, allow_nan=False) if reference is not None else None,
        created_by=actor_user_id, description=description)
    model_id = conn.execute(ml_models.insert().values(**values)).inserted_primary_key[0]
    _audit(conn, model_id, "registered", None, "validating", regime=regime, actor=actor_user_id,
           reason=description)
    TOPIC.emit(conn, "ModelTrained", aggregate_type="ml_model", aggregate_id=str(model_id),
               user_id=actor_user_id, payload={
        "model_id": model_id, "model_name": name, "model_version": version,
        "content_id": model.model_id, "regime": regime,
        "feature_set_version": feature_set_version, "dataset_hash": dataset_hash,
        "parent_model_id": values["parent_model_id"],
        "metrics": {k: v for k, v in agg.items() if isinstance(v, (int, float))}})
    return get_model(conn, model_id)


def promotion_blockers(conn, model_id: int) -> list[dict]:
    """Why ``model_id`` may not become champion: feature-set mismatch with what inference
    extracts now, or drift over threshold in the latest drift report (of the candidate, or,
    when the candidate has none yet, of the champion it would replace)."""
    m = get_model(conn, model_id, with_metrics=False)
    out = []
    if m["feature_set_version"] != features.FEATURE_SET_VERSION:
        out.append({"code": "feature_set_mismatch",
                    "message": f"model feature_set_version {m['feature_set_version']!r} != "
                               f"inference's {features.FEATURE_SET_VERSION!r}"})
    report = latest_drift(conn, model_id)
    subject = "candidate"
    if report is None:
        current = champion(conn, m["regime"])
        if current is not None and current["id"] != model_id:
            report, subject = latest_drift(conn, current["id"]), "current champion"
    if report is not None and report["drift_detected"]:
        out.append({"code": "drift_over_threshold",
                    "message": f"drift report {report['id']} ({subject}, model "
                               f"{report['model_id']}) is over threshold: "
                               f"{', '.join(report['report'].get('drifted_features') or []) or 'score drift'}"
                               "; check drift for the candidate first",
                    "report_id": report["id"]})
    return out


def promote(conn, model_id: int, *, actor_user_id: int | None = None, reason: str | None = None
            ) -> dict:
    """Make ``model_id`` the champion of its regime scope; the previous champion is retired.

    Refused (409) on a feature-set mismatch or drift over threshold (``promotion_blockers``),
    or when the model is already champion."""
    _lock_registry(conn)
    m = get_model(conn, model_id, with_metrics=False)
    if m["status"] == "champion":
        raise errors.InvalidState(f"model {model_id} is already champion", code="already_champion")
    if m["status"] == "training":
        raise errors.InvalidState(f"model {model_id} is still training (status training)")
    blockers = promotion_blockers(conn, model_id)
    if blockers:
        b = blockers[0]
        raise errors.Conflict(f"promotion refused: {b['message']}", code=b["code"],
                              blockers=blockers)
    now = utcnow()
    old = champion(conn, m["regime"])
    if old is not None:
        _set_status(conn, old["id"], "retired", retired_at=now)
        _audit(conn, old["id"], "retired", "champion", "retired", regime=m["regime"],
               actor=actor_user_id, reason=f"replaced by model {model_id}")
    _set_status(conn, model_id, "champion", deployed_at=now, retired_at=None)
    _audit(conn, model_id, "promoted", m["status"], "champion", regime=m["regime"],
           replaced=old["id"] if old else None, actor=actor_user_id, reason=reason)
    TOPIC.emit(conn, "ModelPromoted", aggregate_type="ml_model", aggregate_id=str(model_id),
               user_id=actor_user_id, payload={
        "model_id": model_id, "regime": m["regime"], "to_status": "champion",
        "replaced_model_id": old["id"] if old else None, "reason": reason})
    return get_model(conn, model_id)


def rollback(conn, *, regime: str | None = None, actor_user_id: int | None = None,
             reason: str | None = None) -> dict:
    """Retire the champion of ``regime`` (None: global) and restore the champion it replaced
    (from the audit trail). 409 when there is no champion or nothing to go back to."""
    _lock_registry(conn)
    current = champion(conn, regime)
    if current is None:
        raise errors.InvalidState(f"no champion for {regime or 'the global scope'}",
                                  code="no_champion")
    prev = conn.execute(
        sa.select(ml_model_audit.c.replaced_model_id)
        .where(ml_model_audit.c.model_id == current["id"], ml_model_audit.c.action.in_(
            ("promoted", "restored")), ml_model_audit.c.to_status == "champion")
        .order_by(ml_model_audit.c.id.desc()).limit(1)).scalar()
    if prev is None:
        raise errors.InvalidState(f"model {current['id']} replaced no earlier champion",
                                  code="no_previous_champion")
    now = utcnow()
    _set_status(conn, current["id"], "retired", retired_at=now)
    _audit(conn, current["id"], "rolled_back", "champion", "retired", regime=regime,
           actor=actor_user_id, reason=reason)
    prev_row = get_model(conn, prev, with_metrics=False)
    # The restored model's "replaced" is what it replaced originally, so rollbacks chain.
    before = conn.execute(
        sa.select(ml_model_audit.c.replaced_model_id)
        .where(ml_model_audit.c.model_id == prev, ml_model_audit.c.to_status == "champion")
        .order_by(ml_model_audit.c.id.desc()).limit(1)).scalar()
    _set_status(conn, prev, "champion", deployed_at=now, retired_at=None)
    _audit(conn, prev, "restored", prev_row["status"], "champion", regime=regime,
           replaced=before, actor=actor_user_id, reason=reason)
    TOPIC.emit(conn, "ModelRolledBack", aggregate_type="ml_model", aggregate_id=str(prev),
               user_id=actor_user_id, payload={"model_id": prev, "regime": regime,
                                               "replaced_model_id": current["id"], "reason": reason})
    return get_model(conn, prev)


def retire(conn, model_id: int, *, actor_user_id=None, reason=None) -> dict:
    _lock_registry(conn)
    m = get_model(conn, model_id, with_metrics=False)
    if m["status"] in ("champion", "retired"):
        raise errors.InvalidState(f"model {model_id} is {m['status']}: "
                                  + ("roll back or promote another instead" if m["status"] == "champion"
                                     else "already retired"))
    if _running_experiment_of(conn, model_id):
        raise errors.InvalidState(f"model {model_id} is in a running experiment")
    _set_status(conn, model_id, "retired", retired_at=utcnow())
    _audit(conn, model_id, "retired", m["status"], "retired", regime=m["regime"],
           actor=actor_user_id, reason=reason)
    return get_model(conn, model_id)


def _running_experiment_of(conn, model_id) -> int | None:
    return conn.execute(sa.select(ml_experiments.c.id).where(
        ml_experiments.c.status.in_(("running", "stopped")),
        sa.or_(ml_experiments.c.challenger_model_id == model_id,
               ml_experiments.c.champion_model_id == model_id)).limit(1)).scalar()


def model_blob(conn, model_id: int) -> bytes:
    b = conn.execute(sa.select(ml_models.c.model_blob).where(ml_models.c.id == model_id)).scalar()
    if b is None:
        raise errors.NotFound(f"model {model_id} not found")
    return bytes(b)


def _dec4(v):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return Decimal(str(round(float(v), 4)))


def _parse_time(s):
    if s is None:
        return None
    return pd.Timestamp(s).tz_convert("UTC").to_pydatetime()


# =========================================================================================
# Training
# =========================================================================================

TRAIN_DEFAULTS = dict(train_days=5, val_days=1, step_days=1, embargo_days=1.0,
                      min_train_samples=500, max_windows=None, min_regime_samples=500,
                      calibration="auto")


def dataset_hash(frame: pd.DataFrame, feature_list=FEATURE_LIST) -> str:
    """SHA-256 over the rows a model was trained on (ids, times, labels, features), in idea
    order: the lineage record of "which data made this model"."""
    cols = ["idea_id", "decision_time", "label_time", *training.LABEL_COLUMNS,
            *[f for f in feature_list if f in frame]]
    view = frame[cols].sort_values("idea_id", kind="mergesort").reset_index(drop=True)
    h = hashlib.sha256(json.dumps(cols).encode())
    h.update(pd.util.hash_pandas_object(view.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()


def reference_sample(frame: pd.DataFrame, model: training.TrainedModel, *,
                     n: int = REFERENCE_ROWS, seed: int = 0) -> dict:
    """A seeded sample of the training features plus the model's scores on it: what drift
    checks compare recent data against."""
    idx = np.sort(np.random.default_rng(seed).choice(len(frame), size=min(n, len(frame)),
                                                     replace=False))
    sample = frame.iloc[idx]
    scores = inference.probability_to_score(model.predict_proba(sample))
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


def train_frame(frame: pd.DataFrame, *, params: Mapping | None = None,
                options: Mapping | None = None, progress=None,
                feature_list=FEATURE_LIST, cat_features=CAT_FEATURES) -> training.TrainedModel:
    """Walk-forward train on a prepared frame (``training.train_model`` with our defaults)."""
    o = {**TRAIN_DEFAULTS, **{k: v for k, v in (options or {}).items() if v is not None}}
    return training.train_model(
        frame, feature_list, cat_features=list(cat_features), score_column="original_score",
        params=params, train_days=int(o["train_days"]), val_days=int(o["val_days"]),
        step_days=int(o["step_days"]), embargo=pd.Timedelta(days=float(o["embargo_days"])),
        min_train_samples=int(o["min_train_samples"]), max_windows=o["max_windows"],
        calibration=o["calibration"], regime_column=REGIME_COLUMN,
        min_regime_samples=int(o["min_regime_samples"]), progress=progress)


def train(conn, *, params: Mapping | None = None, options: Mapping | None = None,
          regime: str | None = None, progress=None, actor_user_id: int | None = None,
          description: str | None = None, frame: pd.DataFrame | None = None,
          min_rows: int = 50) -> dict:
    """Train on every user's settled ideas (``regime``: only that VIX regime's, registered as
    a candidate champion for that regime) and register the result (status validating).

    Loads with ``conn``, fits (CPU), stores with ``conn``: one transaction. The CLI uses
    ``load_training_frame`` / ``train_frame`` / ``register_model`` with separate ones."""
    if frame is None:
        frame = load_training_frame(conn, regime=regime)
    if len(frame) < min_rows:
        raise errors.InvalidState(
            f"only {len(frame)} settled ideas with features"
            + (f" in regime {regime}" if regime else "") + f"; need at least {min_rows}",
            code="insufficient_data")
    try:
        model = train_frame(frame, params=params, options=options, progress=progress)
    except ValueError as exc:
        raise errors.InvalidState(f"training failed: {exc}", code="training_failed")
    return register_model(conn, model, regime=regime, dataset_hash=dataset_hash(frame),
                          reference=reference_sample(frame, model), actor_user_id=actor_user_id,
                          description=description)


# =========================================================================================
# Part 1's data: settled ideas, their feature snapshots, labels and logged decisions
# =========================================================================================


def _part1():
    """Part 1's tables module (same plugin), or None before its migration exists."""
    try:
        from plugins.mlloop import tables
    except ImportError:
        return None
    return tables


_NOT_FEATURES = frozenset({"id", "user_id", "tracked_idea_id", "decision_id", "recorded_at",
                           "snapshot_time", "feature_set_version", "feature_extractor_version",
                           "gex_calc_version", "vix_regime_classifier_version"})


def feature_dict(snapshot: Mapping) -> dict:
    """The model's feature dict from a stored ``ml_feature_snapshots`` row: exactly what the
    selector's extraction produced (part 1 stores features at extraction's precision)."""
    return {k: (float(v) if isinstance(v, Decimal) else v)
            for k, v in snapshot.items() if k not in _NOT_FEATURES}


def load_training_frame(conn, *, regime: str | None = None, since=None, until=None
                        ) -> pd.DataFrame:
    """One row per settled idea (every user's): the features of the decision that first
    scored it (its snapshot, taken at decision time: point in time), the rule score and the
    labels. ``label_time`` is the settlement time (what purging needs)."""
    p1 = _part1()
    if p1 is None:
        return _empty_frame()
    ti, fs, lb = p1.tracked_ideas, p1.ml_feature_snapshots, p1.ml_labels
    feats = [c for c in fs.c if c.name not in _NOT_FEATURES]
    q = (sa.select(ti.c.idea_id, ti.c.decision_time, ti.c.settled_at, ti.c.regime,
                   fs.c.snapshot_time, lb.c.profit_tier, lb.c.profitable, lb.c.r2r_achieved,
                   lb.c.settlement_pnl, *feats)
         .select_from(ti.join(fs, fs.c.decision_id == ti.c.decision_id)
                      .join(lb, lb.c.tracked_idea_id == ti.c.id))
         .where(ti.c.settlement_status == "settled", fs.c.snapshot_time <= ti.c.decision_time))
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
    return _to_frame(rows) if rows else _empty_frame()


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(columns=["idea_id", "decision_time", "label_time", "regime",
                                 *training.LABEL_COLUMNS, *FEATURE_LIST])


def _to_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for f in FEATURE_LIST:
        if f not in frame:
            frame[f] = None
        if f in CAT_FEATURES:
            frame[f] = frame[f].astype(object)
        else:
            frame[f] = pd.to_numeric(frame[f].map(
                lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v), errors="coerce")
    for c in ("decision_time", "label_time"):
        if c in frame:
            frame[c] = pd.to_datetime(frame[c], utc=True)
    return frame


def decision_frame(conn, *, settled_only: bool = True, since=None, until=None,
                   experiment_id: int | None = None) -> pd.DataFrame:
    """Logged decisions (every user's) joined to their idea's outcome and labels."""
    p1 = _part1()
    cols = ["decision_id", "user_id", "idea_id", "decision_time", "model_id", "model_version",
            "original_score", "ml_score", "final_score", "experiment_id", "experiment_arm",
            "exploration", "regime", "settled", "pnl", "profitable", "profit_tier",
            "r2r_achieved", "max_adverse_excursion"]
    if p1 is None:
        return pd.DataFrame(columns=cols)
    md, ti, lb = p1.ml_decisions, p1.tracked_ideas, p1.ml_labels
    join = md.join(ti, ti.c.id == md.c.tracked_idea_id, isouter=not settled_only)
    join = join.join(lb, lb.c.tracked_idea_id == md.c.tracked_idea_id, isouter=True)
    q = sa.select(
        md.c.id.label("decision_id"), md.c.user_id, md.c.idea_id, md.c.decision_time, md.c.model_id,
        md.c.model_version, md.c.original_score, md.c.ml_score, md.c.final_score,
        md.c.experiment_id, md.c.experiment_arm, md.c.exploration, ti.c.regime,
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
    frame = pd.DataFrame([dict(r._mapping) for r in conn.execute(q.order_by(md.c.id))],
                         columns=cols)
    for c in ("original_score", "ml_score", "final_score", "pnl", "r2r_achieved",
              "max_adverse_excursion"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    if len(frame):
        frame["decision_time"] = pd.to_datetime(frame["decision_time"], utc=True)
    return frame


# =========================================================================================
# Experiments
# =========================================================================================


def create_experiment(conn, data: Mapping, *, actor_user_id: int | None = None) -> dict:
    """Champion (the scope's current one; none = the rules) vs a challenger model."""
    _lock_registry(conn)
    regime = data.get("regime")
    ch = get_model(conn, data["challenger_model_id"], with_metrics=False)
    if ch["status"] not in ("validating", "challenger"):
        raise errors.InvalidState(f"model {ch['id']} is {ch['status']}: only a validating "
                                  "model can be a challenger")
    if ch["feature_set_version"] != features.FEATURE_SET_VERSION:
        raise errors.Conflict(f"model {ch['id']} feature_set_version "
                              f"{ch['feature_set_version']!r} != {features.FEATURE_SET_VERSION!r}",
                              code="feature_set_mismatch")
    running = conn.execute(sa.select(ml_experiments.c.id).where(
        ml_experiments.c.status == "running",
        ml_experiments.c.regime.is_(None) if regime is None else
        sa.or_(ml_experiments.c.regime == regime, ml_experiments.c.regime.is_(None)))).scalar()
    if running is not None:
        raise errors.InvalidState(f"experiment {running} is already running in this scope",
                                  code="experiment_running")
    champ = champion(conn, regime) or (champion(conn, None) if regime else None)
    if champ is not None and champ["id"] == ch["id"]:
        raise errors.InvalidState("the challenger is the champion")
    now = utcnow()
    values = dict(
        experiment_name=data["name"], description=data.get("description"),
        champion_model_id=champ["id"] if champ else None, challenger_model_id=ch["id"],
        traffic_split=Decimal(str(round(float(data.get("traffic_split", 0.10)), 2))),
        status="running", started_at=data.get("started_at") or now, regime=regime,
        champion_ml_weight=data.get("champion_ml_weight"),
        challenger_ml_weight=data.get("challenger_ml_weight"),
        max_duration_days=int(data.get("max_duration_days", 14)),
        min_samples_per_arm=int(data.get("min_samples_per_arm", 100)),
        early_stop_threshold=float(data.get("early_stop_threshold", 0.01)),
        champion_samples=0, challenger_samples=0, created_by=actor_user_id)
    exp_id = conn.execute(ml_experiments.insert().values(**values)).inserted_primary_key[0]
    if ch["status"] != "challenger":
        _set_status(conn, ch["id"], "challenger")
        _audit(conn, ch["id"], "challenger", ch["status"], "challenger", regime=ch["regime"],
               actor=actor_user_id, reason=f"experiment {exp_id}")
    return get_experiment(conn, exp_id, evaluate=False)


def list_experiments(conn, status: str | None = None) -> list[dict]:
    q = sa.select(ml_experiments).order_by(ml_experiments.c.id.desc())
    if status:
        q = q.where(ml_experiments.c.status == status)
    return [_experiment_out(r._mapping) for r in conn.execute(q)]


def _experiment_row(conn, experiment_id: int, lock: bool = False) -> dict:
    q = sa.select(ml_experiments).where(ml_experiments.c.id == experiment_id)
    r = conn.execute(q).first()
    if r is None:
        raise errors.NotFound(f"experiment {experiment_id} not found")
    return dict(r._mapping)


def _experiment_out(m) -> dict:
    d = dict(m)
    for k in ("traffic_split", "champion_win_rate", "challenger_win_rate", "p_value"):
        if d.get(k) is not None:
            d[k] = float(d[k])
    return d


def experiment_samples(conn, exp: Mapping) -> tuple[dict, dict]:
    """(all decisions per arm: counts for the SRM check, settled outcomes per arm)."""
    p1 = _part1()
    counts = {abtest.CHAMPION: 0, abtest.CHALLENGER: 0}
    if p1 is None:
        return counts, {a: pd.DataFrame(columns=["r2r_achieved", "profitable"]) for a in counts}
    md = p1.ml_decisions
    for arm, n in conn.execute(sa.select(md.c.experiment_arm, sa.func.count())
                               .where(md.c.experiment_id == exp["id"])
                               .group_by(md.c.experiment_arm)):
        if arm in counts:
            counts[arm] = int(n)
    frame = decision_frame(conn, experiment_id=exp["id"])
    frame = frame.dropna(subset=["r2r_achieved", "profitable"])
    frame["profitable"] = frame["profitable"].astype(float)
    outcomes = {a: frame[frame["experiment_arm"] == a] for a in counts}
    return counts, outcomes


def evaluate_experiment(conn, exp: Mapping, now=None) -> dict:
    """Live evaluation: SRM on decision counts, Welch on R2R, win rate, drawdown, and what
    the stopping rules say now."""
    counts, outcomes = experiment_samples(conn, exp)
    split = float(exp["traffic_split"])
    srm = abtest.srm_check(counts, {abtest.CHAMPION: 1.0 - split, abtest.CHALLENGER: split})
    result = abtest.evaluate(outcomes[abtest.CHAMPION], outcomes[abtest.CHALLENGER])
    stop = abtest.check_stopping(exp, outcomes, now or utcnow())
    return _jsonable({"decisions": counts, "settled": {a: int(len(o)) for a, o in outcomes.items()},
                      "srm": srm, "result": result,
                      "stopping": {"stop": stop.stop, "reason": stop.reason}})


def get_experiment(conn, experiment_id: int, *, evaluate: bool = True, now=None) -> dict:
    exp = _experiment_row(conn, experiment_id)
    out = _experiment_out(exp)
    out["evaluation"] = evaluate_experiment(conn, exp, now) if evaluate else None
    return out


def check_experiments(conn, *, now=None, actor_user_id=None) -> list[dict]:
    """The stopping-rules job: every running experiment is evaluated; one whose rules say stop
    (max duration, significance, sample-ratio mismatch) is stopped with its result recorded
    and ExperimentConcluded emitted. Promotion stays an admin's decision (conclude)."""
    now = now or utcnow()
    out = []
    for exp in [dict(r._mapping) for r in conn.execute(
            sa.select(ml_experiments).where(ml_experiments.c.status == "running")
            .order_by(ml_experiments.c.id))]:
        counts, outcomes = experiment_samples(conn, exp)
        decision = abtest.check_stopping(exp, outcomes, now)
        result = _jsonable(decision.result) if decision.result else None
        values = dict(champion_samples=counts[abtest.CHAMPION],
                      challenger_samples=counts[abtest.CHALLENGER],
                      last_check={"at": now.isoformat(), "stop": decision.stop,
                                  "reason": decision.reason, "result": result})
        if result:
            values.update(_result_columns(result))
        if decision.stop:
            values.update(status="stopped", stop_reason=decision.reason, ended_at=now)
            TOPIC.emit(conn, "ExperimentConcluded", aggregate_type="ml_experiment", aggregate_id=str(exp["id"]),
                       user_id=actor_user_id, payload={
                "experiment_id": exp["id"], "winner": values.get("winner"),
                "stop_reason": decision.reason, "p_value": (result or {}).get("p_value"),
                "promoted_model_id": None})
        conn.execute(ml_experiments.update().where(ml_experiments.c.id == exp["id"]).values(**values))
        out.append({"experiment_id": exp["id"], "stop": decision.stop, "reason": decision.reason,
                    "winner": values.get("winner"), "p_value": (result or {}).get("p_value")})
    return out


def _result_columns(result: Mapping) -> dict:
    ch, cl = result.get(abtest.CHAMPION) or {}, result.get(abtest.CHALLENGER) or {}
    p = result.get("p_value")
    winner = result.get("winner")
    if winner == abtest.CHAMPION and not result.get("significant"):
        winner = "no_difference"
    return dict(champion_win_rate=_dec4(ch.get("win_rate")),
                challenger_win_rate=_dec4(cl.get("win_rate")),
                p_value=None if p is None else Decimal(str(round(float(p), 6))), winner=winner)


def conclude_experiment(conn, experiment_id: int, *, promote_winner: bool = True,
                        actor_user_id=None, reason=None, now=None) -> dict:
    """Final evaluation; if the challenger won (Welch p < 0.05 and higher mean R2R) and
    ``promote_winner``, it is promoted (the registry's refusals apply); a losing challenger
    goes back to validating."""
    _lock_registry(conn)
    exp = _experiment_row(conn, experiment_id)
    if exp["status"] not in ("running", "stopped"):
        raise errors.InvalidState(f"experiment {experiment_id} is {exp['status']}")
    now = now or utcnow()
    ev = evaluate_experiment(conn, exp, now)
    result = ev["result"]
    promoted = None
    if result["winner"] == abtest.CHALLENGER and promote_winner:
        promote(conn, exp["challenger_model_id"], actor_user_id=actor_user_id,
                reason=reason or f"won experiment {experiment_id} (p={result['p_value']:.4g})")
        promoted = exp["challenger_model_id"]
    else:
        ch = get_model(conn, exp["challenger_model_id"], with_metrics=False)
        if ch["status"] == "challenger":
            _set_status(conn, ch["id"], "validating")
            _audit(conn, ch["id"], "experiment_ended", "challenger", "validating",
                   regime=ch["regime"], actor=actor_user_id,
                   reason=f"experiment {experiment_id}: winner {result['winner']}")
    values = dict(status="concluded", ended_at=exp["ended_at"] or now,
                  champion_samples=ev["decisions"][abtest.CHAMPION],
                  challenger_samples=ev["decisions"][abtest.CHALLENGER],
                  conclusion={**ev, "promoted_model_id": promoted, "reason": reason,
                              "concluded_by": actor_user_id},
                  **_result_columns(result))
    conn.execute(ml_experiments.update().where(ml_experiments.c.id == experiment_id).values(**values))
    TOPIC.emit(conn, "ExperimentConcluded", aggregate_type="ml_experiment", aggregate_id=str(experiment_id),
               user_id=actor_user_id, payload={
        "experiment_id": experiment_id, "winner": values["winner"],
        "stop_reason": exp["stop_reason"] or "concluded", "p_value": result.get("p_value"),
        "promoted_model_id": promoted})
    return get_experiment(conn, experiment_id, evaluate=False)


def abort_experiment(conn, experiment_id: int, *, actor_user_id=None, reason=None) -> dict:
    _lock_registry(conn)
    exp = _experiment_row(conn, experiment_id)
    if exp["status"] not in ("running", "stopped"):
        raise errors.InvalidState(f"experiment {experiment_id} is {exp['status']}")
    conn.execute(ml_experiments.update().where(ml_experiments.c.id == experiment_id)
                 .values(status="aborted", ended_at=utcnow(), stop_reason="aborted",
                         conclusion={"reason": reason, "aborted_by": actor_user_id}))
    ch = get_model(conn, exp["challenger_model_id"], with_metrics=False)
    if ch["status"] == "challenger":
        _set_status(conn, ch["id"], "validating")
        _audit(conn, ch["id"], "experiment_ended", "challenger", "validating", regime=ch["regime"],
               actor=actor_user_id, reason=f"experiment {experiment_id} aborted")
    return get_experiment(conn, experiment_id, evaluate=False)


# =========================================================================================
# Drift
# =========================================================================================

DRIFT_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(drift.DriftConfig))


def latest_drift(conn, model_id: int) -> dict | None:
    r = conn.execute(sa.select(ml_drift_reports).where(ml_drift_reports.c.model_id == model_id)
                     .order_by(ml_drift_reports.c.id.desc()).limit(1)).first()
    return dict(r._mapping) if r else None


def list_drift_reports(conn, model_id: int | None = None, limit: int = 50) -> list[dict]:
    q = sa.select(ml_drift_reports).order_by(ml_drift_reports.c.id.desc()).limit(limit)
    if model_id is not None:
        q = q.where(ml_drift_reports.c.model_id == model_id)
    return [dict(r._mapping) for r in conn.execute(q)]


def check_drift(conn, *, model_id: int | None = None, regime: str | None = None,
                days: float = 5.0, until=None, config: Mapping | None = None,
                current: pd.DataFrame | None = None, actor_user_id=None) -> dict:
    """Compare the recent feature snapshots (the last ``days`` before ``until``, default the
    latest decision) with the model's training reference: per-feature PSI / KS /
    Wasserstein (or chi-square / Jensen-Shannon), and the model's score distribution.
    Stored, emitted as DriftChecked; over threshold it blocks promotion."""
    if model_id is None:
        c = champion(conn, regime) or champion(conn, None)
        if c is None:
            raise errors.InvalidState("no champion to check; name a model", code="no_champion")
        model_id = c["id"]
    ref_json = conn.execute(sa.select(ml_models.c.reference).where(ml_models.c.id == model_id)).first()
    if ref_json is None:
        raise errors.NotFound(f"model {model_id} not found")
    if not ref_json.reference:
        raise errors.InvalidState(f"model {model_id} has no drift reference", code="no_reference")
    ref = json.loads(ref_json.reference)
    cfg = drift.DriftConfig(**{k: v for k, v in (config or {}).items()
                               if k in DRIFT_CONFIG_FIELDS and v is not None})
    if current is None:
        if until is None:
            p1 = _part1()
            until = (conn.execute(sa.select(sa.func.max(p1.ml_decisions.c.decision_time))).scalar()
                     if p1 is not None else None) or utcnow()
            until = until + dt.timedelta(milliseconds=1)
        since = until - dt.timedelta(days=float(days))
        current = load_recent_features(conn, since=since, until=until, regime=regime)
    else:
        since = until = None
    if len(current) == 0:
        raise errors.InvalidState("no recent feature snapshots to compare", code="no_current_data")
    model = training.TrainedModel.from_blob(model_blob(conn, model_id))
    reference = pd.DataFrame(ref["features"])
    cur = current.reindex(columns=model.feature_list)
    cats = ref.get("cat_features") or list(model.cat_features)
    scores = inference.probability_to_score(model.predict_proba(cur))
    report = drift.drift_report(reference.reindex(columns=model.feature_list), cur,
                                model.feature_list, cat_features=cats,
                                reference_scores=ref["scores"], current_scores=scores, config=cfg)
    score_psi = (report.get("score") or {}).get("psi")
    values = dict(model_id=model_id, computed_at=utcnow(), window_start=since, window_end=until,
                  n_reference=int(ref["n"]), n_current=int(len(cur)),
                  drift_detected=bool(report["drift_detected"]),
                  share_drifted=float(report["share_drifted"]), score_psi=score_psi,
                  report=report, actor_user_id=actor_user_id)
    rid = conn.execute(ml_drift_reports.insert().values(**values)).inserted_primary_key[0]
    TOPIC.emit(conn, "DriftChecked", aggregate_type="ml_model", aggregate_id=str(model_id),
               user_id=actor_user_id, payload={
        "report_id": rid, "model_id": model_id, "drift_detected": values["drift_detected"],
        "share_drifted": values["share_drifted"], "score_psi": score_psi,
        "drifted_features": report["drifted_features"]})
    return {"id": rid, **values}


def load_recent_features(conn, *, since, until, regime=None) -> pd.DataFrame:
    """Feature snapshots of every decision made in [since, until) (settled or not)."""
    p1 = _part1()
    if p1 is None:
        return _empty_frame()
    fs, md = p1.ml_feature_snapshots, p1.ml_decisions
    feats = [c for c in fs.c if c.name not in _NOT_FEATURES]
    q = (sa.select(*feats).select_from(fs.join(md, md.c.id == fs.c.decision_id))
         .where(md.c.decision_time >= since, md.c.decision_time < until))
    if regime is not None:
        q = q.where(fs.c.vix_regime == regime)
    rows = [feature_dict(dict(r._mapping)) for r in conn.execute(q.order_by(md.c.decision_time))]
    return _to_frame(rows) if rows else _empty_frame()


# =========================================================================================
# Evaluation (the mid-week plan): pure functions over a decision frame, plus loaders
# =========================================================================================


def _bucket_label(lo, hi) -> str:
    return f"{lo}-{hi}"


def score_outcomes(frame: pd.DataFrame, score: str = "ml_score") -> dict:
    """Per score bucket (0-20 ... 80-100): count, average P&L, win rate, and the difference
    to the baseline (every settled decision with a score)."""
    f = frame.dropna(subset=[score, "pnl"])
    base_win = float((f["pnl"] > 0).mean()) if len(f) else None
    base_pnl = float(f["pnl"].mean()) if len(f) else None
    buckets = []
    for lo, hi in SCORE_BUCKETS:
        sel = f[(f[score] >= lo) & ((f[score] < hi) if hi < 100 else (f[score] <= hi))]
        n = int(len(sel))
        win = float((sel["pnl"] > 0).mean()) if n else None
        pnl = float(sel["pnl"].mean()) if n else None
        buckets.append({
            "bucket": _bucket_label(lo, hi), "low": lo, "high": hi, "count": n,
            "avg_pnl": pnl, "win_rate": win,
            "avg_r2r": float(sel["r2r_achieved"].mean()) if n and "r2r_achieved" in sel else None,
            "win_rate_vs_baseline": None if win is None or base_win is None else win - base_win,
            "avg_pnl_vs_baseline": None if pnl is None or base_pnl is None else pnl - base_pnl,
        })
    return _jsonable({"score": score, "n": int(len(f)), "baseline_win_rate": base_win,
                      "baseline_avg_pnl": base_pnl, "buckets": buckets})


def ml_vs_rules(frame: pd.DataFrame, threshold: float = 20.0, examples: int = 20) -> dict:
    """Where the ML score and the rule score agree (|ml - rule| <= threshold points) and where
    ML diverged: higher (ML liked it more) or lower. A divergence was right when ML was higher
    and the idea was profitable, or lower and it was not."""
    f = frame.dropna(subset=["ml_score", "original_score", "pnl"]).copy()
    f["divergence"] = f["ml_score"] - f["original_score"]
    f["won"] = f["pnl"] > 0
    agree = f[f["divergence"].abs() <= threshold]
    higher = f[f["divergence"] > threshold]
    lower = f[f["divergence"] < -threshold]

    def group(g, right=None):
        n = int(len(g))
        out = {"count": n, "win_rate": float(g["won"].mean()) if n else None,
               "avg_pnl": float(g["pnl"].mean()) if n else None}
        if right is not None:
            out["right"] = int(right.sum())
            out["wrong"] = n - int(right.sum())
            out["accuracy"] = float(right.mean()) if n else None
        return out

    div = f[f["divergence"].abs() > threshold]
    right = np.where(div["divergence"] > 0, div["won"], ~div["won"])
    top = div.reindex(div["divergence"].abs().sort_values(ascending=False).index).head(examples)
    return _jsonable({
        "threshold": threshold, "n": int(len(f)),
        "agree": group(agree), "ml_higher": group(higher, higher["won"]),
        "ml_lower": group(lower, ~lower["won"]),
        "diverged": {"count": int(len(div)), "right": int(np.sum(right)),
                     "wrong": int(len(div) - np.sum(right)),
                     "accuracy": float(np.mean(right)) if len(div) else None},
        "examples": [{"decision_id": str(r.decision_id), "idea_id": r.idea_id,
                      "ml_score": r.ml_score, "original_score": r.original_score,
                      "divergence": r.divergence, "pnl": r.pnl, "ml_right":
                      bool(r.won if r.divergence > 0 else not r.won)}
                     for r in top.itertuples()],
    })


def regime_breakdown(frame: pd.DataFrame, k: int = 10) -> dict:
    """Per VIX regime: count, win rate, average P&L and R2R, AUC of the ML and the rule score
    for `profitable`, and the top-k utility of each (per day, averaged)."""
    f = frame.dropna(subset=["pnl"])
    out = []
    for regime, g in f.groupby(f["regime"].fillna("unknown"), sort=True):
        gm = g.dropna(subset=["ml_score"])
        won = (g["pnl"] > 0).to_numpy()
        day = g["decision_time"].dt.floor("D").astype("int64").to_numpy()
        ml_top = (training.top_k_utility(gm["ml_score"].to_numpy(), gm["pnl"].to_numpy(),
                                         gm["r2r_achieved"].fillna(0).to_numpy(),
                                         gm["decision_time"].dt.floor("D").astype("int64").to_numpy(), k)[0]
                  if len(gm) else None)
        rule_top = training.top_k_utility(g["original_score"].to_numpy(), g["pnl"].to_numpy(),
                                          g["r2r_achieved"].fillna(0).to_numpy(), day, k)[0]
        out.append({
            "regime": regime, "count": int(len(g)), "with_ml_score": int(len(gm)),
            "win_rate": float(won.mean()), "avg_pnl": float(g["pnl"].mean()),
            "avg_r2r": float(g["r2r_achieved"].mean()) if g["r2r_achieved"].notna().any() else None,
            "ml_auc": training.roc_auc(gm["pnl"].to_numpy() > 0, gm["ml_score"].to_numpy())
            if len(gm) else None,
            "rule_auc": training.roc_auc(won, g["original_score"].to_numpy()),
            f"ml_top_{k}_avg_pnl": ml_top, f"rule_top_{k}_avg_pnl": rule_top,
        })
    return _jsonable({"k": k, "regimes": out})


GO_LIVE_MIN_SETTLED = 1000
GO_LIVE_MIN_REGIME = 30


def go_live_checklist(conn, frame: pd.DataFrame | None = None) -> dict:
    """The mid-week plan's six success criteria, computed from the data."""
    f = decision_frame(conn) if frame is None else frame
    f = f.dropna(subset=["pnl"])
    fm = f.dropna(subset=["ml_score"])
    n = int(len(fm))
    items = []

    items.append({"key": "sufficient_data", "title": "1000+ settled decisions with outcomes",
                  "passed": n >= GO_LIVE_MIN_SETTLED, "value": n,
                  "target": GO_LIVE_MIN_SETTLED})

    so = score_outcomes(fm)
    means = [b["avg_pnl"] for b in so["buckets"] if b["count"] >= 10]
    monotonic = len(means) >= 2 and all(b >= a for a, b in zip(means, means[1:]))
    rho = p = None
    if n >= 3 and fm["ml_score"].nunique() > 1:
        from scipy import stats
        res = stats.spearmanr(fm["ml_score"], fm["pnl"])
        rho, p = float(res.statistic), float(res.pvalue)
    items.append({"key": "positive_correlation",
                  "title": "higher ML scores -> better outcomes (monotonic trend)",
                  "passed": bool(rho is not None and rho > 0 and p < 0.05 and monotonic),
                  "value": {"spearman_rho": rho, "p_value": p, "monotonic_buckets": monotonic,
                            "bucket_avg_pnl": means}, "target": "rho > 0 (p < 0.05), bucket means non-decreasing"})

    champ = champion(conn, None)
    briers = None
    if champ is not None:
        pooled = (get_model(conn, champ["id"])["metrics"] or {}).get("pooled") or {}
        briers = [pooled.get(f"brier_tier_{k}") for k in training.CLASS_ORDER]
    items.append({"key": "calibration", "title": "Brier score < 0.25 for every profit tier",
                  "passed": bool(briers and all(b is not None and b < 0.25 for b in briers)),
                  "value": {"model_id": champ["id"] if champ else None, "brier_per_tier": briers},
                  "target": 0.25})

    top = base = None
    if n:
        day = fm["decision_time"].dt.floor("D").astype("int64").to_numpy()
        top = training.top_k_utility(fm["ml_score"].to_numpy(), fm["pnl"].to_numpy(),
                                     fm["r2r_achieved"].fillna(0).to_numpy(), day, 10)[0]
        base = float(fm.groupby(day)["pnl"].mean().mean())
    items.append({"key": "top_k_value", "title": "top 10 ML picks outperform random selection",
                  "passed": bool(top is not None and top > base), "value":
                  {"top_10_avg_pnl": top, "random_avg_pnl": base}, "target": "top_10 > random"})

    rb = regime_breakdown(fm)["regimes"]
    judged = [r for r in rb if r["with_ml_score"] >= GO_LIVE_MIN_REGIME and r["ml_auc"] is not None]
    items.append({"key": "no_regime_blindness", "title": "the model works across VIX regimes",
                  "passed": bool(len(judged) >= 2 and all(r["ml_auc"] > 0.5 for r in judged)),
                  "value": {r["regime"]: r["ml_auc"] for r in judged},
                  "target": f"ML AUC > 0.5 in every regime with >= {GO_LIVE_MIN_REGIME} decisions (>= 2 regimes)"})

    items.append(_experiment_readiness(conn, champ))
    return _jsonable({"ready": all(i["passed"] for i in items),
                      "passed": sum(1 for i in items if i["passed"]), "total": len(items),
                      "criteria": items})


def _experiment_readiness(conn, champ) -> dict:
    # Routing self-test: 10,000 synthetic ideas at a 20% split: deterministic on a second
    # pass, and no sample-ratio mismatch; plus a champion to test against, and no running
    # experiment whose own arm counts are mismatched.
    ids = [f"selftest-{i}" for i in range(10_000)]
    arms = [abtest.route("selftest", i, 0.2) for i in ids]
    again = [abtest.route("selftest", i, 0.2) for i in ids]
    n_ch = sum(a == abtest.CHALLENGER for a in arms)
    srm = abtest.srm_check({abtest.CHAMPION: len(ids) - n_ch, abtest.CHALLENGER: n_ch},
                           {abtest.CHAMPION: 0.8, abtest.CHALLENGER: 0.2})
    broken = []
    for exp in list_experiments(conn, "running"):
        counts, _ = experiment_samples(conn, exp)
        split = float(exp["traffic_split"])
        if abtest.srm_check(counts, {abtest.CHAMPION: 1 - split,
                                     abtest.CHALLENGER: split})["mismatch"]:
            broken.append(exp["id"])
    ok = arms == again and not srm["mismatch"] and champ is not None and not broken
    return {"key": "experiment_ready", "title": "A/B infrastructure tested and working",
            "passed": bool(ok), "value": {"routing_deterministic": arms == again,
                                          "routing_srm_p": srm["p_value"],
                                          "champion_model_id": champ["id"] if champ else None,
                                          "experiments_with_srm": broken},
            "target": "deterministic routing, no SRM, a champion to test against"}


# =========================================================================================
# Replay and deep scoring
# =========================================================================================


def replay_decision(conn, decision_id: str) -> dict:
    """Re-score a logged decision from its stored feature snapshot with the blob of its
    model version, and say whether the logged ML score is reproduced."""
    p1 = _part1()
    if p1 is None:
        raise errors.NotFound(f"decision {decision_id} not found")
    md, fs = p1.ml_decisions, p1.ml_feature_snapshots
    d = conn.execute(sa.select(md).where(md.c.id == decision_id)).first()
    if d is None:
        raise errors.NotFound(f"decision {decision_id} not found")
    d = dict(d._mapping)
    base = {"decision_id": decision_id, "idea_id": d["idea_id"], "model_id": d["model_id"],
            "model_version": d["model_version"], "experiment_id": d.get("experiment_id"),
            "experiment_arm": d.get("experiment_arm"),
            "logged_ml_score": _f(d["ml_score"]), "logged_final_score": _f(d["final_score"]),
            "original_score": _f(d["original_score"])}
    if d["model_id"] is None:
        return {**base, "matches": d["ml_score"] is None, "recomputed_ml_score": None,
                "reason": "rules only: no model scored this decision", "features": None}
    snap = conn.execute(sa.select(fs).where(fs.c.id == d["feature_snapshot_id"])).first()
    if snap is None:
        return {**base, "matches": False, "recomputed_ml_score": None,
                "reason": "the decision's feature snapshot is missing", "features": None}
    feats = feature_dict(dict(snap._mapping))
    row = conn.execute(sa.select(ml_models.c.model_blob, ml_models.c.content_id,
                                 ml_models.c.model_version).where(ml_models.c.id == d["model_id"])).first()
    if row is None:
        return {**base, "matches": False, "recomputed_ml_score": None,
                "reason": f"model {d['model_id']} is not in the registry", "features": feats}
    decimals = 2 if isinstance(d["ml_score"], Decimal) else None
    rep = inference.replay(bytes(row.model_blob), feats, _f(d["ml_score"]),
                           logged_model_id=row.content_id, decimals=decimals)
    version_ok = d["model_version"] is None or int(d["model_version"]) == int(row.model_version)
    return _jsonable({**base, "matches": bool(rep["matches"] and version_ok),
                      "recomputed_ml_score": rep["recomputed_ml_score"],
                      "abs_diff": rep["abs_diff"], "tier_probabilities": rep["tier_probabilities"],
                      "model_key": rep["model_key"], "compared_decimals": decimals,
                      "reason": None if rep["matches"] and version_ok else
                      ("model version differs" if not version_ok else "score differs"),
                      "features": {k: _json_value(v) for k, v in feats.items()
                                   if not isinstance(v, dt.datetime)}})


def deep_score(conn, model_id: int, feature_rows: list[Mapping], original_scores=None,
               idea_ids=None, ml_weight: float = 0.0) -> list[dict]:
    """The deep path (for the async worker): tier probabilities, confidence, P(profitable)."""
    scorer = load_scorer(conn, model_id)
    if scorer is None:
        raise errors.NotFound(f"model {model_id} not found")
    frame = _to_frame([dict(r) for r in feature_rows])
    if idea_ids is not None:
        frame["idea_id"] = list(idea_ids)
    return inference.score_deep(scorer.model, frame, original_scores=original_scores,
                                ml_weight=ml_weight)


def _f(v):
    return None if v is None else float(v)


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating, Decimal)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (pd.Timestamp, dt.datetime)):
        return pd.Timestamp(obj).isoformat()
    return obj


ProgressFn = Callable[[int, int, str], None]
