"""Pattern B: recompute risk artifacts from the trade log's events (no HTTP, no import of
the trade log). riskgraph keeps its own copy of each position (``rg_position_books``) from
PositionCreated / PositionAdjusted (which carry the full position) and FillRecorded (which
carries one fill), recomputes with the user's market inputs for the symbol and emits
RiskArtifactComputed. A redelivered event is skipped by the host (consumer dedupe)."""
from __future__ import annotations

from plugins.riskgraph import service


def on_position_changed(conn, event):
    """PositionCreated / PositionAdjusted: {position: <full representation>, ...}."""
    position = (event.payload or {}).get("position")
    if not isinstance(position, dict) or event.user_id is None:
        return
    book = service.apply_position(conn, event.user_id, position, event.aggregate_version)
    if book is not None:
        service.recompute_book(conn, event.user_id, book)


def on_fill_recorded(conn, event):
    """FillRecorded: {position_id, fill: {id, leg_id, price, quantity, ...}, slippage}."""
    payload = event.payload or {}
    fill = payload.get("fill")
    if not isinstance(fill, dict) or event.user_id is None:
        return
    book = service.apply_fill(conn, event.user_id, str(payload.get("position_id") or event.aggregate_id), fill,
                              event.aggregate_version)
    if book is not None:
        service.recompute_book(conn, event.user_id, book)


def on_position_closed(conn, event):
    """PositionClosed: the copy is marked closed; nothing more is computed for it."""
    payload = event.payload or {}
    pid = str(payload.get("position_id") or event.aggregate_id)
    service.close_book(conn, event.user_id, pid, event.aggregate_version)


SUBSCRIPTIONS = {
    "tradelog.PositionCreated": on_position_changed,
    "tradelog.PositionAdjusted": on_position_changed,
    "tradelog.FillRecorded": on_fill_recorded,
    "tradelog.PositionClosed": on_position_closed,
}
