"""Model operations on a simulated world stored in part 1's tables (each stack, a private
database): training, the seed's Model Tests 9-12, the registry and its refusals, replay,
exploration and evaluation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from app import errors
from bus import outbox
from plugins.mlloop.service.settings import lock_registry
from plugins.mlloop import service
from plugins.mlloop.domain import features
from plugins.mlloop.ml import data as training
from plugins.mlloop.ml.model import TrainedModel
from plugins.mlloop.ml.train import shuffled_label_control
from plugins.mlloop import tables as p1
from plugins.mlloop.tables import ml_model_audit, ml_models
from tests.mlloop.test_service_training_data import (
    SMALL_OPTIONS, SMALL_PARAMS, insert_rows, log_decisions, private_db, relax_gates, split_days,
    world_rows,
)

__all__ = ["private_db"]


@pytest.fixture(scope="module")
def world(private_db):
    """10 settled days trained on (champion), 2 more days scored by it and logged."""
    db, stack = private_db
    rows = world_rows(seed=1, days=12, per_day=250)
    train_rows, live_rows = split_days(rows, 10)
    with db.transaction() as c:
        insert_rows(c, train_rows)
    progress = []
    with db.transaction() as c:
        frame = service.training_data.load_training_frame(c)
        model = service.training.train(c, params=SMALL_PARAMS, options=SMALL_OPTIONS,
                                       progress=lambda f, m: progress.append((f, 1.0)), actor_user_id=7,
                                       description="first")
        service.registry.promote(c, model["id"], actor_user_id=7, reason="first champion")
    with db.transaction() as c:
        insert_rows(c, live_rows)
        decision_ids = log_decisions(c, live_rows)
    return dict(db=db, stack=stack, frame=frame, model=model, progress=progress,
                decision_ids=decision_ids, live=live_rows)


def _pooled(world):
    return world["model"]["metrics"]["pooled"]


# -- "Done when": the champion beats the rule score; a shuffled-label control stays at chance

def test_champion_beats_rule_score_and_shuffled_labels_stay_at_chance(world):
    pooled = _pooled(world)
    assert pooled["n"] > 1000  # held-out (walk-forward validation) rows
    assert pooled["score_auc_profitable"] > pooled["rule_auc_profitable"] + 0.05
    control = shuffled_label_control(
        world["frame"], service.training_data.FEATURE_LIST, seed=3, cat_features=service.training_data.CAT_FEATURES,
        score_column="original_score", params=SMALL_PARAMS, train_days=4,
        min_train_samples=200, regime_column=service.training_data.REGIME_COLUMN, min_regime_samples=100_000)
    cp = control.metrics["pooled"]
    assert abs(cp["score_auc_profitable"] - 0.5) < 0.05
    assert abs(cp["auc_ovr"] - 0.5) < 0.05


# -- Seed section 9, Model Tests 9-12

def test_9_walk_forward_training_has_no_future_leakage(world):
    frame = world["frame"].sort_values("decision_time", kind="mergesort").reset_index(drop=True)
    windows = world["model"]["metrics"]["windows"]
    assert len(windows) >= 4
    for w in windows:
        vs, ts = pd.Timestamp(w["val_start"]), pd.Timestamp(w["train_start"])
        candidates = frame[(frame.decision_time >= ts) & (frame.decision_time < vs)]
        # kept training rows = candidates whose label was known before validation began
        known = candidates[candidates.label_time < vs]
        assert w["n_train"] == len(known)
        assert w["n_purged"] == len(candidates) - len(known) > 0
    # and the features are the decision-time snapshot's: point in time
    with world["db"].read() as c:
        bad = c.execute(sa.select(sa.func.count()).select_from(
            p1.tracked_ideas.join(p1.ml_feature_snapshots,
                                  p1.ml_feature_snapshots.c.decision_id == p1.tracked_ideas.c.decision_id))
            .where(p1.ml_feature_snapshots.c.snapshot_time > p1.tracked_ideas.c.decision_time)).scalar()
    assert bad == 0


def test_10_calibration_brier_below_quarter_and_climatology_per_tier(world):
    pooled = _pooled(world)
    tiers = world["frame"]["profit_tier"]
    for k in training.CLASS_ORDER:
        base = float((tiers == k).mean())
        assert pooled[f"brier_tier_{k}"] < 0.25
        assert pooled[f"brier_tier_{k}"] < base * (1 - base) + 0.005
    cal = world["model"]["metrics"]["calibration"]
    assert cal["applied"] == (cal.get("best") is not None
                              and cal["candidates"][cal["best"]]["brier"] < cal["brier_uncalibrated"])


def test_11_top_10_picks_have_positive_average_pnl(world):
    pooled = _pooled(world)
    assert pooled["top_10_pnl"] > 0
    assert pooled["top_10_pnl"] > pooled["base_pnl"]


def test_12_fast_path_scorer_is_loaded_once_and_deep_path_gives_probabilities(world):
    db = world["db"]
    with db.read() as c:
        a1 = service.scoring_plan.scoring_plan(c, 1).for_idea("x", "goldilocks_1")
        a2 = service.scoring_plan.scoring_plan(c, 2).for_idea("y", None)
        assert a1.scorer is a2.scorer is not None  # cached in-process by registry id
        feats = service.training_data.feature_dict(dict(c.execute(sa.select(p1.ml_feature_snapshots).limit(1)).first()._mapping))
        fast = a1.scorer.score(feats, 50.0)
        deep = service.replay.deep_score(c, world["model"]["id"], [feats], original_scores=[50.0])[0]
    assert fast.fallback is None and 0 <= fast.ml_score <= 100
    assert deep["ml_score"] == fast.ml_score
    assert sum(deep["tier_probabilities"]) == pytest.approx(1.0)
    assert 0 <= deep["confidence"] <= 1 and 0 <= deep["p_profitable"] <= 1


# -- registry

def test_registry_row_has_lineage_and_training_is_deterministic(world):
    db, m = world["db"], world["model"]
    assert m["status"] == "validating" and m["model_version"] >= 1
    assert m["feature_set_version"] == features.FEATURE_SET_VERSION
    assert m["dataset_hash"] == service.training_data.dataset_hash(world["frame"])
    assert m["train_samples"] == len(world["frame"])
    assert m["data_start"] == world["frame"]["decision_time"].min().to_pydatetime()
    assert world["progress"][-1][0] == world["progress"][-1][1]  # progress reached the end
    with db.transaction() as c:
        again = service.training.train(c, params=SMALL_PARAMS, options=SMALL_OPTIONS,
                               frame=world["frame"])
        blob = service.registry.model_blob(c, again["id"])
        # same data, params and seed: the same model, a new version whose parent is the champion
        assert again["content_id"] == m["content_id"]
        assert again["model_version"] == m["model_version"] + 1
        assert again["parent_model_id"] == m["id"]
        assert TrainedModel.from_blob(blob).version == str(again["model_version"])
        events = c.execute(sa.select(outbox.outbox.c.type, outbox.outbox.c.payload)
                           .where(outbox.outbox.c.stream == "mlloop.models",
                                  outbox.outbox.c.aggregate_id == str(again["id"]))).all()
        assert [e.type for e in events] == ["ModelTrained"]
        service.registry.retire(c, again["id"], reason="duplicate")


def _candidate(c, frame, options=SMALL_OPTIONS, **kw):
    return service.training.train(c, params={**SMALL_PARAMS, "iterations": 30}, options=options,
                                  frame=frame, **kw)


def test_promotion_refused_on_feature_set_mismatch(world):
    with pytest.raises(errors.Conflict) as exc:
        with world["db"].transaction() as c:
            cand = _candidate(c, world["frame"])
            c.execute(ml_models.update().where(ml_models.c.id == cand["id"])
                      .values(feature_set_version="v0.9"))
            service.registry.promote(c, cand["id"], actor_user_id=7)
    assert exc.value.code == "feature_set_mismatch"
    assert "v0.9" in exc.value.message and features.FEATURE_SET_VERSION in exc.value.message


def test_promotion_refused_when_drift_is_over_threshold_and_allowed_without(world):
    db, frame = world["db"], world["frame"]
    with db.transaction() as c:
        relax_gates(c)  # the subject is drift; day-level features kept so they can drift
        cand = _candidate(c, frame, {**SMALL_OPTIONS, "day_feature_min_days": 0}, regime=None)
        shifted = frame.copy()
        shifted["vix_level"] = shifted["vix_level"] + 15  # a new volatility world
        shifted["iv_rank_30d"] = 1.0
        shifted["spot_vs_gamma_flip"] = shifted["spot_vs_gamma_flip"] - 0.05
        shifted["gex_total"] = -shifted["gex_total"].abs()
        shifted["bias_lfi"] = 0.9
        shifted["vix_regime"] = "chaos"
        shifted["market_mode"] = "trend"
        shifted["bias_direction"] = "bullish"
        shifted["spot_1d_return"] = shifted["spot_1d_return"] - 0.04
        shifted["vix_term_slope"] = -0.2
        shifted["range_position"] = 0.0
        shifted["spot_vs_call_wall"] = shifted["spot_vs_call_wall"] + 0.05
        shifted["spot_vs_put_wall"] = shifted["spot_vs_put_wall"] - 0.05
        shifted["iv_percentile_30d"] = 1.0
        shifted["strike_vs_spot"] = shifted["strike_vs_spot"] + 0.05
        shifted["original_score"] = shifted["original_score"] / 3
        shifted["minutes_since_open"] = 5
        shifted["spot_1h_return"] = shifted["spot_1h_return"] - 0.02
        shifted["spot_15m_return"] = shifted["spot_15m_return"] - 0.01
        shifted["spot_5m_return"] = shifted["spot_5m_return"] - 0.005
        shifted["day_of_week"] = 4
        shifted["days_to_monthly_opex"] = 0
        shifted["is_opex_week"] = 1.0
        rep = service.drift_reports.check_drift(c, model_id=cand["id"], current=shifted.head(600), actor_user_id=7)
        assert rep["drift_detected"] and rep["share_drifted"] >= 0.5
        assert rep["report"]["features"]["vix_level"]["drifted"]
        with pytest.raises(errors.Conflict) as exc:
            service.registry.promote(c, cand["id"], actor_user_id=7)
        assert exc.value.code == "drift_over_threshold"
        # the same data the model was trained on does not drift: promotion goes through
        same = service.drift_reports.check_drift(c, model_id=cand["id"], current=frame.sample(600, random_state=1))
        assert not same["drift_detected"]
        assert service.registry.promotion_blockers(c, cand["id"]) == []
        ev = c.execute(sa.select(sa.func.count()).select_from(outbox.outbox)
                       .where(outbox.outbox.c.type == "DriftChecked",
                              outbox.outbox.c.aggregate_id == str(cand["id"]))).scalar()
        assert ev == 2


def test_promote_and_roll_back_per_regime_are_audited(world):
    db, frame = world["db"], world["frame"]
    with db.transaction() as c:
        first = _candidate(c, frame, regime="zombieland", actor_user_id=5)
        second = _candidate(c, frame, regime="zombieland", actor_user_id=5)
        service.registry.promote(c, first["id"], actor_user_id=5, reason="a")
        service.registry.promote(c, second["id"], actor_user_id=6, reason="b")
        assert service.registry.champion(c, "zombieland")["id"] == second["id"]
        assert service.registry.get_model(c, first["id"])["status"] == "retired"
        assert service.registry.champion(c, None)["id"] == world["model"]["id"]  # global untouched
        plan = service.scoring_plan.scoring_plan(c, 1)
        assert plan.for_idea("i", "zombieland").model_id == second["id"]
        assert plan.for_idea("i", "chaos").model_id == world["model"]["id"]
        back = service.registry.rollback(c, regime="zombieland", actor_user_id=6, reason="bad")
        assert back["id"] == first["id"] and back["status"] == "champion"
        assert service.registry.get_model(c, second["id"])["status"] == "retired"
        audit = c.execute(sa.select(ml_model_audit).where(
            ml_model_audit.c.model_id.in_((first["id"], second["id"])))
            .order_by(ml_model_audit.c.id)).all()
        got = [(a.model_id, a.action, a.from_status, a.to_status, a.actor_user_id) for a in audit]
        assert got == [
            (first["id"], "registered", None, "validating", 5),
            (second["id"], "registered", None, "validating", 5),
            (first["id"], "promoted", "validating", "champion", 5),
            (first["id"], "retired", "champion", "retired", 6),
            (second["id"], "promoted", "validating", "champion", 6),
            (second["id"], "rolled_back", "champion", "retired", 6),
            (first["id"], "restored", "retired", "champion", 6),
        ]
        with pytest.raises(errors.InvalidState) as exc:
            service.registry.rollback(c, regime="zombieland")  # first replaced nothing
        assert exc.value.code == "no_previous_champion"
        # leave the global scope as it was for the other tests
        c.execute(ml_models.update().where(ml_models.c.regime == "zombieland")
                  .values(status="retired"))
        lock_registry(c)  # (raw SQL: tell cached scoring plans)


# -- replay: every sampled logged decision replays to the identical score

def test_every_sampled_decision_replays_to_the_logged_score(world):
    rng = np.random.default_rng(0)
    ids = list(rng.choice(world["decision_ids"], size=60, replace=False))
    with world["db"].read() as c:
        results = [service.replay.replay_decision(c, d) for d in ids]
    assert all(r["model_id"] == world["model"]["id"] for r in results)
    assert [r["decision_id"] for r in results if not r["matches"]] == []
    assert all(r["logged_ml_score"] == round(r["recomputed_ml_score"], 2) for r in results)


def test_replay_detects_a_score_that_does_not_match(world):
    with world["db"].transaction() as c:
        d = dict(c.execute(sa.select(p1.ml_decisions).where(
            p1.ml_decisions.c.id == world["decision_ids"][0])).first()._mapping)
        d.update(id="00000000-0000-0000-0000-00000000beef", decision_key="tampered",
                 ml_score=d["ml_score"] + 1)
        c.execute(p1.ml_decisions.insert().values(**d))
        r = service.replay.replay_decision(c, d["id"])
        assert not r["matches"] and r["reason"] == "score differs"
        assert r["abs_diff"] == pytest.approx(1.0, abs=0.01)
        with pytest.raises(errors.NotFound):
            service.replay.replay_decision(c, "00000000-0000-0000-0000-000000000000")


# -- exploration

def test_exploration_low_data_regimes_always_and_a_stable_random_share(world):
    with world["db"].read() as c:
        plan = service.scoring_plan.scoring_plan(c, 1)
        plan2 = service.scoring_plan.scoring_plan(c, 1)
    counts = world["frame"]["vix_regime"].value_counts()
    assert plan.low_data_regimes == frozenset(
        r for r in features.VIX_REGIMES if counts.get(r, 0) < 50)
    ids = [f"idea-{i}" for i in range(4000)]
    seen = next(r for r in features.VIX_REGIMES if r not in plan.low_data_regimes)
    flags = [plan.for_idea(i, seen).exploration for i in ids]
    assert flags == [plan2.for_idea(i, seen).exploration for i in ids]
    assert 0.08 < np.mean(flags) < 0.12  # exploration_rate 0.1
    plan.low_data_regimes = frozenset({"chaos"})
    assert all(plan.for_idea(i, "chaos").exploration for i in ids[:200])


# -- the scoring plan, cached per process while the registry and settings are unchanged

def test_scoring_plan_is_reused_until_a_registry_change_and_reloaded_at_once_after(world, monkeypatch):
    """A second request reads one query (the ml_settings rows: settings + the registry's change
    counter) and reuses the plan; promotion, rollback, an experiment starting and aborting,
    and a settings change are seen by the very next request (each commits its own
    transaction, as the admin endpoints do); ``rules_only`` (the kill switch) applies to a
    cached plan at once; a change behind the service's back waits out PLAN_MAX_AGE."""
    from plugins.mlloop.service import scoring_plan as sp
    db, frame = world["db"], world["frame"]
    global_champion = world["model"]["id"]

    def plan(**kw):
        with db.read() as c:
            return sp.scoring_plan(c, 1, **kw)
    first = plan()
    seen = []
    listen = (db.engine, "before_cursor_execute", lambda *a, **k: seen.append(a[2]))
    sa.event.listen(*listen)
    try:
        again = plan()
    finally:
        sa.event.remove(*listen)
    assert again.champions is first.champions and len([q for q in seen if "ml_settings" in q]) == 1
    assert len([q for q in seen if q.lstrip().upper().startswith("SELECT")]) == 1
    assert again.for_idea("i", None).model_id == global_champion

    with db.transaction() as c:
        relax_gates(c)
        cand = _candidate(c, frame)
    with db.transaction() as c:
        exp_id = service.experiments.create_experiment(
            c, {"name": "cache", "challenger_model_id": cand["id"], "traffic_split": 1.0})["id"]
    routed = plan().for_idea("i", None)
    assert (routed.experiment_id, routed.model_id) == (exp_id, cand["id"])  # split 1.0: all challenger
    killed = plan(rules_only=True).for_idea("i", None)  # the kill switch: no arm, no weight, at once
    assert killed.experiment_id is None and killed.ml_weight == 0.0 and killed.model_id == global_champion
    with db.transaction() as c:
        service.experiments.abort_experiment(c, exp_id, actor_user_id=7)
    assert plan().for_idea("i", None).experiment_id is None

    with db.transaction() as c:
        service.registry.promote(c, cand["id"], actor_user_id=7, reason="cache")
    assert plan().for_idea("i", None).model_id == cand["id"]
    with db.transaction() as c:
        service.registry.rollback(c, actor_user_id=7, reason="cache")
    assert plan().for_idea("i", None).model_id == global_champion

    with db.transaction() as c:
        service.settings.update_settings(c, {"ml_weight": 0.4, "exploration_rate": 1.0})
    assert sp.stable_unit("explore", "i") > 0.1  # (so "i" explores only because of the new rate)
    assert plan().for_idea("i", None).ml_weight == 0.4 and plan().for_idea("i", None).exploration
    with db.transaction() as c:
        service.settings.update_settings(c, {"ml_weight": 0.0, "exploration_rate": 0.1})

    # raw SQL (no counter bump): served from the cache until the plan is PLAN_MAX_AGE old
    plan()
    with db.transaction() as c:
        c.execute(ml_models.update().where(ml_models.c.id == global_champion).values(status="retired"))
    assert plan().for_idea("i", None).model_id == global_champion
    later = sp.time.monotonic() + sp.PLAN_MAX_AGE
    monkeypatch.setattr(sp.time, "monotonic", lambda: later)
    assert plan().for_idea("i", None).model_id is None
    with db.transaction() as c:
        c.execute(ml_models.update().where(ml_models.c.id == global_champion).values(status="champion"))
        lock_registry(c)
    assert plan().for_idea("i", None).model_id == global_champion


def test_a_registry_bump_undone_by_a_rollback_is_never_repeated(world):
    """A plan cached inside a transaction that then rolls back must not match the counter of
    the next committed change: each bump adds 1 plus a random fraction."""
    from plugins.mlloop.tables import ml_settings
    db = world["db"]
    counter = sa.select(ml_settings.c.value).where(ml_settings.c.name == "_registry_lock")
    with db.transaction() as c:
        lock_registry(c)
        start = c.execute(counter).scalar()
    undone = db.engine.connect()
    tx = undone.begin()
    lock_registry(undone)
    was = undone.execute(counter).scalar()
    tx.rollback()
    undone.close()
    with db.transaction() as c:
        lock_registry(c)
        now = c.execute(counter).scalar()
    assert start + 1 <= was < start + 2 and start + 1 <= now < start + 2 and now != was
