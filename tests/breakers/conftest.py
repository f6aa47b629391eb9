"""Helpers for the breakers tests: feed inputs over the bus, ask the host hooks."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from bus import outbox
from bus.envelope import iso


class Desk:
    """One user's view of the breakers app: HTTP client + bus + host hooks."""

    def __init__(self, app, client, run_consumers):
        self.app, self.c, self._run = app, client, run_consumers
        self.ext = app.extensions["tradeloop"]
        self.uid = client.user.id

    # -- inputs over the bus --------------------------------------------------------------
    def emit(self, stream, type_, payload, *, aggregate_type="position", aggregate_id=None, at=None):
        with self.ext.db.transaction() as conn:
            return outbox.emit(conn, stream, type_, aggregate_type=aggregate_type,
                               aggregate_id=aggregate_id or str(uuid.uuid4()), aggregate_version=2,
                               payload=payload, user_id=self.uid, occurred_at=at)

    def close_position(self, pnl, *, at=None, run=True):
        at = at or dt.datetime.now(dt.timezone.utc)
        pid = str(uuid.uuid4())
        ev = self.emit("tradelog.events", "PositionClosed",
                       {"position_id": pid, "realized_pnl": str(pnl), "fees": "1.3000", "closed_at": iso(at)},
                       aggregate_id=pid, at=at)
        if run:
            self._run(self.app)
        return ev

    def order_filled(self, slippage, *, run=True):
        oid = str(uuid.uuid4())
        now = dt.datetime.now(dt.timezone.utc)
        ev = self.emit("tradelog.events", "OrderFilled",
                       {"order_id": oid, "position_id": str(uuid.uuid4()), "limit_price": "1.0000",
                        "fill_price": str(1 + slippage), "slippage": str(slippage), "filled_at": iso(now),
                        "reduces_position": False}, aggregate_type="order", aggregate_id=oid, at=now)
        if run:
            self._run(self.app)
        return ev

    def run(self):
        return self._run(self.app)

    # -- the host hooks ---------------------------------------------------------------------
    def check(self, reduces=False, order_id=None):
        order = {"order_id": order_id or str(uuid.uuid4()), "symbol": "SPX", "legs": [], "limit_price": None,
                 "reduces_position": reduces, "position_id": None}
        with self.ext.db.transaction() as conn:
            return self.ext.check_order_allowed(conn, self.uid, order)

    def scoring(self):
        with self.ext.db.transaction() as conn:
            return self.ext.scoring_mode(conn, self.uid)

    # -- HTTP ---------------------------------------------------------------------------------
    def status(self):
        r = self.c.get("/api/breakers/status")
        assert r.status_code == 200, r.json
        return r.json

    def breaker(self, name):
        return next(b for b in self.status()["breakers"] if b["name"] == name)

    def set_limit(self, name, limit, **kw):
        r = self.c.put(f"/api/breakers/config/{name}", json={"limit": str(limit), **kw}, idem=str(uuid.uuid4()))
        assert r.status_code == 200, r.json
        return r.json

    def events(self, type_=None):
        with self.ext.db.transaction() as conn:
            evs = outbox.read(conn, "breakers.events", 0, user_id=self.uid, limit=10_000)
        return [e for e in evs if type_ is None or e.type == type_]

    def table(self, table, **where):
        with self.ext.db.transaction() as conn:
            q = sa.select(table)
            for k, v in where.items():
                q = q.where(table.c[k] == v)
            return conn.execute(q).fetchall()


@pytest.fixture
def breakers_app(app_factory):
    return app_factory(["breakers"])


@pytest.fixture
def desk(breakers_app, new_client, run_consumers):
    return Desk(breakers_app, new_client(breakers_app), run_consumers)


@pytest.fixture
def make_desk(breakers_app, new_client, run_consumers):
    def make(app=None, admin=False):
        app = app or breakers_app
        return Desk(app, new_client(app, admin=admin), run_consumers)
    return make
