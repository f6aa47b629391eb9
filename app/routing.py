"""Routing is decided before anything else looks at a request.

The host answers 404 and 405 (with ``Allow``, RFC 9110 §15.5.6) before authentication,
CSRF, rate limits or Idempotency-Key handling run, so a used key on a route that does not
exist is a 405, not a 422.

Literal sub-paths win over ``{id}`` routes for *every* method: werkzeug prefers a literal rule
for the methods that rule serves, but for other methods it falls through to a variable rule
(``DELETE /api/risk-graph/strategies/export`` reached the ``/strategies/<id>`` view, and
``OPTIONS`` advertised that view's methods). A path that a literal rule serves is answered
with that rule's methods only: 405 with its ``Allow`` for any other method.
"""
from __future__ import annotations

from flask import Flask, abort, current_app, request
from werkzeug.exceptions import MethodNotAllowed


def _literal_methods(app: Flask) -> dict[str, set[str]]:
    """path -> methods, for every rule without variables (computed once per app)."""
    table = app.extensions.get("tl_literal_rules")
    if table is None or table[0] != len(app.url_map._rules):
        literal: dict[str, set[str]] = {}
        for rule in app.url_map.iter_rules():
            if not rule.arguments:
                literal.setdefault(rule.rule, set()).update(rule.methods or ())
        table = (len(app.url_map._rules), literal)
        app.extensions["tl_literal_rules"] = table
    return table[1]


def check_route() -> None:
    """Raise the router's 404/405 now; a variable rule matching a literal rule's path for a
    method the literal does not serve is a 405 listing the literal's methods. OPTIONS on such
    a path answers with the literal's methods too (werkzeug would merge both rules')."""
    if request.routing_exception is not None:
        raise request.routing_exception
    rule = request.url_rule
    if rule is None or (not rule.arguments and request.method != "OPTIONS"):
        return
    methods = _literal_methods(current_app._get_current_object()).get(request.path)
    if methods is None:
        return
    allowed = sorted(methods | {"OPTIONS"})
    if request.method == "OPTIONS":
        resp = current_app.response_class(status=200)
        resp.headers["Allow"] = ", ".join(allowed)
        abort(resp)
    raise MethodNotAllowed(valid_methods=allowed)


def view_marked(attr: str) -> bool:
    """Whether the matched view (function, MethodView method, or its blueprint) carries
    ``attr`` (the marks ``app.auth.admin_only`` and the CSRF sign-in mark set)."""
    endpoint = request.endpoint
    if endpoint is None:
        return False
    view = current_app.view_functions.get(endpoint)
    if getattr(view, attr, False):
        return True
    cls = getattr(view, "view_class", None)
    if cls is not None and getattr(getattr(cls, request.method.lower(), None), attr, False):
        return True
    if request.blueprint:
        bp = current_app.blueprints.get(request.blueprint)
        if getattr(bp, attr, False):
            return True
    return False
