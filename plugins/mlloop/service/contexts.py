"""Market snapshots (append-only per symbol and time) and market contexts: each context's
features computed once, as of its ``as_of``, from the snapshots at or before it
(point-in-time), kept with the context and cached per process. No Flask."""
from __future__ import annotations

import datetime as dt
import json
import threading
from collections import OrderedDict
from decimal import Decimal
from typing import Iterable

import sqlalchemy as sa

from app import errors
from app.db import utcnow
from bus.envelope import iso
from plugins.mlloop.domain import features as fx
from plugins.mlloop.service.common import check_fits, chunks
from plugins.mlloop.tables import ml_market_contexts, ml_market_snapshots

HISTORY_DAYS = 50          # calendar days of snapshots loaded for a context (30 sessions of VIX + slack)

MARKET_FIELDS = ("spot", "vix", "vix3m", "gex_total", "gex_call_wall", "gex_put_wall", "gex_gamma_flip",
                 "market_mode", "bias_lfi", "es_futures_premium", "tnx_level", "dxy_level")


def _snapshot_of(row) -> fx.MarketSnapshot:
    m = row._mapping if hasattr(row, "_mapping") else row
    return fx.MarketSnapshot(time=m["time"], spot=m["spot"], vix=m["vix"], vix3m=m["vix3m"],
                             gex_total=m["gex_total"], gex_call_wall=m["gex_call_wall"],
                             gex_put_wall=m["gex_put_wall"], gex_gamma_flip=m["gex_gamma_flip"],
                             market_mode=m["market_mode"], bias_lfi=m["bias_lfi"],
                             es_futures_premium=m["es_futures_premium"], tnx_level=m["tnx_level"],
                             dxy_level=m["dxy_level"], symbol=m.get("symbol", "SPX"))


def _snap_values(s) -> dict:
    get = s.get if isinstance(s, dict) else (lambda k: getattr(s, k))
    out = {"time": fx.utc_ms(get("time"))}
    for f in MARKET_FIELDS:
        v = get(f)
        out[f] = float(v) if isinstance(v, (Decimal, int)) and not isinstance(v, bool) else v
    return out


def store_snapshots(conn, user_id: int, symbol: str, snapshots: Iterable) -> int:
    """Append market snapshots (immutable: re-sending an identical one is a no-op, a different
    one at the same time is 409). Returns how many were new."""
    rows = sorted((_snap_values(s) for s in snapshots), key=lambda r: r["time"])
    if not rows:
        return 0
    for a, b in zip(rows, rows[1:]):
        if a["time"] == b["time"]:
            raise errors.field_error("snapshots", f"two snapshots at {a['time'].isoformat()}")
    t = ml_market_snapshots.c
    existing = {r.time: r for r in conn.execute(sa.select(ml_market_snapshots).where(
        t.user_id == user_id, t.symbol == symbol, t.time >= rows[0]["time"], t.time <= rows[-1]["time"]))}
    new = []
    for r in rows:
        old = existing.get(r["time"])
        if old is None:
            new.append({**r, "user_id": user_id, "symbol": symbol})
        elif any(old._mapping[f] != r[f] for f in MARKET_FIELDS):
            raise errors.Conflict(f"a different {symbol} snapshot at {r['time'].isoformat()} is already "
                                  "recorded (market snapshots are immutable)", code="immutable_record")
    for part in chunks(new, 5000):
        conn.execute(ml_market_snapshots.insert(), part)
    return len(new)


def load_history(conn, user_id: int, symbol: str, start: dt.datetime, end: dt.datetime) -> fx.MarketHistory:
    t = ml_market_snapshots.c
    rows = conn.execute(sa.select(ml_market_snapshots).where(
        t.user_id == user_id, t.symbol == symbol, t.time >= start, t.time <= end).order_by(t.time))
    return fx.MarketHistory(_snapshot_of(r) for r in rows)


def features_json(features: dict) -> dict:
    out = dict(features)
    out["snapshot_time"] = iso(features["snapshot_time"])  # the one time format: UTC, milliseconds
    return out


def features_from_json(data: dict) -> dict:
    out = dict(data)
    out["snapshot_time"] = dt.datetime.fromisoformat(str(data["snapshot_time"]).replace("Z", "+00:00"))
    return out


def _context_out(row) -> dict:
    m = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    feats = m["features"]
    if isinstance(feats, str):
        feats = json.loads(feats)
    m["features"] = feats
    return m


def create_contexts(conn, user_id: int, data: dict, *, history: fx.MarketHistory | None = None
                    ) -> tuple[list[dict], bool]:
    """Store snapshots, then each context's market features as of its ``as_of`` (snapshots at
    or before it only). Re-posting a context with the same symbol and as_of returns it;
    another as_of under the same id is 409. Returns (contexts, any_created).

    ``history`` (the CLI's simulator) may supply the snapshots already in memory; they must
    be the ones stored, so the features are the same either way."""
    symbol = data["symbol"]
    store_snapshots(conn, user_id, symbol, data.get("snapshots") or [])
    wanted = data["contexts"]
    ids = [c["context_id"] for c in wanted]
    if len(set(ids)) != len(ids):
        raise errors.field_error("contexts", "context ids must be unique within a request")
    c = ml_market_contexts.c
    existing = {}
    for part in chunks(ids):
        for r in conn.execute(sa.select(ml_market_contexts).where(c.user_id == user_id, c.context_id.in_(part))):
            existing[r.context_id] = r
    out, new_rows = [], []
    fresh = [w for w in wanted if w["context_id"] not in existing]
    for w in wanted:
        old = existing.get(w["context_id"])
        if old is not None and (old.symbol != symbol or old.as_of != fx.utc_ms(w["as_of"])):
            raise errors.Conflict(f"context {w['context_id']!r} already exists with another symbol or as_of",
                                  code="context_exists", current=_context_out(old))
    if fresh:
        if history is None:
            start = min(fx.utc_ms(w["as_of"]) for w in fresh) - dt.timedelta(days=HISTORY_DAYS)
            history = load_history(conn, user_id, symbol, start, max(fx.utc_ms(w["as_of"]) for w in fresh))
        now = utcnow()
        for w in fresh:
            as_of = fx.utc_ms(w["as_of"])
            try:
                feats = fx.extract_market_features(fx.MarketContext(w["context_id"], as_of, history))
            except LookupError:
                raise errors.field_error("contexts", f"no {symbol} snapshot at or before {as_of.isoformat()} "
                                                     f"(context {w['context_id']!r})")
            check_fits(feats, "snapshots")
            n = history.index_at(as_of) + 1
            new_rows.append(dict(user_id=user_id, context_id=w["context_id"], symbol=symbol, as_of=as_of,
                                 features=features_json(feats), snapshot_count=n, created_at=now))
        for part in chunks(new_rows):
            conn.execute(ml_market_contexts.insert(), part)
    made = {r["context_id"]: r for r in new_rows}
    for w in wanted:
        cid = w["context_id"]
        out.append(made[cid] if cid in made else _context_out(existing[cid]))
    return out, bool(new_rows)


def get_context(conn, user_id: int, context_id: str) -> dict:
    r = conn.execute(sa.select(ml_market_contexts).where(
        ml_market_contexts.c.user_id == user_id, ml_market_contexts.c.context_id == context_id)).first()
    if r is None:
        raise errors.NotFound(f"no market context {context_id!r}")
    return _context_out(r)


class _ContextCache:
    """Market features per (user, context id): contexts are immutable, so never stale."""

    def __init__(self, maxsize: int = 1024):
        self.maxsize, self._data, self._lock = maxsize, OrderedDict(), threading.Lock()

    def get(self, conn, user_id: int, context_id: str) -> dict:
        key = (user_id, context_id)
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
                return hit
        ctx = get_context(conn, user_id, context_id)
        ctx["features"] = features_from_json(ctx["features"])
        with self._lock:
            self._data[key] = ctx
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return ctx

CONTEXTS = _ContextCache()
