"""Fills, closes, settlements and rolls: the bodies that change a position's book and their
representations (``Fill``, ``Settlement``, ``Roll``, roll ``Chain``)."""
from __future__ import annotations

from decimal import Decimal

from marshmallow import Schema, fields, validate

from app import fields as tf
from plugins.tradelog.schemas.common import (SETTLEMENT_KINDS, SETTLEMENT_TIMES, SETTLEMENT_TYPES,
    FILL_KINDS, MAX_LEGS, MAX_QTY, MAX_PRICE, Id, Qty, MoneyIn, MoneyOut, Price, Tags, IsoDate, Time, Day)
from plugins.tradelog.schemas.positions import LegIn, Position


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
