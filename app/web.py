"""What a plugin's views use: the request's transaction and user, ``public``, and the
``Blueprint`` base whose decorators own what every view used to repeat.

    from app.web import Blueprint, conn, user

    blp = Blueprint("notes", __name__, url_prefix="/api/notes")

    @blp.route("/<note_id>")
    class OneNote(MethodView):
        @blp.arguments(NotePatch)
        @blp.response(200, Note)
        @blp.versioned(if_match=True)
        def patch(self, data, note_id, expected):
            return service.update_note(conn(), user().id, note_id, data, expected=expected)

``versioned`` and ``paginated`` go right above the view function (below ``response``), so they
see the object the view returns, before it is serialised.
"""
from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flask_smorest
from flask import Response, current_app, g
from flask_smorest.utils import unpack_tuple_response
from webargs.flaskparser import FlaskParser

from app import concurrency, errors

IF_MATCH_PARAM = {
    "in": "header", "name": "If-Match", "required": True,
    "schema": {"type": "string", "pattern": '^(W/)?"?[0-9]{1,12}"?$'},
    "description": 'The version you last read: "7" (RFC form) or 7. Missing: 428; stale: 409 '
                   "with the current version and representation.",
}


# -- the request ------------------------------------------------------------------------
def ext():
    """The host's per-app object (``app.extensions["tradeloop"]``): database, cache, bus,
    plugins and the SSE hub."""
    return current_app.extensions["tradeloop"]


def conn():
    """The request's database connection: one transaction per request, committed by the host
    when the response is a success and rolled back otherwise."""
    return ext().request_conn()


def user():
    """The signed-in user (``app.auth.User``); 401 when there is none."""
    signed_in = g.get("user")
    if signed_in is None:
        raise errors.Unauthorized()
    return signed_in


def public(view):
    """Mark a view as reachable without signing in (and document it with ``security: []``)."""
    view = flask_smorest.Blueprint.doc(security=[])(view)
    view._public = True
    return view


# -- the Blueprint base -------------------------------------------------------------------
MAX_PAGE = 1_000_000  # a page number any database can offset by
class Paged(NamedTuple):
    """What a ``paginated`` view returns when it pages in SQL: one page of items and how many
    items match in all."""
    items: Sequence
    total: int


def etag_of(obj: Any) -> str | None:
    """``"<version>"`` for an object (mapping or attribute) with an integer ``version``."""
    version = obj.get("version") if isinstance(obj, Mapping) else getattr(obj, "version", None)
    if isinstance(version, int) and not isinstance(version, bool):
        return f'"{version}"'
    return None


def _add_header(result, name: str, value: str):
    body, status, headers = unpack_tuple_response(result)
    headers = dict(headers or {})
    headers.setdefault(name, value)
    return body, status, headers


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, plus: a body that is JSON but that Python cannot hold — nested
    deeper than the interpreter's recursion limit (RecursionError), or an integer of more than
    4,300 digits (CPython's int-from-string limit, ValueError) — is malformed JSON (400
    ``malformed_json``), like any other unparseable body, instead of a 500."""

    def _raw_load_json(self, req):
        try:
            return super()._raw_load_json(req)
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError) as exc:
            raise json.JSONDecodeError(f"cannot be decoded: {type(exc).__name__}", doc="<body>", pos=0) from exc


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint plus the host's two conventions:

    * ``versioned``: the response's ``ETag: "<version>"`` comes from the object the view
      returns; with ``if_match=True`` the request must carry ``If-Match`` (428 when missing,
      400 when not a version) and the view receives ``expected=<int>``.
    * ``paginated``: a list endpoint's one shape (see docs/plugins.md, "Lists").
    """

    ARGUMENTS_PARSER = JsonBodyParser()

    #: The pagination defaults of every list endpoint (``?page=1&page_size=50``, at most 500).
    DEFAULT_PAGINATION_PARAMETERS = {"page": 1, "page_size": 50, "max_page_size": 500}

    def versioned(self, fn=None, *, if_match: bool = False):
        def decorator(func):
            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                if if_match:
                    kwargs["expected"] = concurrency.if_match_version()
                result = func(*args, **kwargs)
                body, _status, _headers = unpack_tuple_response(result)
                if isinstance(body, Response):
                    return result
                tag = etag_of(body)
                return _add_header(result, "ETag", tag) if tag else result
            wrapper._tl_versioned = True
            wrapper._tl_if_match = if_match
            if if_match:
                wrapper = self.doc(parameters=[dict(IF_MATCH_PARAM)])(wrapper)
            return wrapper
        return decorator(fn) if fn is not None else decorator

    def paginated(self, fn=None, *, page_size: int | None = None, max_page_size: int | None = None):
        """``?page=`` and ``?page_size=`` (documented), the items of that page as the body and the
        pagination metadata (``total``, ``total_pages``, ``page``, ...) in the ``X-Pagination``
        header. The view either returns the whole list (the page is cut here) or pages in SQL:
        it then takes a ``pagination`` argument (``.page``, ``.page_size``, ``.first_item``)
        and returns ``Paged(items, total)``."""
        def decorator(func):
            wants = "pagination" in inspect.signature(func).parameters

            @functools.wraps(func)
            def wrapper(*args, pagination_parameters, **kwargs):
                if pagination_parameters.page > MAX_PAGE:
                    raise errors.field_error("page", f"must be at most {MAX_PAGE}", location="query")
                if wants:
                    kwargs["pagination"] = pagination_parameters
                body, status, headers = unpack_tuple_response(func(*args, **kwargs))
                if isinstance(body, Paged):
                    pagination_parameters.item_count = int(body.total)
                    body = list(body.items)
                else:
                    body = list(body)
                    pagination_parameters.item_count = len(body)
                    first = pagination_parameters.first_item
                    body = body[first:first + pagination_parameters.page_size]
                return body, status, headers
            return self.paginate(page_size=page_size, max_page_size=max_page_size)(wrapper)
        return decorator(fn) if fn is not None else decorator
