"""Journal entries: what the trader felt and saw, on one of their positions.

An entry is written once (no edits) and emits ``JournalEntryCreated`` like every other
change, on the position's stream key so it arrives in order with the position's events.
"""
from __future__ import annotations

import sqlalchemy as sa

from app.db import new_id, utcnow
from plugins.tradelog import service
from plugins.tradelog.tables import journal_entries

FIELDS = ("id", "position_id", "object_of_reflection", "bias_flags", "notes", "phase", "created_at",
          "position_version", "risk_artifact_id", "risk_strategy_id", "risk_strategy_version")


def entry_out(r) -> dict:
    m = r._mapping if hasattr(r, "_mapping") else r
    return {k: m[k] for k in FIELDS}


def create_journal_entry(conn, user_id: int, data: dict) -> dict:
    """Write an entry on one of your positions; records the position's version at the time.
    Emits JournalEntryCreated (aggregate: the entry)."""
    r = service._row(conn, user_id, data["position_id"])
    row = dict(id=new_id(), user_id=user_id, position_id=data["position_id"],
               object_of_reflection=data["object_of_reflection"], bias_flags=data.get("bias_flags"),
               notes=data.get("notes"), phase=data["phase"], created_at=utcnow(), position_version=r.version,
               risk_artifact_id=data.get("risk_artifact_id"), risk_strategy_id=data.get("risk_strategy_id"),
               risk_strategy_version=data.get("risk_strategy_version"))
    conn.execute(journal_entries.insert().values(**row))
    entry = entry_out(row)
    service.TOPIC.emit(conn, "JournalEntryCreated", aggregate_type="journal_entry", aggregate_id=row["id"], aggregate_version=1,
                       user_id=user_id, occurred_at=row["created_at"],
                       payload={"entry": entry})
    return entry


def list_journal_entries(conn, user_id: int, position_id: str) -> list[dict]:
    service._row(conn, user_id, position_id)
    q = sa.select(journal_entries).where(journal_entries.c.position_id == position_id,
                                         journal_entries.c.user_id == user_id) \
        .order_by(journal_entries.c.created_at, journal_entries.c.id)
    return [entry_out(r) for r in conn.execute(q)]
