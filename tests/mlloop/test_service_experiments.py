"""Experiments on stored decisions and outcomes (seed Experiment Tests 15-16): the stopping
job stops on duration, significance and sample-ratio mismatch; evaluation is on R2R, not win
rate; concluding promotes a winning challenger; the evaluation endpoints' numbers by hand."""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from app import errors
from bus import outbox
from plugins.mlloop.service.settings import lock_registry
from plugins.mlloop import service
from plugins.mlloop import tables as p1
from plugins.mlloop.tables import ml_experiments, ml_models
from tests.mlloop.test_service_training_data import (
    SMALL_OPTIONS, SMALL_PARAMS, insert_rows, private_db, relax_gates, world_rows,
)

__all__ = ["private_db"]
T0 = dt.datetime(2025, 3, 3, 15, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def models(private_db):
    """A champion and two validating candidates (tiny models; outcomes here are synthetic)."""
    db, _ = private_db
    with db.transaction() as c:
        insert_rows(c, world_rows(seed=2, days=6, per_day=120, user_id=99))
        frame = service.training_data.load_training_frame(c)
        relax_gates(c)  # tiny models: the subject is the experiment, not held-out evidence
        opts = {**SMALL_OPTIONS, "min_train_samples": 100}
        ids = [service.training.train(c, params={**SMALL_PARAMS, "iterations": 20, "random_seed": s},
                              options=opts, frame=frame)["id"] for s in (1, 2, 3)]
        service.registry.promote(c, ids[0], reason="base")
    return db, ids


def _outcomes(c, exp_id, arm, r2r, won, *, start=T0):
    """Decisions of one arm with settled labels (r2r and profitable given per row)."""
    rows_d, rows_t, rows_l = [], [], []
    for j, (r, w) in enumerate(zip(r2r, won)):
        tid = str(uuid.uuid4())
        did = str(uuid.uuid4())
        when = start + dt.timedelta(minutes=j)
        pnl = Decimal(str(round(100 * r, 2)))
        rows_t.append(dict(
            id=tid, user_id=5, idea_id=f"x-{tid}", symbol="SPX", decision_id=did, context_id="c",
            decision_time=when, strategy="vertical", side="call", direction="long",
            strike=Decimal(6000), width=10, dte=0, expiration=when.date(), quantity=1,
            entry_debit=Decimal(4), risk_unit=Decimal(400), entry_spot=Decimal(6000),
            rule_score=Decimal(50), selector_params_version=1, regime="goldilocks_1",
            cumulative_pnl=pnl, max_pnl=max(pnl, 0), min_pnl=min(pnl, 0), time_to_max_pnl=0,
            time_in_drawdown=0, event_count=1, last_tier=1, stop_touched=False,
            target_touched=False, total_fees=0, total_slippage=0, total_adjustments=0,
            settlement_status="settled", settlement_pnl=pnl, settled_at=when, version=1,
            created_at=when, updated_at=when))
        rows_l.append(dict(
            tracked_idea_id=tid, user_id=5, idea_id=f"x-{tid}", context_id="c",
            settlement_pnl=pnl, profitable=int(w), profit_tier=2 if w else 1,
            r2r_achieved=float(r), risk_unit=Decimal(400), max_favorable_excursion=0.0,
            max_adverse_excursion=abs(min(r, 0)), time_to_max_pnl_pct=0.0,
            time_in_drawdown_pct=0.0, hit_stop=0, hit_target=0, cohort_size=1, labelled_at=when))
        rows_d.append(dict(
            id=did, decision_key=did, user_id=5, idea_id=f"x-{tid}", tracked_idea_id=tid,
            context_id="c", decision_time=when, selector_params_version=1,
            feature_snapshot_id=str(uuid.uuid4()), original_score=Decimal(50), rule_components={},
            ml_score=Decimal("60.00"), final_score=Decimal(50), ml_weight=0.0,
            scoring_mode="normal", experiment_id=exp_id, experiment_arm=arm, exploration=False,
            action_taken="ranked", rank=1, recorded_at=when))
    insert_rows(c, {"tracked_ideas": rows_t, "ml_labels": rows_l})
    c.execute(p1.ml_decisions.insert(), rows_d)


def _experiment(c, challenger, **kw):
    exp = service.experiments.create_experiment(c, {"name": kw.pop("name", "t"), "challenger_model_id": challenger,
                                         "traffic_split": 0.5, "started_at": T0,
                                         "min_samples_per_arm": 50, **kw})
    return exp["id"]


def _cleanup(c, exp_id):
    c.execute(ml_experiments.update().where(ml_experiments.c.id == exp_id)
              .values(status="aborted"))
    c.execute(ml_models.update().where(ml_models.c.status == "challenger")
              .values(status="validating"))
    lock_registry(c)  # (raw SQL: tell cached scoring plans)


def test_15_stopping_job_stops_on_duration(models):
    db, ids = models
    with db.transaction() as c:
        e = _experiment(c, ids[1], max_duration_days=7)
        rng = np.random.default_rng(1)
        _outcomes(c, e, "champion", rng.normal(0.1, 1, 20), rng.random(20) < 0.5)
        _outcomes(c, e, "challenger", rng.normal(0.1, 1, 20), rng.random(20) < 0.5)
        day6 = service.experiments.check_experiments(c, now=T0 + dt.timedelta(days=6))
        assert [(r["experiment_id"], r["stop"], r["reason"]) for r in day6] == \
            [(e, False, "insufficient_samples")]
        day7 = service.experiments.check_experiments(c, now=T0 + dt.timedelta(days=7))
        assert [(r["stop"], r["reason"]) for r in day7] == [(True, "max_duration")]
        row = service.experiments.get_experiment(c, e, evaluate=False)
        assert row["status"] == "stopped" and row["stop_reason"] == "max_duration"
        assert (row["champion_samples"], row["challenger_samples"]) == (20, 20)
        assert service.experiments.check_experiments(c, now=T0 + dt.timedelta(days=8)) == []  # stopped
        ev = c.execute(sa.select(outbox.outbox.c.payload).where(
            outbox.outbox.c.type == "ExperimentConcluded",
            outbox.outbox.c.aggregate_id == str(e))).scalar()
        assert '"max_duration"' in ev
        _cleanup(c, e)


def test_15_stopping_job_stops_on_significance_then_conclude_promotes(models):
    db, ids = models
    with db.transaction() as c:
        e = _experiment(c, ids[2])
        rng = np.random.default_rng(2)
        _outcomes(c, e, "champion", rng.normal(-0.2, 0.5, 80), rng.random(80) < 0.5)
        _outcomes(c, e, "challenger", rng.normal(0.4, 0.5, 80), rng.random(80) < 0.5)
        [r] = service.experiments.check_experiments(c, now=T0 + dt.timedelta(days=1))
        assert (r["stop"], r["reason"], r["winner"]) == (True, "statistical_significance", "challenger")
        assert r["p_value"] < 0.01
        done = service.experiments.conclude_experiment(c, e, actor_user_id=3, reason="won")
        assert done["status"] == "concluded" and done["winner"] == "challenger"
        assert done["conclusion"]["promoted_model_id"] == ids[2]
        assert service.registry.champion(c, None)["id"] == ids[2]
        assert service.registry.get_model(c, ids[0])["status"] == "retired"
        with pytest.raises(errors.InvalidState):
            service.experiments.conclude_experiment(c, e)
        service.registry.rollback(c, reason="restore for the other tests")
        assert service.registry.champion(c, None)["id"] == ids[0]


def test_stopping_job_stops_on_sample_ratio_mismatch(models):
    db, ids = models
    with db.transaction() as c:
        e = _experiment(c, ids[1], traffic_split=0.1)
        rng = np.random.default_rng(3)
        _outcomes(c, e, "champion", rng.normal(0, 1, 100), rng.random(100) < 0.5)
        _outcomes(c, e, "challenger", rng.normal(0, 1, 100), rng.random(100) < 0.5)
        [r] = service.experiments.check_experiments(c, now=T0 + dt.timedelta(days=1))
        assert (r["stop"], r["reason"]) == (True, "sample_ratio_mismatch")
        ev = service.experiments.get_experiment(c, e)["evaluation"]
        # 100/100 against a declared 90/10: chi2 = (100-180)^2/180 + (100-20)^2/20
        assert ev["srm"]["chi2"] == pytest.approx(80**2 / 180 + 80**2 / 20)
        assert ev["srm"]["mismatch"] is True
        _cleanup(c, e)


def test_16_evaluation_is_on_risk_adjusted_return_not_win_rate(models):
    db, ids = models
    with db.transaction() as c:
        e = _experiment(c, ids[1])
        # The challenger wins less often (40% vs 70%) but its wins are big: higher mean R2R.
        champ_won = np.arange(120) % 10 < 7
        chall_won = np.arange(120) % 10 < 4
        _outcomes(c, e, "champion", np.where(champ_won, 0.2, -0.5), champ_won)
        _outcomes(c, e, "challenger", np.where(chall_won, 2.0, -0.4), chall_won)
        res = service.experiments.get_experiment(c, e)["evaluation"]["result"]
        assert res["champion"]["win_rate"] == pytest.approx(0.7)
        assert res["challenger"]["win_rate"] == pytest.approx(0.4)
        assert res["champion"]["avg_rar"] == pytest.approx(0.7 * 0.2 - 0.3 * 0.5)
        assert res["challenger"]["avg_rar"] == pytest.approx(0.4 * 2.0 - 0.6 * 0.4)
        assert res["winner"] == "challenger" and res["p_value"] < 0.05
        done = service.experiments.conclude_experiment(c, e, promote_winner=False)
        assert done["winner"] == "challenger" and done["conclusion"]["promoted_model_id"] is None
        assert service.registry.get_model(c, ids[1])["status"] == "validating"
        assert service.registry.champion(c, None)["id"] == ids[0]


def test_create_experiment_refusals(models):
    db, ids = models
    with db.transaction() as c:
        with pytest.raises(errors.InvalidState):
            _experiment(c, ids[0])  # the champion cannot challenge itself
        if service.registry.get_model(c, ids[2])["status"] != "retired":
            service.registry.retire(c, ids[2])
        with pytest.raises(errors.InvalidState) as exc:
            _experiment(c, ids[2])
        assert "retired" in exc.value.message
        e = _experiment(c, ids[1])
        with pytest.raises(errors.InvalidState) as exc:
            _experiment(c, ids[1], name="second")
        assert exc.value.code == "experiment_running"
        with pytest.raises(errors.NotFound):
            _experiment(c, 10**6)
        _cleanup(c, e)


# -- evaluation numbers by hand

def _frame(rows):
    f = pd.DataFrame(rows, columns=["decision_id", "idea_id", "ml_score", "original_score", "pnl",
                                    "r2r_achieved", "regime", "decision_time"])
    f["decision_time"] = pd.to_datetime(f["decision_time"], utc=True)
    return f


def test_score_outcomes_and_ml_vs_rules_by_hand():
    day = "2025-03-03T15:00:00Z"
    f = _frame([
        ("a", "a", 10.0, 50.0, -100.0, -1.0, "chaos", day),       # ML lower by 40, lost: right
        ("b", "b", 15.0, 20.0, 50.0, 0.5, "chaos", day),          # agree
        ("c", "c", 90.0, 40.0, 200.0, 2.0, "zombieland", day),    # ML higher by 50, won: right
        ("d", "d", 85.0, 50.0, -50.0, -0.5, "zombieland", day),   # ML higher by 35, lost: wrong
        ("e", "e", 100.0, 95.0, 10.0, 0.1, "zombieland", day),    # agree (100 is in 80-100)
        ("f", "f", None, 60.0, 30.0, 0.3, "chaos", day),          # no ML score: left out
    ])
    so = service.evaluation.score_outcomes(f)
    assert so["n"] == 5 and so["baseline_win_rate"] == pytest.approx(3 / 5)
    assert so["baseline_avg_pnl"] == pytest.approx(110 / 5)
    b = {x["bucket"]: x for x in so["buckets"]}
    assert (b["0-20"]["count"], b["0-20"]["avg_pnl"], b["0-20"]["win_rate"]) == (2, -25.0, 0.5)
    assert b["20-40"]["count"] == 0 and b["20-40"]["avg_pnl"] is None
    assert (b["80-100"]["count"], b["80-100"]["win_rate"]) == (3, pytest.approx(2 / 3))
    assert b["80-100"]["win_rate_vs_baseline"] == pytest.approx(2 / 3 - 3 / 5)
    mv = service.evaluation.ml_vs_rules(f, threshold=20)
    assert mv["agree"]["count"] == 2 and mv["agree"]["win_rate"] == 1.0
    assert (mv["ml_higher"]["count"], mv["ml_higher"]["right"], mv["ml_higher"]["wrong"]) == (2, 1, 1)
    assert (mv["ml_lower"]["count"], mv["ml_lower"]["right"]) == (1, 1)
    assert mv["diverged"] == {"count": 3, "right": 2, "wrong": 1, "accuracy": pytest.approx(2 / 3)}
    assert [x["decision_id"] for x in mv["examples"]] == ["c", "a", "d"]
    rb = {r["regime"]: r for r in service.evaluation.regime_breakdown(f)["regimes"]}
    assert rb["chaos"]["count"] == 3 and rb["chaos"]["with_ml_score"] == 2
    assert rb["zombieland"]["ml_auc"] == 1.0  # both winners scored above the loser? c 90, e 100 > d 85
    assert rb["zombieland"]["win_rate"] == pytest.approx(2 / 3)


def test_go_live_checklist_computes_the_six_criteria(models):
    db, ids = models
    with db.read() as c:
        out = service.evaluation.go_live_checklist(c)
    items = {i["key"]: i for i in out["criteria"]}
    assert out["total"] == 6 and out["passed"] == sum(i["passed"] for i in out["criteria"])
    assert items["sufficient_data"]["value"] < 1000 and not items["sufficient_data"]["passed"]
    assert items["calibration"]["value"]["model_id"] == ids[0]
    assert items["experiment_ready"]["value"]["routing_deterministic"] is True
    assert not out["ready"]
