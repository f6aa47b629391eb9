"""The trade log's scheduled job (issue 16): settle expired legs after each settlement moment.

``settlement.settle_expired`` is the service function (it also backs ``tradeloop tradelog
settle-expired``); this module adapts it to the job runner and says when it runs: a minute
after every US session's open (AM settlement: the monthly index expiries) and close (PM
settlement: weeklies, dailies, equities), from the exchange calendar in ``optionsmath``.
Missed moments coalesce into one run, which settles everything due (the function is
idempotent: settled legs are flat)."""
from __future__ import annotations

import datetime as dt

from app.hookspecs import JobKind, ScheduleEntry

AFTER_MOMENT = dt.timedelta(minutes=1)  # let the moment pass (and a price be recorded) first
CALENDAR_UNDERLYING = "SPX"              # XNYS: every US equity/index underlying settles on it


def settle_expired(db, progress) -> dict:
    """Settle every user's open option legs whose settlement moment has passed."""
    from plugins.tradelog import settlement
    with db.transaction() as conn:
        return settlement.settle_expired(conn, progress=progress)


def settlement_moments(after: dt.datetime) -> dt.datetime:
    """The next AM or PM settlement moment (+1 minute) strictly after ``after``: the open and
    the close of each XNYS session (early closes included), as ``optionsmath`` computes them."""
    import optionsmath
    day = after.astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)
    for _ in range(15):
        if optionsmath.is_trading_day(day, CALENDAR_UNDERLYING):
            for style in ("AM", "PM"):
                moment = optionsmath.settlement_moment(CALENDAR_UNDERLYING, day, style=style) + AFTER_MOMENT
                if moment > after:
                    return moment
        day += dt.timedelta(days=1)
    raise ValueError(f"no XNYS session within 15 days after {after:%Y-%m-%d}")


KINDS = [JobKind("tradelog.settle_expired", settle_expired,
                 "Settle open option legs past their settlement moment (every user's).",
                 admin_only=True, max_attempts=3)]

SCHEDULE = [ScheduleEntry("tradelog.settle_expired", "tradelog.settle_expired", moments=settlement_moments,
                          description="Settle expired legs a minute after each session's open (AM "
                                      "settlement) and close (PM settlement), exchange calendar.")]
