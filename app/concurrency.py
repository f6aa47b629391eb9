"""Optimistic concurrency: If-Match / ETag and the version check inside the UPDATE.

Aggregates carry ``version``; responses carry ``ETag: "<version>"`` (set by the host for any
JSON body with an integer ``version``). Changes need ``If-Match``: missing -> 428; stale -> 409
with the current version and representation in the body (the seed's choice; RFC 9110 would
say 412). ``If-Match: "7"`` (RFC form), ``W/"7"`` and the seed client's bare ``7`` are accepted.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import sqlalchemy as sa

from app import errors

_IF_MATCH = re.compile(r'^\s*(?:W/)?"?(\d{1,12})"?\s*$')


def parse_if_match(value: str | None) -> int:
    if value is None or not value.strip():
        raise errors.PreconditionRequired(
            "send If-Match with the version you last read (e.g. If-Match: \"3\")",
            errors={"headers": {"If-Match": ["required"]}})
    m = _IF_MATCH.match(value)
    if not m:
        raise errors.BadRequest("If-Match must be a version number, e.g. \"3\"",
                                errors={"headers": {"If-Match": ["not a version number"]}})
    return int(m.group(1))


def if_match_version() -> int:
    """The version the client expects, from the current request's If-Match header."""
    from flask import request
    return parse_if_match(request.headers.get("If-Match"))


def versioned_update(conn, table: sa.Table, *, id_value, user_id: int, expected: int, values: dict,
                     current: Callable[[], dict | None], id_column: str = "id") -> int:
    """``UPDATE ... SET ..., version = version + 1 WHERE id AND user_id AND version = expected``.

    Zero rows means look again: the row is gone or someone else's (404), or it moved on (409
    carrying ``current()``). Returns the new version."""
    result = conn.execute(
        table.update()
        .where(table.c[id_column] == id_value, table.c.user_id == user_id, table.c.version == expected)
        .values(**values, version=table.c.version + 1)
    )
    if result.rowcount == 1:
        return expected + 1
    now = current()
    if now is None:
        raise errors.NotFound(f"{table.name} {id_value} not found")
    raise errors.VersionConflict(
        f"version {expected} is stale; current version is {now.get('version')}",
        current=now, current_version=now.get("version"))
