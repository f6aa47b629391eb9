"""Shared helpers of the mlloop API / pipeline tests: a small deterministic market history
and request builders (plain data, no fixtures)."""
from __future__ import annotations

import datetime as dt
import math
import uuid

UTC = dt.timezone.utc
# Monday 2025-01-06 .. : New York is UTC-5 in January, so 09:30 NY = 14:30 UTC.
DAYS = [dt.date(2024, 12, 23) + dt.timedelta(days=i) for i in range(40)]
SESSIONS = [d for d in DAYS if d.weekday() < 5 and d <= dt.date(2025, 1, 7)]


def t(day: dt.date, hh: int, mm: int, ss: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=UTC)


def iso(x: dt.datetime) -> str:
    return x.strftime("%Y-%m-%dT%H:%M:%S.") + f"{x.microsecond // 1000:03d}Z"


def snapshot(when: dt.datetime, k: int, *, spot=None, vix=None, lfi=None) -> dict:
    s = 6000 + 8 * math.sin(k / 9.0) + 0.5 * k / 79 if spot is None else spot
    v = 16 + 1.5 * math.sin(k / 150.0) if vix is None else vix
    return {"time": iso(when), "spot": f"{s:.2f}", "vix": round(v, 2), "vix3m": round(v * 1.08, 2),
            "gex_total": 3.5e9 * math.tanh((s - 5985) / 24), "gex_call_wall": "6050.00",
            "gex_put_wall": "5950.00", "gex_gamma_flip": "5985.00",
            "market_mode": "pin" if s > 5985 else "chop",
            "bias_lfi": round(0.5 * math.sin(k / 40.0) if lfi is None else lfi, 4),
            "es_futures_premium": 0.0012, "tnx_level": 4.2, "dxy_level": 104.5}


def history(until: dt.datetime | None = None) -> list[dict]:
    """5-minute snapshots 14:30..21:00 UTC over ~11 sessions ending 2025-01-07."""
    out, k = [], 0
    for d in SESSIONS:
        for i in range(79):
            when = t(d, 14, 30) + dt.timedelta(minutes=5 * i)
            if until is not None and when > until:
                return out
            out.append(snapshot(when, k))
            k += 1
    return out


AS_OF = t(dt.date(2025, 1, 6), 15, 0)     # Monday 10:00 New York


def context_body(context_id: str, as_of: dt.datetime = AS_OF, snapshots=None) -> dict:
    return {"symbol": "SPX", "snapshots": history() if snapshots is None else snapshots,
            "contexts": [{"context_id": context_id, "as_of": iso(as_of)}]}


def idea(idea_id=None, *, strategy="vertical", side="call", direction="long", strike="6000", width=10,
         expiration="2025-01-07", debit="4.00", quantity=1) -> dict:
    return {"idea_id": idea_id or f"idea-{uuid.uuid4().hex[:12]}", "strategy": strategy, "side": side,
            "direction": direction, "strike": strike, "width": width if strategy != "single" else None,
            "expiration": expiration, "debit": debit, "quantity": quantity}


def some_ideas(n: int) -> list[dict]:
    shapes = [dict(strategy="vertical", side="call", direction="long", strike="6000", width=10, debit="4.00"),
              dict(strategy="vertical", side="put", direction="short", strike="5960", width=20, debit="-3.50"),
              dict(strategy="butterfly", side="call", direction="long", strike="6005", width=15, debit="2.10"),
              dict(strategy="single", side="put", direction="long", strike="5980", width=None, debit="7.30"),
              dict(strategy="single", side="call", direction="long", strike="6030", width=None, debit="3.10")]
    return [idea(**shapes[i % len(shapes)]) for i in range(n)]


def setup_context(client, context_id=None) -> str:
    cid = context_id or f"SPX:{uuid.uuid4().hex[:8]}"
    r = client.post("/api/ml/contexts", json=context_body(cid))
    assert r.status_code in (200, 201), r.json
    return cid
