"""The mlloop plugin's whole surface (hookimpls only). Part 1 owns the data foundation
(tables, scoring, ledger, labels, daily performance); part 2's registry, admin API and admin
commands are joined in here."""
from __future__ import annotations

from app.hookspecs import hookimpl
from app.plugins import migrations_branch
from plugins.mlloop import admin_views, cli, handlers, immutable, registry, schemas, tables, views


@hookimpl
def register_blueprints(app):
    return [views.blp, admin_views.blp]


@hookimpl
def register_tables():
    return list(tables.metadata.tables.values()) + list(registry.metadata.tables.values())


@hookimpl
def register_migrations():
    return migrations_branch(__name__)


@hookimpl
def register_topics():
    return [schemas.DECISIONS_TOPIC, schemas.FEATURES_TOPIC, schemas.PNL_TOPIC, registry.TOPIC]


@hookimpl
def register_subscriptions():
    return handlers.SUBSCRIPTIONS


@hookimpl
def register_commands():
    return [cli.ml]


@hookimpl
def app_ready(app):
    immutable.install(app.extensions["tradeloop"].db.engine)
