"""Positions and their legs: create/patch bodies, list and as-of arguments, marks, risk-artifact
references, and the ``Position``/``Leg`` representations (plus the event envelope ``EventOut``)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app import fields as tf
from plugins.tradelog.schemas.common import (STATUSES, INSTRUMENTS, RIGHTS, SETTLEMENT_TIMES,
    SETTLEMENT_TYPES, MAX_LEGS, MAX_PRICE, Id, Qty, MoneyIn, MoneyOut, Price, Tags, IsoDate, Time, Day)


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


class MarkIn(Schema):
    leg_id = Id(required=True)
    price = Price(required=True, metadata={"description": "per unit, before the multiplier"})


class MarksIn(Schema):
    marked_at = Time(metadata={"description": "market time of the marks (default: now)"})
    marks = fields.List(fields.Nested(MarkIn), required=True, validate=validate.Length(min=1, max=MAX_LEGS))


class RiskArtifactIn(Schema):
    artifact_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    computed_at = Time(required=True)
    source_version = fields.Integer(strict=True, load_default=None, allow_none=True,
                                    validate=validate.Range(min=1, max=2_000_000_000),
                                    metadata={"description": "the position version it was computed from"})


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


class MarkOut(Schema):
    leg_id = fields.String(required=True)
    price = MoneyOut(required=True)


class Marks(Schema):
    position_id = fields.String(required=True)
    marked_at = tf.UtcDateTime(required=True)
    marks = fields.List(fields.Nested(MarkOut), required=True)


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
