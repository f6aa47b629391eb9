"""The mlloop plugin's whole surface (hookimpls only): the ML feedback loop's tables, its API
(/api/ml and the admin API /api/admin/ml), topics, consumers and ``tradeloop ml`` commands.

Start-up imports stay light: the service layer and the ML core (pandas, scipy, CatBoost)
load on first use, not when the app or the CLI starts."""
from __future__ import annotations

from app.hookspecs import hookimpl
from app.plugins import migrations_branch
from plugins.mlloop import admin_views, cli, events, handlers, immutable, tables, views


@hookimpl
def register_blueprints(app):
    return [views.blp, admin_views.blp]


@hookimpl
def register_tables():
    return list(tables.metadata.tables.values()) + list(tables.registry_metadata.tables.values())


@hookimpl
def register_migrations():
    return migrations_branch(__name__)


@hookimpl
def register_topics():
    return events.TOPICS


@hookimpl
def register_subscriptions():
    return handlers.SUBSCRIPTIONS


@hookimpl
def register_commands():
    return [cli.ml]


@hookimpl
def app_ready(app):
    immutable.install(app.extensions["tradeloop"].db.engine)


@hookimpl
def load_demo_data(conn, user_id):
    from plugins.mlloop import demo  # schedules a background process: settled ML history
    demo.load(conn, user_id)
