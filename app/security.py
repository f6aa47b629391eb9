"""The request guard: what every request passes after routing and authentication and before
the Idempotency-Key check and the view (so before any body validation).

Order of answers, for every route of every plugin (docs/security.md):

1. routing: 404, 405 with ``Allow`` (``app.routing``);
2. authentication: 401 (``app.auth``);
3. authorization: 403 ``admin_only`` for routes marked ``admin_only`` (before the body is
   validated, so a non-admin learns nothing about an admin route's fields);
4. CSRF (browser sessions only): 403 ``cross_origin``, 415 ``unsupported_media_type``
   (``app.csrf``);
5. rate limits: 429 with ``Retry-After`` (``app.ratelimit``);
6. Idempotency-Key (replay / 422 / 409), then the view: 422 naming the field, 404, 409, 428.
"""
from __future__ import annotations

from flask import current_app, g, request

from app import errors


def _view_marked(attr: str) -> bool:
    """Whether the matched view (function, MethodView method, or its blueprint) carries
    ``attr``."""
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


def before_request(ext) -> None:
    """Called by the host once ``g.user`` is known (None on public routes)."""
    user = getattr(g, "user", None)
    if user is not None and not user.is_admin and _view_marked("_tl_admin_only"):
        raise errors.Forbidden("admin only", code="admin_only")
    for check in ext.app.extensions.get("tl_guards", ()):
        check(ext)


def add_guard(app, check) -> None:
    """Register ``check(ext)`` to run for every request in the guard (in order of
    registration): CSRF, rate limits."""
    app.extensions.setdefault("tl_guards", []).append(check)
