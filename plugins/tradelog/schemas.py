"""Marshmallow schemas: API bodies and query arguments, representations, event payloads.

Representations follow the seed's frontend types (``Position``, ``Leg``, ``Fill``,
``JournalEntry``, ``PendingOrder``, ``PositionMetadata``); money and prices are Decimal JSON
strings, times UTC ISO-8601 with milliseconds.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app import fields as tf
from bus.topic import Topic

STATUSES = ("planned", "open", "closed")
INSTRUMENTS = ("option", "stock", "future")
RIGHTS = ("call", "put")
PHASES = ("setup", "entry", "management", "exit", "review")
ORDER_STATUSES = ("pending", "filled", "cancelled")
ORDER_TYPES = ("limit", "market")
STRATEGIES = ("single", "vertical", "straddle", "strangle", "calendar", "diagonal", "butterfly", "condor",
              "iron_butterfly", "iron_condor", "stock", "covered_call", "protective_put", "custom")
MAX_LEGS = 16
MAX_QTY = 1_000_000
MAX_PRICE = 10_000_000  # per unit; keeps every dollar figure well inside the stored precision

Id = lambda **kw: fields.String(validate=validate.Length(min=1, max=36), **kw)  # noqa: E731
Qty = lambda **kw: fields.Integer(strict=True, validate=[  # noqa: E731
    validate.Range(min=-MAX_QTY, max=MAX_QTY), validate.NoneOf([0], error="must not be 0")], **kw)


MoneyIn = tf.MoneyIn    # the host's decimal-string field with numeric bounds
MoneyOut = tf.MoneyOut


Price = lambda **kw: MoneyIn(low=0, high=MAX_PRICE, **kw)  # noqa: E731
Tags = lambda **kw: fields.List(fields.String(validate=validate.Length(min=1, max=50)),  # noqa: E731
                                validate=validate.Length(max=20), allow_none=True, **kw)


class IsoDate(fields.Date):
    """A date (``2025-02-21``); also serialises one already in ISO form (stored JSON)."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, str):
            value = dt.date.fromisoformat(value[:10])
        return super()._serialize(value, attr, obj, **kwargs)


class Time(tf.UtcDateTime):
    """A UTC time (``2025-02-05T10:30:00.000Z``) between 1900 and 2999: every backend stores
    it, and an extreme offset can't overflow the conversion to UTC."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            result = super()._deserialize(value, attr, data, **kwargs)
        except OverflowError:
            raise ValidationError("out of range") from None
        if not 1900 <= result.year <= 2999:
            raise ValidationError("must be between 1900 and 2999")
        return result


class Day(fields.Date):
    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        if not 1900 <= result.year <= 2999:
            raise ValidationError("must be between 1900 and 2999")
        return result


# -- inputs -----------------------------------------------------------------------------
class LegIn(Schema):
    instrument_type = fields.String(required=True, validate=validate.OneOf(INSTRUMENTS))
    expiry = Day(allow_none=True, load_default=None)
    strike = MoneyIn(allow_none=True, load_default=None, low=0, strict_low=True, high=MAX_PRICE)
    right = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(RIGHTS),
                          metadata={"description": "call | put (options only)"})
    quantity = Qty(required=True, metadata={"description": "signed: positive long, negative short; never 0"})
    multiplier = fields.Integer(strict=True, load_default=None, allow_none=True,
                                validate=validate.Range(min=1, max=10_000),
                                metadata={"description": "default 100 for options, 1 for stock and futures"})

    @validates_schema
    def _shape(self, data, **kwargs):
        kind = data.get("instrument_type")
        errors = {}
        if kind == "option":
            for name in ("expiry", "strike", "right"):
                if data.get(name) is None:
                    errors[name] = [f"an option leg needs {name}"]
        elif kind in ("stock", "future"):
            for name in ("strike", "right"):
                if data.get(name) is not None:
                    errors[name] = [f"a {kind} leg has no {name}"]
            if kind == "stock" and data.get("expiry") is not None:
                errors["expiry"] = ["a stock leg has no expiry"]
            if kind == "future" and data.get("expiry") is None:
                errors["expiry"] = ["a future leg needs expiry"]
        if errors:
            raise ValidationError(errors)


class PositionIn(Schema):
    symbol = fields.String(required=True, validate=validate.Length(min=1, max=20))
    underlying = fields.String(validate=validate.Length(min=1, max=20),
                               metadata={"description": "defaults to symbol"})
    tags = Tags()
    campaign_id = Id(allow_none=True)
    legs = fields.List(fields.Nested(LegIn), load_default=list, validate=validate.Length(max=MAX_LEGS))


class LegChange(Schema):
    id = Id(required=True)
    quantity = Qty(required=True)


class PositionPatch(Schema):
    symbol = fields.String(validate=validate.Length(min=1, max=20))
    underlying = fields.String(validate=validate.Length(min=1, max=20))
    tags = Tags()
    campaign_id = Id(allow_none=True)
    status = fields.String(validate=validate.OneOf(["open"]),
                           metadata={"description": "planned -> open; close with POST .../close"})
    add_legs = fields.List(fields.Nested(LegIn), validate=validate.Length(min=1, max=MAX_LEGS))
    update_legs = fields.List(fields.Nested(LegChange), validate=validate.Length(min=1, max=MAX_LEGS),
                              metadata={"description": "change a leg's quantity"})

    @validates_schema
    def _not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("nothing to change", field_name="_schema")


class PositionListArgs(Schema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    symbol = fields.String(validate=validate.Length(min=1, max=20))


class AsOfArgs(Schema):
    as_of = Time(metadata={"description": "answer from what was recorded by this system time"})


class FillIn(Schema):
    leg_id = Id(required=True)
    price = Price(required=True, metadata={"description": "per unit, before the multiplier"})
    quantity = Qty(required=True, metadata={"description": "signed: positive bought, negative sold"})
    fees = MoneyIn(load_default=lambda: Decimal("0.0000"), low=0, high=MAX_PRICE)
    occurred_at = Time(required=True, metadata={"description": "market time of the fill"})


class CloseIn(Schema):
    closed_at = Time(metadata={"description": "market time of the close (default: now)"})


class OrderTemplateIn(Schema):
    symbol = fields.String(required=True, validate=validate.Length(min=1, max=20))
    underlying = fields.String(validate=validate.Length(min=1, max=20))
    tags = Tags()
    campaign_id = Id(allow_none=True)
    legs = fields.List(fields.Nested(LegIn), required=True, validate=validate.Length(min=1, max=MAX_LEGS))


class OrderIn(Schema):
    position_template = fields.Nested(OrderTemplateIn, required=True)
    order_type = fields.String(load_default="limit", validate=validate.OneOf(ORDER_TYPES))
    limit_price = MoneyIn(allow_none=True, load_default=None, low=-MAX_PRICE, high=MAX_PRICE,
                           metadata={"description": "per combo unit: positive = debit, negative = credit"})

    @validates_schema
    def _rules(self, data, **kwargs):
        if data.get("order_type") == "limit" and data.get("limit_price") is None:
            raise ValidationError({"limit_price": ["a limit order needs limit_price"]})
        if data.get("order_type") == "market" and data.get("limit_price") is not None:
            raise ValidationError({"limit_price": ["a market order has no limit_price"]})
        legs = (data.get("position_template") or {}).get("legs") or []
        today = dt.datetime.now(dt.timezone.utc).date()
        past = {i: {"expiry": ["is in the past"]} for i, leg in enumerate(legs)
                if leg.get("expiry") is not None and leg["expiry"] < today}
        if past:
            raise ValidationError({"position_template": {"legs": past}})
        if len(legs) == 1 and data.get("limit_price") is not None:
            price, qty = data["limit_price"], legs[0]["quantity"]
            if price != 0 and (price > 0) != (qty > 0):
                raise ValidationError({"limit_price": [
                    "a single-leg order's limit is positive when buying and negative when selling"]})


class ExecuteIn(Schema):
    fill_price = MoneyIn(allow_none=True, load_default=None, low=-MAX_PRICE, high=MAX_PRICE,
                          metadata={"description": "net per combo unit (default: the limit price)"})
    leg_prices = fields.List(Price(), allow_none=True, load_default=None, validate=validate.Length(min=1, max=MAX_LEGS),
                             metadata={"description": "one per leg, in the template's order (multi-leg orders)"})
    fees = MoneyIn(load_default=lambda: Decimal("0.0000"), low=0, high=MAX_PRICE,
                    metadata={"description": "total commissions (recorded on the first leg's fill)"})
    occurred_at = Time(metadata={"description": "market time of the execution (default: now)"})


class JournalIn(Schema):
    position_id = Id(required=True)
    object_of_reflection = fields.String(required=True, validate=[validate.Length(min=1, max=10_000),
                                                                  validate.Regexp(r"\S", error="must not be blank")])
    bias_flags = Tags()
    notes = fields.String(allow_none=True, validate=validate.Length(max=20_000))
    phase = fields.String(required=True, validate=validate.OneOf(PHASES))


class JournalListArgs(Schema):
    position_id = Id(required=True)


class RiskArtifactIn(Schema):
    artifact_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    computed_at = Time(required=True)


# -- representations --------------------------------------------------------------------
class Leg(Schema):
    id = fields.String(required=True)
    position_id = fields.String(required=True)
    instrument_type = fields.String(required=True, validate=validate.OneOf(INSTRUMENTS))
    expiry = IsoDate(allow_none=True)
    strike = MoneyOut(allow_none=True)
    right = fields.String(allow_none=True)
    quantity = fields.Integer(required=True)
    multiplier = fields.Integer(required=True)


class Position(Schema):
    id = fields.String(required=True)
    user_id = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    symbol = fields.String(required=True)
    underlying = fields.String(required=True)
    version = fields.Integer(required=True)
    opened_at = tf.UtcDateTime(allow_none=True)
    closed_at = tf.UtcDateTime(allow_none=True)
    tags = fields.List(fields.String(), allow_none=True)
    campaign_id = fields.String(allow_none=True)
    legs = fields.List(fields.Nested(Leg), required=True)
    realized_pnl = MoneyOut(allow_none=True, metadata={"description": "set at close: net of fees, in dollars"})
    fees = MoneyOut(allow_none=True, metadata={"description": "set at close: total fees"})
    source_order_id = fields.String(allow_none=True)
    created_at = tf.UtcDateTime(required=True)
    updated_at = tf.UtcDateTime(required=True, metadata={"description": "system time of this version"})


class Fill(Schema):
    id = fields.String(required=True)
    leg_id = fields.String(required=True)
    price = MoneyOut(required=True)
    quantity = fields.Integer(required=True)
    fees = MoneyOut(required=True)
    occurred_at = tf.UtcDateTime(required=True)
    recorded_at = tf.UtcDateTime(required=True)


class FillResult(Schema):
    fill = fields.Nested(Fill, required=True)
    position = fields.Nested(Position, required=True)


class Metadata(Schema):
    derived_strategy = fields.String(required=True, validate=validate.OneOf(STRATEGIES))
    net_debit = MoneyOut(required=True, metadata={"description": "sum(price*qty*multiplier) of fills; credit < 0"})
    fees = MoneyOut(required=True)
    dte = fields.Integer(allow_none=True)
    max_profit = MoneyOut(allow_none=True, metadata={"description": "at expiry; null when unbounded"})
    max_loss = MoneyOut(allow_none=True, metadata={"description": "positive dollars; null when unbounded"})


class Snapshot(Schema):
    position_id = fields.String(required=True)
    version = fields.Integer(required=True)
    status = fields.String(required=True)
    symbol = fields.String(required=True)
    underlying = fields.String(required=True)
    opened_at = tf.UtcDateTime(allow_none=True)
    closed_at = tf.UtcDateTime(allow_none=True)
    legs = fields.List(fields.Nested(Leg), required=True)
    fills = fields.List(fields.Nested(Fill), required=True)
    metadata = fields.Nested(Metadata, required=True)
    as_of = tf.UtcDateTime(allow_none=True)


class OrderTemplateLeg(Schema):
    instrument_type = fields.String(required=True)
    expiry = IsoDate(allow_none=True)
    strike = MoneyOut(allow_none=True)
    right = fields.String(allow_none=True)
    quantity = fields.Integer(required=True)
    multiplier = fields.Integer(allow_none=True)


class OrderTemplate(Schema):
    symbol = fields.String(required=True)
    underlying = fields.String(allow_none=True)
    tags = fields.List(fields.String(), allow_none=True)
    campaign_id = fields.String(allow_none=True)
    legs = fields.List(fields.Nested(OrderTemplateLeg), required=True)


class Order(Schema):
    id = fields.String(required=True)
    user_id = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(ORDER_STATUSES))
    order_type = fields.String(required=True, validate=validate.OneOf(ORDER_TYPES))
    limit_price = MoneyOut(allow_none=True)
    position_template = fields.Nested(OrderTemplate, required=True)
    version = fields.Integer(required=True)
    position_id = fields.String(allow_none=True, metadata={"description": "the position its execution created"})
    fill_price = MoneyOut(allow_none=True)
    slippage = MoneyOut(allow_none=True, metadata={"description": "per unit; positive = worse than the limit"})
    filled_at = tf.UtcDateTime(allow_none=True)
    cancelled_at = tf.UtcDateTime(allow_none=True)
    created_at = tf.UtcDateTime(required=True)
    updated_at = tf.UtcDateTime(required=True)


class ExecuteResult(Schema):
    order = fields.Nested(Order, required=True)
    position = fields.Nested(Position, required=True)


class JournalEntry(Schema):
    id = fields.String(required=True)
    position_id = fields.String(required=True)
    object_of_reflection = fields.String(required=True)
    bias_flags = fields.List(fields.String(), allow_none=True)
    notes = fields.String(allow_none=True)
    phase = fields.String(required=True, validate=validate.OneOf(PHASES))
    created_at = tf.UtcDateTime(required=True)


class RiskArtifactRef(Schema):
    position_id = fields.String(required=True)
    artifact_id = fields.String(required=True)
    computed_at = tf.UtcDateTime(required=True)
    linked_at = tf.UtcDateTime(required=True)


class EventOut(Schema):
    """The bus envelope (see /asyncapi.json)."""
    event_id = fields.String(required=True)
    event_seq = fields.Integer(required=True)
    stream = fields.String(required=True)
    type = fields.String(required=True)
    aggregate_type = fields.String(required=True)
    aggregate_id = fields.String(required=True)
    aggregate_version = fields.Integer(allow_none=True)
    occurred_at = fields.String(required=True)
    recorded_at = fields.String(required=True)
    user_id = fields.Integer(allow_none=True)
    schema_version = fields.Integer(required=True)
    payload = fields.Dict(required=True)


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
    max_drawdown = MoneyOut(required=True, metadata={"description": "largest peak-to-trough fall of cumulative P&L"})
    total_pnl = MoneyOut(required=True)
    total_fees = MoneyOut(required=True)


class StrategyPerformance(PerformanceBlock):
    derived_strategy = fields.String(required=True)


class Stats(Schema):
    overall = fields.Nested(PerformanceBlock, required=True)
    by_strategy = fields.List(fields.Nested(StrategyPerformance), required=True)


# -- event payloads (tradelog.events) ---------------------------------------------------
class PositionCreated(Schema):
    """A position was created (planned, or from an executed order)."""
    position = fields.Nested(Position, required=True)


class FillRecorded(Schema):
    """A fill was recorded on one of the position's legs."""
    position_id = fields.String(required=True)
    fill = fields.Nested(Fill, required=True)
    slippage = MoneyOut(allow_none=True, metadata={"description": "per unit vs the order's limit; null if not from an order"})


class PositionAdjusted(Schema):
    """Legs were added or changed, or the position's attributes/status were updated."""
    position = fields.Nested(Position, required=True)
    change = fields.String(required=True, validate=validate.OneOf(["legs_added", "legs_changed", "updated"]))


class PositionClosed(Schema):
    """The position was closed; realised P&L is net of fees, in dollars."""
    position_id = fields.String(required=True)
    realized_pnl = MoneyOut(required=True)
    fees = MoneyOut(required=True)
    closed_at = tf.UtcDateTime(required=True)


class OrderCreated(Schema):
    """A pending order was created."""
    order = fields.Nested(Order, required=True)


class OrderCancelled(Schema):
    """A pending order was cancelled."""
    order_id = fields.String(required=True)


class OrderFilled(Schema):
    """An order was executed: its position and fills exist."""
    order_id = fields.String(required=True)
    position_id = fields.String(required=True)
    limit_price = MoneyOut(allow_none=True)
    fill_price = MoneyOut(required=True)
    slippage = MoneyOut(allow_none=True)
    filled_at = tf.UtcDateTime(required=True)
    reduces_position = fields.Boolean(required=True)


class RiskArtifactLinked(Schema):
    """RiskGraph computed an artifact for the position; only the reference is kept."""
    position_id = fields.String(required=True)
    artifact_id = fields.String(required=True)
    computed_at = tf.UtcDateTime(required=True)


EVENTS = {s.__name__: s for s in (PositionCreated, FillRecorded, PositionAdjusted, PositionClosed,
                                  OrderCreated, OrderCancelled, OrderFilled, RiskArtifactLinked)}

TOPIC = Topic("tradelog.events", "TradeLog domain events: positions, fills, closes, orders, "
              "risk-artifact references. Key: aggregate_id (position or order).", EVENTS)
