"""The mlloop plugin's whole surface (hookimpls only). Part 1 owns the data foundation
(tables, scoring, ledger, labels, daily performance); part 2's registry, admin API and admin
commands are joined in here."""
from __future__ import annotations

import os

from app.hookspecs import Topic, hookimpl
from plugins.mlloop import admin_views, cli, handlers, immutable, registry, schemas, tables, views
from plugins.mlloop.service import DECISIONS, FEATURES, PNL


@hookimpl
def register_blueprints(app):
    return [views.blp, admin_views.blp]


@hookimpl
def register_tables():
    return list(tables.metadata.tables.values()) + list(registry.metadata.tables.values())


@hookimpl
def register_migrations():
    return ("mlloop", os.path.join(os.path.dirname(__file__), "migrations"))


@hookimpl
def register_topics():
    topics = [
        Topic(DECISIONS, "Immutable scoring decisions (scores, versions, model, arm, features), one per idea.",
              {"DecisionRecorded": schemas.DecisionRecorded}),
        Topic(FEATURES, "The feature snapshot of every decision, with its versions.",
              {"FeatureSnapshotTaken": schemas.FeatureSnapshotTaken}),
        Topic(PNL, "The P&L ledger: marks, fills, adjustments and settlements of tracked ideas.",
              {"PnlRecorded": schemas.PnlRecorded}),
    ]
    if getattr(registry, "TOPIC", None) is not None:
        topics.append(registry.TOPIC)
    return topics


@hookimpl
def register_subscriptions():
    return handlers.SUBSCRIPTIONS


@hookimpl
def register_commands():
    return [cli.ml]


@hookimpl
def app_ready(app):
    immutable.install(app.extensions["tradeloop"].db.engine)
