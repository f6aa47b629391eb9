"""Daily P&L and performance statistics: arguments and representations."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from plugins.tradelog.schemas.common import GROUP_BYS, MoneyOut, IsoDate, Day


class DailyPnlArgs(Schema):
    start = Day(data_key="from", metadata={"description": "first trading day (inclusive)"})
    end = Day(data_key="to", metadata={"description": "last trading day (inclusive)"})


class DailyPnlDay(Schema):
    date = IsoDate(required=True, metadata={"description": "the trading day (exchange time zone)"})
    realized_pnl = MoneyOut(required=True, metadata={"description": "booked by that day's closing fills and "
                                                                    "settlements, net of fees"})
    unrealized_change = MoneyOut(required=True, metadata={"description": "change of marked unrealized P&L"})
    pnl = MoneyOut(required=True, metadata={"description": "realized + unrealized change"})
    fees = MoneyOut(required=True)
    closing_fills = fields.Integer(required=True)
    equity = MoneyOut(required=True, metadata={"description": "cumulative P&L at the day's end"})
    drawdown = MoneyOut(required=True, metadata={"description": "equity - its running peak (<= 0)"})
    streak = fields.Integer(required=True, metadata={"description": "+n: n-th winning day in a row; -n losing"})


class DailyPnlSummary(Schema):
    days = fields.Integer(required=True)
    winning_days = fields.Integer(required=True)
    losing_days = fields.Integer(required=True)
    total_pnl = MoneyOut(required=True)
    realized_pnl = MoneyOut(required=True)
    max_drawdown = MoneyOut(required=True, metadata={"description": "the lowest drawdown (<= 0)"})
    longest_win_streak = fields.Integer(required=True)
    longest_loss_streak = fields.Integer(required=True)
    current_streak = fields.Integer(required=True)


class DailyPnl(Schema):
    timezone = fields.String(required=True)
    days = fields.List(fields.Nested(DailyPnlDay), required=True)
    summary = fields.Nested(DailyPnlSummary, required=True)


Ratio = lambda **kw: fields.Decimal(places=4, as_string=True, allow_none=True, **kw)  # noqa: E731


class PerformanceBlock(Schema):
    closed_positions = fields.Integer(required=True)
    wins = fields.Integer(required=True, metadata={"description": "positions with realised P&L > 0"})
    losses = fields.Integer(required=True)
    win_rate = Ratio(metadata={"description": "wins / closed positions (per position, not per leg)"})
    gross_profit = MoneyOut(required=True)
    gross_loss = MoneyOut(required=True, metadata={"description": "sum of losing positions' P&L (<= 0)"})
    profit_factor = Ratio(metadata={"description": "gross profit / |gross loss|; null without losses"})
    expectancy = MoneyOut(allow_none=True, metadata={"description": "mean realised P&L per position"})
    average_r = Ratio(metadata={"description": "mean of P&L / initial risk"})
    max_drawdown = MoneyOut(required=True, metadata={"description": "the largest peak-to-trough fall of cumulative "
                                                                    "P&L, as a P&L (<= 0), in close order"})
    total_pnl = MoneyOut(required=True)
    total_fees = MoneyOut(required=True)


class StrategyPerformance(PerformanceBlock):
    derived_strategy = fields.String(required=True)


class GroupPerformance(PerformanceBlock):
    key = fields.String(required=True, metadata={"description": "the group's value (a tag, a weekday, a chain id...)"})


class StatsArgs(Schema):
    group_by = fields.String(validate=validate.OneOf(GROUP_BYS),
                             metadata={"description": "also group by: " + ", ".join(GROUP_BYS)})


class Stats(Schema):
    overall = fields.Nested(PerformanceBlock, required=True)
    by_strategy = fields.List(fields.Nested(StrategyPerformance), required=True)
    group_by = fields.String(validate=validate.OneOf(GROUP_BYS))
    groups = fields.List(fields.Nested(GroupPerformance))
