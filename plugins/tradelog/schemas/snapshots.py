"""The snapshot (read side): a position with per-leg cost basis, marks and derived ``Metadata``."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from app import fields as tf
from plugins.tradelog.schemas.common import STRATEGIES, MoneyOut
from plugins.tradelog.schemas.positions import Leg
from plugins.tradelog.schemas.fills import Fill


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
