"""The tradelog plugin's hooks: its whole surface on one screen."""
from __future__ import annotations

import os

from app.hookspecs import SSEStream, Topic, hookimpl
from plugins.tradelog import cli, demo, handlers, schemas, tables, views

PLUGIN_NAME = "tradelog"


@hookimpl
def register_blueprints(app):
    return views.BLUEPRINTS


@hookimpl
def register_tables():
    return tables.metadata


@hookimpl
def register_migrations():
    return ("tradelog", os.path.join(os.path.dirname(__file__), "migrations"))


@hookimpl
def register_topics():
    return [Topic("tradelog.events", "TradeLog domain events: positions, fills, settlements, rolls, closes, "
                  "marks, orders, journal entries, risk-artifact references. Key: aggregate_id (position, "
                  "order, journal entry or settlement price).", schemas.EVENTS)]


@hookimpl
def register_subscriptions():
    return handlers.SUBSCRIPTIONS


@hookimpl
def register_sse_streams():
    return [SSEStream("/sse/trade-log", "tradelog.events", "Your positions' and orders' events, live.")]


@hookimpl
def register_commands():
    return [cli.group]


@hookimpl
def load_demo_data(conn, user_id):
    demo.load(conn, user_id)
