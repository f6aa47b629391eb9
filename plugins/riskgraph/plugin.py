"""riskgraph's whole surface: the hooks it implements."""
from __future__ import annotations

from app.hookspecs import SSEStream, hookimpl
from app.plugins import migrations_branch
from plugins.riskgraph import demo, handlers, schemas, tables, views


@hookimpl
def register_blueprints(app):
    return [views.blp]


@hookimpl
def register_tables():
    return tables.metadata


@hookimpl
def register_migrations():
    return migrations_branch(__name__)


@hookimpl
def register_topics():
    return [schemas.TOPIC]


@hookimpl
def register_subscriptions():
    return dict(handlers.SUBSCRIPTIONS)


@hookimpl
def register_sse_streams():
    return [SSEStream("/sse/risk-graph", schemas.TOPIC.name,
                      "Your risk graph: StrategyAdded, StrategyUpdated, StrategyRemoved, RiskArtifactComputed.")]


@hookimpl
def load_demo_data(conn, user_id):
    demo.load(conn, user_id)
