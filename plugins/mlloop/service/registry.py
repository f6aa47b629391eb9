"""The model registry: versions (status validating -> champion / challenger -> retired, one
champion per regime scope), promotion with its refusals, rollback along the audit trail,
retirement; every change audited and emitted on ``mlloop.models``. System-wide (admin).
No Flask: ``conn`` first."""
from __future__ import annotations

import json
import math

import sqlalchemy as sa
from optionsmath.decimals import quantize

from app import errors
from app.db import utcnow
from bus.envelope import parse_time
from plugins.mlloop.domain import features
from plugins.mlloop.events import MODELS
from plugins.mlloop.ml import gates
from plugins.mlloop.service.settings import get_settings, lock_registry
from plugins.mlloop.tables import (
    ml_drift_reports, ml_experiments, ml_model_audit, ml_models,
)

MODEL_NAME = "trade_selector"

MODEL_TYPE = "catboost"

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
    out = _model_out(r._mapping)
    if with_metrics:
        metrics = out["metrics"]
        if isinstance(metrics, str):
            metrics = out["metrics"] = json.loads(metrics)
        out["gates"] = gate_report(conn, model_id, metrics or {})
    return out


def champion(conn, regime: str | None = None,
             feature_set_version: str = features.FEATURE_SET_VERSION) -> dict | None:
    """The champion of a scope: a regime (None: global) of a feature set (one champion per
    (feature set, regime): a model scores the ideas sent with its features)."""
    r = conn.execute(sa.select(*_LIST_COLUMNS).where(
        ml_models.c.status == "champion", _scope(regime),
        ml_models.c.feature_set_version == feature_set_version)).first()
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


def register_model(conn, model, *, regime: str | None, dataset_hash: str,
                   reference: dict | None, actor_user_id: int | None = None,
                   description: str | None = None, name: str = MODEL_NAME,
                   feature_set_version: str = features.FEATURE_SET_VERSION) -> dict:
    """Store a trained model as a new version (status validating), audited, ModelTrained."""
    version = (conn.execute(sa.select(sa.func.max(ml_models.c.model_version))
                            .where(ml_models.c.model_name == name)).scalar() or 0) + 1
    model.version = str(version)
    blob = model.to_blob()
    parent = champion(conn, regime, feature_set_version) or (
        champion(conn, None, feature_set_version) if regime else None)
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
    MODELS.emit(conn, "ModelTrained", aggregate_type="ml_model", aggregate_id=str(model_id),
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
    mismatch = feature_set_mismatch(conn, m)
    if mismatch:
        out.append({"code": "feature_set_mismatch", "message": mismatch})
    report = latest_drift(conn, model_id)
    subject = "candidate"
    if report is None:
        current = champion(conn, m["regime"], m["feature_set_version"])
        if current is not None and current["id"] != model_id:
            report, subject = latest_drift(conn, current["id"]), "current champion"
    if report is not None and report["drift_detected"]:
        out.append({"code": "drift_over_threshold",
                    "message": f"drift report {report['id']} ({subject}, model "
                               f"{report['model_id']}) is over threshold: "
                               f"{', '.join(report['report'].get('drifted_features') or []) or 'score drift'}"
                               "; check drift for the candidate first",
                    "report_id": report["id"]})
    for g in gates.failed(gate_report(conn, model_id)):
        out.append({"code": f"gate_{g['name']}", "gate": g["name"], "message": g["message"],
                    "value": g["value"], "threshold": g["threshold"]})
    return out


def feature_set_mismatch(conn, m: dict) -> str | None:
    """Why inference could not feed this model the features it was trained on: its feature set
    is neither the built-in one nor declared, or it uses features the set does not have."""
    from plugins.mlloop.service import feature_sets
    fs = feature_sets.known(conn, m["feature_set_version"])
    if fs is None:
        return (f"model feature_set_version {m['feature_set_version']!r} != inference's "
                f"{features.FEATURE_SET_VERSION!r} and is not a declared feature set")
    allowed = set(features.DEFAULT_FEATURE_LIST) | set(fs.extras)
    extra = sorted(set(m.get("feature_list") or []) - allowed)
    if extra:
        return f"model uses features {extra} that feature set {fs.version!r} does not send"
    return None


def gate_report(conn, model_id: int, metrics: dict | None = None) -> dict:
    """The promotion gates (``ml.gates``) on the model's recorded held-out evidence, with the
    current gate settings."""
    if metrics is None:
        metrics = conn.execute(sa.select(ml_models.c.metrics).where(ml_models.c.id == model_id)).scalar()
        if metrics is None:
            raise errors.NotFound(f"model {model_id} not found")
        if isinstance(metrics, str):
            metrics = json.loads(metrics)
    return gates.evaluate(metrics, gates.GateConfig.from_settings(get_settings(conn)))


def promote(conn, model_id: int, *, actor_user_id: int | None = None, reason: str | None = None
            ) -> dict:
    """Make ``model_id`` the champion of its regime scope; the previous champion is retired.

    Refused (409) on a feature-set mismatch, drift over threshold or a failed promotion gate
    (code ``gate_<name>``: too few held-out windows or samples, no skill beyond doubt, no
    shuffled-label control, or no skill above it; ``promotion_blockers``),
    or when the model is already champion."""
    lock_registry(conn)
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
    old = champion(conn, m["regime"], m["feature_set_version"])
    if old is not None:
        _set_status(conn, old["id"], "retired", retired_at=now)
        _audit(conn, old["id"], "retired", "champion", "retired", regime=m["regime"],
               actor=actor_user_id, reason=f"replaced by model {model_id}")
    _set_status(conn, model_id, "champion", deployed_at=now, retired_at=None)
    _audit(conn, model_id, "promoted", m["status"], "champion", regime=m["regime"],
           replaced=old["id"] if old else None, actor=actor_user_id, reason=reason)
    MODELS.emit(conn, "ModelPromoted", aggregate_type="ml_model", aggregate_id=str(model_id),
                user_id=actor_user_id, payload={
        "model_id": model_id, "regime": m["regime"], "to_status": "champion",
        "replaced_model_id": old["id"] if old else None, "reason": reason})
    return get_model(conn, model_id)


def rollback(conn, *, regime: str | None = None, feature_set_version: str = features.FEATURE_SET_VERSION,
             actor_user_id: int | None = None,
             reason: str | None = None) -> dict:
    """Retire the champion of ``regime`` (None: global) and restore the champion it replaced
    (from the audit trail). 409 when there is no champion or nothing to go back to."""
    lock_registry(conn)
    current = champion(conn, regime, feature_set_version)
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
    MODELS.emit(conn, "ModelRolledBack", aggregate_type="ml_model", aggregate_id=str(prev),
                user_id=actor_user_id, payload={"model_id": prev, "regime": regime,
                                          "replaced_model_id": current["id"], "reason": reason})
    return get_model(conn, prev)


def retire(conn, model_id: int, *, actor_user_id=None, reason=None) -> dict:
    lock_registry(conn)
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
    return quantize(round(float(v), 4), 4)


def _parse_time(s):
    if s is None:
        return None
    return parse_time(s)


def latest_drift(conn, model_id: int) -> dict | None:
    r = conn.execute(sa.select(ml_drift_reports).where(ml_drift_reports.c.model_id == model_id)
                     .order_by(ml_drift_reports.c.id.desc()).limit(1)).first()
    return dict(r._mapping) if r else None
