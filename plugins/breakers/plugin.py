"""The breakers plugin's whole surface (hookimpls only)."""
from __future__ import annotations

from app.hookspecs import SSEStream, Veto, hookimpl
from app.plugins import migrations_branch
from plugins.breakers import cli, handlers, schemas, service, tables, views


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
    return handlers.SUBSCRIPTIONS


@hookimpl
def register_sse_streams():
    return [SSEStream("/sse/breakers", schemas.TOPIC.name, "Your breakers' trips, clears, trading state and kill switches.")]


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
