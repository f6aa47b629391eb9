"""Feature extraction: the seed's groups and columns, versions, point-in-time, caching."""
import math
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from plugins.mlloop.domain import calendar as C
from plugins.mlloop.domain import features as F
from plugins.mlloop.domain.features import (
    MarketContext,
    MarketContextCache,
    MarketHistory,
    MarketSnapshot,
    classify_vix_regime,
    extract_idea_features,
    extract_market_features,
    to_vector,
)

UTC = timezone.utc

# The seed's FeatureExtractor.FEATURE_GROUPS, copied by hand from the plan.
SEED_GROUPS = {
    "price_action": ["spot_5m_return", "spot_15m_return", "spot_1h_return",
                     "spot_1d_return", "range_position"],
    "volatility": ["vix_level", "vix_regime", "vix_term_slope", "iv_rank_30d", "iv_percentile_30d"],
    "gex_structure": ["gex_total", "spot_vs_call_wall", "spot_vs_put_wall", "spot_vs_gamma_flip"],
    "market_mode": ["market_mode", "bias_lfi", "bias_direction"],
    "time": ["minutes_since_open", "day_of_week", "is_opex_week", "days_to_monthly_opex"],
    "strategy": ["strategy_type", "side", "dte", "width", "strike_vs_spot", "original_score"],
}

# Every column of the seed's ml_feature_snapshots except id and tracked_idea_id.
SEED_SNAPSHOT_COLUMNS = """snapshot_time feature_set_version feature_extractor_version
gex_calc_version vix_regime_classifier_version spot_price spot_5m_return spot_15m_return
spot_1h_return spot_1d_return intraday_high intraday_low range_position vix_level vix_regime
vix_term_slope iv_rank_30d iv_percentile_30d gex_total gex_call_wall gex_put_wall
gex_gamma_flip spot_vs_call_wall spot_vs_put_wall spot_vs_gamma_flip market_mode bias_lfi
bias_direction minutes_since_open day_of_week is_opex_week days_to_monthly_opex
es_futures_premium tnx_level dxy_level""".split()


def snap(t, spot, vix=16.0, **kw):
    base = dict(vix3m=17.6, gex_total=1.5e9, gex_call_wall=6050.0, gex_put_wall=5900.0,
                gex_gamma_flip=5950.0, market_mode="pin", bias_lfi=0.3,
                es_futures_premium=0.0045, tnx_level=4.25, dxy_level=104.1)
    base.update(kw)
    return MarketSnapshot(time=t, spot=spot, vix=vix, **base)


def ny(d, hh, mm):
    """A New York wall-clock time on date d as UTC (January: EST = UTC-5)."""
    return datetime(d.year, d.month, d.day, hh + 5, mm, tzinfo=UTC)


@pytest.fixture
def history():
    """Six sessions: five previous closes (VIX 14, 15, 16, 17, 18) and today's morning."""
    snaps = []
    days = [date(2025, 1, 2), date(2025, 1, 3), date(2025, 1, 6), date(2025, 1, 7), date(2025, 1, 8)]
    for i, d in enumerate(days):
        snaps.append(snap(ny(d, 9, 30), 5900.0 + i, vix=20.0))
        snaps.append(snap(ny(d, 16, 0), 5950.0 + i, vix=14.0 + i))
    today = date(2025, 1, 9)   # Thursday; prior close 5954
    for k, spot in enumerate([5960.0, 5970.0, 5940.0, 5980.0, 5990.0, 6000.0, 5995.0,
                              6005.0, 6010.0, 6003.0, 5999.0, 6007.0, 6012.0, 6020.0]):
        snaps.append(snap(ny(today, 9, 30) + timedelta(minutes=5 * k), spot, vix=16.5))
    return MarketHistory(snaps)


def test_feature_groups_are_the_seeds():
    assert F.FEATURE_GROUPS == SEED_GROUPS


def test_vix_regime_thresholds():
    assert classify_vix_regime(9.5) == "zombieland"
    assert classify_vix_regime(14.99) == "zombieland"
    assert classify_vix_regime(15.0) == "goldilocks_1"
    assert classify_vix_regime(Decimal("19.99")) == "goldilocks_1"
    assert classify_vix_regime(20) == "goldilocks_2"
    assert classify_vix_regime(29.99) == "goldilocks_2"
    assert classify_vix_regime(30.0) == "chaos"
    assert classify_vix_regime(80.0) == "chaos"
    assert classify_vix_regime(None) is None
    assert classify_vix_regime(float("nan")) is None


def test_calendar_helpers():
    assert C.third_friday(2025, 1) == date(2025, 1, 17)
    assert C.third_friday(2025, 3) == date(2025, 3, 21)
    assert C.days_to_monthly_opex(date(2025, 1, 17)) == 0
    assert C.days_to_monthly_opex(date(2025, 1, 9)) == 8
    assert C.days_to_monthly_opex(date(2025, 1, 18)) == 34          # -> Feb 21
    assert C.days_to_monthly_opex(date(2025, 12, 20)) == 27          # -> Jan 16, 2026
    assert C.is_opex_week(date(2025, 1, 13)) and C.is_opex_week(date(2025, 1, 17))
    assert not C.is_opex_week(date(2025, 1, 10)) and not C.is_opex_week(date(2025, 1, 20))
    # DST: 09:30 New York is 14:30 UTC in January, 13:30 UTC after March 9, 2025
    assert C.session_open_utc(date(2025, 1, 6)) == datetime(2025, 1, 6, 14, 30, tzinfo=UTC)
    assert C.session_open_utc(date(2025, 3, 10)) == datetime(2025, 3, 10, 13, 30, tzinfo=UTC)
    assert C.trading_days_between(date(2025, 1, 10), date(2025, 1, 13)) == 1   # Fri -> Mon
    assert C.trading_days_between(date(2025, 1, 6), date(2025, 1, 20)) == 10


def test_years_to_expiry_on_the_variance_clock():
    as_of = datetime(2025, 1, 6, 15, 30, tzinfo=UTC)                 # 10:30 New York
    assert C.variance_minutes_to_expiry(as_of, date(2025, 1, 6)) == pytest.approx(330)
    assert C.variance_minutes_to_expiry(as_of, date(2025, 1, 7)) == pytest.approx(330 + 420)
    friday_open = datetime(2025, 1, 10, 14, 30, tzinfo=UTC)
    assert C.variance_minutes_to_expiry(friday_open, date(2025, 1, 13)) == pytest.approx(390 + 420)
    assert C.years_to_expiry(as_of, date(2025, 1, 3)) == 0.0
    assert C.years_to_expiry(datetime(2025, 1, 6, 21, 0, tzinfo=UTC), date(2025, 1, 6)) == 0.0
    assert C.years_to_expiry(as_of, date(2025, 1, 6)) == pytest.approx(330 / (420 * 252))


def test_market_features_by_hand(history):
    as_of = ny(date(2025, 1, 9), 10, 35) + timedelta(seconds=42, milliseconds=7)
    f = extract_market_features(MarketContext("ctx-1", as_of, history))
    # the 10:35 bar is the 14th point (index 13): spot 6020
    assert f["spot_price"] == 6020.0
    assert f["spot_5m_return"] == round(6020 / 6012 - 1, 6)          # 10:30 bar
    assert f["spot_15m_return"] == round(6020 / 5999 - 1, 6)         # 10:20 bar
    assert f["spot_1h_return"] == round(6020 / 5970 - 1, 6)          # 09:35 bar
    assert f["spot_1d_return"] == round(6020 / 5954 - 1, 6)          # previous close
    assert f["intraday_high"] == 6020.0 and f["intraday_low"] == 5940.0
    assert f["range_position"] == 1.0
    assert f["vix_level"] == 16.5 and f["vix_regime"] == "goldilocks_1"
    assert f["vix_term_slope"] == round((17.6 - 16.5) / 16.5, 4)
    # previous five closes 14..18; 16.5 sits above 14, 15, 16
    assert f["iv_rank_30d"] == round((16.5 - 14) / (18 - 14), 4)
    assert f["iv_percentile_30d"] == 0.6
    assert f["spot_vs_call_wall"] == round((6050 - 6020) / 6020, 4)
    assert f["spot_vs_put_wall"] == round((6020 - 5900) / 6020, 4)
    assert f["spot_vs_gamma_flip"] == round((6020 - 5950) / 6020, 4)
    assert f["bias_lfi"] == 0.3 and f["bias_direction"] == "bullish"
    assert f["minutes_since_open"] == 65
    assert f["day_of_week"] == 3                                     # Thursday
    assert f["is_opex_week"] is False and f["days_to_monthly_opex"] == 8
    assert f["snapshot_time"] == as_of.replace(microsecond=7000)


def test_bias_direction_band(history):
    t = ny(date(2025, 1, 9), 10, 40)
    for lfi, expected in [(0.2, "neutral"), (-0.2, "neutral"), (0.2001, "bullish"), (-0.75, "bearish")]:
        h = MarketHistory(list(history) + [snap(t, 6000.0, bias_lfi=lfi)])
        assert extract_market_features(MarketContext("c", t, h))["bias_direction"] == expected


def test_future_snapshots_cannot_change_features(history):
    as_of = ny(date(2025, 1, 9), 10, 0)
    before = extract_market_features(MarketContext("c", as_of, history))
    future = list(history) + [
        snap(ny(date(2025, 1, 9), 10, 40) + timedelta(minutes=5 * k), 9000.0 - 1000 * k, vix=80.0,
             bias_lfi=-1.0, market_mode="trend", gex_call_wall=1.0)
        for k in range(5)
    ] + [snap(ny(date(2025, 1, 10), 16, 0), 1.0, vix=90.0)]
    after = extract_market_features(MarketContext("c", as_of, MarketHistory(future)))
    assert after == before
    # and a snapshot 1 ms after as_of is ignored too
    h = MarketHistory(list(history))
    t_next = ny(date(2025, 1, 9), 10, 40)
    h.append(snap(t_next, 1.0))
    f = extract_market_features(MarketContext("c", t_next - timedelta(milliseconds=1), h))
    assert f["spot_price"] == 6020.0


def test_no_snapshot_before_as_of_raises(history):
    with pytest.raises(LookupError):
        extract_market_features(MarketContext("c", datetime(2024, 12, 1, tzinfo=UTC), history))


def test_history_rejects_out_of_order_append(history):
    with pytest.raises(ValueError):
        history.append(snap(datetime(2025, 1, 2, tzinfo=UTC), 1.0))


def test_every_seed_column_present_and_versions_stamped(history):
    f = extract_market_features(MarketContext("c", ny(date(2025, 1, 9), 10, 35), history))
    assert set(F.SNAPSHOT_COLUMNS) == set(SEED_SNAPSHOT_COLUMNS)
    assert set(SEED_SNAPSHOT_COLUMNS) <= set(f)
    assert all(f[c] is not None for c in SEED_SNAPSHOT_COLUMNS), [c for c in SEED_SNAPSHOT_COLUMNS if f[c] is None]
    assert f["feature_set_version"] == F.FEATURE_SET_VERSION
    assert f["feature_extractor_version"] == F.FEATURE_EXTRACTOR_VERSION
    assert f["gex_calc_version"] == F.GEX_CALC_VERSION
    assert f["vix_regime_classifier_version"] == F.VIX_REGIME_CLASSIFIER_VERSION
    for v in (F.FEATURE_SET_VERSION, F.FEATURE_EXTRACTOR_VERSION, F.GEX_CALC_VERSION,
              F.VIX_REGIME_CLASSIFIER_VERSION):
        assert 0 < len(v) <= 20                                      # VARCHAR(20)

    row = F.feature_snapshot_row(f)
    assert list(row) == list(F.SNAPSHOT_COLUMNS)
    assert row["spot_price"] == Decimal("6020.00")
    assert row["spot_5m_return"].as_tuple().exponent == -6
    assert row["vix_term_slope"] == Decimal("0.0667")
    assert row["tnx_level"] == Decimal("4.250")
    assert row["gex_total"] == Decimal("1500000000.00")
    assert row["vix_regime"] == "goldilocks_1" and row["is_opex_week"] is False


def test_idea_features_complete_the_six_groups(history):
    mf = extract_market_features(MarketContext("c", ny(date(2025, 1, 9), 10, 35), history))
    idea = {"strategy": "vertical", "side": "put", "direction": "short", "strike": Decimal("5950"),
            "width": 10, "dte": 2, "score": Decimal("61.37")}
    f = extract_idea_features(idea, mf)
    for names in SEED_GROUPS.values():
        for n in names:
            assert n in f and f[n] is not None, n
    assert f["strategy_type"] == "vertical" and f["side"] == "put" and f["direction"] == "short"
    assert f["strike_vs_spot"] == round((5950 - 6020) / 6020, 6)
    assert f["original_score"] == 61.37
    assert "strategy_type" not in mf                      # the cached market dict is untouched


def test_cache_computes_each_context_once_and_is_bounded(history):
    calls = []

    def compute(ctx):
        calls.append(ctx.context_id)
        return extract_market_features(ctx)

    cache = MarketContextCache(maxsize=3)
    base = ny(date(2025, 1, 9), 9, 30)
    ctxs = [MarketContext(f"c{k}", base + timedelta(minutes=5 * k), history) for k in range(5)]
    for _ in range(100):                                    # 100 ideas on the first context
        cache.get_or_compute(ctxs[0], compute)
    assert calls == ["c0"] and cache.hits == 99
    for c in ctxs[1:]:
        cache.get_or_compute(c, compute)
    assert len(cache) == 3 and "c0" not in cache and "c1" not in cache and "c4" in cache
    cache.get_or_compute(ctxs[2], compute)                  # still cached: no recompute
    assert calls == ["c0", "c1", "c2", "c3", "c4"]
    cache.get_or_compute(ctxs[0], compute)                  # evicted: recomputed
    assert calls[-1] == "c0"
    with pytest.raises(ValueError):
        MarketContextCache(maxsize=0)


def test_to_vector_orders_and_types():
    feats = {"a": 1, "vix_regime": "chaos", "side": None, "is_opex_week": True, "b": None}
    v = to_vector(feats, ["vix_regime", "a", "side", "is_opex_week", "b", "missing"])
    assert v[:4] == ["chaos", 1.0, F.MISSING_CATEGORY, 1.0]
    assert math.isnan(v[4]) and math.isnan(v[5])
    assert F.categorical_indices(["a", "vix_regime", "b", "side"]) == [1, 3]
    assert set(F.CATEGORICAL_FEATURES) == {"vix_regime", "market_mode", "bias_direction",
                                           "strategy_type", "side", "direction"}
    assert all(n in F.DEFAULT_FEATURE_LIST for names in SEED_GROUPS.values() for n in names)
    assert len(set(F.DEFAULT_FEATURE_LIST)) == len(F.DEFAULT_FEATURE_LIST)


def test_simulated_day_features_are_complete_and_point_in_time():
    from plugins.mlloop.sim.world import World

    world = World(21, ideas_per_day=400)
    day = world.day(1)                       # the world already holds 5 sessions of future
    cache = MarketContextCache()
    for idea in day.ideas[::40]:
        ctx = day.contexts[idea.context_id]
        assert ctx.as_of <= idea.decision_time
        f = extract_idea_features(idea, cache.get_or_compute(ctx))
        missing = [n for n in F.DEFAULT_FEATURE_LIST + SEED_SNAPSHOT_COLUMNS if f.get(n) is None]
        assert missing == (["width"] if idea.strategy == "single" else [])   # a single has none
        truncated = MarketHistory(day.history.snapshots_until(ctx.as_of))
        assert len(truncated) < len(day.history)
        assert extract_market_features(MarketContext(ctx.context_id, ctx.as_of, truncated)) == \
            extract_market_features(ctx)


def test_twenty_thousand_ideas_through_the_feature_path_is_fast():
    from plugins.mlloop.sim.world import World

    day = World(3, ideas_per_day=20_000).day(0)
    ideas = day.ideas
    cache = MarketContextCache()
    t0 = time.perf_counter()
    rows = [extract_idea_features(i, cache.get_or_compute(day.contexts[i.context_id])) for i in ideas]
    X = F.to_matrix(rows, F.DEFAULT_FEATURE_LIST)
    elapsed = time.perf_counter() - t0
    assert cache.misses == len({i.context_id for i in ideas}) <= 78
    assert len(X) == 20_000 and len(X[0]) == len(F.DEFAULT_FEATURE_LIST)
    assert elapsed < 5.0, elapsed            # ~0.15 s here; a generous bound against regressions
