"""Market time: exchange calendars, settlement style and moment, time to expiry in years.

The one definition of "when does this option settle" and "how much time is left" that the
trade log, riskgraph and the demo data share. Calendars come from ``exchange-calendars``
(holidays and early closes of each exchange), imported on first use: it is slow to import
(~1.5 s with pandas) and each calendar takes ~0.6 s to build, so both are cached per
process.

Which calendar: every underlying uses the New York Stock Exchange calendar (``XNYS``) unless
``CALENDARS`` maps its root to another exchange-calendars code (or the caller passes
``calendar=``). US index options (SPX, NDX, RUT, VIX...) trade on Cboe/Nasdaq but settle on
the prices of NYSE/Nasdaq-listed stocks, whose sessions XNYS describes; equities, ETFs and
unknown underlyings trade on its hours.

Settlement style (``settlement_style``):
  * **AM**: settles at the *opening* of the expiry day's session (Cboe's Special Opening
    Quotation for SPX); the last trade is at the previous session's close. The monthly
    (third-Friday) expiry of the AM roots SPX, NDX, RUT and DJX; every VIX expiry.
  * **PM**: settles at that day's *close*, an early close (13:00 ET) included. Everything
    else: SPXW/NDXP/RUTW and XSP weeklies and dailies, an AM root on a non-monthly date (it
    is its PM weekly), equities, ETFs and unknown underlyings.
  A caller who knows better passes ``style="AM"`` or ``"PM"``. An expiry date that is not a
  session (a holiday Friday) settles on the previous session, as exchanges move it.

Time to expiry: ``year_fraction`` = seconds between two aware datetimes / (365 x 86,400),
the same calendar-time, 365-day convention as ``T = days / 365`` (so whole days agree).
"""
from __future__ import annotations

import datetime as dt
import functools
import threading

UTC = dt.timezone.utc
SECONDS_PER_YEAR = 365.0 * 86_400.0
DEFAULT_CALENDAR = "XNYS"

# Underlying root -> exchange-calendars code, for roots not on XNYS (none of the built-in
# US underlyings needs one: see the module docstring). Deployments may add to it.
CALENDARS: dict[str, str] = {}

AM_MONTHLY_ROOTS = frozenset({"SPX", "NDX", "RUT", "DJX"})
AM_ALWAYS_ROOTS = frozenset({"VIX"})
STYLES = ("AM", "PM")

_lock = threading.Lock()


# Index option roots -> the index they are written on (weeklies, PM-settled and mini variants
# included). Their underlying is that index, written ``I:<index>`` as market-data vendors do.
INDEX_OF_OPTION_ROOT = {
    "SPX": "SPX", "SPXW": "SPX", "SPXPM": "SPX", "XSP": "XSP", "NDX": "NDX", "NDXP": "NDX", "XND": "XND",
    "RUT": "RUT", "RUTW": "RUT", "MRUT": "MRUT", "DJX": "DJX", "OEX": "OEX", "XEO": "OEX",
    "VIX": "VIX", "VIXW": "VIX"}


def default_underlying(symbol: str | None) -> str:
    """The underlying a position, order or strategy on ``symbol`` gets when none is given, the
    same in every plugin: an index option root's index as ``I:<index>`` (``"SPX"``, ``"SPXW"``
    -> ``"I:SPX"``; ``"NDXP"`` -> ``"I:NDX"``), a symbol already written ``I:...`` as it is,
    anything else (equities, ETFs, futures roots) the symbol itself (``"AAPL"`` -> ``"AAPL"``)."""
    text = (symbol or "").strip()
    if text.upper().startswith("I:"):
        return "I:" + text[2:].upper()
    index = INDEX_OF_OPTION_ROOT.get(text.upper())
    return f"I:{index}" if index else text


def underlying_root(underlying: str | None) -> str:
    """``"I:SPX"``, ``"$SPX"``, ``"^spx"``, ``".SPX"`` -> ``"SPX"`` (upper case, prefixes off)."""
    text = (underlying or "").strip().upper()
    if text.startswith("I:"):
        text = text[2:]
    return text.lstrip("$^.")


def calendar_name(underlying: str | None) -> str:
    """The exchange-calendars code of ``underlying``'s calendar (``XNYS`` unless mapped)."""
    return CALENDARS.get(underlying_root(underlying), DEFAULT_CALENDAR)


@functools.lru_cache(maxsize=None)
def _calendar_cached(name: str):
    import exchange_calendars  # slow import: only when a calendar is first needed

    today = dt.date.today()
    return exchange_calendars.get_calendar(name, start="1990-01-01", end=f"{today.year + 30}-12-31")


def get_calendar(name: str = DEFAULT_CALENDAR):
    """The ``exchange_calendars.ExchangeCalendar`` for ``name`` (1990 to 30 years ahead), cached."""
    with _lock:  # one build per name even when two requests ask at once
        try:
            return _calendar_cached(name)
        except Exception as exc:  # unknown name: InvalidCalendarName
            raise ValueError(f"calendar: unknown exchange calendar {name!r} ({type(exc).__name__})") from None


def _date(value, field: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ValueError(f"{field}: expected an ISO date (YYYY-MM-DD), got {value!r}") from None


def _cal(underlying, calendar):
    return get_calendar(calendar or calendar_name(underlying))


def _check_range(cal, day: dt.date, field: str) -> None:
    first, last = cal.first_session.date(), cal.last_session.date()
    if not first <= day <= last:
        raise ValueError(f"{field}: {day.isoformat()} is outside the {cal.name} calendar "
                         f"({first.isoformat()}..{last.isoformat()})")


def _session_on_or_before(cal, day: dt.date) -> dt.date:
    _check_range(cal, day, "expiry")
    return cal.date_to_session(day.isoformat(), direction="previous").date()


def is_trading_day(day, underlying: str | None = None, *, calendar: str | None = None) -> bool:
    """Whether ``day`` is a session (a trading day) of the underlying's exchange."""
    cal = _cal(underlying, calendar)
    day = _date(day, "day")
    _check_range(cal, day, "day")
    return bool(cal.is_session(day.isoformat()))


def previous_trading_day(day, underlying: str | None = None, *, calendar: str | None = None) -> dt.date:
    """The last session strictly before ``day``."""
    cal = _cal(underlying, calendar)
    day = _date(day, "day") - dt.timedelta(days=1)
    _check_range(cal, day, "day")
    return cal.date_to_session(day.isoformat(), direction="previous").date()


def next_trading_day(day, underlying: str | None = None, *, calendar: str | None = None) -> dt.date:
    """The first session strictly after ``day``."""
    cal = _cal(underlying, calendar)
    day = _date(day, "day") + dt.timedelta(days=1)
    _check_range(cal, day, "day")
    return cal.date_to_session(day.isoformat(), direction="next").date()


def third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)


def is_monthly_expiry(expiry, underlying: str | None = None, *, calendar: str | None = None) -> bool:
    """Whether ``expiry`` is its month's standard expiry: the third Friday, or the session
    before it when that Friday is a holiday (e.g. Thursday 2025-04-17 before Good Friday)."""
    day = _date(expiry, "expiry")
    friday = third_friday(day.year, day.month)
    if day == friday:
        return True
    cal = _cal(underlying, calendar)
    return _session_on_or_before(cal, friday) == day


def settlement_style(underlying: str | None, expiry, *, calendar: str | None = None) -> str:
    """``"AM"`` or ``"PM"`` by the rules in the module docstring."""
    root = underlying_root(underlying)
    if root in AM_ALWAYS_ROOTS:
        return "AM"
    if root in AM_MONTHLY_ROOTS and is_monthly_expiry(expiry, underlying, calendar=calendar):
        return "AM"
    return "PM"


def _style(underlying, expiry, style, calendar) -> str:
    if style is None:
        return settlement_style(underlying, expiry, calendar=calendar)
    text = str(style).strip().upper()
    if text not in STYLES:
        raise ValueError(f"settlement: expected 'AM' or 'PM', got {style!r}")
    return text


@functools.lru_cache(maxsize=4096)
def _moments(cal_name: str, expiry: dt.date, style: str) -> tuple[dt.datetime, dt.datetime]:
    cal = get_calendar(cal_name)
    session = _session_on_or_before(cal, expiry)
    close = cal.session_close(session.isoformat()).to_pydatetime().astimezone(UTC)
    if style == "PM":
        return close, close
    opening = cal.session_open(session.isoformat()).to_pydatetime().astimezone(UTC)
    previous = cal.date_to_session((session - dt.timedelta(days=1)).isoformat(), direction="previous")
    last_trade = cal.session_close(previous).to_pydatetime().astimezone(UTC)
    return opening, last_trade


def settlement_moment(underlying: str | None, expiry, *, style: str | None = None,
                      calendar: str | None = None) -> dt.datetime:
    """When an option on ``underlying`` expiring on ``expiry`` (a date or ISO string) settles,
    as an aware UTC datetime: AM -> the open of the expiry session, PM -> its close (early
    closes included). ``style`` overrides ``settlement_style``; ``calendar`` overrides
    ``calendar_name``. Errors (``ValueError``) name the field: ``expiry``, ``settlement``,
    ``calendar``."""
    expiry = _date(expiry, "expiry")
    cal_name = calendar or calendar_name(underlying)
    return _moments(cal_name, expiry, _style(underlying, expiry, style, cal_name))[0]


def last_trade_moment(underlying: str | None, expiry, *, style: str | None = None,
                      calendar: str | None = None) -> dt.datetime:
    """The last moment the option trades: PM -> the settlement moment (the close); AM -> the
    previous session's close (an AM-settled option stops trading the day before)."""
    expiry = _date(expiry, "expiry")
    cal_name = calendar or calendar_name(underlying)
    return _moments(cal_name, expiry, _style(underlying, expiry, style, cal_name))[1]


def _aware(value, field: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{field}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field}: needs a time zone (send UTC, e.g. 2025-03-21T14:00:00Z)")
    return value


def year_fraction(valuation_time: dt.datetime, settlement: dt.datetime) -> float:
    """Years from ``valuation_time`` to ``settlement`` (both aware datetimes): seconds /
    (365 x 86,400), floored at 0 (an option at or past its settlement moment is settled)."""
    seconds = (_aware(settlement, "settlement") - _aware(valuation_time, "valuation_time")).total_seconds()
    return max(seconds, 0.0) / SECONDS_PER_YEAR


def years_to_settlement(valuation_time: dt.datetime, underlying: str | None, expiry, *,
                        style: str | None = None, calendar: str | None = None) -> float:
    """``year_fraction(valuation_time, settlement_moment(underlying, expiry, ...))``."""
    return year_fraction(valuation_time, settlement_moment(underlying, expiry, style=style, calendar=calendar))
