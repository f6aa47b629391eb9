"""Broker statement imports: a CSV of executions in, positions, fills and settlements out.

``formats`` turns a file into executions (the generic CSV, Interactive Brokers' Flex Query
trades, tastytrade's transaction history); ``engine`` applies them to the trade log. This
module is the use case the API, the CLI and (when a job runs it) the job system call:
``import_file(conn, user_id, content, options, progress)`` runs the import in the caller's
transaction, keeps a record with its report (``GET /api/imports/{id}``) and emits
``ExecutionsImported``.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from app import errors
from app.db import new_id, utcnow
from plugins.tradelog import markettime, service
from plugins.tradelog.imports.engine import ImportRejected, run_import
from plugins.tradelog.imports.formats import FORMATS
from plugins.tradelog.tables import imports

#: Without the job system an import runs inside the request: bounded in size.
MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 20_000

__all__ = ["FORMATS", "ImportRejected", "import_file", "get_import", "list_imports", "MAX_BYTES", "MAX_ROWS"]


def default_timezone() -> str:
    """The exchange's time zone (New York for the US markets' calendar)."""
    return str(markettime.exchange_tz("SPY"))


def _text(content: bytes) -> str:
    if len(content) > MAX_BYTES:
        raise errors.Unprocessable(f"file: larger than {MAX_BYTES // (1024 * 1024)} MB",
                                   errors={"files": {"file": [f"larger than {MAX_BYTES} bytes"]}})
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise errors.Unprocessable(f"file: not UTF-8 text (byte {exc.start})",
                                   errors={"files": {"file": [f"not UTF-8 text (byte {exc.start})"]}}) from None
    rows = text.count("\n")
    if rows > MAX_ROWS + 1:
        raise errors.Unprocessable(f"file: more than {MAX_ROWS:,} rows; split it",
                                   errors={"files": {"file": [f"more than {MAX_ROWS} rows"]}})
    return text


def check_timezone(name: str | None) -> str:
    name = name or default_timezone()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.field_error("timezone", f"{name!r} is not an IANA time zone (e.g. America/New_York)",
                                 location="form") from None
    return name


def import_file(conn, user_id: int, content: bytes, options: dict,
                progress: Callable[..., None] | None = None) -> dict:
    """Import ``content`` (a file's bytes) with ``options`` ``{format, timezone?, dry_run?,
    skip_bad_rows?, filename?}``. Returns the import record ``{id, format, filename, timezone,
    dry_run, skip_bad_rows, status, rows, sha256, created_at, finished_at, report}``. 422
    ``import_rejected`` naming each bad row's line and column (nothing written); a dry run
    writes nothing (``id`` null, status ``dry_run``) and answers the same report."""
    fmt = options["format"]
    if fmt not in FORMATS:
        raise errors.field_error("format", f"one of {', '.join(FORMATS)}", location="form")
    tz = check_timezone(options.get("timezone"))
    text = _text(content)
    started = utcnow()
    report = run_import(conn, user_id, text, fmt=fmt, timezone=tz, dry_run=bool(options.get("dry_run")),
                        skip_bad_rows=bool(options.get("skip_bad_rows")), progress=progress)
    dry_run = bool(options.get("dry_run"))
    record = dict(id=None if dry_run else new_id(), user_id=user_id, format=fmt,
                  filename=(options.get("filename") or None),
                  timezone=tz, dry_run=dry_run, skip_bad_rows=bool(options.get("skip_bad_rows")),
                  status="dry_run" if dry_run else "succeeded", rows=report["rows"], sha256=hashlib.sha256(content).hexdigest(),
                  report=service._jsonable(report), created_at=started, finished_at=utcnow())
    if record["filename"]:
        record["filename"] = record["filename"][:255]
    out = _out(record)
    if dry_run:  # nothing written: not even a record of it
        return out
    conn.execute(imports.insert().values(**record))
    service.TOPIC.emit(conn, "ExecutionsImported", aggregate_type="import", aggregate_id=record["id"],
                       aggregate_version=1, user_id=user_id, occurred_at=record["finished_at"],
                       payload={"import_id": record["id"], "format": fmt, "dry_run": record["dry_run"],
                                "rows": report["rows"], "positions_created": len(report["positions_created"]),
                                "fills_recorded": report["fills_recorded"], "duplicates": len(report["duplicates"]),
                                "rejected": len(report["rejected"])})
    return out


def _out(r) -> dict:
    m = r._mapping if hasattr(r, "_mapping") else r
    rep = m["report"]
    if isinstance(rep, str):
        import json
        rep = json.loads(rep)
    return {k: m[k] for k in ("id", "format", "filename", "timezone", "dry_run", "skip_bad_rows", "status", "rows",
                              "sha256", "created_at", "finished_at")} | {"report": rep}


def get_import(conn, user_id: int, import_id: str) -> dict:
    r = conn.execute(sa.select(imports).where(imports.c.id == import_id, imports.c.user_id == user_id)).first()
    if r is None:
        raise errors.NotFound(f"import {import_id} not found")
    return _out(r)


def list_imports(conn, user_id: int, *, page: int = 1, page_size: int = 50) -> tuple[list[dict], int]:
    """One page of your imports, newest first, and how many there are."""
    total = conn.execute(sa.select(sa.func.count()).select_from(imports).where(imports.c.user_id == user_id)).scalar()
    q = sa.select(imports).where(imports.c.user_id == user_id).order_by(imports.c.created_at.desc(), imports.c.id) \
        .limit(page_size).offset((page - 1) * page_size)
    return [_out(r) for r in conn.execute(q)], int(total)
