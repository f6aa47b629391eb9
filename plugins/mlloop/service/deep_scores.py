"""The deep scoring path, run asynchronously (issue 16): each decision a model scored gets its
deep score as its own immutable fact, linked to the decision.

The deep score is the decision's own model (``ml_decisions.model_id``: the model that served
it, champion or experiment arm) run through the full batch path (``ml.inference.score_deep``)
over the decision's stored feature snapshot: the calibrated tier forecast, the ML score it
maps to, the forecast's confidence (1 - H(p)/ln 4) and P(profitable) from the model's separate
Logloss sub-models (the fast path's ``p_profitable`` is p2 + p3 of the tier forecast). A
rules-only decision (no model) has nothing to deep-score and is never selected.

``score_pending`` (the ``mlloop.deep_score`` job) finds recorded decisions without a deep
score, scores them in batches off any transaction, and writes each batch -- ``ml_deep_scores``
rows plus one ``DeepScoreRecorded`` event each on ``mlloop.decisions`` -- in one transaction.
The record's id is derived from the decision id and ``decision_id`` is unique, so two
concurrent runs record a decision once (the later insert finds it and skips it). No Flask.
"""
from __future__ import annotations

import uuid

import sqlalchemy as sa

from app import errors
from app.db import is_duplicate_key, utcnow
from bus import outbox
from plugins.mlloop.events import DECISIONS as DECISIONS_TOPIC
from plugins.mlloop.service.common import NAMESPACE, chunks, dec2
from plugins.mlloop.tables import ml_decisions, ml_deep_scores, ml_feature_snapshots

BATCH = 1000          # decisions scored and written per transaction
DEFAULT_LIMIT = 20_000  # decisions per run (the next run takes the rest)

COLUMNS = ("id", "decision_id", "idea_id", "feature_snapshot_id", "model_id", "model_version", "model_key",
           "ml_score", "tier_probabilities", "confidence", "p_profitable", "job_id", "scored_at")


def deep_score_id_of(decision_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "deep:" + decision_id))


def pending(conn, *, user_id: int | None = None, limit: int = DEFAULT_LIMIT) -> list[dict]:
    """Recorded decisions scored by a model whose feature snapshot is recorded and which have
    no deep score yet, oldest first: ``{decision_id, user_id, idea_id, model_id,
    model_version, feature_snapshot_id}``. ``user_id`` None: everyone's."""
    md, ds, fs = ml_decisions, ml_deep_scores, ml_feature_snapshots
    q = (sa.select(md.c.id, md.c.user_id, md.c.idea_id, md.c.model_id, md.c.model_version,
                   md.c.feature_snapshot_id)
         .select_from(md.join(fs, fs.c.id == md.c.feature_snapshot_id)
                      .outerjoin(ds, ds.c.decision_id == md.c.id))
         .where(ds.c.id.is_(None), md.c.model_id.is_not(None))
         .order_by(md.c.decision_time, md.c.id).limit(limit))
    if user_id is not None:
        q = q.where(md.c.user_id == user_id)
    return [dict(decision_id=r.id, user_id=r.user_id, idea_id=r.idea_id, model_id=int(r.model_id),
                 model_version=r.model_version, feature_snapshot_id=r.feature_snapshot_id)
            for r in conn.execute(q)]


def _score(conn, batch: list[dict], job_id: str | None) -> tuple[list[dict], list[str]]:
    """Deep-score one batch (read-only): the rows to record and the decision ids skipped
    because their model is no longer in the registry."""
    import pandas as pd

    from plugins.mlloop.ml.inference import score_deep
    from plugins.mlloop.service.scoring_plan import load_scorer
    from plugins.mlloop.service.training_data import feature_dict
    fs = ml_feature_snapshots
    snaps = {}
    for part in chunks([d["feature_snapshot_id"] for d in batch]):
        for r in conn.execute(sa.select(fs).where(fs.c.id.in_(part))):
            snaps[r.id] = feature_dict(dict(r._mapping))
    by_model: dict[int, list[dict]] = {}
    for d in batch:
        by_model.setdefault(d["model_id"], []).append(d)
    rows, skipped = [], []
    now = utcnow()
    for model_id, ds in by_model.items():
        scorer = load_scorer(conn, model_id)
        if scorer is None or scorer.model is None:
            skipped += [d["decision_id"] for d in ds]
            continue
        frame = pd.DataFrame([snaps[d["feature_snapshot_id"]] for d in ds])
        for d, res in zip(ds, score_deep(scorer.model, frame)):
            rows.append(dict(
                id=deep_score_id_of(d["decision_id"]), decision_id=d["decision_id"], user_id=d["user_id"],
                idea_id=d["idea_id"], feature_snapshot_id=d["feature_snapshot_id"], model_id=model_id,
                model_version=int(d["model_version"]) if d["model_version"] is not None else 0,
                model_key=res["model_key"], ml_score=dec2(res["ml_score"]),
                tier_probabilities=[round(p, 6) for p in res["tier_probabilities"]],
                confidence=round(res["confidence"], 6), p_profitable=round(res["p_profitable"], 6),
                job_id=job_id, scored_at=now))
    return rows, skipped


def record(conn, rows: list[dict]) -> int:
    """Insert the deep scores not yet recorded and emit ``DeepScoreRecorded`` for each, in
    ``conn``'s transaction. Returns how many were new."""
    have = set()
    for part in chunks([r["decision_id"] for r in rows]):
        have.update(conn.execute(sa.select(ml_deep_scores.c.decision_id)
                                 .where(ml_deep_scores.c.decision_id.in_(part))).scalars())
    new = [r for r in rows if r["decision_id"] not in have]
    if not new:
        return 0
    conn.execute(ml_deep_scores.insert(), new)
    DECISIONS_TOPIC.emit_many(conn, [dict(
        type="DeepScoreRecorded", aggregate_type="deep_score", aggregate_id=r["id"], aggregate_version=1,
        user_id=r["user_id"], occurred_at=r["scored_at"], payload=_public(r)) for r in new])
    return len(new)


def score_pending(db, *, user_id: int | None = None, limit: int = DEFAULT_LIMIT, job_id: str | None = None,
                  progress=lambda fraction, message="": None) -> dict:
    """Deep-score up to ``limit`` pending decisions (``user_id`` None: everyone's), a batch per
    transaction, no transaction held while scoring. Returns ``{"pending", "scored",
    "recorded", "skipped"}``: recorded < scored when a concurrent run got there first;
    skipped = decisions whose model is not in the registry."""
    with db.read() as c:
        todo = pending(c, user_id=user_id, limit=limit)
    scored = recorded = skipped = 0
    progress(0.0, f"{len(todo)} decisions to deep-score")
    for i, batch in enumerate(chunks(todo, BATCH)):
        with db.read() as c:
            rows, miss = _score(c, batch, job_id)
        skipped += len(miss)
        scored += len(rows)
        for attempt in range(2):
            try:
                with db.transaction() as c:
                    recorded += record(c, rows)
                break
            except sa.exc.IntegrityError as exc:  # a concurrent run recorded some meanwhile
                if attempt or not is_duplicate_key(exc):
                    raise
        progress(min(1.0, (i + 1) * BATCH / max(len(todo), 1)), f"{scored} of {len(todo)} deep-scored")
    return {"pending": len(todo), "scored": scored, "recorded": recorded, "skipped": skipped}


def _public(row) -> dict:
    m = row._mapping if hasattr(row, "_mapping") else row
    return {("deep_score_id" if c == "id" else c): m[c] for c in COLUMNS}


def get_for_decision(conn, user_id: int, decision_id: str) -> dict | None:
    """The decision's deep score (the caller's own), or None while it has none."""
    ds = ml_deep_scores
    r = conn.execute(sa.select(ds).where(ds.c.decision_id == decision_id, ds.c.user_id == user_id)).first()
    return None if r is None else _public(r)


def deep_score_of(conn, user_id: int, decision_id: str) -> dict:
    """``GET /api/ml/decisions/{id}/deep-score``: 404 for a decision that is not the caller's,
    and 404 ``no_deep_score`` while it has none yet (or never will: a rules-only decision)."""
    found = get_for_decision(conn, user_id, decision_id)
    if found is not None:
        return found
    md = ml_decisions
    d = conn.execute(sa.select(md.c.model_id).where(md.c.id == decision_id, md.c.user_id == user_id)).first()
    if d is None:
        if not outbox.read(conn, DECISIONS_TOPIC.name, user_id=user_id, aggregate_id=decision_id, limit=1):
            raise errors.NotFound("no such decision")  # not recorded, not on its way either
        raise errors.NotFound("the decision is not recorded yet, so it has no deep score yet", code="no_deep_score")
    if d.model_id is None:
        raise errors.NotFound("a rules-only decision (no model scored it) has no deep score", code="no_deep_score")
    raise errors.NotFound("no deep score yet: the mlloop.deep_score job records it", code="no_deep_score")
