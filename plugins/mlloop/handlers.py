"""mlloop consumers (group ``mlloop``), all in batches:

* ``mlloop.decisions:DecisionRecorded`` -> ``ml_decisions`` rows (executemany);
* ``mlloop.features:FeatureSnapshotTaken`` -> ``ml_feature_snapshots`` rows;
* ``mlloop.pnl:PnlRecorded`` -> the ``daily_performance`` of the days the events touch (traded
  ideas) and, on settlements, the outcome labels of the settled ideas' cohorts.

Each batch runs in one transaction with the host's ``(group, event_id)`` records; the unique
decision / snapshot ids make a redelivery a no-op even past that dedupe.
"""
from __future__ import annotations

from bus.consumer import batch
from bus.envelope import parse_time
from plugins.mlloop import service
from plugins.mlloop.domain.calendar import session_date


@batch
def on_decisions(conn, events):
    service.decisions.write_decisions(conn, events)


@batch
def on_features(conn, events):
    service.decisions.write_feature_snapshots(conn, events)


@batch
def on_pnl(conn, events):
    days, settled = set(), set()
    for ev in events:
        p = ev.payload
        if p.get("trade_id"):
            days.add((ev.user_id, session_date(parse_time(p["event_time"]))))
        if p.get("event_type") == "settlement":
            settled.add((ev.user_id, ev.aggregate_id))
    service.outcomes.label_ideas(conn, settled)
    service.outcomes.recompute_days(conn, days)


SUBSCRIPTIONS = {
    "mlloop.decisions:DecisionRecorded": on_decisions,
    "mlloop.features:FeatureSnapshotTaken": on_features,
    "mlloop.pnl:PnlRecorded": on_pnl,
}
