"""Drift checks of a model against its training reference (features and scores), stored as
``ml_drift_reports`` and emitted as ``DriftChecked``; a report over threshold blocks
promotion. System-wide (admin). No Flask."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Mapping

import pandas as pd
import sqlalchemy as sa

from app import errors
from app.db import utcnow
from plugins.mlloop.ml import drift
from plugins.mlloop.ml.model import TrainedModel
from plugins.mlloop.ml.scale import probability_to_score
from plugins.mlloop.events import MODELS
from plugins.mlloop.service.registry import champion, model_blob
from plugins.mlloop.service.training_data import load_recent_features
from plugins.mlloop.tables import ml_decisions, ml_drift_reports, ml_models

DRIFT_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(drift.DriftConfig))


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
            until = conn.execute(sa.select(sa.func.max(ml_decisions.c.decision_time))).scalar() or utcnow()
            until = until + dt.timedelta(milliseconds=1)
        since = until - dt.timedelta(days=float(days))
        from plugins.mlloop.service import feature_sets
        fsv = conn.execute(sa.select(ml_models.c.feature_set_version)
                           .where(ml_models.c.id == model_id)).scalar()
        current = load_recent_features(conn, since=since, until=until, regime=regime,
                                       feature_set=feature_sets.known(conn, fsv))
    else:
        since = until = None
    if len(current) == 0:
        raise errors.InvalidState("no recent feature snapshots to compare", code="no_current_data")
    model = TrainedModel.from_blob(model_blob(conn, model_id))
    reference = pd.DataFrame(ref["features"])
    cur = current.reindex(columns=model.feature_list)
    cats = ref.get("cat_features") or list(model.cat_features)
    scores = probability_to_score(model.predict_proba(cur))
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
    MODELS.emit(conn, "DriftChecked", aggregate_type="ml_model", aggregate_id=str(model_id),
                user_id=actor_user_id, payload={
        "report_id": rid, "model_id": model_id, "drift_detected": values["drift_detected"],
        "share_drifted": values["share_drifted"], "score_psi": score_psi,
        "drifted_features": report["drifted_features"]})
    return {"id": rid, **values}
