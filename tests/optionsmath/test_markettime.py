"""Market time: calendars, AM/PM settlement moments, time to settlement.

Reference facts, from the exchanges' published 2025 schedules (NYSE holidays and early
closes; Cboe's SPX/SPXW settlement rules), converted to UTC by hand:
  * regular session 09:30-16:00 New York; EST = UTC-5 (to 2025-03-09 and from 2025-11-02),
    EDT = UTC-4 in between;
  * 2025-04-18 Good Friday: closed (the April SPX monthly then expires Thursday 04-17);
  * early closes at 13:00 New York: 2025-07-03, 2025-11-28, 2025-12-24;
  * third Fridays: 2025-01-17, 2025-03-21, 2025-07-18.
"""
import datetime as dt

import pytest

import optionsmath as om

UTC = dt.timezone.utc


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("underlying,expiry,style,moment", [
    ("SPX", "2025-03-21", "AM", utc(2025, 3, 21, 13, 30)),    # monthly, EDT open 09:30 = 13:30Z
    ("I:SPX", "2025-01-17", "AM", utc(2025, 1, 17, 14, 30)),  # monthly, EST open = 14:30Z
    ("SPXW", "2025-03-21", "PM", utc(2025, 3, 21, 20, 0)),    # same day, the PM weekly root
    ("SPX", "2025-03-20", "PM", utc(2025, 3, 20, 20, 0)),     # not a monthly date: SPXW-style
    ("SPX", "2025-04-17", "AM", utc(2025, 4, 17, 13, 30)),    # monthly moved before Good Friday
    ("SPX", "2025-04-18", "AM", utc(2025, 4, 17, 13, 30)),    # holiday expiry -> previous session
    ("AAPL", "2025-11-28", "PM", utc(2025, 11, 28, 18, 0)),   # early close 13:00 EST
    ("SPY", "2025-07-03", "PM", utc(2025, 7, 3, 17, 0)),      # early close 13:00 EDT
    ("XSP", "2025-03-21", "PM", utc(2025, 3, 21, 20, 0)),     # mini-SPX: PM
    ("NDX", "2025-07-18", "AM", utc(2025, 7, 18, 13, 30)),
    ("RUT", "2025-07-17", "PM", utc(2025, 7, 17, 20, 0)),
    ("VIX", "2025-03-19", "AM", utc(2025, 3, 19, 13, 30)),    # VIX: always AM (a Wednesday)
    ("NOSUCH", "2025-12-24", "PM", utc(2025, 12, 24, 18, 0)),  # unknown: XNYS, PM, early close
])
def test_settlement_style_and_moment(underlying, expiry, style, moment):
    assert om.settlement_style(underlying, expiry) == style
    got = om.settlement_moment(underlying, expiry)
    assert got == moment and got.tzinfo is not None and got.utcoffset() == dt.timedelta(0)


def test_am_options_stop_trading_the_session_before():
    # SPX March 2025 monthly: last trade Thursday 03-20 at the 16:00 EDT close = 20:00Z
    assert om.last_trade_moment("SPX", "2025-03-21") == utc(2025, 3, 20, 20, 0)
    # PM: the last trade is the settlement (the close)
    assert om.last_trade_moment("SPXW", "2025-03-21") == utc(2025, 3, 21, 20, 0)
    # April 2025 monthly (Thursday 04-17, AM): last trade Wednesday 04-16 close
    assert om.last_trade_moment("SPX", "2025-04-17") == utc(2025, 4, 16, 20, 0)


def test_the_caller_can_say_the_style():
    assert om.settlement_moment("SPX", "2025-03-21", style="pm") == utc(2025, 3, 21, 20, 0)
    assert om.settlement_moment("AAPL", "2025-03-21", style="AM") == utc(2025, 3, 21, 13, 30)
    with pytest.raises(ValueError, match="^settlement:"):
        om.settlement_moment("SPX", "2025-03-21", style="noon")
    with pytest.raises(ValueError, match="^calendar:"):
        om.settlement_moment("SPX", "2025-03-21", calendar="NOPE")
    with pytest.raises(ValueError, match="^expiry:"):
        om.settlement_moment("SPX", "21/03/2025")
    with pytest.raises(ValueError, match="^expiry:"):
        om.settlement_moment("SPX", "1900-01-19")


def test_trading_days():
    assert om.is_trading_day("2025-04-17") and not om.is_trading_day("2025-04-18")  # Good Friday
    assert not om.is_trading_day(dt.date(2025, 3, 22))                               # Saturday
    assert om.previous_trading_day("2025-04-21") == dt.date(2025, 4, 17)           # over Easter
    assert om.next_trading_day("2025-04-17") == dt.date(2025, 4, 21)
    assert om.next_trading_day("2025-12-24") == dt.date(2025, 12, 26)              # Christmas
    assert om.is_monthly_expiry("2025-04-17") and not om.is_monthly_expiry("2025-04-16")
    assert om.is_monthly_expiry("2025-03-21") and not om.is_monthly_expiry("2025-03-14")


def test_year_fraction_to_the_settlement_moment():
    """A 0-DTE SPXW at 10:00 EDT (14:00Z) on 2025-03-21: 6 h to the 20:00Z close,
    T = 6 / (365 x 24). The same morning the AM-settled SPX monthly is already settled (T = 0).
    A PM option a week out from a close: exactly 7 days = 7/365 (agrees with whole days)."""
    morning = utc(2025, 3, 21, 14, 0)
    assert om.years_to_settlement(morning, "SPXW", "2025-03-21") == pytest.approx(6 / (365 * 24), rel=1e-12)
    assert om.years_to_settlement(morning, "SPX", "2025-03-21") == 0.0
    close = utc(2025, 3, 14, 20, 0)
    assert om.year_fraction(close, om.settlement_moment("SPY", "2025-03-21")) == pytest.approx(7 / 365, rel=1e-12)
    with pytest.raises(ValueError, match="^valuation_time:"):
        om.year_fraction(dt.datetime(2025, 3, 21, 14, 0), om.settlement_moment("SPY", "2025-03-21"))


def test_a_time_zone_other_than_utc_is_the_same_instant():
    new_york = dt.timezone(dt.timedelta(hours=-4))
    local = dt.datetime(2025, 3, 21, 10, 0, tzinfo=new_york)   # = 14:00Z
    assert om.years_to_settlement(local, "SPXW", "2025-03-21") == pytest.approx(6 / (365 * 24), rel=1e-12)
