"""Issue 17's "Done when", over HTTP only: a user with their own idea stream -- market fields it
does not have, a decision time per idea, its own rule score and two extra features under a
declared feature set -- settles outcomes, trains, reads the gates' figures, promotes, and reads
evaluation scoped to itself and the model. A second stream with the same ideas and shuffled
outcomes trains a model the gates refuse. Impossible inputs are 422 naming the field."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from tests.mlloop.mlloop_fixtures import iso

_URLS: dict = {}
UTC = dt.timezone.utc
DAYS = [d for d in (dt.date(2025, 2, 3) + dt.timedelta(days=i) for i in range(40)) if d.weekday() < 5][:23]
PER_DAY = 40
TRAIN = {"params": {"iterations": 40, "depth": 4, "random_seed": 5},
         "options": {"train_days": 8, "val_days": 2, "step_days": 2, "min_train_samples": 100}}


@pytest.fixture
def app(app_factory, stack, request):
    """The mlloop app on a private database of this stack: models are system-wide."""
    if stack not in _URLS:
        from tests.conftest import private_database_url
        _URLS[stack] = private_database_url(stack, request, "tl_user_stream")
    return app_factory(["mlloop"], DATABASE_URL=_URLS[stack])


def _as_of(day):
    return dt.datetime(day.year, day.month, day.day, 15, 0, tzinfo=UTC)  # 10:00 New York


def _context(day, cid):
    """Spot, VIX and VIX3M only: no GEX structure, no market mode, no bias."""
    start = dt.datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC)
    base = 6000 + 3 * DAYS.index(day)
    snaps = [{"time": iso(start + dt.timedelta(minutes=5 * k)), "spot": f"{base + k:.2f}",
              "vix": 16.0 + 0.1 * k, "vix3m": 17.0} for k in range(7)]
    return {"symbol": "SPX", "snapshots": snaps, "contexts": [{"context_id": cid, "as_of": iso(_as_of(day))}]}


def _stream(rng, day, prefix, shuffled):
    """One day's ideas (0DTE verticals around the money) and the settlement price of each:
    an idea wins when 1.6 x edge + 0.6 x (setup A) + noise > 0 (shuffled: independently of
    its features), its tier from how far (the structure's own bounds hold every price)."""
    spot = 6000 + 3 * DAYS.index(day)
    ideas, prices = [], {}
    edge = rng.normal(size=PER_DAY)
    setup = rng.choice(["A", "B"], PER_DAY)
    z = 1.6 * edge + 0.6 * (setup == "A") + rng.normal(size=PER_DAY)
    if shuffled:
        z = rng.permutation(z)
    for j in range(PER_DAY):
        side = "call" if j % 2 else "put"
        strike = round(spot / 5) * 5
        debit = round(float(rng.uniform(2.0, 6.0)), 2)
        idea_id = f"{prefix}-{day.isoformat()}-{j}"
        ideas.append({"idea_id": idea_id, "strategy": "vertical", "side": side, "direction": "long",
                      "strike": f"{strike}", "width": 10, "expiration": day.isoformat(), "debit": f"{debit:.2f}",
                      "decision_time": iso(_as_of(day) + dt.timedelta(seconds=30 * j)),
                      "rule_score": f"{float(np.clip(50 + 8 * rng.normal(), 0, 100)):.2f}",
                      "features": {"edge": round(float(edge[j]), 4), "setup": str(setup[j])}})
        u = float(1 / (1 + np.exp(-z[j])))                  # 0..1: how well it went
        value = debit * 2 * u if u < 0.5 else debit + (10 - debit) * (2 * u - 1)
        value = round(min(max(value, 0.0), 10.0), 2)
        prices[idea_id] = strike + value if side == "call" else strike - value
    return ideas, prices


def _feed(cl, run_consumers, fsv, prefix, shuffled, days, seed):
    rng = np.random.default_rng(seed)
    decisions = []
    for day in days:
        cid = f"{prefix}:{day.isoformat()}"
        r = cl.post("/api/ml/contexts", json=_context(day, cid))
        assert r.status_code in (200, 201), r.json
        ideas, prices = _stream(rng, day, prefix, shuffled)
        r = cl.post("/api/ml/score", json={"context_id": cid, "feature_set_version": fsv, "ideas": ideas})
        assert r.status_code == 200, r.json
        decisions += r.json["ideas"]
        close = iso(dt.datetime(day.year, day.month, day.day, 21, 0, tzinfo=UTC))
        r = cl.post("/api/ml/pnl-events", json={"events": [
            {"idea_id": i, "event_type": "settlement", "event_time": close, "settlement_price": f"{p:.2f}",
             "underlying_price": f"{p:.2f}"} for i, p in prices.items()]})
        assert r.status_code == 201 and len(r.json["settled"]) == PER_DAY, r.json
    run_consumers(cl.app)
    return decisions


def _train(cl, body) -> dict:
    """Train through the API: synchronously (201) or as a background job (202 + Location: run
    the pending jobs here, then read the registered model)."""
    r = cl.post("/api/admin/ml/models/train", json=body)
    if r.status_code == 202:
        cl.app.extensions["tradeloop"].jobs.run_pending()
        job = cl.get(r.headers["Location"]).json
        assert job["state"] == "succeeded", job
        r = cl.get(f"/api/admin/ml/models/{job['result']['id']}")
        assert r.status_code == 200, r.json
        return r.json
    assert r.status_code == 201, r.json
    return r.json


def test_a_users_own_stream_end_to_end_over_http(app, new_client, run_consumers):
    cl = new_client(app, admin=True)
    # -- declare the stream's extra features
    fs = {"version": "acme-v1", "numeric": ["edge"], "categorical": ["setup"]}
    r = cl.post("/api/ml/feature-sets", json=fs)
    assert r.status_code == 201 and r.json["numeric"] == ["edge"], r.json
    assert cl.post("/api/ml/feature-sets", json=fs).status_code == 200
    r = cl.post("/api/ml/feature-sets", json={**fs, "numeric": ["other"]})
    assert r.status_code == 409 and r.json["code"] == "feature_set_exists"
    assert cl.post("/api/ml/feature-sets", json={**fs, "version": "acme-shuffle"}).status_code == 201

    # -- feed 22 days: missing market fields, per-idea times, own rule scores, extra features
    decisions = _feed(cl, run_consumers, "acme-v1", "real", False, DAYS[:22], seed=1)
    first = decisions[0]
    assert first["rule_source"] == "user" and first["rule_components"] == {} and first["ml_score"] is None
    d = cl.get(f"/api/ml/decisions/{first['decision_id']}").json
    assert d["status"] == "recorded" and d["features"]["feature_set_version"] == "acme-v1"
    assert d["features"]["gex_total"] is None and d["features"]["market_mode"] is None
    assert d["features"]["bias_lfi"] is None and d["features"]["spot_vs_call_wall"] is None
    assert set(d["extra_features"]) == {"edge", "setup"}
    sent = {i["idea_id"]: i["decision_time"] for i in _stream(np.random.default_rng(1), DAYS[0], "real", False)[0]}
    assert {i["idea_id"]: i["decision_time"] for i in decisions[:PER_DAY]} == sent  # each its own time
    assert d["decision_time"] == sent[first["idea_id"]] and d["original_score"] == first["original_score"]

    # -- train on the stream's feature set: the gates' figures come with the model
    real = _train(cl, {**TRAIN, "feature_set_version": "acme-v1"})
    assert real["feature_set_version"] == "acme-v1" and {"edge", "setup"} <= set(real["feature_list"])
    g = real["gates"]
    figures = g["figures"]
    assert figures["bss"] is not None and figures["brier_base"] is not None
    assert set(figures["tiers"]) == {"0", "1", "2", "3"}
    assert figures["control_auc_profitable"] is not None and figures["bss_lower"] > figures["control_bss"]
    assert g["passed"], g["gates"]
    assert real["metrics"]["held_out"]["n_windows"] == 7

    # -- the same ideas with shuffled outcomes: trained, shown, refused
    _feed(cl, run_consumers, "acme-shuffle", "noise", True, DAYS[:22], seed=1)
    noise = _train(cl, {**TRAIN, "feature_set_version": "acme-shuffle"})
    assert not noise["gates"]["passed"]
    r = cl.post(f"/api/admin/ml/models/{noise['id']}/promote", json={"reason": "try"})
    assert r.status_code == 409 and r.json["code"] in ("gate_skill", "gate_skill_above_control"), r.json
    assert "skill" in r.json["message"]
    r = cl.post(f"/api/admin/ml/models/{real['id']}/promote", json={"reason": "earned it"})
    assert r.status_code == 200 and r.json["status"] == "champion", r.json

    # -- the champion scores the stream's new ideas (only that feature set's), P(profitable) beside
    live = _feed(cl, run_consumers, "acme-v1", "live", False, DAYS[22:], seed=7)
    assert all(i["model_id"] == real["id"] and i["ml_score"] is not None for i in live)
    for i in live:
        p = i["tier_probabilities"]
        assert len(p) == 4 and i["p_profitable"] == pytest.approx(p[2] + p[3], abs=2e-6)
    other = _feed(cl, run_consumers, "acme-shuffle", "other", True, DAYS[22:], seed=7)
    assert all(i["ml_score"] is None for i in other)  # no champion for that feature set

    # -- evaluation scoped by user and by model
    q = f"user_id={cl.user.id}&model_id={real['id']}"
    r = cl.get(f"/api/admin/ml/evaluation/live?{q}")
    assert r.status_code == 200, r.json
    ev = r.json
    assert ev["n"] == ev["with_ml_score"] == PER_DAY and ev["models"] == [real["id"]]
    assert ev["auc_ml_score"] > 0.6 and ev["skill"]["n"] == PER_DAY and ev["skill"]["brier_base"] > 0
    somebody = new_client(app)
    r = cl.get(f"/api/admin/ml/evaluation/live?user_id={somebody.user.id}&model_id={real['id']}")
    assert r.status_code == 200 and r.json["n"] == 0
    r = cl.get(f"/api/admin/ml/evaluation/score-outcomes?{q}")
    assert r.status_code == 200 and r.json["n"] == PER_DAY
    r = cl.get(f"/api/admin/ml/evaluation/live?{q}&bogus=1")
    assert r.status_code == 422 and "bogus" in r.json["errors"]["query"]
    ids = [i["decision_id"] for i in live]
    r = cl.post("/api/admin/ml/decisions/tier-probabilities", json={"decision_ids": ids})
    assert r.status_code == 200 and len(r.json) == PER_DAY
    assert all(x["matches"] and x["model_id"] == real["id"] for x in r.json), r.json[:2]


def test_impossible_inputs_are_refused_naming_the_field(app, new_client, run_consumers):
    cl = new_client(app)
    day = DAYS[0]
    cid = f"bounds:{cl.user.id}"
    assert cl.post("/api/ml/contexts", json=_context(day, cid)).status_code in (200, 201)
    good = {"idea_id": "ok", "strategy": "vertical", "side": "call", "direction": "long", "strike": "6000",
            "width": 5, "expiration": day.isoformat(), "debit": "4.00"}
    bad = [({**good, "idea_id": "rich", "debit": "8.00"}, "debit"),                 # pays 8 for at most 5
           ({**good, "idea_id": "credit", "direction": "short", "debit": "-6.00"}, "debit"),  # 6 for a 5-wide
           ({**good, "idea_id": "early", "decision_time": iso(_as_of(day) - dt.timedelta(minutes=1))},
            "decision_time"),
           ({**good, "idea_id": "extra", "features": {"edge": 1.0}}, "features"),  # no feature set declared
           ({**good, "idea_id": "score", "rule_score": "101"}, "rule_score")]
    for idea, field in bad:
        r = cl.post("/api/ml/score", json={"context_id": cid, "ideas": [idea]})
        assert r.status_code == 422, (idea, r.json)
        assert field in str(r.json["errors"]), (field, r.json)
    r = cl.post("/api/ml/score", json={"context_id": cid, "ideas": [good]})
    assert r.status_code == 200, r.json
    close = iso(dt.datetime(day.year, day.month, day.day, 21, 0, tzinfo=UTC))
    # a 5-wide debit vertical at 4.00 settles between -400 and +100: +150 cannot happen
    r = cl.post("/api/ml/pnl-events", json={"events": [
        {"idea_id": "ok", "event_type": "settlement", "event_time": close, "pnl_delta": "150.00",
         "underlying_price": "6010.00"}]})
    assert r.status_code == 422 and "pnl_delta" in r.json["errors"]["json"]["events"]["0"], r.json
    r = cl.post("/api/ml/pnl-events", json={"events": [
        {"idea_id": "ok", "event_type": "settlement", "event_time": close, "pnl_delta": "100.00",
         "underlying_price": "6010.00"}]})
    assert r.status_code == 201 and r.json["settled"] == ["ok"], r.json
