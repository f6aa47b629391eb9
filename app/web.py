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

import copy
import functools
import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flask_smorest
from flask import Response, current_app, g, request
from flask_smorest.utils import unpack_tuple_response
from webargs.flaskparser import FlaskParser

from app import concurrency, errors

QUERY_TABLE = "tl_query_parameters"

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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.append(self._prepare_tl_parameters_doc)

    @staticmethod
    def _prepare_tl_parameters_doc(doc, doc_info, **_kwargs):
        """Add the host's header parameters (``If-Match``) beside those of the view's
        arguments (a query schema's fields stay documented)."""
        extra = doc_info.get("tl_parameters")
        if extra:
            doc.setdefault("parameters", []).extend(dict(p) for p in extra)
        etag = doc_info.get("tl_etag")
        if etag:
            for status, response in doc.get("responses", {}).items():
                if str(status).startswith("2") and isinstance(response, dict):
                    response.setdefault("headers", {})["ETag"] = {
                        "description": f'`"<version>"`: {etag} (send it as `If-Match` to change it)',
                        "schema": {"type": "string"}}
        return doc

    #: The pagination defaults of every list endpoint (``?page=1&page_size=50``, at most 500).
    DEFAULT_PAGINATION_PARAMETERS = {"page": 1, "page_size": 50, "max_page_size": 500}

    def versioned(self, fn=None, *, if_match: bool = False, etag_from: str | None = None):
        """The response's ``ETag: "<version>"`` (documented on the success responses) from the
        returned object's ``version``, or with ``etag_from="position"`` from that member's (a
        write answering ``{fill, position}`` tags the aggregate it changed); ``if_match``: see
        the class docstring."""
        def decorator(func):
            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                if if_match:
                    kwargs["expected"] = concurrency.if_match_version()
                result = func(*args, **kwargs)
                body, _status, _headers = unpack_tuple_response(result)
                if isinstance(body, Response):
                    return result
                if etag_from is not None:
                    body = body.get(etag_from) if isinstance(body, Mapping) else getattr(body, etag_from, None)
                tag = etag_of(body) if body is not None else None
                return _add_header(result, "ETag", tag) if tag else result
            wrapper._tl_versioned = True
            wrapper._tl_if_match = if_match
            wrapper._tl_etag_from = etag_from
            # (not ``doc(parameters=...)``: manual parameters replace the query schema's)
            wrapper._apidoc = copy.deepcopy(getattr(wrapper, "_apidoc", {}))
            if if_match:
                wrapper._apidoc.setdefault("tl_parameters", []).append(dict(IF_MATCH_PARAM))
            wrapper._apidoc["tl_etag"] = (f"the `version` of the returned `{etag_from}`" if etag_from
                                          else "the returned object's `version`")
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


# -- query parameters: what the document names, nothing else ---------------------------
def install_query_check(app) -> None:
    """Every documented operation answers 422 ``validation_error`` for a query parameter its
    OpenAPI operation does not name (``errors: {"query": {"<name>": ["Unknown field."]}}``,
    the shape webargs gives an unknown body field), instead of ignoring it: a typo such as
    ``?model=`` for ``?model_id=`` must not silently widen a query.

    One check for the whole host, registered after the other ``before_request`` hooks, so a
    route that does not exist is still 404/405 and a missing sign-in still 401. What counts
    as named is read from the OpenAPI document itself (operation and path parameters with
    ``in: query``: a schema's fields, ``page``/``page_size`` of a paginated list, ``last_seq``
    of an SSE stream), so what is accepted is exactly what is documented. Routes outside the
    document (``/docs``, ``/openapi.json``, static files, the console) are not checked. The
    views' query schemas keep webargs' default (``EXCLUDE``), so a paginated list's two
    schemas do not reject each other's parameters."""
    api = app.extensions["tradeloop_api"]
    api.on_spec_built(lambda spec: app.extensions.pop(QUERY_TABLE, None))  # rebuilt on next use
    app.before_request(_reject_unknown_query)


def _query_table(app) -> dict[tuple[str, str], frozenset[str]]:
    """(flask rule, METHOD) -> the query parameter names its operation documents."""
    spec = app.extensions["tradeloop_api"].spec  # (documents pending blueprints, if any)
    table = app.extensions.get(QUERY_TABLE)
    if table is not None:
        return table
    from flask_smorest.spec.plugins import FlaskPlugin
    paths = spec._paths  # apispec keeps operations here until to_dict()
    table = {}
    for rule in app.url_map.iter_rules():
        ops = paths.get(FlaskPlugin.flaskpath2openapi(rule.rule))
        if not ops:
            continue
        shared = [p for p in ops.get("parameters") or () if isinstance(p, dict)]
        for method, op in ops.items():
            if method == "parameters" or not isinstance(op, dict):
                continue
            params = shared + [p for p in op.get("parameters") or () if isinstance(p, dict)]
            table[(rule.rule, method.upper())] = frozenset(p["name"] for p in params if p.get("in") == "query")
    app.extensions[QUERY_TABLE] = table
    return table


def _reject_unknown_query():
    if not request.args or request.url_rule is None or request.method == "OPTIONS":
        return None
    method = "GET" if request.method == "HEAD" else request.method
    named = _query_table(current_app._get_current_object()).get((request.url_rule.rule, method))
    if named is None:
        return None  # not an operation of the document
    unknown = sorted(set(request.args) - named)
    if unknown:
        raise errors.Unprocessable(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}"
            + (f" (this operation takes {', '.join(sorted(named))})" if named else " (this operation takes none)"),
            errors={"query": {name: ["Unknown field."] for name in unknown}})
    return None
