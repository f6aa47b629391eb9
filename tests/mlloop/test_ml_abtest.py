"""Experiments: stable routing, sample-ratio mismatch, Welch evaluation, stopping rules."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from plugins.mlloop.ml.abtest import (
    bucket,
    check_stopping,
    evaluate,
    max_drawdown,
    route,
    srm_check,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Computed once from sha256("<experiment_id>:<idea_id>") and frozen here: if the routing
# function ever changes, running experiments would silently reshuffle their arms.
VECTORS = [
    ("exp-1", "idea-1", 0.5870546413864651, "champion"),
    ("exp-1", "idea-12", 0.11664455251039753, "challenger"),
    ("exp-1", "idea-16", 0.06301110390344616, "challenger"),
    ("exp-1", "idea-24", 0.19329001008854485, "challenger"),
    ("exp-1", "idea-5", 0.23178636008048825, "champion"),
    ("exp-2", "idea-1", 0.6678708413813712, "champion"),
    (42, "SPX:2025-01-06:vertical:5900C", 0.9401758281482425, "champion"),
]


@pytest.mark.parametrize("experiment_id, idea_id, expected_bucket, arm_at_20pct", VECTORS)
def test_routing_fixed_vectors(experiment_id, idea_id, expected_bucket, arm_at_20pct):
    assert bucket(experiment_id, idea_id) == expected_bucket
    assert route(experiment_id, idea_id, 0.2) == arm_at_20pct
    assert route(experiment_id, idea_id, 0.0) == "champion"
    assert route(experiment_id, idea_id, 1.0) == "challenger"


def test_routing_is_the_same_in_other_processes():
    ids = [f"idea-{i}" for i in range(200)]
    here = [route("exp-9", i, 0.3) for i in ids]
    code = ("import json,sys; from plugins.mlloop.ml.abtest import route;"
            "print(json.dumps([route('exp-9', f'idea-{i}', 0.3) for i in range(200)]))")
    for seed in ("0", "12345"):  # different str-hash salts: hash() would disagree
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=ROOT, env=env)
        assert __import__("json").loads(out.stdout) == here


def test_routing_follows_the_traffic_split():
    n = 100_000
    for split in (0.1, 0.2, 0.5):
        share = np.mean([route("exp-split", f"idea-{i}", split) == "challenger" for i in range(n)])
        assert abs(share - split) < 4 * math.sqrt(split * (1 - split) / n)
    # and the split is a nested threshold: raising it only moves champions to challenger
    small = {i for i in range(5000) if route("e", i, 0.1) == "challenger"}
    large = {i for i in range(5000) if route("e", i, 0.3) == "challenger"}
    assert small < large


def test_srm_flags_a_60_40_split_declared_50_50():
    result = srm_check({"champion": 6000, "challenger": 4000}, {"champion": 0.5, "challenger": 0.5})
    assert result["mismatch"]
    assert result["chi2"] == pytest.approx(400.0)  # 2 * 1000^2 / 5000
    assert result["p_value"] == pytest.approx(stats.chi2.sf(400.0, 1))


def test_srm_passes_a_fair_split_and_small_samples():
    fair = srm_check({"champion": 5030, "challenger": 4970}, {"champion": 0.5, "challenger": 0.5})
    assert not fair["mismatch"]
    assert fair["p_value"] == pytest.approx(stats.chi2.sf(0.36, 1))
    # 60/40 with n=100 is weak evidence (p ~ 0.046): not flagged at 0.001
    assert not srm_check({"champion": 60, "challenger": 40},
                         {"champion": 0.5, "challenger": 0.5})["mismatch"]
    # 80/20 declared is fine when observed is 80/20
    assert not srm_check({"champion": 8010, "challenger": 1990},
                         {"champion": 0.8, "challenger": 0.2})["mismatch"]


def test_srm_with_routed_traffic():
    arms = [route("exp-srm", f"idea-{i}", 0.2) for i in range(20_000)]
    counts = {"champion": arms.count("champion"), "challenger": arms.count("challenger")}
    assert not srm_check(counts, {"champion": 0.8, "challenger": 0.2})["mismatch"]
    assert srm_check(counts, {"champion": 0.7, "challenger": 0.3})["mismatch"]


def _outcomes(rng, n, mean, sd=1.0, start="2025-02-03"):
    r2r = rng.normal(mean, sd, n)
    return pd.DataFrame({
        "r2r_achieved": r2r,
        "profitable": (r2r > 0).astype(int),
        "max_adverse_excursion": np.abs(rng.normal(0.5, 0.2, n)),
        "decision_time": pd.date_range(start, periods=n, freq="min", tz="UTC"),
    })


def test_welch_matches_an_independent_computation():
    rng = np.random.default_rng(2)
    a = _outcomes(rng, 80, 0.1, 1.0)
    b = _outcomes(rng, 130, 0.4, 2.5)  # unequal sizes and variances
    result = evaluate(a, b)
    x, y = a["r2r_achieved"].to_numpy(), b["r2r_achieved"].to_numpy()
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    t = (x.mean() - y.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
    p = 2 * stats.t.sf(abs(t), dof)
    assert result["t_stat"] == pytest.approx(t, rel=1e-10)
    assert result["df"] == pytest.approx(dof, rel=1e-10)
    assert result["p_value"] == pytest.approx(p, rel=1e-8)
    # and it is not Student's pooled-variance test
    assert result["p_value"] != pytest.approx(stats.ttest_ind(x, y).pvalue, rel=1e-3)


def test_arm_metrics_by_hand():
    rows = [
        {"r2r_achieved": 1.0, "profitable": 1, "max_adverse_excursion": 0.2, "decision_time": 1},
        {"r2r_achieved": -2.0, "profitable": 0, "max_adverse_excursion": 2.1, "decision_time": 2},
        {"r2r_achieved": 1.0, "profitable": 1, "max_adverse_excursion": 0.4, "decision_time": 3},
        {"r2r_achieved": -3.0, "profitable": 0, "max_adverse_excursion": 3.0, "decision_time": 4},
        {"r2r_achieved": 5.0, "profitable": 1, "max_adverse_excursion": 0.1, "decision_time": 5},
    ]
    result = evaluate(rows, list(reversed(rows)))
    champ = result["champion"]
    assert champ["n"] == 5 and champ["win_rate"] == 0.6 and champ["avg_rar"] == pytest.approx(0.4)
    assert champ["max_dd"] == 3.0
    # equity 0, 1, -1, 0, -3, 2: peak 1 to trough -3
    assert champ["max_drawdown"] == 4.0
    # same rows in another list order: drawdown follows decision_time, not list order
    assert result["challenger"]["max_drawdown"] == 4.0
    assert max_drawdown([1, -2, 1, -3, 5]) == 4.0 and max_drawdown([1, 2, 3]) == 0.0


def test_winner_rule_as_in_the_seed():
    rng = np.random.default_rng(3)
    base = _outcomes(rng, 400, 0.0)
    better = _outcomes(rng, 400, 0.5)
    worse = _outcomes(rng, 400, -0.5)
    same = _outcomes(rng, 400, 0.0)
    r = evaluate(base, better)
    assert r["significant"] and r["winner"] == "challenger"
    r = evaluate(base, worse)
    assert r["significant"] and r["winner"] == "champion"
    r = evaluate(base, same)
    assert r["winner"] == "champion"
    r = evaluate(base, _outcomes(rng, 400, 0.02))
    assert not r["significant"] and r["winner"] == "champion"


def test_stopping_rules_in_order():
    rng = np.random.default_rng(4)
    start = datetime(2025, 2, 3, 14, 0, tzinfo=timezone.utc)
    exp = {"started_at": start, "max_duration_days": 14, "min_samples_per_arm": 100,
           "early_stop_threshold": 0.01, "traffic_split": 0.5}
    flat = {"champion": _outcomes(rng, 200, 0.0), "challenger": _outcomes(rng, 200, 0.0)}
    clear = {"champion": _outcomes(rng, 200, 0.0), "challenger": _outcomes(rng, 200, 0.6)}
    few = {"champion": _outcomes(rng, 50, 0.0), "challenger": _outcomes(rng, 40, 1.0)}

    stop, reason, result = check_stopping(exp, few, start + timedelta(days=14))
    assert (stop, reason) == (True, "max_duration") and result is not None
    stop, reason, result = check_stopping(exp, few, start + timedelta(days=13, hours=23))
    assert (stop, reason, result) == (False, "insufficient_samples", None)
    stop, reason, result = check_stopping(exp, clear, start + timedelta(days=3))
    assert (stop, reason) == (True, "statistical_significance")
    assert result["p_value"] < 0.01 and result["winner"] == "challenger"
    stop, reason, result = check_stopping(exp, flat, start + timedelta(days=3))
    assert (stop, reason) == (False, "continue") and result["p_value"] >= 0.01
    # 200/200 observed but 10% declared: the assignment is broken, stop before judging
    stop, reason, result = check_stopping({**exp, "traffic_split": 0.1}, clear,
                                          start + timedelta(days=3))
    assert (stop, reason) == (True, "sample_ratio_mismatch") and result["srm"]["mismatch"]


def test_stopping_accepts_objects_and_naive_times():
    class Exp:
        started_at = datetime(2025, 2, 3)
        max_duration_days = 7
        min_samples_per_arm = 1
        early_stop_threshold = 0.01
        traffic_split = None

    d = check_stopping(Exp(), {"champion": [], "challenger": []}, datetime(2025, 2, 11))
    assert d.stop and d.reason == "max_duration" and d.result is None
