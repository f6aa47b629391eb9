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

from flask import g

from app import errors
from app.routing import view_marked as _view_marked


def before_request(ext) -> None:
    """Called by the host once ``g.user`` is known (None on public routes)."""
    user = getattr(g, "user", None)
    if user is not None and not user.is_admin and _view_marked("_tl_admin_only"):
        raise errors.Forbidden("admin only", code="admin_only")
    for check in ext.app.extensions.get("tl_guards", ()):
        check(ext)


def init_app(app, ext) -> None:
    """Wire sessions, CSRF and rate limits into the app (one call from ``create_app``)."""
    from app import csrf, ratelimit
    hops = int(app.config.get("TRUSTED_PROXY_HOPS") or 0)
    if hops > 0:  # the client's address, scheme and host as the proxy saw them
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    ratelimit.init_app(app, ext)
    add_guard(app, csrf.guard)
    add_guard(app, ratelimit.guard)

    @app.after_request
    def _forget_dead_session_cookie(response):
        if g.get("tl_clear_session_cookie") and "Set-Cookie" not in response.headers:
            from app.auth import clear_session_cookie
            clear_session_cookie(response)
        return response


def add_guard(app, check) -> None:
    """Register ``check(ext)`` to run for every request in the guard (in order of
    registration): CSRF, rate limits."""
    app.extensions.setdefault("tl_guards", []).append(check)
