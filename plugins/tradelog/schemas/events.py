"""Event payloads published on ``tradelog.events`` (served in /asyncapi.json) and the topic."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from app import fields as tf
from bus.topic import Topic
from plugins.tradelog.schemas.common import MoneyOut, IsoDate
from plugins.tradelog.schemas.positions import Leg, Position, MarkOut
from plugins.tradelog.schemas.fills import Fill, Settlement
from plugins.tradelog.schemas.orders import Order
from plugins.tradelog.schemas.journal import JournalEntry


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
