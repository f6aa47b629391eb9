"""Pending orders: the order body, its position template, execution, and the ``Order``
representation."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app import fields as tf
from plugins.tradelog.schemas.common import (ORDER_STATUSES, ORDER_TYPES, MAX_LEGS, MAX_PRICE, Id, MoneyIn,
    MoneyOut, Price, Tags, IsoDate, Time)
from plugins.tradelog.schemas.positions import LegIn, Position


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
