"""Leases: one holder at a time for a named role (the relay of a set of streams), kept in the
database every process already shares, so it works the same on SQLite and MySQL/MariaDB.

A holder takes a lease for ``ttl`` seconds and renews it well before it ends (every ttl/3).
A second process trying the same name waits until the lease expires (the holder died or
stopped renewing), then takes it. Taking and renewing are single conditional statements, so
two contenders can never both succeed: ``UPDATE ... WHERE name = :n AND (holder = :me OR
expires_at < :now)`` or, for a name never taken, an INSERT that the primary key lets only one
win. ``holds(conn)`` re-checks inside a caller's transaction (row-locked), so a holder that
lost its lease while paused finds out before it commits anything that depends on it (a
fencing check).
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

import sqlalchemy as sa

from bus.sql import UtcDateTime, is_duplicate_key, utcnow

metadata = sa.MetaData()

leases = sa.Table(
    "bus_leases", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("acquired_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
)


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """``Lease(db, "relay:kafka:...", ttl=10).acquire()`` -> True when this process holds it."""

    def __init__(self, db, name: str, *, ttl: float = 10.0, holder: str | None = None):
        self.db, self.name, self.ttl = db, name[:200], float(ttl)
        self.holder = (holder or default_holder())[:200]
        self.held_until: dt.datetime | None = None

    def acquire(self) -> bool:
        """Take or renew the lease; False when another live holder has it."""
        now = utcnow()
        until = now + dt.timedelta(seconds=self.ttl)
        with self.db.transaction() as conn:
            taken = conn.execute(leases.update().where(
                leases.c.name == self.name,
                sa.or_(leases.c.holder == self.holder, leases.c.expires_at < now),
            ).values(holder=self.holder, expires_at=until,
                     acquired_at=sa.case((leases.c.holder == self.holder, leases.c.acquired_at), else_=now))
            ).rowcount
            if not taken:
                exists = conn.execute(sa.select(leases.c.name).where(leases.c.name == self.name)).first()
                if exists is None:
                    try:
                        with conn.begin_nested():
                            conn.execute(leases.insert().values(name=self.name, holder=self.holder,
                                                                acquired_at=now, expires_at=until))
                        taken = 1
                    except sa.exc.IntegrityError as exc:
                        if not is_duplicate_key(exc):
                            raise
        self.held_until = until if taken else None
        return bool(taken)

    def holds(self, conn) -> bool:
        """Inside the caller's transaction: is the lease still ours and unexpired? Locks the
        row until that transaction ends, so a contender cannot take it in between."""
        row = conn.execute(sa.select(leases.c.holder, leases.c.expires_at)
                           .where(leases.c.name == self.name).with_for_update()).first()
        return row is not None and row.holder == self.holder and row.expires_at > utcnow()

    def release(self) -> None:
        """Give the lease up at once (a clean stop), so a waiting process takes over now."""
        with self.db.transaction() as conn:
            conn.execute(leases.delete().where(leases.c.name == self.name, leases.c.holder == self.holder))
        self.held_until = None

    def current_holder(self) -> str | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(leases.c.holder, leases.c.expires_at)
                               .where(leases.c.name == self.name)).first()
        return row.holder if row is not None and row.expires_at > utcnow() else None
