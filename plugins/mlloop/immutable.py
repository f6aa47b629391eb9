"""Append-only tables stay append-only: an UPDATE or DELETE on one raises ``Conflict``.

The service layer has no update path for decisions, feature snapshots, P&L events, idea
snapshots, user actions or market snapshots; this guard makes that a rule rather than a habit:
``install(engine)`` (done at app start) refuses such statements before they reach the
database, whoever issues them through SQLAlchemy.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event

from app.errors import Conflict
from plugins.mlloop.tables import IMMUTABLE

NAMES = frozenset(t.name for t in IMMUTABLE)


class ImmutableRecord(Conflict):
    """This record is immutable (append-only): it cannot be changed or deleted."""
    code = "immutable_record"


def _refuse(conn, clauseelement, multiparams, params, execution_options):
    if isinstance(clauseelement, (sa.sql.Update, sa.sql.Delete)):
        table = getattr(clauseelement, "table", None)
        if table is not None and getattr(table, "name", None) in NAMES:
            raise ImmutableRecord(f"{table.name} is append-only: records cannot be changed or deleted")


def install(engine) -> None:
    if not event.contains(engine, "before_execute", _refuse):
        event.listen(engine, "before_execute", _refuse)
