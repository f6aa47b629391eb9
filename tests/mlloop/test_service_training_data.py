"""A simulated world in part 1's tables, for the model tests (and tests of the builder).

``world_rows`` turns the simulator's ideas into what the selector and the settlement consumer
store: ``tracked_ideas`` (settled), the decision-time ``ml_feature_snapshots`` (through the
same extraction and rounding the selector uses) and ``ml_labels``. ``private_db`` gives a
module its own database on the test's stack (models are system-wide, so model tests must not
share a registry with other tests). ``log_decisions`` plays the selector: it scores ideas
with the scoring plan and writes ``ml_decisions`` as part 1's consumer does.
"""
from __future__ import annotations

import os
import uuid
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from plugins.mlloop import service
from plugins.mlloop import tables as p1
from plugins.mlloop.domain import calendar, labels
from plugins.mlloop.domain import features as fx
from plugins.mlloop.sim.world import World

CENT = Decimal("0.01")
SMALL_PARAMS = {"iterations": 80, "depth": 4, "random_seed": 7}
SMALL_OPTIONS = {"train_days": 4, "val_days": 1, "step_days": 1, "embargo_days": 1,
                 "min_train_samples": 200, "min_regime_samples": 100_000}
# Gates out of the way, for tests whose subject is not held-out evidence (experiments, drift,
# rollback): tiny models may serve; the control must still have run.
RELAXED_GATES = {"gate_min_windows": 0, "gate_min_samples": 0, "gate_min_skill": -10.0,
                 "gate_min_skill_over_control": -10.0}


def relax_gates(conn) -> None:
    service.settings.update_settings(conn, RELAXED_GATES)


def world_rows(seed: int = 1, days: int = 12, per_day: int = 300, user_id: int = 1,
               start: int = 0) -> dict[str, list[dict]]:
    world = World(seed, ideas_per_day=per_day)
    out = {"tracked_ideas": [], "ml_feature_snapshots": [], "ml_labels": []}
    now = calendar.utc_ms(pd.Timestamp("2030-01-01", tz="UTC").to_pydatetime())
    for day in world.days(days, start=start):
        market = {}
        for i in range(len(day)):
            idea = day.idea(i)
            outcome = day.outcome(i)
            try:
                lab = labels.label_outcome(outcome)
            except labels.UndefinedRisk:
                continue
            cid = idea.context_id
            if cid not in market:
                market[cid] = fx.extract_market_features(day.contexts[cid])
            m = market[cid]
            f = fx.extract_idea_features({"strategy": idea.strategy, "side": idea.side,
                                          "direction": idea.direction, "strike": idea.strike,
                                          "width": idea.width, "dte": idea.dte,
                                          "score": idea.score}, m)
            tid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{user_id}:{idea.idea_id}"))
            did = str(uuid.uuid5(uuid.NAMESPACE_URL, f"d:{tid}"))
            row = fx.feature_snapshot_row(f)
            out["ml_feature_snapshots"].append({
                **row, "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"f:{did}")), "user_id": user_id,
                "tracked_idea_id": tid, "decision_id": did, "strategy_type": f["strategy_type"],
                "side": f["side"], "direction": f["direction"], "dte": f["dte"], "width": f["width"],
                "strike_vs_spot": Decimal(repr(f["strike_vs_spot"])).quantize(Decimal("0.000001")),
                "original_score": Decimal(repr(f["original_score"])).quantize(CENT),
                "recorded_at": now})
            pnl = outcome.settlement_pnl
            out["tracked_ideas"].append(dict(
                id=tid, user_id=user_id, idea_id=idea.idea_id, symbol="SPX", decision_id=did,
                context_id=cid, decision_time=idea.decision_time, strategy=idea.strategy,
                side=idea.side, direction=idea.direction, strike=idea.strike, width=idea.width,
                dte=idea.dte, expiration=idea.expiration, quantity=1, entry_debit=idea.debit,
                risk_unit=lab["risk_unit"], entry_spot=Decimal(repr(m["spot_price"])),
                rule_score=idea.score, selector_params_version=1, regime=m["vix_regime"],
                trade_id=None, cumulative_pnl=pnl, max_pnl=outcome.max_pnl,
                min_pnl=outcome.min_pnl, time_to_max_pnl=0, time_in_drawdown=0, event_count=1,
                last_event_time=outcome.settled_at, last_tier=lab["profit_tier"],
                stop_touched=False, target_touched=False, last_snapshot_time=None,
                last_snapshot_underlying=None, total_fees=Decimal(0), total_slippage=Decimal(0),
                total_adjustments=Decimal(0), settlement_status="settled", settlement_pnl=pnl,
                settlement_price=outcome.settlement_price, settled_at=outcome.settled_at,
                lifetime_minutes=outcome.lifetime_minutes, version=1, created_at=now,
                updated_at=now))
            out["ml_labels"].append(dict(
                tracked_idea_id=tid, user_id=user_id, idea_id=idea.idea_id, context_id=cid,
                settlement_pnl=pnl, profitable=lab["profitable"], profit_tier=lab["profit_tier"],
                r2r_achieved=lab["r2r_achieved"], risk_unit=lab["risk_unit"],
                max_favorable_excursion=lab["max_favorable_excursion"],
                max_adverse_excursion=lab["max_adverse_excursion"],
                time_to_max_pnl_pct=lab["time_to_max_pnl_pct"],
                time_in_drawdown_pct=lab["time_in_drawdown_pct"], hit_stop=lab["hit_stop"],
                hit_target=lab["hit_target"], outperformed_median=None, cohort_percentile=None,
                cohort_size=1, labelled_at=now))
    return out


def insert_rows(conn, rows: dict[str, list[dict]]) -> None:
    for name, items in rows.items():
        if items:
            conn.execute(p1.metadata.tables[name].insert(), items)


def log_decisions(conn, rows: dict[str, list[dict]], *, user_id: int = 1, ml_weight=None
                  ) -> list[str]:
    """Score every idea of ``rows`` as the selector does (scoring plan, batch per scorer,
    score rounded to the column's cents) and write its ``ml_decisions`` record."""
    plan = service.scoring_plan.scoring_plan(conn, user_id)
    snaps = {s["decision_id"]: s for s in rows["ml_feature_snapshots"]}
    out = []
    decisions = []
    for idea in rows["tracked_ideas"]:
        snap = snaps[idea["decision_id"]]
        feats = service.training_data.feature_dict({k: v for k, v in snap.items()})
        a = plan.for_idea(idea["idea_id"], idea["regime"])
        ml = None
        if a.scorer is not None:
            res = a.scorer.score_batch(pd.DataFrame([feats]), [float(idea["rule_score"])])
            ml = float(res["ml_score"].iloc[0])
        ml_d = None if ml is None else Decimal(repr(round(ml, 2))).quantize(CENT)
        w = a.ml_weight if ml_weight is None else ml_weight
        final = idea["rule_score"] if ml_d is None or w == 0 else (
            Decimal(repr(round((1 - w) * float(idea["rule_score"]) + w * float(ml_d), 2))).quantize(CENT))
        decisions.append(dict(
            id=idea["decision_id"], decision_key=idea["decision_id"], user_id=user_id,
            idea_id=idea["idea_id"], tracked_idea_id=idea["id"], context_id=idea["context_id"],
            decision_time=idea["decision_time"], model_id=a.model_id, model_version=a.model_version,
            selector_params_version=1, feature_snapshot_id=snap["id"],
            original_score=idea["rule_score"], rule_components={}, ml_score=ml_d,
            final_score=final, ml_weight=w, scoring_mode="normal",
            experiment_id=a.experiment_id, experiment_arm=a.arm, exploration=a.exploration,
            action_taken="ranked", rank=1, recorded_at=idea["created_at"]))
        out.append(idea["decision_id"])
    conn.execute(p1.ml_decisions.insert(), decisions)
    return out


def split_days(rows: dict[str, list[dict]], n_first_days: int):
    """(rows of the first n days, rows of the rest), by decision date."""
    dates = sorted({i["decision_time"].date() for i in rows["tracked_ideas"]})
    cut = set(dates[:n_first_days])
    first_ids = {i["id"] for i in rows["tracked_ideas"] if i["decision_time"].date() in cut}
    a = {k: [r for r in v if r.get("tracked_idea_id", r.get("id")) in first_ids] for k, v in rows.items()}
    b = {k: [r for r in v if r.get("tracked_idea_id", r.get("id")) not in first_ids] for k, v in rows.items()}
    a["tracked_ideas"] = [r for r in rows["tracked_ideas"] if r["id"] in first_ids]
    b["tracked_ideas"] = [r for r in rows["tracked_ideas"] if r["id"] not in first_ids]
    return a, b


@pytest.fixture(scope="module", params=["embedded", "production"])
def private_db(request):
    """A database of the module's own on each stack: (Database, stack name)."""
    from app.db import Database
    from bus import outbox
    stack = request.param
    if stack == "embedded":
        import tempfile
        d = tempfile.mkdtemp(prefix="tl_models_")
        db = Database(f"sqlite:///{d}/models.db")
        drop = None
    else:
        from tests.conftest import MARIADB_URL
        name = f"tl_models_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        try:
            eng = sa.create_engine(MARIADB_URL + "/test")
            with eng.begin() as c:
                c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        except Exception as exc:
            from tests.conftest import missing
            missing("MariaDB", str(exc)[:200])
        db = Database(f"{MARIADB_URL}/{name}")

        def drop():
            with eng.begin() as c:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            eng.dispose()
    for md in (outbox.metadata, p1.metadata, p1.registry_metadata):
        md.create_all(db.engine)
    yield db, stack
    db.dispose()
    if drop:
        drop()


# -- the builder's own checks --------------------------------------------------------------

def test_world_rows_are_point_in_time_and_labelled():
    rows = world_rows(seed=3, days=2, per_day=40)
    ideas = {i["id"]: i for i in rows["tracked_ideas"]}
    assert len(ideas) == len(rows["ml_labels"]) == len(rows["ml_feature_snapshots"]) > 40
    for s in rows["ml_feature_snapshots"]:
        idea = ideas[s["tracked_idea_id"]]
        assert s["snapshot_time"] <= idea["decision_time"] < idea["settled_at"]
        assert s["vix_regime"] == idea["regime"]
    for lab in rows["ml_labels"]:
        assert lab["profitable"] == int(lab["settlement_pnl"] > 0)
