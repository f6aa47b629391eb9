"""The breakers plugin's whole surface (hookimpls only)."""
from __future__ import annotations

import os

from app.hookspecs import SSEStream, Topic, Veto, hookimpl
from plugins.breakers import cli, handlers, schemas, service, tables, views


@hookimpl
def register_blueprints(app):
    return [views.blp]


@hookimpl
def register_tables():
    return tables.metadata


@hookimpl
def register_migrations():
    return ("breakers", os.path.join(os.path.dirname(__file__), "migrations"))


@hookimpl
def register_topics():
    return [Topic(service.TOPIC, "Breaker trips and clears, trading-state transitions and kill switches.",
                  schemas.EVENTS, key="aggregate_id")]


@hookimpl
def register_subscriptions():
    return handlers.SUBSCRIPTIONS


@hookimpl
def register_sse_streams():
    return [SSEStream("/sse/breakers", service.TOPIC, "Your breakers' trips, clears, trading state and kill switches.")]


@hookimpl
def register_commands():
    return [cli.group]


@hookimpl
def check_order_allowed(conn, user_id, order):
    return [Veto(source, message, detail) for source, message, detail in
            service.check_order_allowed(conn, user_id, order)]


@hookimpl
def scoring_mode(conn, user_id):
    return service.scoring_mode(conn, user_id)
