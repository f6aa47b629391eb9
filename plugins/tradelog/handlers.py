"""Bus subscriptions of the TradeLog context.

Pattern B of the seed: when RiskGraph announces an artifact computed for one of our
positions, keep the reference (never the risk math). Positions of other users, or that no
longer exist, are ignored.
"""
from __future__ import annotations

from app import errors
from bus.envelope import parse_time
from plugins.tradelog import service


def on_risk_artifact_computed(conn, event) -> None:
    p = event.payload
    if not p.get("position_id") or not p.get("artifact_id") or event.user_id is None:
        return
    try:
        service.link_risk_artifact(conn, event.user_id, p["position_id"],
                                   {"artifact_id": str(p["artifact_id"]),
                                    "computed_at": parse_time(p.get("computed_at")) or event.recorded_at,
                                    "source_version": p.get("source_version")
                                    if isinstance(p.get("source_version"), int) else None})
    except errors.NotFound:
        pass


SUBSCRIPTIONS = {"riskgraph.RiskArtifactComputed": on_risk_artifact_computed}
