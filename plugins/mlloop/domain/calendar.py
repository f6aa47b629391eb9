"""The trading calendar of the mlloop domain: New York sessions 09:30-16:00 on weekdays
(no exchange-holiday calendar: a documented simplification), monthly opex (the third
Friday), UTC milliseconds, and the variance clock that measures option time.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
SESSION_OPEN = time(9, 30)
SESSION_CLOSE = time(16, 0)
SESSION_MINUTES = 390
# Option time runs on a variance clock: each trading minute counts 1, each overnight gap
# counts as OVERNIGHT_VARIANCE_MINUTES, a year is 252 sessions.
OVERNIGHT_VARIANCE_MINUTES = 30
VARIANCE_MINUTES_PER_SESSION = SESSION_MINUTES + OVERNIGHT_VARIANCE_MINUTES
TRADING_DAYS_PER_YEAR = 252
VARIANCE_MINUTES_PER_YEAR = VARIANCE_MINUTES_PER_SESSION * TRADING_DAYS_PER_YEAR


def utc_ms(dt: datetime) -> datetime:
    """`dt` as an aware UTC datetime truncated to milliseconds (naive input = UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    else:
        dt = dt.astimezone(timezone.utc)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def epoch_ms(dt: datetime) -> int:
    """Exact integer milliseconds since the epoch (naive input = UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    d = dt - _EPOCH
    return d.days * 86_400_000 + d.seconds * 1000 + d.microseconds // 1000


def session_date(dt: datetime) -> date:
    """The New York calendar date of an instant."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(NEW_YORK).date()


def session_open_utc(d: date) -> datetime:
    return datetime.combine(d, SESSION_OPEN, tzinfo=NEW_YORK).astimezone(timezone.utc)


def session_close_utc(d: date) -> datetime:
    return datetime.combine(d, SESSION_CLOSE, tzinfo=NEW_YORK).astimezone(timezone.utc)


def is_trading_day(d: date) -> bool:
    """Weekdays. No exchange-holiday calendar (documented simplification)."""
    return d.weekday() < 5


def next_trading_day(d: date) -> date:
    d += timedelta(days=1)
    while not is_trading_day(d):
        d += timedelta(days=1)
    return d


def add_trading_days(d: date, n: int) -> date:
    for _ in range(n):
        d = next_trading_day(d)
    return d


def trading_days_between(start: date, end: date) -> int:
    """Number of trading days in (start, end]."""
    if end <= start:
        return 0
    days = (end - start).days
    full_weeks, rest = divmod(days, 7)
    count = full_weeks * 5
    wd = start.weekday()
    for i in range(1, rest + 1):
        if (wd + i) % 7 < 5:
            count += 1
    return count


def third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def days_to_monthly_opex(d: date) -> int:
    """Calendar days from `d` to the next monthly opex (third Friday), 0 on opex day."""
    tf = third_friday(d.year, d.month)
    if tf < d:
        y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        tf = third_friday(y, m)
    return (tf - d).days


def is_opex_week(d: date) -> bool:
    """True when `d` falls in the Monday-Sunday week holding its month's third Friday."""
    tf = third_friday(d.year, d.month)
    return d - timedelta(days=d.weekday()) == tf - timedelta(days=tf.weekday())


def variance_minutes_to_expiry(as_of: datetime, expiration: date) -> float:
    """Variance-clock minutes from `as_of` to the 16:00 New York close of `expiration`."""
    d0 = session_date(as_of)
    if expiration < d0:
        return 0.0
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=timezone.utc)
    if is_trading_day(d0):
        open_, close = session_open_utc(d0), session_close_utc(d0)
        if as_of <= open_:
            today = float(SESSION_MINUTES)
        elif as_of >= close:
            today = 0.0
        else:
            today = (close - as_of).total_seconds() / 60.0
    else:
        today = 0.0
    sessions_after = trading_days_between(d0, expiration)
    return today + sessions_after * VARIANCE_MINUTES_PER_SESSION


def years_to_expiry(as_of: datetime, expiration: date) -> float:
    """Option time (years) on the variance clock; 0 at and after the expiry close."""
    return variance_minutes_to_expiry(as_of, expiration) / VARIANCE_MINUTES_PER_YEAR
