"""Replay of a logged decision (re-score its stored features with its model's blob: is the
logged ML score reproduced?) and the deep scoring path (tier probabilities, confidence and
P(profitable) for a batch). No Flask."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Mapping

import sqlalchemy as sa

from app import errors
from plugins.mlloop.ml.inference import replay, score_deep
from plugins.mlloop.ml.jsonable import jsonable
from plugins.mlloop.service.scoring_plan import load_scorer
from plugins.mlloop.service.training_data import _json_value, _to_frame, feature_dict
from plugins.mlloop.tables import ml_decisions, ml_feature_snapshots, ml_models


def replay_decision(conn, decision_id: str) -> dict:
    """Re-score a logged decision from its stored feature snapshot with the blob of its
    model version, and say whether the logged ML score is reproduced."""
    md, fs = ml_decisions, ml_feature_snapshots
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
    rep = replay(bytes(row.model_blob), feats, _f(d["ml_score"]),
                           logged_model_id=row.content_id, decimals=decimals)
    version_ok = d["model_version"] is None or int(d["model_version"]) == int(row.model_version)
    return jsonable({**base, "matches": bool(rep["matches"] and version_ok),
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
    return score_deep(scorer.model, frame, original_scores=original_scores,
                                ml_weight=ml_weight)


def _f(v):
    return None if v is None else float(v)


def tier_probabilities(conn, decision_ids: list[str]) -> list[dict]:
    """Tier probabilities of many logged decisions at once: per model, its scorer loads once
    (cached) and scores every decision's stored features in one batch. Beside each: the
    logged ML score and tier forecast, and whether the recomputed score (2 places) matches."""
    import pandas as pd

    md, fs = ml_decisions, ml_feature_snapshots
    rows = {r.id: r for r in conn.execute(
        sa.select(md.c.id, md.c.model_id, md.c.ml_score, md.c.tier_probabilities, md.c.feature_snapshot_id)
        .where(md.c.id.in_(list(decision_ids))))}
    snaps = {r.id: feature_dict(dict(r._mapping)) for r in conn.execute(
        sa.select(fs).where(fs.c.id.in_([r.feature_snapshot_id for r in rows.values()])))}
    out = {}
    by_model: dict[int, list[str]] = {}
    for did in decision_ids:
        r = rows.get(did)
        base = {"decision_id": did, "model_id": None, "tier_probabilities": None, "p_profitable": None,
                "ml_score": None, "logged_ml_score": None, "logged_tier_probabilities": None,
                "matches": False, "reason": None}
        if r is None:
            out[did] = {**base, "reason": "no such decision"}
            continue
        base.update(model_id=r.model_id, logged_ml_score=_f(r.ml_score),
                    logged_tier_probabilities=r.tier_probabilities)
        if r.model_id is None:
            out[did] = {**base, "matches": r.ml_score is None, "reason": "rules only: no model scored it"}
        elif r.feature_snapshot_id not in snaps:
            out[did] = {**base, "reason": "its feature snapshot is not recorded yet"}
        else:
            out[did] = base
            by_model.setdefault(int(r.model_id), []).append(did)
    for model_id, ids in by_model.items():
        scorer = load_scorer(conn, model_id)
        if scorer is None:
            for did in ids:
                out[did]["reason"] = f"model {model_id} is not in the registry"
            continue
        frame = pd.DataFrame([snaps[rows[d].feature_snapshot_id] for d in ids])
        res = scorer.score_batch(frame)
        for did, rec in zip(ids, res.itertuples()):
            probs = [float(getattr(rec, f"p_tier_{k}")) for k in range(4)]
            logged = out[did]["logged_ml_score"]
            out[did].update(tier_probabilities=probs, p_profitable=probs[2] + probs[3],
                            ml_score=float(rec.ml_score),
                            matches=logged is not None and round(float(rec.ml_score), 2) == round(logged, 2))
    return jsonable([out[d] for d in decision_ids])
