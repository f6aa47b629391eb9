"""FIFO lots (pure): open quantity, cost basis, realized P&L per closing fill with fees
allocated to their lots — by hand — and the property that, however a position's fills are
split and ordered, realized P&L when flat equals the cash flows minus the fees."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.tradelog import lots

T0 = dt.datetime(2025, 3, 3, 15, tzinfo=dt.timezone.utc)


def leg(qty, mult=100, leg_id="L"):
    return {"id": leg_id, "quantity": qty, "multiplier": mult}


def fill(qty, price, fees="0", minutes=0, fill_id=None, leg_id="L"):
    return {"id": fill_id or f"f{minutes}-{qty}-{price}", "leg_id": leg_id, "quantity": qty, "price": D(price),
            "fees": D(fees), "occurred_at": T0 + dt.timedelta(minutes=minutes)}


def test_partial_close_allocates_opening_fees_pro_rata():
    """Sell 6 puts @ 1.10 (fees 3.90), buy back 2 @ 0.40 (fees 1.30):
    realized = 2 x (1.10 - 0.40) x 100 - 3.90 x 2/6 - 1.30 = 140 - 1.30 - 1.30 = 137.40;
    open: -4, cost basis -4 x 1.10 x 100 = -440, open fees 3.90 - 1.30 = 2.60."""
    b = lots.books([leg(-6)], [fill(-6, "1.10", "3.90", 0, "open"), fill(2, "0.40", "1.30", 5, "close")])["L"]
    assert b.open_quantity == -4
    assert b.cost_basis == D("-440.00")
    assert b.open_fees == D("2.60")
    assert b.realized_pnl == D("137.40")
    assert lots.realized_by_fill({"L": b}) == {"close": D("137.40")}
    assert b.closings[0].lots == [("open", 2)]
    assert b.average_price == D("1.100000")
    # marked at 0.25: (0.25 - 1.10) x -4 x 100 = 340, minus the 2.60 still on the lots
    assert b.unrealized_pnl("0.25") == D("337.40")


def test_fifo_closes_the_oldest_lot_first():
    """Buy 1 @ 2.00, buy 1 @ 3.00, sell 1 @ 4.00: FIFO closes the 2.00 lot -> +200;
    what stays open is the 3.00 lot (cost basis 300)."""
    b = lots.books([leg(2)], [fill(1, "2.00", minutes=0), fill(1, "3.00", minutes=1), fill(-1, "4.00", minutes=2)])["L"]
    assert b.realized_pnl == D("200.00") and b.cost_basis == D("300.00") and b.open_quantity == 1


def test_fills_are_taken_in_market_time_not_recording_order():
    """The sell recorded first but dated later still closes the buy dated earlier."""
    b = lots.books([leg(1)], [fill(-1, "5", minutes=10), fill(1, "3", minutes=0)])["L"]
    assert b.open_quantity == 0 and b.realized_pnl == D("200")


@pytest.mark.parametrize("fills_", [
    [fill(1, "1"), fill(-2, "1", minutes=1)],     # sells past flat
    [fill(-1, "1")],                               # a long leg can't open short
])
def test_a_fill_past_flat_raises(fills_):
    with pytest.raises(lots.PastFlat) as exc:
        lots.books([leg(1)], fills_)
    assert "past flat" in str(exc.value)


def test_short_stock_leg_realizes_the_other_way():
    """Short 100 @ 50, cover 100 @ 45, fees 1 + 1: (50 - 45) x 100 - 2 = 498."""
    b = lots.books([leg(-100, 1)], [fill(-100, "50", "1", 0), fill(100, "45", "1", 1)])["L"]
    assert b.realized_pnl == D("498") and b.open_quantity == 0 and b.open_fees == 0


# -- the property --------------------------------------------------------------------------
price = st.decimals(min_value=D("0.01"), max_value=D("500"), places=2)
fee = st.decimals(min_value=D("0"), max_value=D("9.99"), places=2)


@st.composite
def round_trip(draw, leg_id):
    """A leg (long or short, multiplier 1 or 100) opened and closed in arbitrary pieces:
    opening and closing quantities are partitions of the same total, interleaved in any
    order that never passes flat, with arbitrary prices and fees."""
    direction = draw(st.sampled_from([1, -1]))
    mult = draw(st.sampled_from([1, 100]))
    total = draw(st.integers(min_value=1, max_value=40))

    def split(n):
        parts, left = [], n
        while left:
            k = draw(st.integers(min_value=1, max_value=left))
            parts.append(k)
            left -= k
        return parts
    opens, closes = split(total), split(total)
    seq, held, oi, ci = [], 0, 0, 0
    while oi < len(opens) or ci < len(closes):
        can_close = ci < len(closes) and closes[ci] <= held
        if oi < len(opens) and (not can_close or draw(st.booleans())):
            seq.append(opens[oi] * direction)
            held += opens[oi]
            oi += 1
        else:
            seq.append(-closes[ci] * direction)
            held -= closes[ci]
            ci += 1
    start = draw(st.integers(min_value=0, max_value=100))
    fills_ = [fill(q, draw(price), draw(fee), minutes=start + i, fill_id=f"{leg_id}{i}", leg_id=leg_id)
              for i, q in enumerate(seq)]
    return leg(direction * total, mult, leg_id), fills_


@st.composite
def positions(draw):
    """One to three legs, each round-tripped; every fill of the position recorded in any order."""
    trips = [draw(round_trip(f"L{i}")) for i in range(draw(st.integers(min_value=1, max_value=3)))]
    fills_ = [f for _, fs in trips for f in fs]
    return [leg_ for leg_, _ in trips], draw(st.permutations(fills_))


@settings(max_examples=300, deadline=None)
@given(positions())
def test_realized_pnl_when_flat_is_the_cash_flows_minus_fees(case):
    """By hand: a flat position's realized P&L = -(sum of price x quantity x multiplier over
    its fills) - (sum of fees), whatever the split, the order and the fee allocation's rounding."""
    legs_, fills_ = case
    mult = {x["id"]: x["multiplier"] for x in legs_}
    books = lots.books(legs_, fills_)
    t = lots.totals(books)
    cash = -sum((f["price"] * f["quantity"] * mult[f["leg_id"]] for f in fills_), D(0))
    fees = sum((f["fees"] for f in fills_), D(0))
    assert t["flat"] and t["net_debit"] == 0 and t["open_fees"] == 0
    assert t["realized_pnl"] == cash - fees
    assert t["fees"] == fees
    assert sum(lots.realized_by_fill(books).values(), D(0)) == t["realized_pnl"]
