"""Market time for the trade log: which trading day a moment belongs to, when an option
leg settles, and how — all from ``optionsmath``'s exchange calendars (the `math` context's
market-time functions; this module only applies them to positions and legs).

* **Calendar**: ``optionsmath.calendar_name(root)`` picks the exchange calendar (XNYS for US
  equities, ETFs and indexes); trading days, early closes and holidays come from the
  exchange-calendars library through it.
* **Settlement time**: ``AM`` or ``PM`` (``optionsmath.settlement_style``): AM for the
  third-Friday monthlies of SPX, NDX, RUT, DJX and VIX-style roots — the last trade is the
  previous session's close and the option settles at the expiry morning's opening value;
  PM for everything else (weeklies, equities, ETFs), settling at that day's close (early
  closes included). A leg may override it (``settlement_time``).
* **Settlement type**: ``cash`` for index roots (and any ``I:``-prefixed underlying), paid
  at intrinsic value against the settlement value; ``physical`` for equities and ETFs,
  delivering ``multiplier`` shares per contract at the strike. A leg may override it.
* **Settlement moment**: ``optionsmath.settlement_moment`` — an option is alive until then,
  not until midnight UTC.
"""
from __future__ import annotations

import datetime as dt
from functools import lru_cache

# Index option roots: cash-settled (European style). Anything "I:..." is an index too.
CASH_SETTLED_ROOTS = frozenset({
    "SPX", "SPXW", "SPXPM", "XSP", "NDX", "NDXP", "XND", "RUT", "RUTW", "MRUT", "DJX", "OEX", "XEO",
    "VIX", "VIXW", "MXEA", "MXEF", "SPESG"})
SETTLEMENT_TIMES = ("AM", "PM")
SETTLEMENT_TYPES = ("cash", "physical")


def root(symbol: str | None, underlying: str | None = None) -> str:
    """The option root the calendars key on: the position's symbol without an ``I:`` prefix."""
    text = (symbol or underlying or "").strip().upper()
    return text[2:] if text.startswith("I:") else text


def default_settlement_type(symbol: str | None, underlying: str | None = None) -> str:
    if (underlying or "").upper().startswith("I:") or (symbol or "").upper().startswith("I:"):
        return "cash"
    return "cash" if root(symbol, underlying) in CASH_SETTLED_ROOTS \
        or root(underlying) in CASH_SETTLED_ROOTS else "physical"


def settlement_time(symbol: str, expiry: dt.date, override: str | None = None) -> str:
    return override or _style(root(symbol), expiry)


@lru_cache(maxsize=4096)
def _style(sym: str, expiry: dt.date) -> str:
    import optionsmath
    return optionsmath.settlement_style(sym, expiry)


@lru_cache(maxsize=4096)
def _moment(sym: str, expiry: dt.date, style: str) -> dt.datetime:
    import optionsmath
    return optionsmath.settlement_moment(sym, expiry, style=style)


def settlement_moment(symbol: str, expiry: dt.date, style: str | None = None) -> dt.datetime:
    """Aware UTC datetime at which an option on ``symbol`` expiring ``expiry`` settles."""
    return _moment(root(symbol), expiry, style or settlement_time(symbol, expiry))


@lru_cache(maxsize=4096)
def _last_trade(sym: str, expiry: dt.date, style: str) -> dt.datetime:
    import optionsmath
    return optionsmath.last_trade_moment(sym, expiry, style=style)


def last_trade_moment(symbol: str, expiry: dt.date, style: str | None = None) -> dt.datetime:
    return _last_trade(root(symbol), expiry, style or settlement_time(symbol, expiry))


@lru_cache(maxsize=4096)
def is_trading_day(day: dt.date, symbol: str = "SPX") -> bool:
    import optionsmath
    return bool(optionsmath.is_trading_day(day, root(symbol)))


def next_trading_day(day: dt.date, symbol: str = "SPX") -> dt.date:
    import optionsmath
    return optionsmath.next_trading_day(day, root(symbol))


def previous_trading_day(day: dt.date, symbol: str = "SPX") -> dt.date:
    import optionsmath
    return optionsmath.previous_trading_day(day, root(symbol))


@lru_cache(maxsize=64)
def exchange_tz(symbol: str = "SPX"):
    """The exchange's time zone (a ZoneInfo) for ``symbol``'s calendar."""
    from optionsmath import markettime
    return markettime.get_calendar(markettime.calendar_name(root(symbol))).tz


def local_date(moment: dt.datetime, symbol: str = "SPX") -> dt.date:
    """The calendar date of ``moment`` in the exchange's time zone."""
    return moment.astimezone(exchange_tz(symbol)).date()


def trading_day_of(moment: dt.datetime, symbol: str = "SPX") -> dt.date:
    """The trading day a moment is booked to: its date in the exchange's time zone, or the
    next trading day when that date is not one (a weekend or holiday entry)."""
    day = local_date(moment, symbol)
    return day if is_trading_day(day, symbol) else next_trading_day(day, symbol)


def years_to_settlement(moment: dt.datetime, settles_at: dt.datetime) -> float:
    import optionsmath
    return float(optionsmath.year_fraction(moment, settles_at))


def leg_settlement(symbol: str, underlying: str, leg: dict) -> dict | None:
    """``{settlement_time, settlement_type, settles_at, last_trade_at}`` of an option leg
    (None for stock and futures)."""
    if leg.get("instrument_type") != "option" or not leg.get("expiry"):
        return None
    expiry = leg["expiry"] if isinstance(leg["expiry"], dt.date) else dt.date.fromisoformat(str(leg["expiry"])[:10])
    style = settlement_time(symbol, expiry, leg.get("settlement_time"))
    return {"settlement_time": style,
            "settlement_type": leg.get("settlement_type") or default_settlement_type(symbol, underlying),
            "settles_at": settlement_moment(symbol, expiry, style),
            "last_trade_at": last_trade_moment(symbol, expiry, style)}
