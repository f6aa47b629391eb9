"""Journal entries: what the trader felt and saw, on one of their positions.

An entry is written once (no edits) and remembers the risk picture in force when it was
written, by reference only (no plugin imports another): the position's version, the
riskgraph artifact (given, or the latest one riskgraph linked to the position for a version
up to that one) and, when given, the riskgraph strategy and its version. ``GET
/api/journal_entries/{id}`` links to that exact position version and artifact. Entries emit
``JournalEntryCreated`` like every other change (aggregate: the entry).
"""
from __future__ import annotations

import sqlalchemy as sa

from app import errors
from app.db import new_id, utcnow
from plugins.tradelog import service
from plugins.tradelog.tables import journal_entries, risk_artifacts

FIELDS = ("id", "position_id", "object_of_reflection", "bias_flags", "notes", "phase", "created_at",
          "position_version", "risk_artifact_id", "risk_strategy_id", "risk_strategy_version")


def entry_out(r) -> dict:
    m = r._mapping if hasattr(r, "_mapping") else r
    return {k: m[k] for k in FIELDS}


def _artifact_in_force(conn, user_id: int, position_id: str, version: int) -> str | None:
    """The latest artifact linked to the position computed from a version up to ``version``
    (or from an unknown one)."""
    q = sa.select(risk_artifacts.c.artifact_id).where(
        risk_artifacts.c.position_id == position_id, risk_artifacts.c.user_id == user_id,
        sa.or_(risk_artifacts.c.position_version.is_(None), risk_artifacts.c.position_version <= version)) \
        .order_by(risk_artifacts.c.position_version.desc(), risk_artifacts.c.computed_at.desc()).limit(1)
    return conn.execute(q).scalar()


def create_journal_entry(conn, user_id: int, data: dict) -> dict:
    """Write an entry on one of your positions, recording the position's version and the risk
    picture in force. Emits JournalEntryCreated."""
    r = service._row(conn, user_id, data["position_id"])
    artifact = data.get("risk_artifact_id") or _artifact_in_force(conn, user_id, r.id, r.version)
    row = dict(id=new_id(), user_id=user_id, position_id=data["position_id"],
               object_of_reflection=data["object_of_reflection"], bias_flags=data.get("bias_flags"),
               notes=data.get("notes"), phase=data["phase"], created_at=utcnow(), position_version=r.version,
               risk_artifact_id=artifact, risk_strategy_id=data.get("risk_strategy_id"),
               risk_strategy_version=data.get("risk_strategy_version"))
    conn.execute(journal_entries.insert().values(**row))
    entry = entry_out(row)
    service.TOPIC.emit(conn, "JournalEntryCreated", aggregate_type="journal_entry", aggregate_id=row["id"], aggregate_version=1,
                       user_id=user_id, occurred_at=row["created_at"],
                       payload={"entry": entry})
    return entry


def links(entry: dict) -> dict:
    """Where the entry's risk picture lives: the published routes of both contexts."""
    pid, v = entry["position_id"], entry["position_version"]
    return {"position": f"/api/positions/{pid}?version={v}" if v else f"/api/positions/{pid}",
            "snapshot": f"/api/positions/{pid}/snapshot?version={v}" if v else f"/api/positions/{pid}/snapshot",
            "risk_artifact": f"/api/risk-graph/artifacts/{entry['risk_artifact_id']}"
            if entry.get("risk_artifact_id") else None,
            "risk_strategy_versions": f"/api/risk-graph/strategies/{entry['risk_strategy_id']}/versions"
            if entry.get("risk_strategy_id") else None}


def get_journal_entry(conn, user_id: int, entry_id: str) -> dict:
    """One entry with ``links`` to the position version and risk artifact it remembers."""
    r = conn.execute(sa.select(journal_entries).where(journal_entries.c.id == entry_id,
                                                      journal_entries.c.user_id == user_id)).first()
    if r is None:
        raise errors.NotFound(f"journal entry {entry_id} not found")
    entry = entry_out(r)
    return entry | {"links": links(entry)}


def list_journal_entries(conn, user_id: int, position_id: str) -> list[dict]:
    service._row(conn, user_id, position_id)
    q = sa.select(journal_entries).where(journal_entries.c.position_id == position_id,
                                         journal_entries.c.user_id == user_id) \
        .order_by(journal_entries.c.created_at, journal_entries.c.id)
    return [entry_out(r) | {"links": links(entry_out(r))} for r in conn.execute(q)]
