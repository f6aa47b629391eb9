"""Risk unit per structure, profit tiers and labels, all against hand-computed values."""
from datetime import date
from decimal import Decimal

import pytest

from plugins.mlloop.domain.labels import (
    LABEL_KEYS,
    Cohort,
    IdeaOutcome,
    UndefinedRisk,
    classify_profit_tier,
    compute_risk_unit,
    label_outcome,
)
from plugins.mlloop.domain.ideas import TradeIdea

D = Decimal


def idea(strategy, side, direction, strike, width, debit, quantity=1):
    return TradeIdea(idea_id="i", strategy=strategy, side=side, direction=direction,
                     strike=D(strike), width=width, expiration=date(2025, 1, 6), dte=0,
                     debit=D(debit), quantity=quantity)


@pytest.mark.parametrize("args, expected", [
    (("single", "call", "long", 6000, None, "3.20"), "320.00"),              # the debit
    (("single", "put", "long", 5900, None, "11.45"), "1145.00"),
    (("vertical", "call", "long", 6000, 10, "4.00"), "400.00"),              # seed: 1000
    (("vertical", "put", "long", 6000, 25, "9.85"), "985.00"),               # seed: 2500
    (("vertical", "put", "short", 5950, 10, "-1.50"), "850.00"),             # width - credit
    (("vertical", "call", "short", 6050, 50, "-6.10"), "4390.00"),
    (("butterfly", "call", "long", 6000, 20, "2.35"), "235.00"),
    (("butterfly", "put", "short", 6000, 10, "-7.40"), "260.00"),            # width - credit
    (("single", "put", "short", 5900, None, "-12.50"), "588750.00"),         # to zero
])
def test_risk_unit_is_the_real_max_loss(args, expected):
    r = compute_risk_unit(idea(*args))
    assert isinstance(r, Decimal) and r == D(expected)


def test_risk_unit_scales_with_quantity_and_reads_rows():
    assert compute_risk_unit(idea("vertical", "put", "short", 5950, 10, "-1.50", quantity=3)) == D("2550.00")
    row = {"strategy": "butterfly", "side": "call", "direction": "long", "strike": "6000",
           "width": 15, "debit": "1.05", "quantity": 2}
    assert compute_risk_unit(row) == D("210.00")
    assert compute_risk_unit({"idea": row}) == D("210.00")
    # a row without a direction is the seed's (long) structure
    assert compute_risk_unit({"strategy": "single", "side": "call", "strike": 6000, "debit": 2}) == 200


def test_risk_unit_refuses_what_it_cannot_bound():
    with pytest.raises(UndefinedRisk):
        compute_risk_unit(idea("single", "call", "short", 6100, None, "-3.00"))
    with pytest.raises(ValueError):
        compute_risk_unit({"strategy": "condor", "debit": 1})


@pytest.mark.parametrize("pnl, tier", [
    ("-400", 0), ("-200.00", 0), ("-199.99", 1), ("0", 1), ("0.01", 2),
    ("399.99", 2), ("400", 3), ("5000", 3),
])
def test_profit_tier_boundaries(pnl, tier):
    assert classify_profit_tier(D(pnl), D("400")) == tier


def test_profit_tier_without_a_risk_unit():
    assert classify_profit_tier(10, 0) == 2
    assert classify_profit_tier(-10, 0) == 1


def outcome(**kw):
    base = dict(
        idea=idea("vertical", "call", "long", 6000, 10, "4.00"),      # R = 400
        settlement_status="settled", settlement_pnl=D("150.00"), max_pnl=D("300.00"),
        min_pnl=D("-250.00"), time_to_max_pnl_minutes=60, time_in_drawdown_minutes=90,
        lifetime_minutes=390)
    base.update(kw)
    return IdeaOutcome(**base)


def test_labels_by_hand():
    labels = label_outcome(outcome(), [D("-400"), D("-100"), D("0"), D("150"), D("500")])
    assert set(labels) == set(LABEL_KEYS)
    assert labels == {
        "profitable": 1,
        "profit_tier": 2,                       # 0 < 150 < 400
        "r2r_achieved": 0.375,                  # 150 / 400
        "risk_unit": D("400.00"),
        "max_favorable_excursion": 0.75,        # 300 / 400
        "max_adverse_excursion": 0.625,         # 250 / 400
        "time_to_max_pnl_pct": round(60 / 390, 6),
        "time_in_drawdown_pct": round(90 / 390, 6),
        "hit_stop": 1,                          # -250 < -200
        "hit_target": 0,                        # 300 <= 800
        "outperformed_median": 1,               # median (sorted[5 // 2]) = 0
        "cohort_percentile": 0.6,               # -400, -100, 0 are below 150
    }


def test_labels_of_a_big_losing_credit_spread():
    o = outcome(idea=idea("vertical", "put", "short", 5950, 10, "-1.50"),   # R = 850
                settlement_pnl=D("-850.00"), max_pnl=D("90.00"), min_pnl=D("-850.00"),
                time_to_max_pnl_minutes=0, time_in_drawdown_minutes=780, lifetime_minutes=780)
    labels = label_outcome(o, Cohort([D("-850"), D("10"), D("20"), D("30")]))
    assert labels["profitable"] == 0 and labels["profit_tier"] == 0
    assert labels["r2r_achieved"] == -1.0 and labels["max_adverse_excursion"] == 1.0
    assert labels["risk_unit"] == D("850.00")
    assert labels["time_in_drawdown_pct"] == 1.0 and labels["time_to_max_pnl_pct"] == 0.0
    assert labels["hit_stop"] == 1 and labels["hit_target"] == 0
    assert labels["outperformed_median"] == 0           # upper median of 4 = sorted[2] = 20
    assert labels["cohort_percentile"] == 0.0


def test_hit_target_above_two_r():
    o = outcome(idea=idea("butterfly", "call", "long", 6000, 20, "2.00"),   # R = 200
                settlement_pnl=D("1000.00"), max_pnl=D("1500.00"), min_pnl=D("-100.00"))
    labels = label_outcome(o)
    assert labels["hit_target"] == 1 and labels["profit_tier"] == 3 and labels["hit_stop"] == 0
    assert labels["r2r_achieved"] == 5.0 and labels["max_favorable_excursion"] == 7.5
    assert labels["outperformed_median"] is None and labels["cohort_percentile"] is None
    exactly_two_r = label_outcome(outcome(idea=o.idea, max_pnl=D("400.00"), min_pnl=D("-100.00")))
    assert exactly_two_r["hit_target"] == 0 and exactly_two_r["hit_stop"] == 0


def test_flat_is_not_profitable_and_not_a_win():
    labels = label_outcome(outcome(settlement_pnl=D("0.00")), [])
    assert labels["profitable"] == 0 and labels["profit_tier"] == 1
    assert labels["cohort_percentile"] is None


def test_unsettled_ideas_have_no_labels():
    assert label_outcome(outcome(settlement_status="open", settlement_pnl=None), [D(1)]) is None
    assert label_outcome({"settlement_status": "expired"}) is None


def test_a_tracked_ideas_row_labels_like_the_dataclass():
    o = outcome()
    row = {"strategy": "vertical", "side": "call", "direction": "long", "strike": "6000",
           "width": 10, "debit": "4.00", "quantity": 1, "settlement_status": "settled",
           "settlement_pnl": "150.00", "max_pnl": "300.00", "min_pnl": "-250.00",
           "time_to_max_pnl_minutes": 60, "time_in_drawdown_minutes": 90, "lifetime_minutes": 390}
    cohort = [D("-400"), D("-100"), D("0"), D("150"), D("500")]
    assert label_outcome(row, cohort) == label_outcome(o, cohort) == label_outcome(o, Cohort(cohort))


def test_cohort_matches_the_seeds_formulas():
    values = [D("5"), D("-3"), D("12"), D("0"), D("7"), D("-8")]
    c = Cohort(values)
    assert c.median == sorted(values)[len(values) // 2] == D("5")
    for pnl in (D("-9"), D("0"), D("5"), D("6"), D("100")):
        assert c.percentile(pnl) == sum(1 for o in values if o < pnl) / len(values)
    assert len(c) == 6
