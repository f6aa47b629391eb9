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
from plugins.tradelog.imports.formats import FORMATS

STATUSES = ("planned", "open", "closed")
INSTRUMENTS = ("option", "stock", "future")
RIGHTS = ("call", "put")
PHASES = ("setup", "entry", "management", "exit", "review")
SETTLEMENT_KINDS = ("expiration", "exercise", "assignment")
SETTLEMENT_TIMES = ("AM", "PM")
SETTLEMENT_TYPES = ("cash", "physical")
FILL_KINDS = ("trade", "expiration", "exercise", "assignment", "delivery")
ORDER_STATUSES = ("pending", "filled", "cancelled")
ORDER_TYPES = ("limit", "market")
STRATEGIES = ("single", "vertical", "straddle", "strangle", "calendar", "diagonal", "butterfly", "condor",
              "iron_butterfly", "iron_condor", "stock", "covered_call", "protective_put", "custom")
GROUP_BYS = ("strategy", "underlying", "tag", "weekday", "dte_bucket", "roll_chain")
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
    settlement_time = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(SETTLEMENT_TIMES),
                                    metadata={"description": "options: AM | PM (default: the root's, e.g. AM for "
                                                             "SPX third-Friday monthlies, PM otherwise)"})
    settlement_type = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(SETTLEMENT_TYPES),
                                    metadata={"description": "options: cash | physical (default: cash for index "
                                                             "roots, physical for equities and ETFs)"})

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
            for name in ("settlement_time", "settlement_type"):
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
                               metadata={"description": "default: an index option root's index as I:<index> "
                                                        "(SPX, SPXW -> I:SPX), else the symbol"})
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
    version = fields.Integer(validate=validate.Range(min=1, max=2_000_000_000),
                             metadata={"description": "answer with this version of the position"})

    @validates_schema
    def _one(self, data, **kwargs):
        if data.get("as_of") is not None and data.get("version") is not None:
            raise ValidationError({"version": ["give as_of or version, not both"]})


class FillIn(Schema):
    leg_id = Id(required=True)
    price = Price(required=True, metadata={"description": "per unit, before the multiplier"})
    quantity = Qty(required=True, metadata={"description": "signed: positive bought, negative sold; 422 when it "
                                                           "would carry the leg past flat"})
    fees = MoneyIn(load_default=lambda: Decimal("0.0000"), low=0, high=MAX_PRICE)
    occurred_at = Time(required=True, metadata={"description": "market time of the fill: not in the future (5 min "
                                                              "of clock skew), not after an option's last trade"})


class CloseIn(Schema):
    closed_at = Time(metadata={"description": "market time of the close (default: now); not in the future, not "
                                              "before the last fill"})


class LegSettleIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(SETTLEMENT_KINDS),
                         metadata={"description": "expiration (worthless, or at intrinsic when cash-settled), "
                                                  "exercise (a long option), assignment (a short one)"})
    occurred_at = Time(metadata={"description": "default: the settlement moment (expiration, cash settlement), "
                                                "else now"})
    settlement_value = MoneyIn(allow_none=True, load_default=None, low=0, high=MAX_PRICE,
                               metadata={"description": "the underlying's settlement value (needed to exercise or "
                                                        "assign a cash-settled option)"})
    quantity = fields.Integer(strict=True, load_default=None, validate=validate.Range(min=1, max=MAX_QTY),
                              metadata={"description": "contracts settled (default: all open; a partial "
                                                       "assignment gives fewer)"})
    fees = MoneyIn(load_default=lambda: Decimal("0.0000"), low=0, high=MAX_PRICE)


class SettlementPriceIn(Schema):
    underlying = fields.String(required=True, validate=validate.Length(min=1, max=20),
                               metadata={"description": "as the positions name it (e.g. I:SPX)"})
    expiry = Day(required=True)
    settlement_time = fields.String(load_default="PM", validate=validate.OneOf(SETTLEMENT_TIMES))
    price = MoneyIn(required=True, low=0, high=MAX_PRICE, metadata={"description": "the settlement value"})


class MarkIn(Schema):
    leg_id = Id(required=True)
    price = Price(required=True, metadata={"description": "per unit, before the multiplier"})


class MarksIn(Schema):
    marked_at = Time(metadata={"description": "market time of the marks (default: now)"})
    marks = fields.List(fields.Nested(MarkIn), required=True, validate=validate.Length(min=1, max=MAX_LEGS))


class RollCloseIn(Schema):
    leg_id = Id(required=True)
    price = Price(required=True)
    quantity = Qty(load_default=None, allow_none=True,
                   metadata={"description": "signed closing quantity (default: the leg's whole open quantity)"})
    fees = MoneyIn(load_default=lambda: Decimal("0.0000"), low=0, high=MAX_PRICE)


class RollOpenIn(LegIn):
    price = Price(required=True, metadata={"description": "the opening fill's price per unit"})
    fees = MoneyIn(load_default=lambda: Decimal("0.0000"), low=0, high=MAX_PRICE)


class RollIn(Schema):
    occurred_at = Time(metadata={"description": "market time of the roll's fills (default: now)"})
    close = fields.List(fields.Nested(RollCloseIn), required=True, validate=validate.Length(min=1, max=MAX_LEGS))
    open = fields.List(fields.Nested(RollOpenIn), required=True, validate=validate.Length(min=1, max=MAX_LEGS))
    symbol = fields.String(validate=validate.Length(min=1, max=20))
    underlying = fields.String(validate=validate.Length(min=1, max=20))
    tags = Tags()


class DailyPnlArgs(Schema):
    start = Day(data_key="from", metadata={"description": "first trading day (inclusive)"})
    end = Day(data_key="to", metadata={"description": "last trading day (inclusive)"})


class OrderTemplateIn(Schema):
    symbol = fields.String(required=True, validate=validate.Length(min=1, max=20))
    underlying = fields.String(validate=validate.Length(min=1, max=20))
    tags = Tags()
    campaign_id = Id(allow_none=True)
    legs = fields.List(fields.Nested(LegIn), required=True, validate=validate.Length(min=1, max=MAX_LEGS))


class OrderIn(Schema):
    position_template = fields.Nested(OrderTemplateIn, required=True)
    position_id = Id(allow_none=True, load_default=None,
                     metadata={"description": "execute into this open position (reduce/close it, or add legs) "
                                              "instead of opening a new one"})
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
    risk_artifact_id = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=64),
                                     metadata={"description": "the riskgraph artifact looked at (default: the "
                                                              "latest linked to the position)"})
    risk_strategy_id = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=64),
                                     metadata={"description": "a riskgraph strategy looked at"})
    risk_strategy_version = fields.Integer(allow_none=True, load_default=None,
                                           validate=validate.Range(min=1, max=2_000_000_000))

    @validates_schema
    def _strategy(self, data, **kwargs):
        if (data.get("risk_strategy_id") is None) != (data.get("risk_strategy_version") is None):
            raise ValidationError({"risk_strategy_version": ["give risk_strategy_id and risk_strategy_version "
                                                             "together"]})


class JournalListArgs(Schema):
    position_id = Id(required=True)


class RiskArtifactIn(Schema):
    artifact_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    computed_at = Time(required=True)
    source_version = fields.Integer(strict=True, load_default=None, allow_none=True,
                                    validate=validate.Range(min=1, max=2_000_000_000),
                                    metadata={"description": "the position version it was computed from"})


# -- representations --------------------------------------------------------------------
class Leg(Schema):
    id = fields.String(required=True)
    position_id = fields.String(required=True)
    instrument_type = fields.String(required=True, validate=validate.OneOf(INSTRUMENTS))
    expiry = IsoDate(allow_none=True)
    strike = MoneyOut(allow_none=True)
    right = fields.String(allow_none=True)
    quantity = fields.Integer(required=True, metadata={"description": "planned (the intent); signed"})
    multiplier = fields.Integer(required=True)
    open_quantity = fields.Integer(metadata={"description": "the signed sum of the leg's fills"})
    settlement_time = fields.String(allow_none=True, metadata={"description": "AM | PM override (null: the root's)"})
    settlement_type = fields.String(allow_none=True, metadata={"description": "cash | physical override"})
    source_leg_id = fields.String(allow_none=True, metadata={"description": "the option leg whose exercise or "
                                                                            "assignment delivered this stock leg"})


class Position(Schema):
    id = fields.String(required=True)
    user_id = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    symbol = fields.String(required=True)
    underlying = fields.String(required=True)
    version = fields.Integer(required=True)
    opened_at = tf.UtcDateTime(allow_none=True)
    closed_at = tf.UtcDateTime(allow_none=True)
    tags = fields.List(fields.String(), required=True, metadata={"description": "[] when none (never null)"})
    campaign_id = fields.String(allow_none=True)
    legs = fields.List(fields.Nested(Leg), required=True)
    realized_pnl = MoneyOut(allow_none=True, metadata={"description": "realized so far (FIFO lots), net of fees, "
                                                                      "in dollars; null before the first fill"})
    fees = MoneyOut(allow_none=True, metadata={"description": "fees paid so far"})
    source_order_id = fields.String(allow_none=True)
    rolled_from = fields.String(allow_none=True, metadata={"description": "the position this one was rolled from"})
    chain_id = fields.String(allow_none=True, metadata={"description": "the roll chain's first position"})
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
    kind = fields.String(validate=validate.OneOf(FILL_KINDS),
                         metadata={"description": "trade, or the settlement that wrote it"})
    realized_pnl = MoneyOut(allow_none=True, metadata={"description": "what this closing fill realized (FIFO, net "
                                                                      "of the fees of the lots it closed and its "
                                                                      "own); null for an opening fill"})


class FillResult(Schema):
    fill = fields.Nested(Fill, required=True)
    position = fields.Nested(Position, required=True)


class SnapshotLeg(Leg):
    cost_basis = MoneyOut(metadata={"description": "sum(price*remaining*multiplier) of the open lots; credit < 0"})
    average_price = fields.Decimal(places=6, as_string=True, allow_none=True,
                                   metadata={"description": "average open price per unit (6 places); null when flat"})
    open_fees = MoneyOut(metadata={"description": "fees still allocated to the open lots"})
    realized_pnl = MoneyOut(metadata={"description": "realized by this leg's closing fills, net of fees"})
    settles_at = tf.UtcDateTime(allow_none=True, metadata={"description": "the option's settlement moment"})
    mark = MoneyOut(allow_none=True, metadata={"description": "the latest mark (POST .../marks)"})
    unrealized_pnl = MoneyOut(allow_none=True, metadata={"description": "at the mark, net of open fees"})


class Metadata(Schema):
    derived_strategy = fields.String(required=True, validate=validate.OneOf(STRATEGIES))
    net_debit = MoneyOut(required=True, metadata={"description": "cost basis of what is open: "
                                                                 "sum(price*qty*multiplier) of the open lots; "
                                                                 "credit < 0"})
    fees = MoneyOut(required=True, metadata={"description": "all fees paid"})
    open_fees = MoneyOut(required=True, metadata={"description": "fees on the open lots (not yet realized)"})
    realized_pnl = MoneyOut(required=True, metadata={"description": "realized so far, FIFO, net of fees"})
    unrealized_pnl = MoneyOut(allow_none=True, metadata={"description": "of what is open at the legs' marks, "
                                                                        "net of open fees; null unless every "
                                                                        "open leg is marked"})
    dte = fields.Integer(allow_none=True, metadata={"description": "calendar days (exchange time zone) to the "
                                                                   "nearest option expiry whose settlement moment "
                                                                   "is ahead; 0 when all have settled"})
    settles_at = tf.UtcDateTime(allow_none=True, metadata={"description": "that option's settlement moment"})
    max_profit = MoneyOut(allow_none=True, metadata={"description": "P&L at expiry of what is open, net of its "
                                                                    "net debit; null when unbounded or nothing open"})
    max_loss = MoneyOut(allow_none=True, metadata={"description": "the lowest P&L at expiry of what is open: "
                                                                  "negative for a loss; null when unbounded"})


class Snapshot(Schema):
    position_id = fields.String(required=True)
    version = fields.Integer(required=True)
    status = fields.String(required=True)
    symbol = fields.String(required=True)
    underlying = fields.String(required=True)
    opened_at = tf.UtcDateTime(allow_none=True)
    closed_at = tf.UtcDateTime(allow_none=True)
    rolled_from = fields.String(allow_none=True)
    chain_id = fields.String(allow_none=True)
    legs = fields.List(fields.Nested(SnapshotLeg), required=True)
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
    position_id = fields.String(allow_none=True, metadata={"description": "the position it executes into "
                                                                          "(given), or the one its execution "
                                                                          "created"})
    fill_price = MoneyOut(allow_none=True)
    slippage = MoneyOut(allow_none=True, metadata={"description": "per unit; positive = worse than the limit"})
    filled_at = tf.UtcDateTime(allow_none=True)
    cancelled_at = tf.UtcDateTime(allow_none=True)
    created_at = tf.UtcDateTime(required=True)
    updated_at = tf.UtcDateTime(required=True)
    reduces_position = fields.Boolean(required=True, metadata={
        "description": "true when it executes into position_id and only reduces open legs"})


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
    position_version = fields.Integer(allow_none=True, metadata={"description": "the position's version when "
                                                                               "the entry was written"})
    risk_artifact_id = fields.String(allow_none=True)
    risk_strategy_id = fields.String(allow_none=True)
    risk_strategy_version = fields.Integer(allow_none=True)


class JournalLinks(Schema):
    position = fields.String(required=True, metadata={"description": "the position at the entry's version"})
    snapshot = fields.String(required=True, metadata={"description": "its snapshot at that version"})
    risk_artifact = fields.String(allow_none=True, metadata={"description": "riskgraph's artifact (its curves)"})
    risk_strategy_versions = fields.String(allow_none=True)


class JournalEntryLinked(JournalEntry):
    links = fields.Nested(JournalLinks, required=True)


class Settlement(Schema):
    id = fields.String(required=True)
    position_id = fields.String(required=True)
    leg_id = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(SETTLEMENT_KINDS))
    settlement_type = fields.String(required=True, validate=validate.OneOf(SETTLEMENT_TYPES))
    settlement_time = fields.String(required=True, validate=validate.OneOf(SETTLEMENT_TIMES))
    quantity = fields.Integer(required=True, metadata={"description": "the option quantity closed (signed)"})
    price = MoneyOut(required=True, metadata={"description": "per unit the option closed at: 0, or intrinsic"})
    settlement_value = MoneyOut(allow_none=True)
    delivered_leg_id = fields.String(allow_none=True)
    delivered_quantity = fields.Integer(allow_none=True, metadata={"description": "shares delivered (signed)"})
    occurred_at = tf.UtcDateTime(required=True)
    recorded_at = tf.UtcDateTime(required=True)


class SettleResult(Schema):
    settlement = fields.Nested(Settlement, required=True)
    position = fields.Nested(Position, required=True)


class SettlementPrice(Schema):
    underlying = fields.String(required=True)
    expiry = IsoDate(required=True)
    settlement_time = fields.String(required=True)
    price = MoneyOut(required=True)
    recorded_at = tf.UtcDateTime(required=True)


class MarkOut(Schema):
    leg_id = fields.String(required=True)
    price = MoneyOut(required=True)


class Marks(Schema):
    position_id = fields.String(required=True)
    marked_at = tf.UtcDateTime(required=True)
    marks = fields.List(fields.Nested(MarkOut), required=True)


class Roll(Schema):
    from_position_id = fields.String(required=True)
    to_position_id = fields.String(required=True)
    chain_id = fields.String(required=True)
    occurred_at = tf.UtcDateTime(required=True)
    net_credit = MoneyOut(required=True, metadata={"description": "cash received minus paid by the roll's fills, "
                                                                  "before fees"})
    fees = MoneyOut(required=True)
    realized_pnl = MoneyOut(required=True, metadata={"description": "realized by the closing fills, net of fees"})
    closing_fill_ids = fields.List(fields.String(), required=True)
    opening_fill_ids = fields.List(fields.String(), required=True)


class RollResult(Schema):
    from_position = fields.Nested(Position, required=True, attribute="from", data_key="from",
                                  metadata={"description": "the old position (closed when the roll left it flat)"})
    to_position = fields.Nested(Position, required=True, attribute="to", data_key="to",
                                metadata={"description": "the new position (rolled_from = the old one)"})
    roll = fields.Nested(Roll, required=True)


class ChainPosition(Schema):
    position_id = fields.String(required=True)
    rolled_from = fields.String(allow_none=True)
    status = fields.String(required=True)
    opened_at = tf.UtcDateTime(allow_none=True)
    closed_at = tf.UtcDateTime(allow_none=True)
    net_credit = MoneyOut(required=True)
    fees = MoneyOut(required=True)
    realized_pnl = MoneyOut(required=True)
    cumulative_net_credit = MoneyOut(required=True)
    cumulative_fees = MoneyOut(required=True)
    cumulative_realized_pnl = MoneyOut(required=True)


class Chain(Schema):
    chain_id = fields.String(required=True)
    positions = fields.List(fields.Nested(ChainPosition), required=True)
    rolls = fields.Integer(required=True)
    net_credit = MoneyOut(required=True, metadata={"description": "cumulative: received minus paid, before fees"})
    fees = MoneyOut(required=True)
    realized_pnl = MoneyOut(required=True, metadata={"description": "cumulative, FIFO, net of fees"})
    open = fields.Boolean(required=True)


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


class RiskArtifactRef(Schema):
    position_id = fields.String(required=True)
    artifact_id = fields.String(required=True)
    computed_at = tf.UtcDateTime(required=True)
    linked_at = tf.UtcDateTime(required=True)
    position_version = fields.Integer(allow_none=True)


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


# -- imports --------------------------------------------------------------------------------
IMPORT_FORMATS = FORMATS


class ImportForm(Schema):
    format = fields.String(required=True, validate=validate.OneOf(IMPORT_FORMATS),
                           metadata={"description": "generic (our CSV), ibkr_flex (Interactive Brokers Flex Query "
                                                    "trades, CSV), tastytrade (transaction history CSV)"})
    timezone = fields.String(load_default=None, validate=validate.Length(min=1, max=64),
                             metadata={"description": "IANA zone of times without an offset (default: the "
                                                      "exchange's, America/New_York)"})
    dry_run = fields.Boolean(load_default=False, metadata={"description": "answer the report, write nothing"})
    skip_bad_rows = fields.Boolean(load_default=False, metadata={"description": "import the good rows and list the "
                                                                               "bad ones (default: a bad row "
                                                                               "rejects the file)"})


class ImportFile(Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary",
                                               "description": "the CSV file (UTF-8, at most 20 MB / 20,000 rows)"})


class ReportRow(Schema):
    line = fields.Integer(required=True)
    column = fields.String()
    reason = fields.String()
    fingerprint = fields.String()


class ReportPosition(Schema):
    position_id = fields.String(required=True)
    symbol = fields.String()
    underlying = fields.String()
    legs = fields.Integer()
    opened_at = fields.String()
    rolled_from = fields.String(allow_none=True)
    line = fields.Integer()


class ReportFill(Schema):
    line = fields.Integer(required=True)
    position_id = fields.String(required=True)
    leg_id = fields.String(required=True)
    quantity = fields.Integer(required=True)
    price = fields.String(required=True)


class ReportSettlement(Schema):
    line = fields.Integer(required=True)
    position_id = fields.String(required=True)
    leg_id = fields.String(required=True)
    kind = fields.String(required=True)
    quantity = fields.Integer()
    price = fields.String()
    delivered_quantity = fields.Integer(allow_none=True)
    delivery_line = fields.Integer(allow_none=True)


class ReportClosed(Schema):
    position_id = fields.String(required=True)
    closed_at = fields.String()
    realized_pnl = fields.String(allow_none=True)


class ImportReport(Schema):
    format = fields.String(required=True)
    timezone = fields.String(required=True)
    dry_run = fields.Boolean(required=True)
    rows = fields.Integer(required=True, metadata={"description": "data rows read (executions and bad rows)"})
    executions = fields.Integer(required=True)
    positions_created = fields.List(fields.Nested(ReportPosition), required=True)
    fills_matched = fields.List(fields.Nested(ReportFill), required=True,
                                metadata={"description": "fills recorded into positions that existed before"})
    fills_recorded = fields.Integer(required=True)
    settlements = fields.List(fields.Nested(ReportSettlement), required=True)
    positions_closed = fields.List(fields.Nested(ReportClosed), required=True)
    duplicates = fields.List(fields.Nested(ReportRow), required=True,
                             metadata={"description": "rows skipped: already imported (same fingerprint)"})
    rejected = fields.List(fields.Nested(ReportRow), required=True,
                           metadata={"description": "bad rows with line, column and reason (skip_bad_rows)"})
    warnings = fields.List(fields.Nested(ReportRow), required=True)
    realized_pnl = fields.String(required=True, metadata={"description": "realized by the imported closing fills"})


class ImportFailure(Schema):
    status = fields.Integer()
    code = fields.String(required=True, metadata={"description": "import_rejected (bad rows) or import_failed"})
    message = fields.String(required=True)
    errors = fields.Dict()
    rejected = fields.List(fields.Nested(ReportRow), metadata={"description": "the bad rows: line, column, reason"})


class ImportRecord(Schema):
    id = fields.String(required=True)
    format = fields.String(required=True, validate=validate.OneOf(IMPORT_FORMATS))
    filename = fields.String(allow_none=True)
    timezone = fields.String(required=True)
    dry_run = fields.Boolean(required=True)
    skip_bad_rows = fields.Boolean(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["queued", "succeeded", "rejected", "failed"]),
                           metadata={"description": "queued (its job has not run), succeeded, rejected (bad rows: "
                                                    "nothing imported), failed"})
    rows = fields.Integer(required=True)
    sha256 = fields.String(required=True)
    created_at = tf.UtcDateTime(required=True)
    finished_at = tf.UtcDateTime(allow_none=True)
    job_id = fields.String(allow_none=True, metadata={"description": "the job that runs it: /api/jobs/{job_id}"})
    report = fields.Nested(ImportReport, allow_none=True, metadata={"description": "once succeeded"})
    error = fields.Nested(ImportFailure, allow_none=True, metadata={"description": "once rejected or failed"})


# -- event payloads (tradelog.events) ---------------------------------------------------
class PositionCreated(Schema):
    """A position was created (planned, or from an executed order)."""
    position = fields.Nested(Position, required=True)


class LegState(Schema):
    leg_id = fields.String(required=True)
    open_quantity = fields.Integer(required=True)
    cost_basis = MoneyOut(required=True)
    average_price = fields.Decimal(places=6, as_string=True, allow_none=True)
    realized_pnl = MoneyOut(required=True)


class FillRecorded(Schema):
    """A fill was recorded on one of the position's legs; ``leg`` is the leg's FIFO state after it."""
    position_id = fields.String(required=True)
    fill = fields.Nested(Fill, required=True)
    slippage = MoneyOut(allow_none=True, metadata={"description": "per unit vs the order's limit; null if not from an order"})
    leg = fields.Nested(LegState, required=True)


class LegSettled(Schema):
    """An option leg was settled (expiration, exercise or assignment): its closing fill, the
    shares delivered (physical settlement) and any stock leg that was added."""
    position_id = fields.String(required=True)
    settlement = fields.Nested(Settlement, required=True)
    fills = fields.List(fields.Nested(Fill), required=True)
    legs_added = fields.List(fields.Nested(Leg), required=True)
    legs = fields.List(fields.Nested(LegState), required=True)


class PositionRolled(Schema):
    """Some legs were closed and a new position opened from them (rolled_from), atomically."""
    from_position_id = fields.String(required=True)
    to_position_id = fields.String(required=True)
    chain_id = fields.String(required=True)
    occurred_at = tf.UtcDateTime(required=True)
    net_credit = MoneyOut(required=True)
    fees = MoneyOut(required=True)
    realized_pnl = MoneyOut(required=True)
    closing_fill_ids = fields.List(fields.String(), required=True)
    opening_fill_ids = fields.List(fields.String(), required=True)


class LegsMarked(Schema):
    """Market prices of legs were recorded (the position's version is unchanged)."""
    position_id = fields.String(required=True)
    marked_at = tf.UtcDateTime(required=True)
    marks = fields.List(fields.Nested(MarkOut), required=True)


class SettlementPriceRecorded(Schema):
    """The settlement value of an underlying for an expiry was recorded (or corrected)."""
    underlying = fields.String(required=True)
    expiry = IsoDate(required=True)
    settlement_time = fields.String(required=True)
    price = MoneyOut(required=True)
    recorded_at = tf.UtcDateTime(required=True)


class ExecutionsImported(Schema):
    """A broker file was imported (its positions, fills and settlements have their own events)."""
    import_id = fields.String(required=True)
    format = fields.String(required=True)
    dry_run = fields.Boolean(required=True)
    rows = fields.Integer(required=True)
    positions_created = fields.Integer(required=True)
    fills_recorded = fields.Integer(required=True)
    duplicates = fields.Integer(required=True)
    rejected = fields.Integer(required=True)


class JournalEntryCreated(Schema):
    """A journal entry was written on a position."""
    entry = fields.Nested(JournalEntry, required=True)


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
                                  OrderCreated, OrderCancelled, OrderFilled, RiskArtifactLinked, LegSettled,
                                  PositionRolled, LegsMarked, SettlementPriceRecorded, JournalEntryCreated,
                                  ExecutionsImported)}

TOPIC = Topic("tradelog.events", "TradeLog domain events: positions, fills, settlements, rolls, closes, "
              "marks, orders, journal entries, imports, risk-artifact references. Key: aggregate_id "
              "(position, order, journal entry, import or settlement price).", EVENTS)
