"""Scoring: the seed's score mapping, blending, the fast path, fallbacks, deep path, replay."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from plugins.mlloop.ml.data import GLOBAL
from plugins.mlloop.ml.inference import FastScorer, replay, score_deep
from plugins.mlloop.ml.scale import blend, confidence, probability_to_score
from plugins.mlloop.ml.train import train_model
from tests.mlloop.test_ml_train import FEATURES, SMALL, make_ideas

CONTEXT_FEATURES = ["x3", "x4"]  # play the market-wide part of the feature vector


@pytest.fixture(scope="module")
def ideas():
    return make_ideas(n_days=8, per_day=120, seed=11)


@pytest.fixture(scope="module")
def model(ideas):
    return train_model(ideas, FEATURES, score_column="original_score", params=SMALL,
                       min_train_samples=100, min_regime_samples=300, version="v7")


def _records(frame):
    return frame[FEATURES + ["regime"]].to_dict("records")


# --------------------------------------------------------------------------- mapping and blend


@pytest.mark.parametrize("probs, expected", [
    ([1, 0, 0, 0], 0.0),        # certain big loss: EV -1
    ([0, 1, 0, 0], 50.0),       # certain small loss: EV 0
    ([0, 0, 1, 0], 75.0),       # certain small win: EV 0.5
    ([0, 0, 0, 1], 100.0),      # certain big win: EV 1
    ([0.25, 0.25, 0.25, 0.25], 56.25),  # EV (-1 + 0 + 0.5 + 1) / 4 = 0.125
    ([0.5, 0, 0, 0.5], 50.0),
    ([0.1, 0.2, 0.3, 0.4], 72.5),       # EV -0.1 + 0.15 + 0.4 = 0.45 -> 50 + 22.5
    ([0, 0, 0, 2], 100.0),      # clamped above
    ([2, 0, 0, 0], 0.0),        # clamped below
])
def test_probability_to_score_vectors(probs, expected):
    assert probability_to_score(probs) == pytest.approx(expected, abs=1e-12)
    assert isinstance(probability_to_score(probs), float)


def test_probability_to_score_batch_equals_rows():
    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1, 1, 1], size=500)
    batch = probability_to_score(p)
    assert batch.shape == (500,)
    assert [probability_to_score(row) for row in p] == batch.tolist()
    manual = np.clip(50 + 50 * (p @ np.array([-1, 0, 0.5, 1])), 0, 100)
    np.testing.assert_allclose(batch, manual, atol=1e-12)


def test_confidence_is_one_minus_normalised_entropy():
    assert confidence([0.25] * 4) == pytest.approx(0.0, abs=1e-12)
    assert confidence([0, 0, 1, 0]) == 1.0
    p = np.array([0.5, 0.5, 0, 0])
    assert confidence(p) == pytest.approx(1 - math.log(2) / math.log(4))


def test_blend():
    assert blend(60.0, 80.0, 0.3) == pytest.approx(0.7 * 60 + 0.3 * 80)
    assert blend(60.0, 80.0, 1.0) == 80.0
    assert blend(60.0, None, 0.5) == 60.0
    assert blend(60.0, float("nan"), 0.5) == 60.0
    with pytest.raises(ValueError):
        blend(60.0, 80.0, 1.5)


def test_blend_weight_zero_leaves_ranking_unchanged():
    rng = np.random.default_rng(1)
    original = rng.uniform(0, 100, 1000)
    ml = rng.uniform(0, 100, 1000)  # wildly different opinion
    final = np.array([blend(o, m, 0.0) for o, m in zip(original, ml)])
    np.testing.assert_array_equal(final, original)
    np.testing.assert_array_equal(np.argsort(final, kind="stable"),
                                  np.argsort(original, kind="stable"))
    # whereas any weight reorders something
    reordered = np.array([blend(o, m, 0.3) for o, m in zip(original, ml)])
    assert not np.array_equal(np.argsort(reordered), np.argsort(original))


# --------------------------------------------------------------------------- fast path


def test_fast_single_row_equals_batch(model, ideas):
    scorer = FastScorer(model, ml_weight=0.3)
    batch = scorer.score_batch(ideas, original_score_column="original_score")
    assert set(batch["model_key"]) == {GLOBAL, *model.metrics["regimes"]["models"]}
    for j, row in enumerate(_records(ideas)):
        r = scorer.score(row, row_original := float(ideas["original_score"].iloc[j]))
        assert r.fallback is None
        assert r.ml_score == batch["ml_score"].iloc[j]
        assert r.final_score == batch["final_score"].iloc[j] == blend(row_original, r.ml_score, 0.3)
        tiers = batch[[f"p_tier_{k}" for k in range(4)]].iloc[j].tolist()
        assert list(r.tier_probabilities) == tiers
        assert r.confidence == batch["confidence"].iloc[j]
        assert r.model_key == batch["model_key"].iloc[j]
    probs = model.predict_proba(ideas)
    np.testing.assert_array_equal(batch["ml_score"].to_numpy(), probability_to_score(probs))


def test_cached_context_merges_with_idea_features(model, ideas):
    scorer = FastScorer(model.to_blob(), ml_weight=0.2)  # loads from the stored form too
    row = _records(ideas)[3]
    full = scorer.score(row, 50.0, idea_id="idea-3")
    scorer.cache_context("ctx-1", {k: row[k] for k in CONTEXT_FEATURES + ["regime"]})
    idea_only = {k: v for k, v in row.items() if k not in CONTEXT_FEATURES + ["regime"]}
    merged = scorer.score(idea_only, 50.0, context_id="ctx-1", idea_id="idea-3")
    assert merged.ml_score == full.ml_score and merged.model_key == full.model_key
    assert merged.context_id == "ctx-1" and merged.model_version == "v7"
    assert merged.model_id == model.model_id
    # the idea's own value wins over the context's
    override = scorer.score({**idea_only, "x3": row["x3"] + 5}, 50.0, context_id="ctx-1")
    assert override.ml_score == scorer.score({**row, "x3": row["x3"] + 5}, 50.0).ml_score
    # batch path with the same context
    frame = ideas.iloc[[3]].drop(columns=CONTEXT_FEATURES + ["regime"])
    out = scorer.score_batch(frame, [50.0], context_id="ctx-1")
    assert out["ml_score"].iloc[0] == full.ml_score


def test_context_cache_is_bounded(model):
    scorer = FastScorer(model, max_contexts=2)
    for c in ("a", "b", "c"):
        scorer.cache_context(c, {"x3": 0.1})
    assert not scorer.has_context("a") and scorer.has_context("b") and scorer.has_context("c")


def test_fallbacks_leave_the_rule_score(model, ideas):
    row = _records(ideas)[0]
    no_model = FastScorer(None, ml_weight=0.5).score(row, 61.0)
    assert (no_model.ml_score, no_model.final_score, no_model.fallback) == (None, 61.0, "no_model")
    missing = FastScorer(model, ml_weight=0.5).score(row, 61.0, context_id="never-cached")
    assert (missing.ml_score, missing.final_score, missing.fallback) == (
        None, 61.0, "missing_context")
    rules = FastScorer(model, ml_weight=0.5, mode="rules_only").score(row, 61.0)
    assert (rules.ml_score, rules.final_score, rules.fallback) == (None, 61.0, "rules_only")
    batch = FastScorer(model, mode="rules_only").score_batch(ideas.head(3), [1.0, 2.0, 3.0])
    assert batch["final_score"].tolist() == [1.0, 2.0, 3.0] and batch["ml_score"].isna().all()
    json.dumps(no_model.to_dict())


def test_model_error_degrades_to_rules(model, ideas):
    scorer = FastScorer(model, ml_weight=0.5)

    class Broken:
        def predict_proba(self, *a, **k):
            raise RuntimeError("boom")

    scorer._models = {k: Broken() for k in scorer._models}
    r = scorer.score(_records(ideas)[0], 42.0)
    assert r.ml_score is None and r.final_score == 42.0 and r.fallback.startswith("model_error")


def test_shadow_mode_scores_but_never_changes_final(model, ideas):
    shadow = FastScorer(model, ml_weight=0.5, mode="shadow")
    for row, orig in zip(_records(ideas)[:50], ideas["original_score"][:50]):
        r = shadow.score(row, float(orig))
        assert r.ml_score is not None and r.final_score == float(orig) and r.ml_weight == 0.0


def test_missing_features_are_missing_values_not_errors(model):
    r = FastScorer(model).score({"x0": 1.0}, 50.0)
    assert r.fallback is None and 0 <= r.ml_score <= 100


def test_fast_path_meets_the_seed_latency_bound(model, ideas):
    # The seed's requirement is < 5 ms; the benchmark reports the real figures (~0.1 ms p50,
    # ~0.2 ms p99). Asserted on the median: on a shared 2-core machine one preempted call
    # can take longer than 5 ms whatever the code does, so a tail assertion would be flaky.
    scorer = FastScorer(model, ml_weight=0.1)
    rows = _records(ideas)[:200]
    for row in rows[:20]:
        scorer.score(row, 50.0)
    times = []
    for row in rows:
        t = time.perf_counter()
        scorer.score(row, 50.0)
        times.append(time.perf_counter() - t)
    assert np.median(times) < 0.005


# --------------------------------------------------------------------------- deep path, replay


def test_deep_path_matches_fast_path_and_adds_p_profitable(model, ideas):
    head = ideas.head(40)
    deep = score_deep(model.to_blob(), head, original_score_column="original_score",
                      ml_weight=0.25)
    fast = FastScorer(model, ml_weight=0.25)
    assert len(deep) == 40
    json.dumps(deep, allow_nan=False)
    p_prof = model.predict_profitable(head)
    for d, row, orig, pp in zip(deep, _records(head), head["original_score"], p_prof):
        f = fast.score(row, float(orig))
        assert d["ml_score"] == f.ml_score and d["final_score"] == f.final_score
        assert d["tier_probabilities"] == list(f.tier_probabilities)
        assert d["confidence"] == f.confidence and d["p_profitable"] == pp
        assert d["model_id"] == model.model_id and d["model_version"] == "v7"
    assert [d["idea_id"] for d in deep] == head["idea_id"].tolist()
    none = score_deep(None, head, original_score_column="original_score")
    assert all(d["ml_score"] is None and d["final_score"] == o
               for d, o in zip(none, head["original_score"]))


def test_replay_reproduces_a_logged_score_exactly(model, ideas):
    blob = model.to_blob()
    row = _records(ideas)[7]
    logged = FastScorer(model, ml_weight=0.3).score(row, 55.0)
    # what the decision log keeps: features as JSON, the score, the model id
    stored = json.loads(json.dumps(row))
    ok = replay(blob, stored, logged.ml_score, logged_model_id=logged.model_id)
    assert ok["matches"] and ok["abs_diff"] == 0.0
    assert ok["tier_probabilities"] == list(logged.tier_probabilities)
    off = replay(blob, stored, logged.ml_score + 1e-9)
    assert not off["matches"] and off["abs_diff"] > 0
    assert replay(blob, stored, round(logged.ml_score, 4), decimals=4)["matches"]
    assert not replay(blob, stored, logged.ml_score, logged_model_id="someone-else")["matches"]
    changed = replay(blob, {**stored, "x0": stored["x0"] + 1}, logged.ml_score)
    assert not changed["matches"]


def test_replay_in_a_fresh_process_matches(model, ideas, tmp_path):
    """Same blob + same features in another interpreter -> the same score, bit for bit."""
    path = tmp_path / "model.bin"
    path.write_bytes(model.to_blob())
    row = _records(ideas)[9]
    logged = FastScorer(model).score(row, 50.0).ml_score
    code = (
        "import json,sys; from plugins.mlloop.ml.inference import replay;"
        f"r=replay(open({str(path)!r},'rb').read(), json.loads(sys.argv[1]), float(sys.argv[2]));"
        "print(json.dumps(r))"
    )
    out = subprocess.run([sys.executable, "-c", code, json.dumps(row), repr(logged)],
                         capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert json.loads(out.stdout)["matches"] is True
