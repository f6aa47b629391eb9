"""Walk-forward training: windows without leakage, metrics, calibration, blobs, regimes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from plugins.mlloop.ml import calibration, data
from plugins.mlloop.ml.calibration import fit_calibration
from plugins.mlloop.ml.data import GLOBAL
from plugins.mlloop.ml.metrics import auc_ovr_macro, brier_per_tier, roc_auc, top_k_utility
from plugins.mlloop.ml.model import TrainedModel
from plugins.mlloop.ml.train import shuffled_label_control, train_model
from plugins.mlloop.ml.windows import purge_and_embargo, walk_forward_windows

FEATURES = ["strategy", "x0", "x1", "x2", "x3", "x4"]
SMALL = {"iterations": 60, "depth": 4, "thread_count": 2, "random_seed": 7}
# Regime sub-models by row count alone (the rules' other knobs off): the mechanics of routing;
# sub-models that must earn their place are tested in test_ml_gates.py.
TRAIN_KW = dict(score_column="original_score", params=SMALL, min_train_samples=100,
                min_regime_samples=400, regime_min_days=1, regime_condition_column=None,
                regime_min_improvement=None)


def make_ideas(n_days: int = 12, per_day: int = 150, seed: int = 0, signal: float = 1.0
               ) -> pd.DataFrame:
    """Synthetic settled ideas with real signal in x0, x1 and strategy, and a weak rule score.

    Labels are known at settlement, 0-2 days after the decision, so purging has work to do.
    The regime column has a big ("normal") and a small ("high") regime.
    """
    rng = np.random.default_rng(seed)
    n = n_days * per_day
    days = pd.bdate_range("2025-01-06", periods=n_days, tz="UTC")
    day = np.repeat(days, per_day)
    decision = day + pd.to_timedelta(14 * 3600 + rng.integers(0, 6 * 3600, n), unit="s")
    dte = rng.integers(0, 3, n)
    label = decision.normalize() + pd.to_timedelta(dte, unit="D") + pd.Timedelta(hours=21)
    x = rng.normal(size=(n, 5))
    strategy = rng.choice(["single", "vertical", "butterfly"], n)
    regime = rng.choice(["low", "normal", "high"], n, p=[0.3, 0.5, 0.2])
    latent = signal * (1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.7 * (strategy == "butterfly"))
    r2r = 0.5 * (latent + rng.normal(size=n))
    pnl = 100.0 * r2r
    tier = np.select([r2r < -0.5, r2r < 0, r2r < 0.5], [0, 1, 2], 3)
    rule = 50 + 10 * (0.3 * x[:, 0] + rng.normal(size=n))  # weakly informative
    return pd.DataFrame({
        "idea_id": [f"idea-{i}" for i in range(n)], "decision_time": decision,
        "label_time": label, "regime": regime, "strategy": strategy,
        **{f"x{i}": x[:, i] for i in range(5)}, "original_score": rule,
        "profit_tier": tier, "profitable": (pnl > 0).astype(int), "r2r_achieved": r2r, "pnl": pnl,
    })


@pytest.fixture(scope="module")
def ideas() -> pd.DataFrame:
    return make_ideas()


@pytest.fixture(scope="module")
def trained(ideas):
    calls = []
    model = train_model(ideas, FEATURES, progress=lambda d, t, m: calls.append((d, t, m)),
                        **TRAIN_KW)
    return model, calls


@pytest.fixture(scope="module")
def control(ideas):
    return shuffled_label_control(ideas, FEATURES, seed=3, **TRAIN_KW)


# --------------------------------------------------------------------------- windows


def test_windows_never_train_on_labels_known_after_validation_start(ideas):
    windows = walk_forward_windows(ideas, train_days=5, val_days=1, step_days=1, embargo="1D")
    assert len(windows) == 7  # 12 trading days, 5 train + 1 validation, sliding by one day
    dt = pd.to_datetime(ideas["decision_time"], utc=True)
    lt = pd.to_datetime(ideas["label_time"], utc=True)
    for w in windows:
        assert len(w.train_idx) and len(w.val_idx)
        assert lt.iloc[w.train_idx].max() < w.val_start
        assert dt.iloc[w.train_idx].max() < w.val_start
        assert dt.iloc[w.train_idx].min() >= w.train_start
        val = dt.iloc[w.val_idx]
        assert val.min() >= w.val_start and val.max() < w.val_end
        assert not set(w.train_idx) & set(w.val_idx)
    # consecutive windows validate on consecutive trading days (Mon..Fri, skipping weekends)
    val_days = [w.val_start.date() for w in windows]
    assert val_days == [d.date() for d in pd.bdate_range("2025-01-13", periods=7)]


def test_walk_forward_purges_exactly_the_rows_whose_labels_reach_validation(ideas):
    w = walk_forward_windows(ideas, train_days=5, val_days=1, step_days=1)[2]
    dt = pd.to_datetime(ideas["decision_time"], utc=True)
    lt = pd.to_datetime(ideas["label_time"], utc=True)
    in_train_range = (dt >= w.train_start) & (dt < w.val_start)
    overlapping = in_train_range & (lt >= w.val_start)
    assert set(w.purged_idx) == set(np.flatnonzero(overlapping))
    assert set(w.train_idx) == set(np.flatnonzero(in_train_range & ~overlapping))
    assert len(w.purged_idx) > 0  # the synthetic labels do settle into the next days


def test_purge_and_embargo_on_a_constructed_case():
    t = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
    rows = pd.DataFrame([
        # decision,              label
        (t("2025-01-01 10:00"), t("2025-01-02 09:00")),  # 0 ends before validation: kept
        (t("2025-01-01 10:00"), t("2025-01-03 00:00")),  # 1 label at val_start: purged
        (t("2025-01-02 10:00"), t("2025-01-03 12:00")),  # 2 label inside validation: purged
        (t("2025-01-02 10:00"), t("2025-01-09 00:00")),  # 3 spans the whole validation: purged
        (t("2025-01-03 11:00"), t("2025-01-03 20:00")),  # 4 inside validation: purged
        (t("2025-01-04 00:00"), t("2025-01-04 20:00")),  # 5 at val_end: embargoed
        (t("2025-01-05 23:59"), t("2025-01-06 01:00")),  # 6 within embargo: embargoed
        (t("2025-01-06 00:00"), t("2025-01-06 20:00")),  # 7 at embargo end: kept
        (t("2025-01-07 00:00"), pd.NaT),                 # 8 unsettled, after: kept
        (t("2025-01-02 12:00"), pd.NaT),                 # 9 unsettled, before: purged
    ], columns=["decision_time", "label_time"])
    kept, purged, embargoed = purge_and_embargo(
        rows["decision_time"], rows["label_time"], np.arange(len(rows)),
        t("2025-01-03"), t("2025-01-04"), pd.Timedelta(days=2))
    assert sorted(kept) == [0, 7, 8]
    assert sorted(purged) == [1, 2, 3, 4, 9]
    assert sorted(embargoed) == [5, 6]
    # no embargo: the post-validation rows come back, purging unchanged
    kept0, purged0, emb0 = purge_and_embargo(
        rows["decision_time"], rows["label_time"], np.arange(len(rows)),
        t("2025-01-03"), t("2025-01-04"))
    assert sorted(kept0) == [0, 5, 6, 7, 8] and sorted(purged0) == sorted(purged) and len(emb0) == 0


def test_min_train_samples_and_max_windows(ideas):
    assert walk_forward_windows(ideas, min_train_samples=10_000) == []
    last2 = walk_forward_windows(ideas, max_windows=2)
    every = walk_forward_windows(ideas)
    assert [w.index for w in last2] == [0, 1]
    assert [w.val_start for w in last2] == [w.val_start for w in every[-2:]]
    three_day = walk_forward_windows(ideas, train_days=3, val_days=2, step_days=2)
    assert [w.val_start.date() for w in three_day][:2] == [
        pd.Timestamp("2025-01-09").date(), pd.Timestamp("2025-01-13").date()]
    assert all(len(np.unique(pd.to_datetime(ideas["decision_time"].iloc[w.val_idx]).dt.date)) == 2
               for w in three_day)


# --------------------------------------------------------------------------- metric helpers


def test_roc_auc_matches_pairwise_count():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # rounded: plenty of ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(y, s) == pytest.approx(pairs / (len(pos) * len(neg)), abs=1e-12)
    assert np.isnan(roc_auc(np.ones(5), np.arange(5)))


def test_auc_ovr_brier_and_top_k_by_hand():
    y = np.array([0, 1, 2, 3])
    probs = np.eye(4)
    assert auc_ovr_macro(y, probs) == 1.0
    assert brier_per_tier(y, probs) == [0.0, 0.0, 0.0, 0.0]
    assert brier_per_tier(y, np.full((4, 4), 0.25)) == pytest.approx([0.1875] * 4)
    score = np.array([3, 2, 1, 9, 8, 7])
    pnl = np.array([10, 20, 30, -1, -2, 50])
    r2r = pnl / 10
    day = np.array([1, 1, 1, 2, 2, 2])
    # day 1 top-2: 10, 20 -> 15; day 2 top-2: -1, -2 -> -1.5; mean of days 6.75
    assert top_k_utility(score, pnl, r2r, day, 2) == pytest.approx((6.75, 0.675))
    assert top_k_utility(score, pnl, r2r, day, 10)[0] == pytest.approx((20 + 47 / 3) / 2)


# --------------------------------------------------------------------------- the pipeline


def test_model_with_signal_beats_the_weak_rule_score(trained):
    model, _ = trained
    agg = model.metrics["aggregate"]
    assert model.metrics["n_windows"] == 7
    assert agg["auc_ovr"] > 0.7
    assert agg["auc_profitable"] > agg["rule_auc_profitable"] + 0.15
    assert agg["score_auc_profitable"] > agg["rule_auc_profitable"] + 0.15
    assert model.metrics["pooled"]["auc_ovr"] > 0.7


def test_shuffled_label_control_stays_at_chance(control, trained):
    agg = control.metrics["aggregate"]
    pooled = control.metrics["pooled"]
    assert abs(pooled["auc_ovr"] - 0.5) < 0.05
    assert abs(pooled["auc_profitable"] - 0.5) < 0.06
    assert abs(agg["auc_ovr"] - 0.5) < 0.06
    assert trained[0].metrics["pooled"]["auc_ovr"] - pooled["auc_ovr"] > 0.2


def test_brier_per_tier_below_quarter_and_below_climatology(trained, ideas):
    model, _ = trained
    pooled = model.metrics["pooled"]
    prevalence = ideas["profit_tier"].value_counts(normalize=True)
    for k in range(4):
        assert model.metrics["aggregate"][f"brier_tier_{k}"] < 0.25
        # beats always predicting the base rate, whose Brier is p(1-p)
        assert pooled[f"brier_tier_{k}"] < prevalence[k] * (1 - prevalence[k])


def test_top_10_utility_positive_and_above_average(trained):
    agg = trained[0].metrics["aggregate"]
    assert agg["top_10_pnl"] > 0
    assert agg["top_10_pnl"] > agg["base_pnl"] + 50
    assert agg["top_10_pnl"] > agg["rule_top_10_pnl"]
    assert agg["top_20_r2r"] > 0


def test_window_metrics_recompute_from_the_windows(trained, ideas):
    model, _ = trained
    windows = walk_forward_windows(ideas, train_days=5, val_days=1, step_days=1,
                                   min_train_samples=100)
    assert [w.describe()["n_train"] for w in windows] == [
        m["n_train"] for m in model.metrics["windows"]]
    rule = [roc_auc(ideas["profitable"].iloc[w.val_idx], ideas["original_score"].iloc[w.val_idx])
            for w in windows]
    assert rule == pytest.approx([m["rule_auc_profitable"] for m in model.metrics["windows"]])
    assert model.metrics["aggregate"]["auc_ovr"] == pytest.approx(
        np.mean([m["auc_ovr"] for m in model.metrics["windows"]]))


def test_progress_called_per_window(trained):
    model, calls = trained
    n = model.metrics["n_windows"]
    assert len(calls) == n + 2  # start, one per window, final fit
    assert [c[0] for c in calls] == list(range(n + 1)) + [n + 1]
    assert all(c[1] == n + 1 for c in calls)
    assert all(isinstance(c[2], str) for c in calls)


def test_same_seed_same_predictions_other_seed_differs(ideas, trained):
    model, _ = trained
    again = train_model(ideas, FEATURES, **TRAIN_KW)
    np.testing.assert_array_equal(again.predict_proba(ideas), model.predict_proba(ideas))
    assert again.model_id == model.model_id
    other = train_model(ideas, FEATURES, **{**TRAIN_KW, "params": {**SMALL, "random_seed": 8}})
    assert not np.array_equal(other.predict_proba(ideas), model.predict_proba(ideas))


def test_blob_round_trips_exactly(trained, ideas):
    model, _ = trained
    blob = model.to_blob()
    loaded = TrainedModel.from_blob(blob)
    assert loaded.to_blob() == blob
    assert loaded.model_id == model.model_id
    np.testing.assert_array_equal(loaded.predict_proba(ideas), model.predict_proba(ideas))
    np.testing.assert_array_equal(loaded.predict_profitable(ideas),
                                  model.predict_profitable(ideas))
    assert loaded.feature_list == FEATURES and loaded.cat_features == ["strategy"]
    assert loaded.class_order == [0, 1, 2, 3]
    assert loaded.hyperparameters["iterations"] == 60
    assert loaded.metrics == json.loads(json.dumps(model.metrics, allow_nan=False))
    assert loaded.data_range == {
        "min_decision_time": ideas["decision_time"].min().isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "max_decision_time": ideas["decision_time"].max().isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "max_label_time": ideas["label_time"].max().isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "rows": len(ideas),
    }


def test_tampered_blob_is_rejected(trained):
    model, _ = trained
    altered = TrainedModel.from_blob(model.to_blob())
    altered.tier_models = {**altered.tier_models, GLOBAL: altered.tier_models["normal"]}
    blob = altered.to_blob()
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "manifest.json":
                manifest = json.loads(data)
                manifest["model_id"] = model.model_id  # claim to be the original
                data = json.dumps(manifest).encode()
            dst.writestr(item, data)
    with pytest.raises(ValueError, match="corrupt"):
        TrainedModel.from_blob(buf.getvalue())


def test_regime_models_only_where_samples_suffice(trained, ideas):
    model, _ = trained
    counts = ideas["regime"].value_counts()
    expected = sorted(r for r, c in counts.items() if c >= 400)
    assert model.metrics["regimes"]["models"] == expected == ["low", "normal"]
    assert sorted(model.tier_models) == sorted([GLOBAL, *expected])
    assert model.model_key_for("normal") == "normal"
    assert model.model_key_for("high") == GLOBAL  # 20% of 1800 = ~360 < 400
    assert model.model_key_for(None) == GLOBAL
    rows = ideas.head(50)
    probs = model.predict_proba(rows, calibrated=False)
    normal = rows["regime"] == "normal"
    direct = model.catboost("tier", "normal").predict_proba(model.prepare(rows[normal]))
    np.testing.assert_array_equal(probs[normal.to_numpy()], direct)
    high = rows["regime"] == "high"
    direct = model.catboost("tier", GLOBAL).predict_proba(model.prepare(rows[high]))
    np.testing.assert_array_equal(probs[high.to_numpy()], direct)


def test_calibration_decision_recorded_and_used(trained, ideas):
    model, _ = trained
    decision = model.metrics["calibration"]
    best = decision["candidates"][decision["best"]]["brier"]
    assert decision["applied"] == (best < decision["brier_uncalibrated"])
    raw = model.predict_proba(ideas, calibrated=False)
    cal = model.predict_proba(ideas)
    np.testing.assert_allclose(cal.sum(axis=1), 1.0)
    if decision["applied"]:
        assert model.calibration.method == decision["best"]
        assert not np.array_equal(raw, cal)
    else:
        assert model.calibration.method == "none"
        np.testing.assert_array_equal(raw, cal)


def test_bad_input_is_named(ideas):
    with pytest.raises(ValueError, match="pnl"):
        train_model(ideas.drop(columns=["pnl"]), FEATURES, params=SMALL)
    with pytest.raises(ValueError, match="nope"):
        train_model(ideas, FEATURES + ["nope"], params=SMALL)
    with pytest.raises(ValueError, match="profit_tier"):
        train_model(ideas.assign(profit_tier=ideas["profit_tier"] + 1), FEATURES, params=SMALL)


def test_categorical_detection_and_missing_values(ideas):
    frame = ideas.assign(strategy=ideas["strategy"].astype("category"), flag=True)
    assert data.infer_cat_features(frame, ["strategy", "x0", "flag"]) == ["strategy"]
    prepared = data.prepare_features(
        pd.DataFrame({"strategy": ["a", None], "x0": [1, None]}), ["strategy", "x0", "gone"],
        ["strategy"])
    assert prepared["strategy"].tolist() == ["a", data.MISSING_CATEGORY]
    assert np.isnan(prepared["x0"].iloc[1]) and prepared["gone"].isna().all()


# --------------------------------------------------------------------------- calibration


def _sample(rng, q):
    u = rng.random(len(q))[:, None]
    return (u > np.cumsum(q, axis=1)).sum(axis=1)


def _softmax_power(q, power):
    z = np.log(q) * power
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def test_calibration_applied_when_it_lowers_held_out_brier():
    rng = np.random.default_rng(5)
    truth = rng.dirichlet([2, 2, 2, 2], size=4000)
    y = _sample(rng, truth)
    overconfident = _softmax_power(truth, 3.0)
    cal = fit_calibration(overconfident, y)
    d = cal.decision
    assert d["applied"] and cal.method == d["best"]
    assert d["candidates"][d["best"]]["brier"] < d["brier_uncalibrated"]
    # and it really helps on fresh data from the same process
    truth2 = rng.dirichlet([2, 2, 2, 2], size=4000)
    y2 = _sample(rng, truth2)
    p2 = _softmax_power(truth2, 3.0)
    assert np.mean(brier_per_tier(y2, cal.apply(p2))) < np.mean(brier_per_tier(y2, p2))


def test_calibration_not_applied_when_it_hurts_held_out_brier():
    rng = np.random.default_rng(6)
    truth = rng.dirichlet([2, 2, 2, 2], size=4000)
    y = _sample(rng, truth)
    probs = truth.copy()
    # first half (the fit slice) looks under-confident, second half is already calibrated:
    # every calibrator learns to sharpen, which hurts the held-out half.
    probs[:2000] = _softmax_power(truth[:2000], 0.3)
    cal = fit_calibration(probs, y)
    d = cal.decision
    assert not d["applied"] and cal.method == "none"
    assert all(c["brier"] >= d["brier_uncalibrated"] for c in d["candidates"].values())
    np.testing.assert_array_equal(cal.apply(probs), probs)


def test_calibration_declines_small_or_disabled_inputs():
    probs = np.full((50, 4), 0.25)
    y = np.arange(50) % 4
    assert fit_calibration(probs, y).decision["applied"] is False
    assert "fewer than" in fit_calibration(probs, y).decision["reason"]
    assert fit_calibration(np.full((500, 4), 0.25), np.arange(500) % 4,
                           method="none").decision["reason"] == "calibration disabled"


@pytest.mark.parametrize("method", ["isotonic", "platt", "temperature"])
def test_each_calibrator_keeps_probabilities_valid(method):
    rng = np.random.default_rng(9)
    truth = rng.dirichlet([1, 1, 1, 1], size=1000)
    y = _sample(rng, truth)
    cal = calibration.fit_calibrator(method, _softmax_power(truth, 2.0), y)
    out = cal.apply(_softmax_power(truth, 2.0))
    assert out.shape == (1000, 4) and np.all(out > 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    single = cal.apply(_softmax_power(truth, 2.0)[0])
    np.testing.assert_array_equal(single, out[0])
    again = calibration.Calibration.from_json(json.loads(json.dumps(cal.to_json())))
    np.testing.assert_array_equal(again.apply(out), cal.apply(out))


def test_isotonic_fit_is_monotone_and_pools_violators():
    x = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    y = np.array([0, 1, 0, 0, 1, 1])
    xs, ys = calibration._isotonic_fit(x, y)
    fitted = np.interp(x, xs, ys)
    assert np.all(np.diff(fitted) >= 0)
    # PAV by hand: [0], [1, 0, 0] -> 1/3 pooled, [1], [1]
    np.testing.assert_allclose(fitted, [0, 1 / 3, 1 / 3, 1 / 3, 1, 1])
