"""Cross-site request forgery defence for cookie-authenticated writes (OWASP CSRF Prevention
Cheat Sheet: "verifying origin with standard headers" and Fetch Metadata, plus JSON-only
bodies).

Applies to unsafe methods (POST, PUT, PATCH, DELETE) authenticated by the browser session
cookie, and to sign-in and sign-out (login CSRF). Bearer-token requests carry no ambient
credential and are not affected.

1. Same origin only (403 ``cross_origin``): the request is accepted when its ``Origin`` is
   the app's own origin (scheme://host[:port] as the request arrived, after
   ``TRUSTED_PROXY_HOPS``) or one of ``CSRF_TRUSTED_ORIGINS``, or when the browser says
   ``Sec-Fetch-Site: same-origin``. Another port or subdomain of the same host is another
   origin (``same-site`` is refused: SameSite=Lax cookies still ride along there). A cookie
   request with neither header is refused: every browser sends ``Origin`` on a POST.
2. JSON bodies only (415 ``unsupported_media_type``): a body must be ``application/json``.
   HTML forms can only send urlencoded, multipart or text/plain bodies, and a cross-origin
   ``fetch`` with JSON needs a CORS preflight that this app never grants.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request

from app import errors

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsupportedMediaType(errors.DomainError):
    """The request body must be application/json."""
    status = 415
    code = "unsupported_media_type"


def _normal(origin: str) -> str | None:
    try:
        parts = urlsplit(origin.strip())
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            return None
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return None
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}"


def allowed_origins() -> set[str]:
    own = _normal(f"{request.scheme}://{request.host}")
    extra = current_app.config.get("CSRF_TRUSTED_ORIGINS") or ""
    if isinstance(extra, str):
        extra = extra.split(",")
    return {o for o in [own, *(_normal(e) for e in extra if e.strip())] if o}


def check_origin(*, require: bool) -> None:
    origin = request.headers.get("Origin")
    site = (request.headers.get("Sec-Fetch-Site") or "").strip().lower()
    if origin and origin != "null" and _normal(origin) in allowed_origins():
        return
    if site == "same-origin" or (site == "none" and not origin):
        return
    if origin or site:
        raise errors.Forbidden(
            f"cross-origin request refused (Origin: {origin or '-'}, Sec-Fetch-Site: {site or '-'}); a browser "
            "session may only write from this app's own pages", code="cross_origin")
    if require:
        raise errors.Forbidden("a write with a session cookie must carry an Origin header (browsers send it); "
                               "scripts should use Authorization: Bearer <token>", code="cross_origin")


def check_json_body() -> None:
    has_body = bool(request.content_length) or "chunked" in (request.headers.get("Transfer-Encoding") or "").lower()
    if request.headers.get("Content-Type") is None and not has_body:
        return
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"the body must be application/json (got {request.mimetype or 'no Content-Type'})",
            errors={"headers": {"Content-Type": ["must be application/json"]}})


def guard(ext) -> None:
    """The request guard's CSRF step."""
    if request.method not in UNSAFE:
        return
    from app.auth import via_session
    from app.routing import view_marked
    cookie = via_session()
    if not cookie and not view_marked("_tl_csrf_login"):
        return
    check_origin(require=cookie)
    check_json_body()
