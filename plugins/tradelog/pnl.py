"""Daily P&L, the equity curve, drawdown and streaks, per trading day in the exchange's time
zone.

Every fill and mark is booked to the **trading day** of its market time
(``markettime.trading_day_of``: its date in the exchange's time zone, a weekend or holiday
entry moving to the next trading day). Walking the user's fills in FIFO order:

* ``realized_pnl`` of a day = what that day's closing fills and settlements realized (FIFO,
  net of the fees of the lots they closed and their own);
* ``unrealized_change`` = the change, from the previous listed day's end to this day's
  end, of the open lots' unrealized P&L at each leg's latest mark (legs never marked count 0;
  a closed leg counts 0) — so with marks the curve is marked to market, without them it
  moves only on realized P&L;
* ``pnl`` = realized + unrealized change; ``equity`` its running sum from 0;
  ``drawdown`` = equity - its running peak (<= 0, a P&L like max_loss);
  ``streak`` = +n on the n-th winning day in a row, -n on the n-th losing day (a flat day
  breaks neither).

Only days with a fill or a mark are listed. The time zone is the calendar's of the user's
first position (XNYS for US underlyings).
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from plugins.tradelog import lots, markettime
from plugins.tradelog.tables import fills, legs, marks, positions

ZERO = Decimal(0)


def daily_pnl(conn, user_id: int, *, start: dt.date | None = None, end: dt.date | None = None) -> dict:
    """``{timezone, days: [{date, realized_pnl, unrealized_change, pnl, fees, closing_fills,
    equity, drawdown, streak}], summary}``; equity and streaks run over every day, the list
    is cut to ``start``..``end`` (inclusive)."""
    pos = {r.id: r for r in conn.execute(sa.select(positions.c.id, positions.c.symbol)
                                         .where(positions.c.user_id == user_id))}
    leg_rows = conn.execute(sa.select(legs.c.id, legs.c.position_id, legs.c.quantity, legs.c.multiplier)
                            .join(positions, positions.c.id == legs.c.position_id)
                            .where(positions.c.user_id == user_id)).fetchall()
    books = {r.id: lots.LegBook(r.id, 1 if r.quantity > 0 else -1, r.multiplier) for r in leg_rows}
    symbol_of_leg = {r.id: pos[r.position_id].symbol for r in leg_rows}
    events: list[tuple] = []  # (time, order, kind, payload)
    q = sa.select(fills).join(positions, positions.c.id == fills.c.position_id) \
        .where(positions.c.user_id == user_id).order_by(fills.c.position_version, fills.c.seq)
    for i, f in enumerate(conn.execute(q)):
        events.append((f.occurred_at, 1, i, "fill", {"id": f.id, "leg_id": f.leg_id, "price": f.price,
                                                     "quantity": f.quantity, "fees": f.fees,
                                                     "occurred_at": f.occurred_at}))
    q = sa.select(marks.c.leg_id, marks.c.price, marks.c.marked_at).where(marks.c.user_id == user_id)
    for i, m in enumerate(conn.execute(q)):
        events.append((m.marked_at, 0, i, "mark", {"leg_id": m.leg_id, "price": m.price}))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    symbol = next(iter(pos.values())).symbol if pos else "SPX"
    days: dict[dt.date, dict] = {}
    order: list[dt.date] = []
    last_mark: dict[str, Decimal] = {}

    def unrealized() -> Decimal:
        return sum((books[leg].unrealized_pnl(price) for leg, price in last_mark.items()
                    if books[leg].open_quantity), ZERO)

    for at, _, _, kind, p in events:
        day = markettime.trading_day_of(at, symbol_of_leg.get(p["leg_id"], symbol))
        if day not in days:
            if order:
                days[order[-1]]["unrealized_end"] = unrealized()
            days[day] = {"date": day, "realized_pnl": ZERO, "fees": ZERO, "closing_fills": 0}
            order.append(day)
        d = days[day]
        if kind == "fill":
            d["fees"] += Decimal(p["fees"] or 0)
            closing = books[p["leg_id"]].apply(p)
            if closing is not None:
                d["realized_pnl"] += closing.realized_pnl
                d["closing_fills"] += 1
        else:
            last_mark[p["leg_id"]] = Decimal(p["price"])
    if order:
        days[order[-1]]["unrealized_end"] = unrealized()
    out, equity, peak, prev_unrealized, streak = [], ZERO, ZERO, ZERO, 0
    wins = losses = longest_win = longest_loss = 0
    max_dd, realized_total = ZERO, ZERO
    for day in sorted(order):
        d = days[day]
        change = d["unrealized_end"] - prev_unrealized
        prev_unrealized = d["unrealized_end"]
        pnl = d["realized_pnl"] + change
        equity += pnl
        peak = max(peak, equity)
        realized_total += d["realized_pnl"]
        if pnl > 0:
            streak = streak + 1 if streak > 0 else 1
            wins += 1
        elif pnl < 0:
            streak = streak - 1 if streak < 0 else -1
            losses += 1
        longest_win, longest_loss = max(longest_win, streak), max(longest_loss, -streak)
        max_dd = min(max_dd, equity - peak)
        out.append({"date": day, "realized_pnl": d["realized_pnl"], "unrealized_change": change, "pnl": pnl,
                    "fees": d["fees"], "closing_fills": d["closing_fills"], "equity": equity,
                    "drawdown": equity - peak, "streak": streak})
    shown = [x for x in out if (start is None or x["date"] >= start) and (end is None or x["date"] <= end)]
    return {"timezone": str(markettime.exchange_tz(symbol)), "days": shown, "summary": {
        "days": len(out), "winning_days": wins, "losing_days": losses, "total_pnl": equity,
        "realized_pnl": realized_total, "max_drawdown": max_dd, "longest_win_streak": longest_win,
        "longest_loss_streak": longest_loss, "current_streak": streak}}
