"""mlloop scoring over HTTP: the seed's determinism tests 1-3 and 5 (reproducibility from a
decision id, point-in-time features, idempotent decisions, complete versioned features),
plus validation, user scope and immutability."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from plugins.mlloop.domain import features as fx
from plugins.mlloop.domain.ideas import TradeIdea
from plugins.mlloop.domain import rules as scoring
from plugins.mlloop.domain.selector_params import SelectorParams
from plugins.mlloop.tables import ml_decisions, ml_feature_snapshots, pnl_events
from tests.mlloop.mlloop_fixtures import (
    AS_OF, context_body, history, idea, iso, setup_context, snapshot, some_ideas, t,
)


@pytest.fixture
def app(app_factory):
    return app_factory(["mlloop"])


def _count(app, table, **where):
    with app.extensions["tradeloop"].db.transaction() as c:
        q = sa.select(sa.func.count()).select_from(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        return c.execute(q).scalar()


def test_decision_is_reproducible_from_its_id(app, new_client, run_consumers):
    cl = new_client(app)
    cid = setup_context(cl)
    ideas = some_ideas(5)
    r = cl.post("/api/ml/score", json={"context_id": cid, "ideas": ideas})
    assert r.status_code == 200, r.json
    body = r.json
    assert body["selector_params_version"] == 1 and body["scoring_mode"] == "normal"
    finals = [Decimal(i["final_score"]) for i in body["ideas"]]
    assert finals == sorted(finals, reverse=True)
    assert [i["rank"] for i in body["ideas"]] == [1, 2, 3, 4, 5]
    for item in body["ideas"]:
        assert item["ml_score"] is None and item["final_score"] == item["original_score"]  # no model yet
    run_consumers(app)

    # From ml_decisions.id alone: the exact features, geometry, weights -> the same score.
    by_id = {i["idea_id"]: i for i in ideas}
    for item in body["ideas"]:
        d = cl.get(f"/api/ml/decisions/{item['decision_id']}")
        assert d.status_code == 200, d.json
        d = d.json
        assert d["status"] == "recorded" and d["context_id"] == cid
        assert d["model"] == {"model_id": None, "model_version": None}
        params = SelectorParams.from_row(d["selector_params"])
        assert params.version == d["selector_params_version"] == 1
        f = d["features"]
        sent = by_id[d["idea_id"]]
        trade = TradeIdea(
            idea_id=d["idea_id"], strategy=sent["strategy"], side=sent["side"], direction=sent["direction"],
            strike=Decimal(sent["strike"]), width=sent["width"], expiration=dt.date(2025, 1, 7),
            dte=f["dte"], debit=Decimal(sent["debit"]))
        f["snapshot_time"] = dt.datetime.fromisoformat(f["snapshot_time"].replace("Z", "+00:00"))
        again = scoring.score_idea(trade, scoring.ScoringContext.from_market_features(f), params)
        assert str(again.total) == d["original_score"] == item["original_score"]
        assert {k: str(v) for k, v in again.components.items()} == d["rule_components"]
        assert Decimal(str(f["original_score"])) == Decimal(d["original_score"])
        assert d["idea"]["strategy"] == sent["strategy"] and d["idea"]["entry_debit"] == sent["debit"]


def test_features_are_point_in_time(app, new_client):
    """Snapshots after as_of (even wild ones) change nothing; the ones before it do."""
    past = history(until=AS_OF)
    wild = [snapshot(t(dt.date(2025, 1, 6), 15, m), 0, spot=9000, vix=80, lfi=-1) for m in (1, 5, 30)]
    a, b = new_client(app), new_client(app)
    ra = a.post("/api/ml/contexts", json=context_body("ctx", AS_OF, past + wild))
    rb = b.post("/api/ml/contexts", json=context_body("ctx", AS_OF, past))
    assert ra.status_code == rb.status_code == 201
    fa, fb = ra.json["contexts"][0]["features"], rb.json["contexts"][0]["features"]
    assert fa == fb
    assert ra.json["contexts"][0]["snapshot_count"] == len(past)
    assert fa["spot_price"] == float(past[-1]["spot"])
    # the same history a minute later does see the first wild snapshot
    later = a.post("/api/ml/contexts", json={"symbol": "SPX", "contexts": [
        {"context_id": "ctx-later", "as_of": iso(t(dt.date(2025, 1, 6), 15, 1))}]})
    assert later.status_code == 201 and later.json["contexts"][0]["features"]["spot_price"] == 9000.0
    # a decision may not predate its context
    r = a.post("/api/ml/score", json={"context_id": "ctx", "decision_time": iso(AS_OF - dt.timedelta(seconds=1)),
                                      "ideas": [idea()]})
    assert r.status_code == 422 and "decision_time" in r.json["errors"]["json"]


def test_same_idea_same_context_is_one_decision(app, new_client, run_consumers):
    cl = new_client(app)
    cid = setup_context(cl)
    ideas = some_ideas(4)
    first = cl.post("/api/ml/score", json={"context_id": cid, "ideas": ideas}).json
    second = cl.post("/api/ml/score", json={"context_id": cid, "ideas": ideas}).json  # still pending
    ids1 = {i["idea_id"]: i["decision_id"] for i in first["ideas"]}
    assert {i["idea_id"]: i["decision_id"] for i in second["ideas"]} == ids1
    assert all(i["replayed"] for i in second["ideas"]) and not any(i["replayed"] for i in first["ideas"])
    run_consumers(app)
    third = cl.post("/api/ml/score", json={"context_id": cid, "ideas": ideas[:2] + some_ideas(1)}).json
    assert [i["replayed"] for i in sorted(third["ideas"], key=lambda i: i["idea_id"] not in ids1)] == [True, True, False]
    run_consumers(app)
    for idea_id, did in ids1.items():
        assert _count(app, ml_decisions, idea_id=idea_id, user_id=cl.user.id) == 1
        assert _count(app, ml_feature_snapshots, decision_id=did) == 1
    # new weights -> a new decision for the same idea and context (it records the version)
    r = cl.post("/api/ml/selector-params", json={"weights": {"convexity": 0.1, "r2r": 0.3, "width_fit": 0.3,
                                                             "gamma_alignment": 0.3}})
    assert r.status_code == 201 and r.json["version"] == 2
    fourth = cl.post("/api/ml/score", json={"context_id": cid, "ideas": ideas[:1]}).json
    assert fourth["selector_params_version"] == 2
    assert fourth["ideas"][0]["decision_id"] != ids1[ideas[0]["idea_id"]] and not fourth["ideas"][0]["replayed"]
    # the same idea id with another structure is refused
    other = dict(ideas[0], strike="6100")
    r = cl.post("/api/ml/score", json={"context_id": cid, "ideas": [other]})
    assert r.status_code == 409


def test_every_feature_populated_with_versions(app, new_client, run_consumers):
    cl = new_client(app)
    cid = setup_context(cl)
    body = cl.post("/api/ml/score", json={"context_id": cid, "ideas": some_ideas(5)}).json
    run_consumers(app)
    with app.extensions["tradeloop"].db.transaction() as c:
        rows = c.execute(sa.select(ml_feature_snapshots).where(ml_feature_snapshots.c.user_id == cl.user.id)).all()
    assert len(rows) == 5
    for row in rows:
        m = row._mapping
        for k, v in fx.VERSIONS.items():
            assert m[k] == v
        for col in fx.SNAPSHOT_COLUMNS:
            assert m[col] is not None, col
        for col in ("strategy_type", "side", "direction", "dte", "strike_vs_spot", "original_score"):
            assert m[col] is not None, col
        assert m["snapshot_time"] == AS_OF
    assert {i["decision_id"] for i in body["ideas"]} == {r.decision_id for r in rows}


def test_immutable_records_refuse_changes(app, new_client, run_consumers):
    from app.errors import Conflict
    cl = new_client(app)
    cid = setup_context(cl)
    body = cl.post("/api/ml/score", json={"context_id": cid, "ideas": some_ideas(1)}).json
    run_consumers(app)
    db = app.extensions["tradeloop"].db
    for table in (ml_decisions, ml_feature_snapshots, pnl_events):
        with pytest.raises(Conflict):
            with db.transaction() as c:
                c.execute(table.update().where(table.c.user_id == cl.user.id).values(user_id=cl.user.id))
        with pytest.raises(Conflict):
            with db.transaction() as c:
                c.execute(table.delete().where(table.c.user_id == cl.user.id))
    assert _count(app, ml_decisions, id=body["ideas"][0]["decision_id"]) == 1
    # market history is immutable too: another value at a recorded time is 409
    snaps = history(until=AS_OF)
    snaps[-1] = dict(snaps[-1], spot="6111.00")
    r = cl.post("/api/ml/contexts", json=context_body("ctx-2", AS_OF, snaps))
    assert r.status_code == 409


def test_validation_and_user_scope(app, new_client, run_consumers):
    cl, other = new_client(app), new_client(app)
    cid = setup_context(cl)
    bad = [idea(debit="-1.00"), idea(strategy="single", width=5), idea(direction="short", strategy="single",
                                                                        side="call", debit="-2.00")]
    for b in bad:
        if b["strategy"] == "single" and b.get("width") is None and b["direction"] == "long":
            b["width"] = 5
        r = cl.post("/api/ml/score", json={"context_id": cid, "ideas": [b]})
        assert r.status_code == 422, (b, r.json)
    r = cl.post("/api/ml/score", json={"context_id": cid, "ideas": [idea(expiration="2025-01-03")]})
    assert r.status_code == 422
    r = cl.post("/api/ml/score", json={"context_id": cid, "ideas": [idea("dup"), idea("dup")]})
    assert r.status_code == 422
    assert cl.post("/api/ml/score", json={"context_id": "nope", "ideas": [idea()]}).status_code == 404
    assert other.post("/api/ml/score", json={"context_id": cid, "ideas": [idea()]}).status_code == 404
    body = cl.post("/api/ml/score", json={"context_id": cid, "ideas": [idea("mine")]}).json
    did = body["ideas"][0]["decision_id"]
    assert cl.get(f"/api/ml/decisions/{did}").json["status"] == "pending"
    run_consumers(app)
    assert other.get(f"/api/ml/decisions/{did}").status_code == 404
    assert other.get("/api/ml/ideas/mine").status_code == 404
    assert cl.get("/api/ml/ideas/mine").json["risk_unit"] == "400.00"
    r = cl.post("/api/ml/selector-params", json={"weights": {"convexity": 0.5, "r2r": 0.5, "width_fit": 0.5,
                                                             "gamma_alignment": 0.0}})
    assert r.status_code == 422
    r = cl.post("/api/ml/contexts", json={"symbol": "SPX", "contexts": [
        {"context_id": "early", "as_of": iso(t(dt.date(2020, 1, 6), 15, 0))}]})
    assert r.status_code == 422


def test_rules_only_mode_is_recorded(app_factory, new_client, run_consumers):
    """The host's scoring_mode hook (here the test plugin's) forces rules-only scoring."""
    app = app_factory(["mlloop", "tests.plugins.notes.plugin"], NOTES_RULES_ONLY=True)
    cl = new_client(app)
    cid = setup_context(cl)
    body = cl.post("/api/ml/score", json={"context_id": cid, "ideas": some_ideas(3)}).json
    assert body["scoring_mode"] == "rules_only"
    assert all(i["final_score"] == i["original_score"] and i["ml_weight"] == 0 for i in body["ideas"])
    run_consumers(app)
    d = cl.get(f"/api/ml/decisions/{body['ideas'][0]['decision_id']}").json
    assert d["scoring_mode"] == "rules_only" and d["status"] == "recorded"


class _StubScorer:
    """Stands in for part 2's FastScorer: the ML score is a known function of the features."""

    def score_batch(self, frame, original_scores=None, **kw):
        import pandas as pd
        return pd.DataFrame({"ml_score": [60.0 + 10 * (s == "call") for s in frame["side"]]}, index=frame.index)


def test_ml_score_blends_per_assignment(app, new_client, run_consumers, monkeypatch):
    from plugins.mlloop.service import scoring_plan

    class Plan:
        def for_idea(self, idea_id, regime):
            return scoring_plan.Assignment(_StubScorer(), 7, 3, 11, "challenger", 0.25, idea_id.endswith("0"))
    monkeypatch.setattr(scoring_plan, "scoring_plan", lambda conn, user_id, **kw: Plan())
    cl = new_client(app)
    cid = setup_context(cl)
    ideas = some_ideas(4)
    side = {x["idea_id"]: x["side"] for x in ideas}
    body = cl.post("/api/ml/score", json={"context_id": cid, "ideas": ideas}).json
    for i in body["ideas"]:
        ml = Decimal("70.00") if side[i["idea_id"]] == "call" else Decimal("60.00")
        assert Decimal(i["ml_score"]) == ml
        expected = (Decimal("0.75") * Decimal(i["original_score"]) + Decimal("0.25") * ml).quantize(Decimal("0.01"))
        assert abs(Decimal(i["final_score"]) - expected) <= Decimal("0.01")
        assert (i["model_id"], i["model_version"], i["experiment_id"], i["experiment_arm"], i["ml_weight"]) == \
            (7, 3, 11, "challenger", 0.25)
    finals = [Decimal(i["final_score"]) for i in body["ideas"]]
    assert finals == sorted(finals, reverse=True)
    run_consumers(app)
    d = cl.get(f"/api/ml/decisions/{body['ideas'][0]['decision_id']}").json
    assert (d["model_id"], d["model_version"], d["ml_score"]) == (7, 3, body["ideas"][0]["ml_score"])


def test_a_scoring_request_asks_the_breakers_once(app_factory, new_client, monkeypatch):
    """The scoring mode is decided once per request (by the view, through the host's hook) and
    passed down: the breakers' hook runs once however many ideas and whatever the plan does."""
    from plugins.breakers import service as breakers
    app = app_factory(["mlloop", "breakers"])
    cl = new_client(app)
    cid = setup_context(cl)
    calls = []
    real = breakers.scoring_mode

    def counted(conn, user_id):
        calls.append(user_id)
        return real(conn, user_id)

    monkeypatch.setattr(breakers, "scoring_mode", counted)
    r = cl.post("/api/ml/score", json={"context_id": cid, "ideas": some_ideas(7)})
    assert r.status_code == 200, r.json
    assert calls == [cl.user.id]
    assert r.json["scoring_mode"] == "normal"
