"""The browser console: static pages served by the app (no build step), using only the
public API and SSE streams."""
from __future__ import annotations

import os

from flask import redirect, send_from_directory

CONSOLE_DIR = os.path.join(os.path.dirname(__file__), "static", "console")


def register(app) -> None:
    def index():
        return send_from_directory(CONSOLE_DIR, "index.html", max_age=0)
    index._public = True

    def root():
        return redirect("/console")
    root._public = True

    def favicon():
        # browsers ask for /favicon.ico on every page (Swagger UI's too)
        return send_from_directory(CONSOLE_DIR, "favicon.svg", mimetype="image/svg+xml", max_age=86400)
    favicon._public = True

    app.add_url_rule("/console", endpoint="tl_public_console", view_func=index)
    app.add_url_rule("/favicon.ico", endpoint="tl_public_favicon", view_func=favicon)
    app.add_url_rule("/", endpoint="tl_public_root", view_func=root)
