"""Issue 17 on generated idea streams (tests/mlloop/idea_stream.py): sub-models that must earn
their place, expanding windows and the day-level guard, the deployed forecast's Brier skill
against the base rate with a bootstrap bound, the shuffled-label control, and the gates."""
from __future__ import annotations

import numpy as np
import pytest

from plugins.mlloop.ml import gates, skill
from plugins.mlloop.ml.data import GLOBAL, prepare_features
from plugins.mlloop.ml.guard import guard
from plugins.mlloop.ml.metrics import roc_auc
from plugins.mlloop.ml.train import _shuffled, catboost_classifier, train_model
from plugins.mlloop.ml.windows import walk_forward_windows
from tests.mlloop.idea_stream import CATS, DAY_LEVEL, FEATURES, ONE_SIDED, make_stream, split

SMALL = {"iterations": 60, "depth": 4, "thread_count": 2, "random_seed": 3}
LOOP = dict(score_column="original_score", params=SMALL, window="expanding", train_days=8,
            val_days=2, step_days=2, min_train_samples=200, regime_column="regime",
            min_regime_samples=150, regime_min_days=5, regime_min_val_rows=100,
            day_feature_min_days=60, control=True, bootstrap=300)
WORLDS = [(1, 1.5), (2, 0.9)]  # (seed, signal strength)


def p_profitable(model, frame):
    probs = model.predict_proba(frame)
    return probs[:, 2] + probs[:, 3]


@pytest.fixture(scope="module", params=WORLDS, ids=lambda w: f"seed{w[0]}-signal{w[1]}")
def world(request):
    seed, signal = request.param
    frame = make_stream(seed=seed, signal=signal)
    train, test = split(frame, 20)
    model = train_model(train, FEATURES, cat_features=CATS, **LOOP)
    return dict(seed=seed, signal=signal, train=train, test=test, model=model)


def test_the_champion_is_within_a_small_margin_of_plain_catboost(world):
    """Plain CatBoost (defaults but 300 trees) fitted on the same 20 days with every feature,
    scored like the loop's champion on the next 10 days: the champion's AUC(profitable) is at
    most 0.03 below it. (Before issue 17 the loop's champion lost ~0.2 here.)"""
    train, test, model = world["train"], world["test"], world["model"]
    plain = catboost_classifier({"iterations": 300, "random_seed": 1, "thread_count": 2}, "Logloss")
    plain.fit(prepare_features(train, FEATURES, CATS), train["profitable"], cat_features=CATS)
    plain_auc = roc_auc(test["profitable"], plain.predict_proba(prepare_features(test, FEATURES, CATS))[:, 1])
    ours = roc_auc(test["profitable"], p_profitable(model, test))
    assert plain_auc > 0.55
    assert ours >= plain_auc - 0.03, (ours, plain_auc)


def test_the_one_sided_regime_falls_back_to_the_global_model(world):
    """The one-sided regime's early days are 4 bearish, 1 bullish: not enough conditions, so
    no sub-model; its later (bullish) days are scored by the global model. A sub-model fitted
    on those early days alone would score them far worse (it learned "puts win")."""
    train, test, model = world["train"], world["test"], world["model"]
    info = model.metrics["regimes"]["eligibility"][ONE_SIDED]
    assert not info["eligible"] and "bias_direction" in info["reason"]
    assert info["conditions"]["bearish"] >= 3
    assert ONE_SIDED not in model.metrics["regimes"]["models"]
    assert model.model_key_for(ONE_SIDED) == GLOBAL
    early, late = train[train["regime"] == ONE_SIDED], test[test["regime"] == ONE_SIDED]
    sub = catboost_classifier(SMALL, "Logloss")
    sub.fit(prepare_features(early, FEATURES, CATS), early["profitable"], cat_features=CATS)
    sub_auc = roc_auc(late["profitable"], sub.predict_proba(prepare_features(late, FEATURES, CATS))[:, 1])
    ours = roc_auc(late["profitable"], p_profitable(model, late))
    assert ours > sub_auc + 0.1, (ours, sub_auc)


def test_day_level_features_are_left_out_while_training_spans_few_days(world):
    model, train = world["model"], world["train"]
    g = model.metrics["day_level_guard"]["final"]
    assert g["active"] and g["n_days"] == 20 and sorted(g["dropped"]) == sorted(DAY_LEVEL)
    assert not set(DAY_LEVEL) & set(model.feature_list)
    assert {"side", "bias_lfi"} <= set(model.feature_list)
    kept, report = guard(train, FEATURES, CATS, min_days=10)   # 20 days >= 10: kept
    assert kept == FEATURES and not report["active"] and set(report["day_level"]) == set(DAY_LEVEL)


def test_expanding_windows_train_on_every_earlier_day(world):
    windows = walk_forward_windows(world["train"], train_days=8, val_days=2, step_days=2,
                                   window="expanding")
    assert len(windows) == 6 and len({w.train_start for w in windows}) == 1
    sizes = [len(w.train_idx) for w in windows]
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0] - 200
    assert world["model"].metrics["n_windows"] == 6


def test_the_real_model_passes_the_gates_and_beats_its_control(world):
    m = world["model"].metrics
    held, control = m["held_out"], m["control"]
    assert held["n"] == 1200 and held["n_windows"] == 6
    assert held["bss_lower"] > 0 and held["bss_lower"] <= held["bss"] <= held["bss_upper"]
    assert control["bss"] < 0.01 and control["auc_profitable"] == pytest.approx(0.5, abs=0.07)
    result = gates.evaluate(m)
    assert result["passed"], gates.failed(result)
    assert result["figures"]["control_auc_profitable"] == control["auc_profitable"]
    assert set(result["figures"]["tiers"]) == {"0", "1", "2", "3"}


def test_a_shuffled_label_model_fails_the_skill_gates(world):
    """Trained on labels permuted across rows (its own control reshuffles them again): no skill
    beyond doubt, none above the control; the seed's Brier < 0.25 line would have passed it."""
    shuffled = train_model(_shuffled(world["train"], 11), FEATURES, cat_features=CATS, **LOOP)
    result = gates.evaluate(shuffled.metrics)
    failed = {g["name"] for g in gates.failed(result)}
    assert {"skill", "skill_above_control"} <= failed
    assert "held_out_windows" not in failed and "held_out_samples" not in failed
    assert shuffled.metrics["held_out"]["bss_lower"] < 0
    assert result["figures"]["seed_brier_below_quarter"] is True


def test_gates_name_what_is_missing(world):
    m = world["model"].metrics
    result = gates.evaluate(m, gates.GateConfig(min_windows=7, min_samples=5000))
    failed = {g["name"]: g for g in gates.failed(result)}
    assert set(failed) == {"held_out_windows", "held_out_samples"}
    assert failed["held_out_windows"]["value"] == 6 and failed["held_out_windows"]["threshold"] == 7
    no_control = gates.evaluate({**m, "control": None})
    assert {g["name"] for g in gates.failed(no_control)} == {"control", "skill_above_control"}


def test_brier_skill_by_hand():
    """Two rows, tiers 3 and 0. Forecast (0, 0, 0.5, 0.5) and (0.5, 0.5, 0, 0): row Briers
    0.5 each -> BS = 0.5. Base rate (0.25 x 4): each row 0.5625 + 3 x 0.0625 = 0.75 -> 0.75.
    BSS = 1 - 0.5 / 0.75 = 1/3. Tier 3: model (0.25 + 0) / 2 = 0.125, base
    (0.5625 + 0.0625) / 2 = 0.3125 -> 1 - 0.125 / 0.3125 = 0.6."""
    y = np.array([3, 0])
    p = np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 0, 0]])
    s = skill.skill(y, p, skill.base_rates(np.array([0, 1, 2, 3])))
    assert s["brier"] == pytest.approx(0.5) and s["brier_base"] == pytest.approx(0.75)
    assert s["bss"] == pytest.approx(1 / 3)
    assert s["tiers"]["3"]["bss"] == pytest.approx(0.6)
    assert skill.base_rates(np.array([0, 0, 3, 2])).tolist() == [0.5, 0.0, 0.25, 0.25]


def test_bootstrap_bound_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 600)
    p = np.full((600, 4), 0.1)
    p[np.arange(600), y] = 0.7                     # a sharp, mostly right forecast
    day = np.repeat(np.arange(20), 30)
    base = skill.base_rates(y)
    a = skill.bootstrap_bss(y, p, base, day, n_boot=400, seed=5)
    b = skill.bootstrap_bss(y, p, base, day, n_boot=400, seed=5)
    est = skill.skill(y, p, base)["bss"]
    assert a == b and a["n_days"] == 20 and a["lower"] < est < a["upper"]
