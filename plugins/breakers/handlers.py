"""Bus inputs of the breakers context. Each handler runs in the consumer's transaction
together with the host's ``(consumer_group, event_id)`` dedupe row, so a redelivered event is
skipped; the P&L ledger and the slippage log are also keyed by their source (event id / order
id), so even a handler called twice with the same event changes nothing.

``FillRecorded`` is not subscribed: a fill from an order carries the same slippage as that
order's ``OrderFilled``, so counting both would count one execution twice.
"""
from __future__ import annotations

from decimal import Decimal

from bus.envelope import parse_time
from plugins.breakers import service


def _dec(v) -> Decimal | None:
    return None if v is None else Decimal(str(v))


def on_position_closed(conn, event) -> None:
    """tradelog.PositionClosed {position_id, realized_pnl (net of fees), fees, closed_at}."""
    p = event.payload
    if event.user_id is None or p.get("realized_pnl") is None:
        return
    service.record_realized_pnl(conn, event.user_id, f"event:{event.event_id}", _dec(p["realized_pnl"]),
                                parse_time(p.get("closed_at")) or event.occurred_at)


def on_order_filled(conn, event) -> None:
    """tradelog.OrderFilled {order_id, ..., slippage, filled_at}: one slippage sample."""
    p = event.payload
    if event.user_id is None or p.get("slippage") is None or not p.get("order_id"):
        return
    service.record_slippage(conn, event.user_id, str(p["order_id"]), _dec(p["slippage"]),
                            parse_time(p.get("filled_at")) or event.occurred_at)


def on_pnl_recorded(conn, event) -> None:
    """mlloop.pnl PnlRecorded {pnl_delta, fees, event_time, ...}: the ML ledger's P&L, net of
    fees, into the separate "ml" book."""
    p = event.payload
    if event.user_id is None or p.get("pnl_delta") is None:
        return
    pnl = _dec(p["pnl_delta"]) - (_dec(p.get("fees")) or Decimal(0))
    service.record_ml_pnl(conn, event.user_id, f"event:{event.event_id}", pnl,
                          parse_time(p.get("event_time")) or event.occurred_at)


SUBSCRIPTIONS = {
    "tradelog.PositionClosed": on_position_closed,
    "tradelog.OrderFilled": on_order_filled,
    "mlloop.pnl:PnlRecorded": on_pnl_recorded,
}
