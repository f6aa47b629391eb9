"""Drift: PSI, KS, Wasserstein, categorical tests, score drift and the dataset verdict."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from plugins.mlloop.ml.drift import (
    DriftConfig,
    drift_report,
    feature_drift,
    numeric_percents,
    psi,
    psi_from_percents,
    score_drift,
)


def frames(rng, n, shift=0.0, scale=1.0, cat_p=(0.5, 0.3, 0.2)):
    return pd.DataFrame({
        "vix_level": rng.normal(18 + shift * 4, 4 * scale, n),
        "gex_total": rng.lognormal(0, 1, n) * (1 + shift),
        "minutes_since_open": rng.integers(0, 390, n).astype(float) + shift * 100,
        "strategy_type": rng.choice(["single", "vertical", "butterfly"], n, p=list(cat_p)),
    })


def test_psi_by_hand():
    # 4 reference-quartile bins; current piles into the top one
    ref = np.arange(1, 101, dtype=float)
    cur = np.array([90.0] * 70 + [10.0] * 10 + [30.0] * 10 + [60.0] * 10)
    r, c, edges = numeric_percents(ref, cur, bins=4)
    assert edges == pytest.approx([25.75, 50.5, 75.25])
    assert r.tolist() == [0.25, 0.25, 0.25, 0.25] and c.tolist() == [0.1, 0.1, 0.1, 0.7]
    expected = 3 * (0.25 - 0.1) * math.log(0.25 / 0.1) + (0.25 - 0.7) * math.log(0.25 / 0.7)
    assert psi(ref, cur, bins=4) == pytest.approx(expected)
    assert psi(ref, ref, bins=4) == 0.0


def test_psi_epsilon_for_empty_buckets():
    # a category never seen in the reference gets 1e-4 instead of 0: finite, and large
    value = psi(["a"] * 50 + ["b"] * 50, ["a"] * 50 + ["c"] * 50, categorical=True)
    eps = 1e-4
    expected = ((0.5 - eps) * math.log(0.5 / eps) + (eps - 0.5) * math.log(eps / 0.5))
    assert value == pytest.approx(expected)
    assert math.isfinite(value)
    assert psi_from_percents(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0


def test_shifted_distribution_is_flagged_same_distribution_is_not():
    rng = np.random.default_rng(0)
    ref = frames(rng, 5000)
    same = frames(rng, 5000)
    shifted = frames(rng, 5000, shift=0.5, cat_p=(0.2, 0.3, 0.5))
    calm = drift_report(ref, same)
    assert calm["drift_detected"] is False and calm["n_drifted"] == 0
    moved = drift_report(ref, shifted)
    assert moved["drift_detected"] and moved["dataset_drift"]
    assert sorted(moved["drifted_features"]) == sorted(ref.columns)
    vix = moved["features"]["vix_level"]
    assert vix["stattest"] == "wasserstein"  # > 1000 reference rows: Evidently's choice
    assert vix["wasserstein_norm"] >= 0.1 and vix["psi"] >= 0.1 and vix["ks_p_value"] < 0.05
    assert moved["features"]["strategy_type"]["stattest"] == "jensenshannon"
    json.dumps(moved, allow_nan=False)


def test_small_samples_use_ks_and_chisquare():
    rng = np.random.default_rng(1)
    ref, same = frames(rng, 600), frames(rng, 600)
    shifted = frames(rng, 600, shift=0.5, cat_p=(0.2, 0.3, 0.5))
    calm = drift_report(ref, same)
    assert calm["features"]["vix_level"]["stattest"] == "ks"
    assert calm["features"]["strategy_type"]["stattest"] == "chisquare"
    assert not calm["drift_detected"]
    moved = drift_report(ref, shifted)
    assert moved["features"]["vix_level"]["drifted"]
    assert moved["features"]["strategy_type"]["drifted"]
    ks = stats.ks_2samp(ref["vix_level"], shifted["vix_level"])
    assert moved["features"]["vix_level"]["ks_p_value"] == pytest.approx(ks.pvalue)
    wd = stats.wasserstein_distance(ref["vix_level"], shifted["vix_level"])
    assert moved["features"]["vix_level"]["wasserstein_norm"] == pytest.approx(
        wd / np.std(ref["vix_level"]))


def test_dataset_drift_needs_the_drift_share():
    rng = np.random.default_rng(2)
    ref = frames(rng, 3000)
    cur = frames(rng, 3000)
    cur["vix_level"] = cur["vix_level"] + 6  # one feature of four
    report = drift_report(ref, cur)
    assert report["drifted_features"] == ["vix_level"]
    assert report["share_drifted"] == 0.25 and not report["dataset_drift"]
    assert not report["drift_detected"]
    strict = drift_report(ref, cur, config=DriftConfig(drift_share=0.25))
    assert strict["dataset_drift"] and strict["drift_detected"]


def test_configurable_stattest_and_threshold():
    rng = np.random.default_rng(3)
    ref = pd.Series(rng.normal(0, 1, 4000))
    cur = pd.Series(rng.normal(0.15, 1, 4000))  # small shift
    by_psi = feature_drift(ref, cur, config=DriftConfig(numeric_stattest="psi"))
    assert by_psi["stattest"] == "psi" and not by_psi["drifted"] and by_psi["psi"] < 0.1
    by_ks = feature_drift(ref, cur, config=DriftConfig(numeric_stattest="ks"))
    assert by_ks["drifted"]  # KS at n=4000 sees what PSI calls stable
    loose = feature_drift(ref, cur, config=DriftConfig(wasserstein_threshold=0.5))
    assert not loose["drifted"]


def test_few_distinct_values_compare_as_categories_and_missing_is_reported():
    ref = pd.Series([0, 1, 1, 2, None] * 200, dtype=float)
    cur = pd.Series([0, 0, 0, 2, None] * 200, dtype=float)
    out = feature_drift(ref, cur)
    assert out["treated_as"] == "categorical" and out["drifted"]
    assert out["reference_missing_share"] == 0.2
    assert feature_drift(pd.Series([], dtype=float), cur)["drifted"] is False


def test_score_drift():
    rng = np.random.default_rng(4)
    ref = rng.beta(2, 2, 5000) * 100
    assert not score_drift(ref, rng.beta(2, 2, 5000) * 100)["drifted"]
    moved = score_drift(ref, rng.beta(4, 2, 5000) * 100)
    assert moved["drifted"] and moved["psi"] >= 0.1
    report = drift_report(frames(rng, 2000), frames(rng, 2000), reference_scores=ref,
                          current_scores=rng.beta(4, 2, 5000) * 100)
    assert report["drift_detected"] and not report["dataset_drift"] and report["score"]["drifted"]
