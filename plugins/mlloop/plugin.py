"""The mlloop plugin's whole surface (hookimpls only): the ML feedback loop's tables, its API
(/api/ml and the admin API /api/admin/ml), topics, consumers and ``tradeloop ml`` commands.

Start-up imports stay light: the service layer and the ML core (pandas, scipy, CatBoost)
load on first use, not when the app or the CLI starts."""
from __future__ import annotations

import os

from app.hookspecs import Topic, hookimpl
from plugins.mlloop import admin_views, cli, events, handlers, immutable, tables, views
from plugins.mlloop.service.common import DECISIONS, FEATURES, PNL


@hookimpl
def register_blueprints(app):
    return [views.blp, admin_views.blp]


@hookimpl
def register_tables():
    return list(tables.metadata.tables.values()) + list(tables.registry_metadata.tables.values())


@hookimpl
def register_migrations():
    return ("mlloop", os.path.join(os.path.dirname(__file__), "migrations"))


@hookimpl
def register_topics():
    return [
        Topic(DECISIONS, "Immutable scoring decisions (scores, versions, model, arm, features), one per idea.",
              {"DecisionRecorded": events.DecisionRecorded}),
        Topic(FEATURES, "The feature snapshot of every decision, with its versions.",
              {"FeatureSnapshotTaken": events.FeatureSnapshotTaken}),
        Topic(PNL, "The P&L ledger: marks, fills, adjustments and settlements of tracked ideas.",
              {"PnlRecorded": events.PnlRecorded}),
        Topic(tables.MODELS_TOPIC, "Model registry, drift and experiment events (system-wide, admin).",
              events.MODEL_EVENTS, key="aggregate_id"),
    ]


@hookimpl
def register_subscriptions():
    return handlers.SUBSCRIPTIONS


@hookimpl
def register_commands():
    return [cli.ml]


@hookimpl
def app_ready(app):
    immutable.install(app.extensions["tradeloop"].db.engine)
