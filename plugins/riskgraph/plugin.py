"""riskgraph's whole surface: the hooks it implements."""
from __future__ import annotations

import os

from app.hookspecs import SSEStream, Topic, hookimpl
from plugins.riskgraph import demo, handlers, schemas, tables, views


@hookimpl
def register_blueprints(app):
    return [views.blp]


@hookimpl
def register_tables():
    return tables.metadata


@hookimpl
def register_migrations():
    return ("riskgraph", os.path.join(os.path.dirname(__file__), "migrations"))


@hookimpl
def register_topics():
    return [Topic("riskgraph.events", "Risk graph: strategy changes and computed risk artifacts.", {
        "StrategyAdded": schemas.StrategyEvent,
        "StrategyUpdated": schemas.StrategyEvent,
        "StrategyRemoved": schemas.StrategyEvent,
        "RiskArtifactComputed": schemas.RiskArtifactComputed,
    })]


@hookimpl
def register_subscriptions():
    return dict(handlers.SUBSCRIPTIONS)


@hookimpl
def register_sse_streams():
    return [SSEStream("/sse/risk-graph", "riskgraph.events",
                      "Your risk graph: StrategyAdded, StrategyUpdated, StrategyRemoved, RiskArtifactComputed.")]


@hookimpl
def load_demo_data(conn, user_id):
    demo.load(conn, user_id)
