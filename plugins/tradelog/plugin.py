"""The tradelog plugin's hooks: its whole surface on one screen."""
from __future__ import annotations

from app.hookspecs import SSEStream, hookimpl
from app.plugins import migrations_branch
from plugins.tradelog import cli, demo, handlers, jobs, schemas, tables, views

PLUGIN_NAME = "tradelog"


@hookimpl
def register_blueprints(app):
    return views.BLUEPRINTS


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
    return [SSEStream("/sse/trade-log", schemas.TOPIC.name, "Your positions' and orders' events, live.")]


@hookimpl
def register_commands():
    return [cli.group, cli.import_cmd]


@hookimpl
def register_job_kinds():
    return jobs.KINDS


@hookimpl
def register_schedule():
    return jobs.SCHEDULE


@hookimpl
def load_demo_data(conn, user_id):
    demo.load(conn, user_id)
