"""A plugin that claims what ``notes`` already owns, to prove the host refuses to start.
Which claim it makes is chosen by the CLASH_WHAT environment variable."""
import os

import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import Blueprint

from app.hookspecs import SSEStream, Topic, hookimpl

PLUGIN_NAME = "clash"
WHAT = lambda: os.environ.get("CLASH_WHAT", "route")  # noqa: E731

blp = Blueprint("clash", __name__, url_prefix="/api/notes")


@blp.route("/echo")
class Echo(MethodView):
    def post(self):
        return {"clash": True}


@hookimpl
def register_blueprints(app):
    return [blp] if WHAT() == "route" else []


@hookimpl
def register_tables():
    md = sa.MetaData()
    if WHAT() == "table":
        sa.Table("test_notes", md, sa.Column("id", sa.Integer, primary_key=True))
    return md


@hookimpl
def register_topics():
    return [Topic("notes.events", "mine", {})] if WHAT() == "topic" else []


@hookimpl
def register_sse_streams():
    return [SSEStream("/sse/notes", "clash.events")] if WHAT() == "sse" else []
