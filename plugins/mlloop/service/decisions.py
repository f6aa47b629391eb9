"""The scoring request and the decisions it records (the seed's decision logger).

``score_ideas`` computes everything in the request -- market features from the stored
context (computed once per context id, cached), the rule score with the active
``selector_params`` version, the ML score from the scoring plan -- writes the tracked
ideas, and emits one ``DecisionRecorded`` (``mlloop.decisions``) and one
``FeatureSnapshotTaken`` (``mlloop.features``) per idea in the same transaction; the
consumers (``handlers.py``) write ``ml_decisions`` / ``ml_feature_snapshots`` in batches.
A decision is keyed by sha256(user, idea, context, selector_params version): scoring the
same idea in the same context again returns the recorded (or still pending) decision and
emits nothing. No Flask: ``conn`` and ``user_id`` first.
"""
from __future__ import annotations

import json
import math
from decimal import Decimal

import numpy as np
import sqlalchemy as sa
from optionsmath.decimals import to_decimal

from app import errors
from app.db import is_duplicate_key, utcnow
from bus import outbox
from bus.envelope import parse_time
from plugins.mlloop.domain import features as fx
from plugins.mlloop.domain import ideas, labels, rules
from plugins.mlloop.events import DECISIONS as DECISIONS_TOPIC
from plugins.mlloop.events import FEATURES as FEATURES_TOPIC
from plugins.mlloop.ml.scale import blend
from plugins.mlloop.service import feature_sets, idea_input, scoring_plan
from plugins.mlloop.service.common import (
    CENT, DECISIONS, FEATURE_COLUMNS, FEATURES, check_fits, chunks, dec2, decision_id_of,
    decision_key, feature_snapshot_id_of, insert_new, tracked_idea_id,
)
from plugins.mlloop.service.contexts import CONTEXTS, features_json
from plugins.mlloop.service.selector_params import active_params, params_version
from plugins.mlloop.tables import ml_decisions, ml_feature_snapshots, tracked_ideas


# -- the decision record: one decoder (DecisionRecorded -> ml_decisions row), one store ----------

# DecisionRecorded's payload version: 2 names its features by ``feature_snapshot_id`` (the
# FeatureSnapshotTaken on mlloop.features) instead of embedding them; version 1 also carried
# ``features`` / ``extra_features``, which ``decision_row`` never read, so both decode alike.
DECISION_SCHEMA_VERSION = 2

def decision_row(event, recorded_at=None) -> dict:
    """The ``ml_decisions`` row a ``DecisionRecorded`` event carries (schema_version 1 or 2): what
    the consumer writes, and what a read sees while the decision is still on its way
    (``pending_decisions``)."""
    p = event.payload
    return dict(
        id=p["decision_id"], decision_key=p["decision_key"], user_id=event.user_id, idea_id=p["idea_id"],
        tracked_idea_id=p["tracked_idea_id"], context_id=p["context_id"],
        decision_time=parse_time(p["decision_time"]),
        model_id=p.get("model_id"), model_version=p.get("model_version"),
        selector_params_version=p["selector_params_version"], feature_snapshot_id=p["feature_snapshot_id"],
        original_score=Decimal(p["original_score"]),
        ml_score=Decimal(p["ml_score"]) if p.get("ml_score") is not None else None,
        final_score=Decimal(p["final_score"]), rule_components=p["rule_components"],
        ml_weight=float(p.get("ml_weight") or 0.0), scoring_mode=p.get("scoring_mode", "normal"),
        experiment_id=p.get("experiment_id"), experiment_arm=p.get("experiment_arm"),
        exploration=bool(p.get("exploration")), action_taken="ranked", rank=int(p.get("rank") or 0),
        tier_probabilities=p.get("tier_probabilities"), p_profitable=p.get("p_profitable"),
        rule_source=p.get("rule_source", "selector"), recorded_at=recorded_at)


def feature_row(event, recorded_at=None) -> dict:
    """The ``ml_feature_snapshots`` row a ``FeatureSnapshotTaken`` event carries."""
    p = event.payload
    row = {c: p.get(c) for c in FEATURE_COLUMNS}
    row.update(id=p["feature_snapshot_id"], user_id=event.user_id, tracked_idea_id=p["tracked_idea_id"],
               decision_id=p["decision_id"], extra_features=p.get("extra_features"), recorded_at=recorded_at)
    return row


def pending_decisions(conn, user_id: int, ids: list[str]) -> dict[str, dict]:
    """Decisions committed but not yet written to ``ml_decisions`` by the consumer, read through
    the bus (the outbox's events), decoded as the consumer will decode them."""
    found: dict[str, dict] = {}
    for part in chunks(ids):
        for ev in outbox.read(conn, DECISIONS, user_id=user_id, aggregate_ids=part, limit=len(part)):
            found.setdefault(ev.aggregate_id, decision_row(ev))
    return found


def _item_of(row) -> dict:
    m = row._mapping if hasattr(row, "_mapping") else row
    return dict(idea_id=m["idea_id"], decision_id=m["id"], tracked_idea_id=m["tracked_idea_id"],
                decision_time=m["decision_time"], original_score=m["original_score"],
                rule_source=m.get("rule_source") or "selector", ml_score=m["ml_score"],
                p_profitable=m.get("p_profitable"), tier_probabilities=m.get("tier_probabilities"),
                final_score=m["final_score"], rule_components=m["rule_components"], model_id=m["model_id"],
                model_version=m["model_version"], experiment_id=m["experiment_id"],
                experiment_arm=m["experiment_arm"], exploration=bool(m["exploration"]),
                ml_weight=m["ml_weight"], replayed=True)


def _known_decisions(conn, user_id: int, ids: list[str]) -> dict[str, dict]:
    """Decisions already recorded (ml_decisions) or still on their way (the bus)."""
    found: dict[str, dict] = {}
    for part in chunks(ids):
        for r in conn.execute(sa.select(ml_decisions).where(ml_decisions.c.id.in_(part))):
            found[r.id] = _item_of(r)
    missing = [i for i in ids if i not in found]
    for did, row in pending_decisions(conn, user_id, missing).items():
        found[did] = _item_of(row)
    return found


def _ml_scores(assignments, feature_rows, originals) -> list[tuple]:
    """(ML score, calibrated tier probabilities, P(profitable) = p2 + p3) per idea, batched per
    scorer; a model failure degrades to (None, None, None): the rules decide alone."""
    import pandas as pd
    out: list[tuple] = [(None, None, None)] * len(feature_rows)
    groups: dict[int, list[int]] = {}
    scorers = {}
    for j, a in enumerate(assignments):
        if a.scorer is not None:
            groups.setdefault(id(a.scorer), []).append(j)
            scorers[id(a.scorer)] = a.scorer
    for key, idx in groups.items():
        try:
            frame = pd.DataFrame.from_records([feature_rows[j] for j in idx])
            frame = frame.drop(columns=["snapshot_time"], errors="ignore")
            res = scorers[key].score_batch(frame, [originals[j] for j in idx])
            cols = [f"p_tier_{k}" for k in range(4)]
            probs = (res[cols].to_numpy(dtype=float) if set(cols) <= set(res.columns)
                     else [None] * len(idx))
            for j, v, p in zip(idx, res["ml_score"].tolist(), probs):
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                if p is None or not np.isfinite(p).all():
                    out[j] = (float(v), None, None)
                else:
                    out[j] = (float(v), [round(float(x), 6) for x in p], round(float(p[2] + p[3]), 6))
        except Exception:  # never fail the selector on a model problem: rules decide alone
            pass
    return out


def score_ideas(conn, user_id: int, data: dict, *, mode: str = "normal") -> dict:
    """Score a batch of ideas against one market context; return them ranked (final score
    first) with their decision ids. ``mode`` is the host's scoring mode, decided once by the
    caller for the whole request: ``rules_only`` = no ML influence (weight 0; the champion's
    ML score is still logged as a shadow).

    Each idea may carry its own ``decision_time`` (default: the request's, else the context's
    as_of; never before the as_of), its own ``rule_score`` (recorded as ``original_score``,
    ``rule_source`` "user") and, under a declared ``feature_set_version``, extra ``features``
    (``idea_input``). A decision is keyed by (user, idea, context, selector_params version):
    scoring it again returns the recorded one."""
    ctx = CONTEXTS.get(conn, user_id, data["context_id"])
    market = ctx["features"]
    context_id = ctx["context_id"]
    decision_time = fx.utc_ms(data.get("decision_time") or ctx["as_of"])
    if decision_time < ctx["as_of"]:
        raise errors.field_error("decision_time", f"before the context's as_of ({ctx['as_of'].isoformat()})")
    items = data["ideas"]
    if len({i["idea_id"] for i in items}) != len(items):
        raise errors.field_error("ideas", "idea ids must be unique within a request")
    fset = feature_sets.resolve(conn, data.get("feature_set_version"))
    params = active_params(conn, user_id)
    keys = [decision_key(user_id, i["idea_id"], context_id, params.version) for i in items]
    ids = [decision_id_of(k) for k in keys]
    every = [idea_input.parse(item, j, as_of=ctx["as_of"], default_time=decision_time, feature_set=fset)
             for j, item in enumerate(items)]
    tracked = _check_tracked(conn, user_id, [e.idea for e in every])  # an idea id names one structure
    # A decision's transaction also tracks its idea, so an idea not tracked yet has no decision
    # anywhere (recorded or on its way): only tracked ideas' decisions are looked up.
    known = _known_decisions(conn, user_id, [d for d, i in zip(ids, items) if i["idea_id"] in tracked])
    todo = [j for j, d in enumerate(ids) if d not in known]
    results: list[dict] = [known[d] for d in ids if d in known]
    if todo:
        results += _decide(conn, user_id, [every[j] for j in todo], [keys[j] for j in todo],
                           [ids[j] for j in todo], tracked, market, context_id, params, ctx["symbol"],
                           mode, fset)
    results.sort(key=lambda r: (-r["final_score"], -r["original_score"], r["idea_id"]))
    for rank, r in enumerate(results, 1):
        r["rank"] = rank
    return dict(context_id=context_id, decision_time=decision_time, selector_params_version=params.version,
                feature_set_version=fset.version, scoring_mode=mode, ideas=results)


def _check_tracked(conn, user_id: int, batch: list[ideas.TradeIdea]) -> set[str]:
    """Ideas already tracked must keep their geometry (an idea id names one structure)."""
    seen: set[str] = set()
    if not batch:
        return seen
    by_id = {i.idea_id: i for i in batch}
    t = tracked_ideas.c
    cols = (t.idea_id, t.strategy, t.side, t.direction, t.strike, t.width, t.expiration, t.entry_debit, t.quantity)
    for part in chunks(list(by_id)):
        for r in conn.execute(sa.select(*cols).where(t.user_id == user_id, t.idea_id.in_(part))):
            i = by_id[r.idea_id]
            if (r.strategy, r.side, r.direction, Decimal(r.strike), r.width, r.expiration, Decimal(r.entry_debit),
                    r.quantity) != (i.strategy, i.side, i.direction, Decimal(i.strike), i.width, i.expiration,
                                    Decimal(i.debit), i.quantity):
                raise errors.Conflict(f"idea {r.idea_id!r} is already tracked with another structure",
                                      code="idea_conflict")
            seen.add(r.idea_id)
    return seen


def _decide(conn, user_id, batch, keys, ids, tracked, market, context_id, params, symbol, mode,
            fset) -> list[dict]:
    sctx = rules.ScoringContext.from_market_features(market)
    scores = rules.score_ideas([b.idea for b in batch], sctx, params)
    originals = [b.rule_score if b.rule_score is not None else rs.total for b, rs in zip(batch, scores)]
    regime = market.get("vix_regime")
    rules_only = mode == "rules_only"
    plan = scoring_plan.scoring_plan(conn, user_id, rules_only=rules_only, feature_set_version=fset.version)
    assignments = [plan.for_idea(b.idea.idea_id, regime) for b in batch]
    feature_rows = []
    for b, original in zip(batch, originals):
        idea = b.idea
        f = fx.extract_idea_features({"strategy": idea.strategy, "side": idea.side, "direction": idea.direction,
                                      "strike": idea.strike, "width": idea.width, "dte": idea.dte,
                                      "score": original}, market)
        check_fits(f, "ideas")
        f["feature_set_version"] = fset.version
        feature_rows.append({**f, **(b.extras or {})})
    mls = _ml_scores(assignments, feature_rows, [float(o) for o in originals])
    now = utcnow()
    snap_time = market["snapshot_time"]
    dec_specs, feat_specs, idea_rows, results = [], [], [], []
    for b, rs, original, a, f, (ml, tiers, p_prof), key, did in zip(
            batch, scores, originals, assignments, feature_rows, mls, keys, ids):
        idea = b.idea
        weight = 0.0 if rules_only or ml is None else float(a.ml_weight)
        ml_d = dec2(ml)
        final = original if weight == 0.0 else dec2(blend(float(original), float(ml_d), weight))
        tid = tracked_idea_id(user_id, idea.idea_id)
        fid = feature_snapshot_id_of(did)
        source = "user" if b.rule_score is not None else "selector"
        comps = {} if source == "user" else {k: str(v) for k, v in rs.components.items()}
        item = dict(idea_id=idea.idea_id, decision_id=did, tracked_idea_id=tid, decision_time=b.decision_time,
                    original_score=original, rule_source=source, ml_score=ml_d, p_profitable=p_prof,
                    tier_probabilities=tiers, final_score=final, rule_components=comps,
                    model_id=a.model_id, model_version=a.model_version, experiment_id=a.experiment_id,
                    experiment_arm=a.arm, exploration=bool(a.exploration), ml_weight=weight, replayed=False)
        results.append(item)
        fjson = features_json({k: v for k, v in f.items() if b.extras is None or k not in b.extras})
        payload = dict(item, decision_key=key, context_id=context_id, selector_params_version=params.version,
                       feature_snapshot_id=fid, scoring_mode=mode, rank=0, feature_set_version=fset.version,
                       idea={"strategy": idea.strategy, "side": idea.side, "direction": idea.direction,
                             "strike": idea.strike, "width": idea.width, "expiration": idea.expiration,
                             "dte": idea.dte, "debit": idea.debit, "quantity": idea.quantity,
                             "symbol": idea.symbol})
        del payload["replayed"]
        # Features by reference (schema_version 2): FeatureSnapshotTaken carries them once.
        dec_specs.append(dict(
            type="DecisionRecorded", aggregate_type="decision", aggregate_id=did, aggregate_version=1,
            user_id=user_id, occurred_at=b.decision_time, schema_version=DECISION_SCHEMA_VERSION,
            payload=payload))
        feat_specs.append(dict(
            type="FeatureSnapshotTaken", aggregate_type="feature_snapshot", aggregate_id=fid, aggregate_version=1,
            user_id=user_id, occurred_at=snap_time, payload={
                "feature_snapshot_id": fid, "decision_id": did, "tracked_idea_id": tid, "idea_id": idea.idea_id,
                **fjson, "extra_features": b.extras}))
        if idea.idea_id not in tracked:
            idea_rows.append(dict(
                id=tid, user_id=user_id, idea_id=idea.idea_id, symbol=idea.symbol or symbol, decision_id=did,
                context_id=context_id, decision_time=b.decision_time, strategy=idea.strategy, side=idea.side,
                direction=idea.direction, strike=idea.strike, width=idea.width, dte=idea.dte,
                expiration=idea.expiration, quantity=idea.quantity, entry_debit=idea.debit,
                risk_unit=_risk_unit(idea), entry_spot=to_decimal(market["spot_price"]),
                rule_score=original, selector_params_version=params.version, regime=regime, version=1,
                created_at=now, updated_at=now))  # the path columns start at their defaults
    try:  # no savepoint: a failed insert is undone with the caller's transaction (409 rolls back)
        for part in chunks(idea_rows, 5000):
            conn.execute(tracked_ideas.insert(), part)
    except sa.exc.IntegrityError as exc:
        if is_duplicate_key(exc):
            raise errors.Conflict("some of these ideas were scored concurrently by another request; retry",
                                  code="concurrent_scoring")
        raise
    for part in chunks(dec_specs, 5000):
        DECISIONS_TOPIC.emit_many(conn, part)
    for part in chunks(feat_specs, 5000):
        FEATURES_TOPIC.emit_many(conn, part)
    return results


def _risk_unit(idea: ideas.TradeIdea) -> Decimal:
    try:
        return labels.compute_risk_unit(idea).quantize(CENT)
    except labels.UndefinedRisk as exc:
        raise errors.field_error("ideas", f"idea {idea.idea_id!r}: {exc}")


def write_decisions(conn, events) -> int:
    """Insert ml_decisions rows for DecisionRecorded events; a decision already recorded
    (unique decision_key) is skipped, so redelivery beyond the host's dedupe is a no-op."""
    now = utcnow()
    rows: dict[str, dict] = {}
    for ev in events:
        rows.setdefault(ev.payload["decision_id"], decision_row(ev, now))
    return insert_new(conn, ml_decisions, rows)


def write_feature_snapshots(conn, events) -> int:
    now = utcnow()
    rows: dict[str, dict] = {}
    for ev in events:
        rows.setdefault(ev.payload["feature_snapshot_id"], feature_row(ev, now))
    return insert_new(conn, ml_feature_snapshots, rows)


def _features_of_snapshot(row) -> dict:
    m = row._mapping if hasattr(row, "_mapping") else row
    out = {}
    for c in FEATURE_COLUMNS:
        v = m.get(c)
        if isinstance(v, Decimal):
            v = float(v)
        if c == "is_opex_week" and v is not None:
            v = bool(v)
        out[c] = v
    return out


def _extras(value):
    return json.loads(value) if isinstance(value, str) else value


def get_decision(conn, user_id: int, decision_id: str) -> dict:
    """Everything needed to reproduce a decision: its record, the exact features, the idea's
    geometry, the selector_params version's weights and constants, and the model reference."""
    r = conn.execute(sa.select(ml_decisions).where(ml_decisions.c.id == decision_id,
                                                   ml_decisions.c.user_id == user_id)).first()
    if r is not None:
        d = dict(r._mapping)
        d["status"] = "recorded"
        f = conn.execute(sa.select(ml_feature_snapshots).where(
            ml_feature_snapshots.c.id == d["feature_snapshot_id"])).first()
        d["features"] = _features_of_snapshot(f) if f is not None else None
        d["extra_features"] = _extras(f._mapping["extra_features"]) if f is not None else None
    else:
        pending = pending_decisions(conn, user_id, [decision_id])
        if decision_id not in pending:
            raise errors.NotFound("no such decision")
        d = dict(pending[decision_id], status="pending")
        d["features"] = d["extra_features"] = None
        for ev in outbox.read(conn, FEATURES, user_id=user_id, aggregate_id=d["feature_snapshot_id"], limit=1):
            row = feature_row(ev)
            d["features"], d["extra_features"] = _features_of_snapshot(row), _extras(row["extra_features"])
    d["rule_source"] = d.get("rule_source") or "selector"
    t = tracked_ideas.c
    idea = conn.execute(sa.select(tracked_ideas).where(t.id == d["tracked_idea_id"], t.user_id == user_id)).first()
    d["idea"] = None if idea is None else {k: idea._mapping[k] for k in (
        "idea_id", "symbol", "strategy", "side", "direction", "strike", "width", "expiration", "dte",
        "quantity", "entry_debit", "risk_unit")}
    params = params_version(conn, user_id, d["selector_params_version"])
    d["selector_params"] = params.to_row() if params is not None else None
    d["model"] = {"model_id": d.get("model_id"), "model_version": d.get("model_version")}
    from plugins.mlloop.service.deep_scores import get_for_decision
    d["deep_score"] = get_for_decision(conn, user_id, decision_id)
    return d


def idea_row(conn, user_id: int, idea_id: str) -> dict:
    t = tracked_ideas.c
    r = conn.execute(sa.select(tracked_ideas).where(t.user_id == user_id, t.idea_id == idea_id)).first()
    if r is None:
        raise errors.NotFound(f"no tracked idea {idea_id!r}")
    return dict(r._mapping)


def list_ideas(conn, user_id: int, *, settlement_status: str | None = None, context_id: str | None = None,
               page: int = 1, page_size: int = 50) -> tuple[list[dict], int]:
    t = tracked_ideas.c
    cond = [t.user_id == user_id]
    if settlement_status:
        cond.append(t.settlement_status == settlement_status)
    if context_id:
        cond.append(t.context_id == context_id)
    total = conn.execute(sa.select(sa.func.count()).select_from(tracked_ideas).where(*cond)).scalar()
    rows = conn.execute(sa.select(tracked_ideas).where(*cond).order_by(t.decision_time.desc(), t.idea_id)
                        .limit(page_size).offset((page - 1) * page_size))
    return [dict(r._mapping) for r in rows], int(total)
