"""Broker statement imports: a CSV of executions in, positions, fills and settlements out.

``formats`` turns a file into executions (the generic CSV, Interactive Brokers' Flex Query
trades, tastytrade's transaction history); ``engine`` applies them to the trade log. This
module is the use case:

* ``create_import`` checks the request (format, time zone, size) and keeps the upload as an
  import record (``queued``);
* ``run_import_job`` — the ``tradelog.import`` job kind — applies it **in one transaction**
  (all of it or nothing: a crash, a cancel or a bad row leaves no trace but the record),
  keeps the reconciliation report on the record (``GET /api/imports/{id}``) and emits
  ``ExecutionsImported``; a rejected file marks the record ``rejected`` with its bad rows and
  fails the job with ``import_rejected``;
* ``import_file`` does both in the caller's transaction (tests, tools).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from app import errors
from app.db import new_id, utcnow
from plugins.tradelog import markettime, service
from plugins.tradelog.imports.engine import ImportRejected, run_import
from plugins.tradelog.imports.formats import FORMATS
from plugins.tradelog.tables import imports

#: An import is one transaction: bounded in size.
MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 20_000
JOB_KIND = "tradelog.import"

__all__ = ["FORMATS", "ImportRejected", "JOB_KIND", "MAX_BYTES", "MAX_ROWS", "create_import", "get_import",
           "import_file", "list_imports", "run_import_job", "run_import_record"]


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
    if text.count("\n") > MAX_ROWS + 1:
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


def _out(r) -> dict:
    m = r._mapping if hasattr(r, "_mapping") else r
    rep, err = m["report"], m.get("error")
    rep = json.loads(rep) if isinstance(rep, str) else rep
    err = json.loads(err) if isinstance(err, str) else err
    return {k: m[k] for k in ("id", "format", "filename", "timezone", "dry_run", "skip_bad_rows", "status", "rows",
                              "sha256", "created_at", "finished_at", "job_id")} | {"report": rep or None, "error": err}


def create_import(conn, user_id: int, content: bytes, options: dict) -> dict:
    """Keep an upload as a ``queued`` import: ``options`` = ``{format, timezone?, dry_run?,
    skip_bad_rows?, filename?}``. 422 naming ``format``, ``timezone`` or ``file`` (too large,
    not UTF-8, too many rows)."""
    fmt = options["format"]
    if fmt not in FORMATS:
        raise errors.field_error("format", f"one of {', '.join(FORMATS)}", location="form")
    tz = check_timezone(options.get("timezone"))
    _text(content)
    record = dict(id=new_id(), user_id=user_id, format=fmt, filename=(options.get("filename") or None),
                  timezone=tz, dry_run=bool(options.get("dry_run")), skip_bad_rows=bool(options.get("skip_bad_rows")),
                  status="queued", rows=0, sha256=hashlib.sha256(content).hexdigest(), report={},
                  created_at=utcnow(), finished_at=None, content=content, job_id=options.get("job_id"), error=None)
    if record["filename"]:
        record["filename"] = record["filename"][:255]
    conn.execute(imports.insert().values(**record))
    return _out(record)


def set_job(conn, user_id: int, import_id: str, job_id: str) -> None:
    conn.execute(imports.update().where(imports.c.id == import_id, imports.c.user_id == user_id).values(job_id=job_id))


def _load(conn, user_id: int, import_id: str, *, lock: bool = False):
    q = sa.select(imports).where(imports.c.id == import_id, imports.c.user_id == user_id)
    r = conn.execute(q.with_for_update() if lock else q).first()
    if r is None:
        raise errors.NotFound(f"import {import_id} not found")
    return r


def run_import_record(conn, user_id: int, import_id: str, progress: Callable[..., None] | None = None,
                      job_id: str | None = None) -> dict:
    """Apply a queued import in ``conn``'s transaction; returns the finished record. An import
    already finished answers its record again (a rerun imports nothing twice)."""
    r = _load(conn, user_id, import_id, lock=True)
    if r.status != "queued":
        return _out(r)
    report = run_import(conn, user_id, _text(r.content), fmt=r.format, timezone=r.timezone, dry_run=r.dry_run,
                        skip_bad_rows=r.skip_bad_rows, progress=progress)
    values = dict(status="succeeded", rows=report["rows"], report=service._jsonable(report), finished_at=utcnow(),
                  content=None, job_id=r.job_id or job_id)
    conn.execute(imports.update().where(imports.c.id == import_id).values(**values))
    service.TOPIC.emit(conn, "ExecutionsImported", aggregate_type="import", aggregate_id=import_id,
                       aggregate_version=1, user_id=user_id, occurred_at=values["finished_at"],
                       payload={"import_id": import_id, "format": r.format, "dry_run": r.dry_run,
                                "rows": report["rows"], "positions_created": len(report["positions_created"]),
                                "fills_recorded": report["fills_recorded"], "duplicates": len(report["duplicates"]),
                                "rejected": len(report["rejected"])})
    return _out(dict(r._mapping) | values)


def _finish_badly(db, user_id: int, import_id: str, status: str, error: dict, job_id: str | None) -> None:
    with db.transaction() as conn:
        conn.execute(imports.update().where(imports.c.id == import_id, imports.c.user_id == user_id,
                                            imports.c.status == "queued")
                     .values(status=status, error=error, finished_at=utcnow(), content=None,
                             job_id=sa.func.coalesce(imports.c.job_id, job_id)))


def run_import_job(db, params: dict, progress, user_id: int | None, job_id: str | None = None) -> dict:
    """The ``tradelog.import`` job: apply import ``params["import_id"]`` of ``user_id`` in
    one transaction. Progress is reported while the file is read and when it is done; on
    SQLite (one writer at a time) not while the transaction holds the write lock — the job's
    own progress write would wait for it. Returns a summary; a rejected file marks the record
    ``rejected`` (its rows listed) and fails the job with ``import_rejected``."""
    import_id = params["import_id"]
    progress(0.02, "reading the file")
    inside = None if db.dialect == "sqlite" else (lambda f, m="": progress(0.05 + 0.9 * f, m))
    try:
        with db.transaction() as conn:
            record = run_import_record(conn, user_id, import_id, progress=inside, job_id=job_id)
    except ImportRejected as exc:
        _finish_badly(db, user_id, import_id, "rejected", exc.body(), job_id)
        raise
    except errors.NotFound:
        raise
    except Exception as exc:
        _finish_badly(db, user_id, import_id, "failed", {"code": "import_failed", "message": str(exc)[:500]}, job_id)
        raise
    progress(1.0, "imported")
    rep = record["report"] or {}
    return {"import_id": import_id, "status": record["status"], "dry_run": record["dry_run"],
            "rows": record["rows"], "positions_created": len(rep.get("positions_created", [])),
            "fills_recorded": rep.get("fills_recorded", 0), "duplicates": len(rep.get("duplicates", [])),
            "rejected": len(rep.get("rejected", [])), "realized_pnl": rep.get("realized_pnl")}


def import_file(conn, user_id: int, content: bytes, options: dict,
                progress: Callable[..., None] | None = None) -> dict:
    """``create_import`` and ``run_import_record`` in the caller's transaction (no job): the
    finished record. 422 ``import_rejected`` naming each bad row (nothing written)."""
    record = create_import(conn, user_id, content, options)
    return run_import_record(conn, user_id, record["id"], progress=progress)


def get_import(conn, user_id: int, import_id: str) -> dict:
    return _out(_load(conn, user_id, import_id))


def list_imports(conn, user_id: int, *, page: int = 1, page_size: int = 50) -> tuple[list[dict], int]:
    """One page of your imports, newest first, and how many there are."""
    total = conn.execute(sa.select(sa.func.count()).select_from(imports).where(imports.c.user_id == user_id)).scalar()
    q = sa.select(imports).where(imports.c.user_id == user_id).order_by(imports.c.created_at.desc(), imports.c.id) \
        .limit(page_size).offset((page - 1) * page_size)
    return [_out(r) for r in conn.execute(q)], int(total)
