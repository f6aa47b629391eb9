"""The rule score: params validation, hand-computed components, geometry."""
import json
import math
from datetime import date, datetime, timezone
from decimal import Decimal

import numpy as np
import pytest

from plugins.mlloop.domain.ideas import InvalidIdea, TradeIdea
from plugins.mlloop.domain.rules import ScoringContext, score_idea, score_ideas
from plugins.mlloop.domain.selector_params import (
    COMPONENTS,
    DEFAULT_SELECTOR_PARAMS,
    InvalidSelectorParams,
    SelectorParams,
)

UTC = timezone.utc
OPEN = datetime(2025, 1, 6, 14, 30, tzinfo=UTC)          # 09:30 New York, a Monday
EXP = date(2025, 1, 6)
# 0DTE at the open: 390 variance minutes of a 420 x 252 year
EM_0DTE = 6000 * 0.15 * math.sqrt(390 / (420 * 252))


def idea(strategy="vertical", side="call", direction="long", strike=6000, width=10, debit="4.00",
         expiration=EXP, **kw):
    return TradeIdea(idea_id="i", strategy=strategy, side=side, direction=direction,
                     strike=Decimal(strike), width=width, expiration=expiration, dte=0,
                     debit=Decimal(debit), **kw)


def ctx(**kw):
    base = dict(as_of=OPEN, spot=6000.0, iv=0.15, bias_lfi=0.5)
    base.update(kw)
    return ScoringContext(**base)


# --- params -----------------------------------------------------------------------------

def test_default_weights_are_the_seeds():
    assert dict(DEFAULT_SELECTOR_PARAMS.weights) == {
        "convexity": 0.40, "r2r": 0.25, "width_fit": 0.20, "gamma_alignment": 0.15}
    assert DEFAULT_SELECTOR_PARAMS.version == 1


@pytest.mark.parametrize("weights, message", [
    ({"convexity": 0.5, "r2r": 0.25, "width_fit": 0.2, "gamma_alignment": 0.15}, "sum to 1"),
    ({"convexity": 0.6, "r2r": 0.25, "width_fit": 0.15}, "missing"),
    ({"convexity": 0.4, "r2r": 0.25, "width_fit": 0.2, "gamma_alignment": 0.1, "luck": 0.05}, "unknown"),
    ({"convexity": 1.2, "r2r": -0.2, "width_fit": 0.0, "gamma_alignment": 0.0}, ">= 0"),
    ({"convexity": float("nan"), "r2r": 0.5, "width_fit": 0.25, "gamma_alignment": 0.25}, "finite"),
    ({"convexity": "lots", "r2r": 0.5, "width_fit": 0.25, "gamma_alignment": 0.25}, "not a number"),
    ([("convexity", 1.0)], "mapping"),
])
def test_invalid_weights_are_rejected(weights, message):
    with pytest.raises(InvalidSelectorParams, match=message):
        SelectorParams(version=2, weights=weights)


def test_invalid_version_and_constants_are_rejected():
    for v in (0, -1, 1.5, True, "2"):
        with pytest.raises(InvalidSelectorParams):
            SelectorParams(version=v)
    with pytest.raises(InvalidSelectorParams):
        SelectorParams(version=2, r2r_scale=0)
    with pytest.raises(InvalidSelectorParams):
        SelectorParams(version=2, width_target_em={"vertical": 1.0, "butterfly": -1})


def test_params_from_a_stored_row():
    row = {"version": 7, "weights": json.dumps({"convexity": "0.1", "r2r": "0.2",
                                                "width_fit": "0.3", "gamma_alignment": "0.4"}),
           "created_at": "ignored"}
    p = SelectorParams.from_row(row)
    assert p.version == 7 and p.weights["gamma_alignment"] == 0.4
    # Decimal weights that sum to exactly 1 are fine; the stored form round-trips
    q = SelectorParams(version=3, weights={k: Decimal("0.25") for k in COMPONENTS})
    assert SelectorParams.from_row(q.to_row()) == q
    with pytest.raises(TypeError):
        p.weights["r2r"] = 1.0                                   # frozen


def test_weights_drive_the_total():
    i = idea()
    base = score_idea(i, ctx(), DEFAULT_SELECTOR_PARAMS)
    for c in COMPONENTS:
        only = SelectorParams(version=9, weights={k: 1.0 if k == c else 0.0 for k in COMPONENTS})
        assert float(score_idea(i, ctx(), only).total) == pytest.approx(float(base.components[c]), abs=0.011)
    expected = sum(DEFAULT_SELECTOR_PARAMS.weights[c] * float(base.components[c]) for c in COMPONENTS)
    assert float(base.total) == pytest.approx(expected, abs=0.02)
    assert base.params_version == 1


# --- components by hand -----------------------------------------------------------------

def test_debit_call_vertical_by_hand():
    s = score_idea(idea(), ctx(bias_lfi=0.5), DEFAULT_SELECTOR_PARAMS)
    c = {k: float(v) for k, v in s.components.items()}
    # R2R: (10 - 4) / 4 = 1.5 -> 100 (1 - e^(-1.5 / 2))
    assert c["r2r"] == pytest.approx(100 * (1 - math.exp(-0.75)), abs=0.01)
    # convexity: the full 6 reward is reachable (6010 is inside +-1 EM) -> L = 1.5
    assert c["convexity"] == pytest.approx(100 * (1 - math.exp(-1.5 / 1.5)), abs=0.01)
    # width fit: target width 1 EM, tolerance 0.5 in log space
    z = math.log(10 / EM_0DTE) / 0.5
    assert c["width_fit"] == pytest.approx(100 * math.exp(-0.5 * z * z), abs=0.01)
    # gamma alignment: bullish with a +0.5 bias, no flip (g = 0), no walls (room 3 EM)
    assert c["gamma_alignment"] == pytest.approx(50 + 30 * 0.5 + 5 * 0.5 * (2 * math.tanh(3) - 1), abs=0.01)
    for v in c.values():
        assert 0 <= v <= 100


def test_expected_move_is_damped_above_the_flip_and_stretched_below():
    p = DEFAULT_SELECTOR_PARAMS
    g = math.tanh(50 / (0.004 * 6000))
    for flip, sign in ((5950.0, 1), (6050.0, -1)):
        c = score_idea(idea(), ctx(gex_gamma_flip=flip), p).components
        em = EM_0DTE * (1 - 0.2 * sign * g)
        z = math.log(10 / em) / 0.5
        assert float(c["width_fit"]) == pytest.approx(100 * math.exp(-0.5 * z * z), abs=0.01)
    no_adjust = SelectorParams(version=4, gamma_em_adjust=0.0)
    assert score_idea(idea(), ctx(gex_gamma_flip=5950.0), no_adjust).components["width_fit"] == \
        score_idea(idea(), ctx(), p).components["width_fit"]
    with pytest.raises(InvalidSelectorParams):
        SelectorParams(version=4, gamma_em_adjust=1.0)


def test_credit_put_vertical_by_hand():
    # sell the 5950 put, buy the 5940 put for 1.50: max loss 8.50, max profit 1.50
    i = idea(side="put", direction="short", strike=5950, width=10, debit="-1.50")
    c = {k: float(v) for k, v in score_idea(i, ctx(), DEFAULT_SELECTOR_PARAMS).components.items()}
    assert c["r2r"] == pytest.approx(100 * (1 - math.exp(-(1.5 / 8.5) / 2)), abs=0.01)
    assert c["convexity"] == pytest.approx(100 * (1 - math.exp(-(1.5 / 8.5) / 1.5)), abs=0.01)


def test_long_single_reward_is_measured_two_expected_moves_out():
    i = idea(strategy="single", strike=6020, width=None, debit="12.00")
    c = {k: float(v) for k, v in score_idea(i, ctx(), DEFAULT_SELECTOR_PARAMS).components.items()}
    reward = (6000 + 2 * EM_0DTE - 6020) - 12.0
    assert c["r2r"] == pytest.approx(100 * (1 - math.exp(-(reward / 12.0) / 2)), abs=0.01)
    best_in_reach = (6000 + EM_0DTE - 6020) - 12.0
    assert c["convexity"] == pytest.approx(100 * (1 - math.exp(-(best_in_reach / 12.0) / 1.5)), abs=0.01)
    assert c["width_fit"] == 50.0


def test_butterfly_convexity_uses_its_centre_and_pins_above_the_flip():
    fly = idea(strategy="butterfly", strike=6000, width=20, debit="3.00")
    p = DEFAULT_SELECTOR_PARAMS
    c = {k: float(v) for k, v in score_idea(fly, ctx(), p).components.items()}
    assert c["convexity"] == pytest.approx(100 * (1 - math.exp(-(17 / 3) / 1.5)), abs=0.01)
    above = score_idea(fly, ctx(gex_gamma_flip=5950.0), p).components["gamma_alignment"]
    below = score_idea(fly, ctx(gex_gamma_flip=6050.0), p).components["gamma_alignment"]
    g = math.tanh(50 / (0.004 * 6000))          # centre at spot: the pin term is +20
    assert float(above) == pytest.approx(50 + 30 * g + 20, abs=0.01)
    assert float(below) == pytest.approx(50 - 30 * g + 20, abs=0.01)
    # a short butterfly mirrors the long one
    short = idea(strategy="butterfly", direction="short", strike=6000, width=20, debit="-3.00")
    assert float(score_idea(short, ctx(gex_gamma_flip=5950.0), p).components["gamma_alignment"]) == \
        pytest.approx(100 - float(above), abs=0.011)
    # a far-away centre cannot be reached within the expected move
    far = idea(strategy="butterfly", strike=6200, width=20, debit="0.50")
    assert score_idea(far, ctx(), p).components["convexity"] < Decimal("1")


def test_gamma_alignment_leans_with_the_bias():
    p = DEFAULT_SELECTOR_PARAMS
    bull = idea()
    bear = idea(side="put", strike=6000)
    up = ctx(bias_lfi=0.8)
    assert score_idea(bull, up, p).components["gamma_alignment"] > score_idea(bear, up, p).components["gamma_alignment"]
    down = ctx(bias_lfi=-0.8)
    assert score_idea(bull, down, p).components["gamma_alignment"] < score_idea(bear, down, p).components["gamma_alignment"]


def test_batch_equals_one_by_one():
    ideas = [idea(), idea(side="put", direction="short", strike=5950, debit="-1.50"),
             idea(strategy="butterfly", width=25, debit="2.10"),
             idea(strategy="single", width=None, debit="15.30", expiration=date(2025, 1, 8))]
    c = ctx(gex_gamma_flip=5980.0, gex_call_wall=6050.0, gex_put_wall=5925.0)
    assert score_ideas(ideas, c, DEFAULT_SELECTOR_PARAMS) == [score_idea(i, c, DEFAULT_SELECTOR_PARAMS) for i in ideas]
    assert score_ideas([], c, DEFAULT_SELECTOR_PARAMS) == []


def test_context_from_market_features():
    f = {"snapshot_time": OPEN, "spot_price": 6000.0, "vix_level": 15.0, "bias_lfi": 0.5,
         "gex_gamma_flip": None, "gex_call_wall": None, "gex_put_wall": None}
    c = ScoringContext.from_market_features(f)
    assert (c.spot, c.iv, c.bias_lfi, c.as_of) == (6000.0, 0.15, 0.5, OPEN)
    assert score_idea(idea(), c, DEFAULT_SELECTOR_PARAMS) == score_idea(idea(), ctx(), DEFAULT_SELECTOR_PARAMS)


# --- geometry ---------------------------------------------------------------------------

def test_idea_validation():
    with pytest.raises(InvalidIdea):
        idea(debit="-1.00")                      # long but paid nothing
    with pytest.raises(InvalidIdea):
        idea(direction="short", debit="1.00")    # short but paid
    with pytest.raises(InvalidIdea):
        idea(width=None)
    with pytest.raises(InvalidIdea):
        idea(strategy="single", width=5)
    with pytest.raises(InvalidIdea):
        idea(strategy="condor")
    with pytest.raises(InvalidIdea):
        idea(side="straddle")


def test_legs_and_expiry_payoffs():
    put_vertical = idea(side="put", strike=6000, width=10, debit="4.00")
    assert put_vertical.legs() == [(Decimal(6000), "put", 1), (Decimal(5990), "put", -1)]
    assert put_vertical.value_at_expiry(5980) == Decimal(10)
    assert put_vertical.pnl_at_expiry(Decimal("5995.50")) == Decimal("50.00")   # (4.50 - 4) x 100

    fly = idea(strategy="butterfly", side="call", strike=6000, width=20, debit="3.00")
    assert fly.legs() == [(Decimal(5980), "call", 1), (Decimal(6000), "call", -2), (Decimal(6020), "call", 1)]
    assert fly.value_at_expiry(6000) == 20 and fly.value_at_expiry(5980) == 0
    assert fly.value_at_expiry(6030) == 0 and fly.value_at_expiry(6010) == 10
    assert fly.pnl_at_expiry(6000) == Decimal("1700.00")

    credit = idea(side="call", direction="short", strike=6050, width=25, debit="-2.40", quantity=2)
    assert credit.value_at_expiry(6100) == Decimal(-25)
    assert credit.pnl_at_expiry(6100) == Decimal("-4520.00")      # (-25 + 2.40) x 100 x 2
    assert credit.pnl_at_expiry(6000) == Decimal("480.00")


@pytest.mark.parametrize("args", [
    dict(strategy="vertical", side="call", direction="long", strike=6000, width=10, debit="4.00"),
    dict(strategy="vertical", side="put", direction="short", strike=5960, width=20, debit="-3.50"),
    dict(strategy="vertical", side="call", direction="short", strike=6010, width=5, debit="-1.25"),
    dict(strategy="butterfly", side="call", direction="long", strike=6005, width=15, debit="2.10"),
    dict(strategy="butterfly", side="put", direction="short", strike=5990, width=10, debit="-6.00"),
    dict(strategy="single", side="put", direction="long", strike=5980, width=None, debit="7.30"),
    dict(strategy="single", side="call", direction="long", strike=6030, width=None, debit="3.10"),
    dict(strategy="single", side="put", direction="short", strike=5950, width=None, debit="-2.40"),
])
def test_rule_score_max_loss_is_the_exact_max_loss(args):
    """The vectorised rule score measures risk with the structure's exact maximum loss
    (optionsmath.payoff_extremes through ideas.max_loss) wherever it is bounded. By hand:
    a 10-wide debit call vertical at 4.00 risks 4.00; a 20-wide credit put vertical at 3.50
    risks 16.50; a short put struck 5950 for 2.40 risks 5947.60 (at S = 0)."""
    from plugins.mlloop.domain.ideas import STRATEGY_CODE, max_loss
    from plugins.mlloop.domain.rules import max_loss_profit
    i = idea(**args)
    ml, _ = max_loss_profit(np.array([STRATEGY_CODE[i.strategy]]), np.array([1.0 if i.side == "call" else -1.0]),
                            np.array([1.0 if i.direction == "long" else -1.0]), np.array([float(i.strike)]),
                            np.array([float(i.width or 0)]), np.array([float(i.debit)]), 6000.0, 50.0)
    exact = max_loss(i.strategy, i.side, i.direction, i.strike, i.width, i.debit)
    assert float(exact) / 100 == pytest.approx(float(ml[0]), abs=1e-9)
    hand = {("vertical", "call", "long"): 4.00, ("vertical", "put", "short"): 16.50,
            ("single", "put", "short"): 5947.60}
    if (i.strategy, i.side, i.direction) in hand:
        assert float(exact) / 100 == pytest.approx(hand[(i.strategy, i.side, i.direction)])
