"""mlloop use cases (part 1): market contexts, selector params, scoring decisions and reads.

No Flask: every function takes ``conn`` (a Connection in an open transaction) and ``user_id``
first, so views, the CLI (``tradeloop ml simulate``), bus handlers and tests call the same
code. The P&L ledger, settlement, labels and daily performance are in ``outcomes.py``.

Scoring (``score_ideas``) computes everything in the request -- market features from the
stored context (computed once per context id, cached), the rule score with the active
``selector_params`` version, the ML score from part 2's scoring plan -- writes the tracked
ideas, and emits one ``DecisionRecorded`` (``mlloop.decisions``) and one
``FeatureSnapshotTaken`` (``mlloop.features``) per idea in the same transaction; consumers
(``handlers.py``) write ``ml_decisions`` / ``ml_feature_snapshots`` in batches. A decision is
keyed by sha256(user, idea, context, selector_params version): scoring the same idea in the
same context again returns the recorded (or still pending) decision and emits nothing.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import threading
import uuid
from collections import OrderedDict
from decimal import Decimal
from typing import Iterable, Sequence

import sqlalchemy as sa

from app import errors
from app.db import is_duplicate_key, utcnow
from app.lazy import lazy_module
from bus import outbox
from plugins.mlloop import features as fx
from plugins.mlloop import labels, scoring
from plugins.mlloop.tables import (
    ml_decisions, ml_feature_snapshots, ml_market_contexts, ml_market_snapshots, selector_params,
    tracked_ideas,
)

# pandas/scipy/CatBoost behind these: imported on first use, not at start-up.
modelops = lazy_module("plugins.mlloop.modelops")
inference = lazy_module("plugins.mlloop.inference")

DECISIONS = "mlloop.decisions"
FEATURES = "mlloop.features"
PNL = "mlloop.pnl"

NAMESPACE = uuid.UUID("0b8f2d3e-6c1a-5e47-9a2b-4d7c1f0e8a91")
CENT = Decimal("0.01")
CHUNK = 1000
HISTORY_DAYS = 50          # calendar days of snapshots loaded for a context (30 sessions of VIX + slack)
MARKET_FIELDS = ("spot", "vix", "vix3m", "gex_total", "gex_call_wall", "gex_put_wall", "gex_gamma_flip",
                 "market_mode", "bias_lfi", "es_futures_premium", "tnx_level", "dxy_level")
STRATEGY_COLUMNS = ("strategy_type", "side", "direction", "dte", "width", "strike_vs_spot", "original_score")
FEATURE_COLUMNS = tuple(c for c in fx.SNAPSHOT_COLUMNS) + STRATEGY_COLUMNS


def _chunks(seq: Sequence, n: int = CHUNK):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _dec2(x) -> Decimal | None:
    if x is None:
        return None
    if isinstance(x, float):
        if math.isnan(x):
            return None
        return Decimal(repr(round(x, 2))).quantize(CENT)
    return Decimal(x).quantize(CENT)


def tracked_idea_id(user_id: int, idea_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"idea:{user_id}:{idea_id}"))


def decision_key(user_id: int, idea_id: str, context_id: str, params_version: int) -> str:
    return hashlib.sha256(f"{user_id}\x1f{idea_id}\x1f{context_id}\x1f{params_version}".encode()).hexdigest()


def decision_id_of(key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "decision:" + key))


def feature_snapshot_id_of(decision_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "features:" + decision_id))


# ======================================================================================
# Market snapshots and contexts
# ======================================================================================

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
    for part in _chunks(new, 5000):
        conn.execute(ml_market_snapshots.insert(), part)
    return len(new)


def load_history(conn, user_id: int, symbol: str, start: dt.datetime, end: dt.datetime) -> fx.MarketHistory:
    t = ml_market_snapshots.c
    rows = conn.execute(sa.select(ml_market_snapshots).where(
        t.user_id == user_id, t.symbol == symbol, t.time >= start, t.time <= end).order_by(t.time))
    return fx.MarketHistory(_snapshot_of(r) for r in rows)


def _features_json(features: dict) -> dict:
    out = dict(features)
    out["snapshot_time"] = features["snapshot_time"].isoformat().replace("+00:00", "Z")
    return out


def _features_from_json(data: dict) -> dict:
    out = dict(data)
    out["snapshot_time"] = dt.datetime.fromisoformat(str(data["snapshot_time"]).replace("Z", "+00:00"))
    return out


def _column_limit(col: str) -> float | None:
    typ = ml_feature_snapshots.c[col].type
    if isinstance(typ, sa.Numeric) and typ.precision:
        return 10.0 ** (typ.precision - typ.scale)
    return None


_LIMITS = {c: _column_limit(c) for c in FEATURE_COLUMNS if c in ml_feature_snapshots.c}


def check_fits(features: dict, field: str) -> None:
    """A feature that would not fit its ml_feature_snapshots column is bad input (422)."""
    for col, limit in _LIMITS.items():
        v = features.get(col)
        if limit is not None and isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= limit:
            raise errors.field_error(field, f"{col} would be {v}, outside its range (|x| < {limit:g})")


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
    for part in _chunks(ids):
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
                                 features=_features_json(feats), snapshot_count=n, created_at=now))
        for part in _chunks(new_rows):
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
        ctx["features"] = _features_from_json(ctx["features"])
        with self._lock:
            self._data[key] = ctx
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return ctx


CONTEXTS = _ContextCache()


# ======================================================================================
# Selector params
# ======================================================================================

def _params_of(row) -> scoring.SelectorParams:
    m = row._mapping
    weights = m["weights"] if not isinstance(m["weights"], str) else json.loads(m["weights"])
    consts = m["constants"] if not isinstance(m["constants"], str) else json.loads(m["constants"])
    return scoring.SelectorParams.from_row({"version": m["version"], "weights": weights, **consts})


def _params_out(row) -> dict:
    m = dict(row._mapping)
    for k in ("weights", "constants"):
        if isinstance(m[k], str):
            m[k] = json.loads(m[k])
    return m


def _params_row(user_id: int, params: scoring.SelectorParams, active: bool, note: str | None) -> dict:
    data = params.to_row()
    weights = data.pop("weights")
    data.pop("version")
    return dict(user_id=user_id, version=params.version, weights=weights, constants=data,
                active=active, note=note, created_at=utcnow())


def active_params(conn, user_id: int) -> scoring.SelectorParams:
    """The user's active selector_params; version 1 (the defaults) is created on first use."""
    t = selector_params.c
    r = conn.execute(sa.select(selector_params).where(t.user_id == user_id, t.active.is_(True))).first()
    if r is not None:
        return _params_of(r)
    try:
        with conn.begin_nested():
            conn.execute(selector_params.insert().values(
                **_params_row(user_id, scoring.DEFAULT_SELECTOR_PARAMS, True, "defaults")))
    except sa.exc.IntegrityError as exc:
        if not is_duplicate_key(exc):
            raise
        r = conn.execute(sa.select(selector_params).where(t.user_id == user_id, t.active.is_(True))).first()
        if r is not None:
            return _params_of(r)
    return scoring.DEFAULT_SELECTOR_PARAMS


def params_version(conn, user_id: int, version: int) -> scoring.SelectorParams | None:
    t = selector_params.c
    r = conn.execute(sa.select(selector_params).where(t.user_id == user_id, t.version == version)).first()
    return _params_of(r) if r is not None else None


def list_params(conn, user_id: int) -> list[dict]:
    active_params(conn, user_id)
    t = selector_params.c
    return [_params_out(r) for r in conn.execute(
        sa.select(selector_params).where(t.user_id == user_id).order_by(t.version))]


def create_params(conn, user_id: int, data: dict) -> dict:
    """A new selector_params version (the next integer), active from now on."""
    active_params(conn, user_id)
    t = selector_params.c
    last = conn.execute(sa.select(sa.func.max(t.version)).where(t.user_id == user_id)).scalar() or 0
    consts = {k: v for k, v in data.items() if k not in ("weights", "note")}
    try:
        params = scoring.SelectorParams(version=last + 1, weights=data["weights"], **consts)
    except scoring.InvalidSelectorParams as exc:
        raise errors.field_error("weights" if "weight" in str(exc) else "constants", str(exc))
    conn.execute(selector_params.update().where(t.user_id == user_id, t.active.is_(True)).values(active=False))
    row = _params_row(user_id, params, True, data.get("note"))
    try:
        with conn.begin_nested():
            conn.execute(selector_params.insert().values(**row))
    except sa.exc.IntegrityError as exc:
        if is_duplicate_key(exc):
            raise errors.Conflict("another selector_params version was created concurrently; retry")
        raise
    return _params_out(conn.execute(sa.select(selector_params).where(
        t.user_id == user_id, t.version == params.version)).first())


# ======================================================================================
# Scoring
# ======================================================================================

def _idea_of(item: dict, session: dt.date, index: int) -> scoring.TradeIdea:
    exp = item["expiration"]
    if exp < session:
        raise errors.Unprocessable(f"ideas.{index}.expiration: before the decision's session ({session})",
                                   errors={"json": {"ideas": {str(index): {"expiration": ["before the decision date"]}}}})
    try:
        return scoring.TradeIdea(
            idea_id=item["idea_id"], strategy=item["strategy"], side=item["side"],
            direction=item["direction"], strike=Decimal(item["strike"]),
            width=item.get("width") if item["strategy"] != "single" else None,
            expiration=exp, dte=(exp - session).days, debit=Decimal(item["debit"]),
            quantity=item.get("quantity", 1), symbol=item.get("symbol", "SPX"))
    except scoring.InvalidIdea as exc:
        raise errors.Unprocessable(f"ideas.{index}: {exc}", errors={"json": {"ideas": {str(index): {"_schema": [str(exc)]}}}})


def _stored_item(row) -> dict:
    m = row._mapping
    return dict(idea_id=m["idea_id"], decision_id=m["id"], tracked_idea_id=m["tracked_idea_id"],
                original_score=m["original_score"], ml_score=m["ml_score"], final_score=m["final_score"],
                rule_components=m["rule_components"], model_id=m["model_id"], model_version=m["model_version"],
                experiment_id=m["experiment_id"], experiment_arm=m["experiment_arm"],
                exploration=bool(m["exploration"]), ml_weight=m["ml_weight"], replayed=True)


def _payload_item(p: dict) -> dict:
    return dict(idea_id=p["idea_id"], decision_id=p["decision_id"], tracked_idea_id=p["tracked_idea_id"],
                original_score=Decimal(p["original_score"]),
                ml_score=Decimal(p["ml_score"]) if p.get("ml_score") is not None else None,
                final_score=Decimal(p["final_score"]), rule_components=p["rule_components"],
                model_id=p.get("model_id"), model_version=p.get("model_version"),
                experiment_id=p.get("experiment_id"), experiment_arm=p.get("experiment_arm"),
                exploration=bool(p.get("exploration")), ml_weight=p.get("ml_weight", 0.0), replayed=True)


def _known_decisions(conn, ids: list[str]) -> dict[str, dict]:
    """Decisions already recorded (ml_decisions) or still on their way (the outbox)."""
    found: dict[str, dict] = {}
    for part in _chunks(ids):
        for r in conn.execute(sa.select(ml_decisions).where(ml_decisions.c.id.in_(part))):
            found[r.id] = _stored_item(r)
    missing = [i for i in ids if i not in found]
    o = outbox.outbox.c
    for part in _chunks(missing):
        for r in conn.execute(sa.select(o.payload).where(o.aggregate_id.in_(part), o.stream == DECISIONS)):
            p = json.loads(r.payload)
            found.setdefault(p["decision_id"], _payload_item(p))
    return found


def _ml_scores(assignments, feature_rows, originals) -> list[float | None]:
    """ML scores per idea, batched per scorer; a model failure degrades to None (rules)."""
    import pandas as pd
    out: list[float | None] = [None] * len(feature_rows)
    groups: dict[int, list[int]] = {}
    scorers = {}
    for j, a in enumerate(assignments):
        if a.scorer is not None:
            groups.setdefault(id(a.scorer), []).append(j)
            scorers[id(a.scorer)] = a.scorer
    for key, idx in groups.items():
        try:
            frame = pd.DataFrame.from_records([feature_rows[j] for j in idx])
            frame = frame.drop(columns=["snapshot_time"], errors="ignore")
            res = scorers[key].score_batch(frame, [originals[j] for j in idx])
            for j, v in zip(idx, res["ml_score"].tolist()):
                out[j] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        except Exception:  # never fail the selector on a model problem: rules decide alone
            pass
    return out


def score_ideas(conn, user_id: int, data: dict, *, mode: str = "normal") -> dict:
    """Score a batch of ideas against one market context; return them ranked (final score
    first) with their decision ids. ``mode`` is the host's scoring mode (``rules_only``:
    no ML influence; an ML score may still be logged as a shadow)."""
    ctx = CONTEXTS.get(conn, user_id, data["context_id"])
    market = ctx["features"]
    context_id = ctx["context_id"]
    decision_time = fx.utc_ms(data.get("decision_time") or ctx["as_of"])
    if decision_time < ctx["as_of"]:
        raise errors.field_error("decision_time", f"before the context's as_of ({ctx['as_of'].isoformat()})")
    items = data["ideas"]
    if len({i["idea_id"] for i in items}) != len(items):
        raise errors.field_error("ideas", "idea ids must be unique within a request")
    params = active_params(conn, user_id)
    session = fx.session_date(decision_time)
    keys = [decision_key(user_id, i["idea_id"], context_id, params.version) for i in items]
    ids = [decision_id_of(k) for k in keys]
    known = _known_decisions(conn, ids)
    todo = [j for j, d in enumerate(ids) if d not in known]
    every = [_idea_of(item, session, j) for j, item in enumerate(items)]
    tracked = _check_tracked(conn, user_id, every)  # a replayed idea id must still name its structure
    ideas = [every[j] for j in todo]
    results: list[dict] = [known[d] for d in ids if d in known]
    if ideas:
        results += _decide(conn, user_id, ideas, [keys[j] for j in todo], [ids[j] for j in todo], tracked,
                           market, context_id, decision_time, params, ctx["symbol"], mode)
    results.sort(key=lambda r: (-r["final_score"], -r["original_score"], r["idea_id"]))
    for rank, r in enumerate(results, 1):
        r["rank"] = rank
    return dict(context_id=context_id, decision_time=decision_time, selector_params_version=params.version,
                scoring_mode=mode, ideas=results)


def _check_tracked(conn, user_id: int, ideas: list[scoring.TradeIdea]) -> set[str]:
    """Ideas already tracked must keep their geometry (an idea id names one structure)."""
    seen: set[str] = set()
    if not ideas:
        return seen
    by_id = {i.idea_id: i for i in ideas}
    t = tracked_ideas.c
    cols = (t.idea_id, t.strategy, t.side, t.direction, t.strike, t.width, t.expiration, t.entry_debit, t.quantity)
    for part in _chunks(list(by_id)):
        for r in conn.execute(sa.select(*cols).where(t.user_id == user_id, t.idea_id.in_(part))):
            i = by_id[r.idea_id]
            if (r.strategy, r.side, r.direction, Decimal(r.strike), r.width, r.expiration, Decimal(r.entry_debit),
                    r.quantity) != (i.strategy, i.side, i.direction, Decimal(i.strike), i.width, i.expiration,
                                    Decimal(i.debit), i.quantity):
                raise errors.Conflict(f"idea {r.idea_id!r} is already tracked with another structure",
                                      code="idea_conflict")
            seen.add(r.idea_id)
    return seen


def _decide(conn, user_id, ideas, keys, ids, tracked, market, context_id, decision_time, params,
            symbol, mode) -> list[dict]:
    sctx = scoring.ScoringContext.from_market_features(market)
    rules = scoring.score_ideas(ideas, sctx, params)
    regime = market.get("vix_regime")
    plan = modelops.scoring_plan(conn, user_id)
    assignments = [plan.for_idea(i.idea_id, regime) for i in ideas]
    feature_rows = []
    for idea, rs in zip(ideas, rules):
        f = fx.extract_idea_features({"strategy": idea.strategy, "side": idea.side, "direction": idea.direction,
                                      "strike": idea.strike, "width": idea.width, "dte": idea.dte,
                                      "score": rs.total}, market)
        feature_rows.append(f)
    for f, idea in zip(feature_rows, ideas):
        check_fits(f, "ideas")
    originals = [float(rs.total) for rs in rules]
    mls = _ml_scores(assignments, feature_rows, originals)
    rules_only = mode == "rules_only"
    now = utcnow()
    snap_time = market["snapshot_time"]
    dec_specs, feat_specs, idea_rows, results = [], [], [], []
    for idea, rs, a, f, ml, key, did in zip(ideas, rules, assignments, feature_rows, mls, keys, ids):
        weight = 0.0 if rules_only or ml is None else float(a.ml_weight)
        ml_d = _dec2(ml)
        final = rs.total if weight == 0.0 else _dec2(inference.blend(float(rs.total), float(ml_d), weight))
        tid = tracked_idea_id(user_id, idea.idea_id)
        fid = feature_snapshot_id_of(did)
        comps = {k: str(v) for k, v in rs.components.items()}
        item = dict(idea_id=idea.idea_id, decision_id=did, tracked_idea_id=tid, original_score=rs.total,
                    ml_score=ml_d, final_score=final, rule_components=comps,
                    model_id=a.model_id, model_version=a.model_version, experiment_id=a.experiment_id,
                    experiment_arm=a.arm, exploration=bool(a.exploration), ml_weight=weight, replayed=False)
        results.append(item)
        fjson = _features_json(f)
        dec_specs.append(dict(
            type="DecisionRecorded", aggregate_type="decision", aggregate_id=did, aggregate_version=1,
            user_id=user_id, occurred_at=decision_time, payload={
                **item, "decision_key": key, "context_id": context_id, "decision_time": decision_time,
                "selector_params_version": params.version, "feature_snapshot_id": fid,
                "scoring_mode": mode, "rank": 0,
                "idea": {"strategy": idea.strategy, "side": idea.side, "direction": idea.direction,
                         "strike": idea.strike, "width": idea.width, "expiration": idea.expiration.isoformat(),
                         "dte": idea.dte, "debit": idea.debit, "quantity": idea.quantity, "symbol": idea.symbol},
                "features": fjson}))
        feat_specs.append(dict(
            type="FeatureSnapshotTaken", aggregate_type="feature_snapshot", aggregate_id=fid, aggregate_version=1,
            user_id=user_id, occurred_at=snap_time, payload={
                "feature_snapshot_id": fid, "decision_id": did, "tracked_idea_id": tid, "idea_id": idea.idea_id,
                **fjson}))
        if idea.idea_id not in tracked:
            idea_rows.append(dict(
                id=tid, user_id=user_id, idea_id=idea.idea_id, symbol=idea.symbol or symbol, decision_id=did,
                context_id=context_id, decision_time=decision_time, strategy=idea.strategy, side=idea.side,
                direction=idea.direction, strike=idea.strike, width=idea.width, dte=idea.dte,
                expiration=idea.expiration, quantity=idea.quantity, entry_debit=idea.debit,
                risk_unit=_risk_unit(idea), entry_spot=Decimal(repr(market["spot_price"])),
                rule_score=rs.total, selector_params_version=params.version, regime=regime, version=1,
                created_at=now, updated_at=now))  # the path columns start at their defaults
    try:
        for part in _chunks(idea_rows, 5000):
            with conn.begin_nested():
                conn.execute(tracked_ideas.insert(), part)
    except sa.exc.IntegrityError as exc:
        if is_duplicate_key(exc):
            raise errors.Conflict("some of these ideas were scored concurrently by another request; retry",
                                  code="concurrent_scoring")
        raise
    for part in _chunks(dec_specs, 5000):
        outbox.emit_many(conn, DECISIONS, part)
    for part in _chunks(feat_specs, 5000):
        outbox.emit_many(conn, FEATURES, part)
    return results


def _risk_unit(idea: scoring.TradeIdea) -> Decimal:
    try:
        return labels.compute_risk_unit(idea).quantize(CENT)
    except labels.UndefinedRisk as exc:
        raise errors.field_error("ideas", f"idea {idea.idea_id!r}: {exc}")


# ======================================================================================
# Consumers: decisions and feature snapshots, in batches
# ======================================================================================

def write_decisions(conn, events) -> int:
    """Insert ml_decisions rows for DecisionRecorded events; a decision already recorded
    (unique decision_key) is skipped, so redelivery beyond the host's dedupe is a no-op."""
    rows: dict[str, dict] = {}
    now = utcnow()
    for ev in events:
        p = ev.payload
        if p["decision_id"] in rows:
            continue
        rows[p["decision_id"]] = dict(
            id=p["decision_id"], decision_key=p["decision_key"], user_id=ev.user_id, idea_id=p["idea_id"],
            tracked_idea_id=p["tracked_idea_id"], context_id=p["context_id"], decision_time=p["decision_time"],
            model_id=p.get("model_id"), model_version=p.get("model_version"),
            selector_params_version=p["selector_params_version"], feature_snapshot_id=p["feature_snapshot_id"],
            original_score=Decimal(p["original_score"]),
            ml_score=Decimal(p["ml_score"]) if p.get("ml_score") is not None else None,
            final_score=Decimal(p["final_score"]), rule_components=p["rule_components"],
            ml_weight=float(p.get("ml_weight") or 0.0), scoring_mode=p.get("scoring_mode", "normal"),
            experiment_id=p.get("experiment_id"), experiment_arm=p.get("experiment_arm"),
            exploration=bool(p.get("exploration")), action_taken="ranked", rank=int(p.get("rank") or 0),
            recorded_at=now)
    return _insert_new(conn, ml_decisions, rows)


def _feature_row(user_id: int, p: dict, now) -> dict:
    row = {c: p.get(c) for c in FEATURE_COLUMNS}
    row.update(id=p["feature_snapshot_id"], user_id=user_id, tracked_idea_id=p["tracked_idea_id"],
               decision_id=p["decision_id"], recorded_at=now)
    return row


def write_feature_snapshots(conn, events) -> int:
    rows: dict[str, dict] = {}
    now = utcnow()
    for ev in events:
        p = ev.payload
        rows.setdefault(p["feature_snapshot_id"], _feature_row(ev.user_id, p, now))
    return _insert_new(conn, ml_feature_snapshots, rows)


def _insert_new(conn, table, rows: dict[str, dict]) -> int:
    ids = list(rows)
    for part in _chunks(ids):
        for (have,) in conn.execute(sa.select(table.c.id).where(table.c.id.in_(part))):
            rows.pop(have, None)
    new = list(rows.values())
    for part in _chunks(new, 5000):
        conn.execute(table.insert(), part)
    return len(new)


# ======================================================================================
# Reads
# ======================================================================================

def _features_of_snapshot(row) -> dict:
    m = row._mapping
    out = {}
    for c in FEATURE_COLUMNS:
        v = m[c]
        if isinstance(v, Decimal):
            v = float(v)
        if c == "is_opex_week" and v is not None:
            v = bool(v)
        out[c] = v
    return out


def get_decision(conn, user_id: int, decision_id: str) -> dict:
    """Everything needed to reproduce a decision: its record, the exact features, the idea's
    geometry, the selector_params version's weights and constants, and the model reference."""
    r = conn.execute(sa.select(ml_decisions).where(ml_decisions.c.id == decision_id,
                                                   ml_decisions.c.user_id == user_id)).first()
    if r is not None:
        d = dict(r._mapping)
        d["status"] = "recorded"
        f = conn.execute(sa.select(ml_feature_snapshots).where(
            ml_feature_snapshots.c.id == d["feature_snapshot_id"])).first()
        d["features"] = _features_of_snapshot(f) if f is not None else None
    else:
        o = outbox.outbox.c
        row = conn.execute(sa.select(o.payload).where(o.aggregate_id == decision_id, o.stream == DECISIONS,
                                                      o.user_id == user_id)).first()
        if row is None:
            raise errors.NotFound("no such decision")
        p = json.loads(row.payload)
        d = {**_payload_item(p), "id": p["decision_id"], "decision_key": p["decision_key"],
             "context_id": p["context_id"], "decision_time": p["decision_time"],
             "selector_params_version": p["selector_params_version"],
             "feature_snapshot_id": p["feature_snapshot_id"], "scoring_mode": p["scoring_mode"],
             "action_taken": "ranked", "status": "pending", "features": _features_from_json(p["features"])}
        d["features"] = {k: d["features"].get(k) for k in FEATURE_COLUMNS}
    t = tracked_ideas.c
    idea = conn.execute(sa.select(tracked_ideas).where(t.id == d["tracked_idea_id"], t.user_id == user_id)).first()
    d["idea"] = None if idea is None else {k: idea._mapping[k] for k in (
        "idea_id", "symbol", "strategy", "side", "direction", "strike", "width", "expiration", "dte",
        "quantity", "entry_debit", "risk_unit")}
    params = params_version(conn, user_id, d["selector_params_version"])
    d["selector_params"] = params.to_row() if params is not None else None
    d["model"] = {"model_id": d.get("model_id"), "model_version": d.get("model_version")}
    return d


def idea_row(conn, user_id: int, idea_id: str) -> dict:
    t = tracked_ideas.c
    r = conn.execute(sa.select(tracked_ideas).where(t.user_id == user_id, t.idea_id == idea_id)).first()
    if r is None:
        raise errors.NotFound(f"no tracked idea {idea_id!r}")
    return dict(r._mapping)


def list_ideas(conn, user_id: int, *, settlement_status: str | None = None, context_id: str | None = None,
               page: int = 1, page_size: int = 50) -> tuple[list[dict], int]:
    t = tracked_ideas.c
    cond = [t.user_id == user_id]
    if settlement_status:
        cond.append(t.settlement_status == settlement_status)
    if context_id:
        cond.append(t.context_id == context_id)
    total = conn.execute(sa.select(sa.func.count()).select_from(tracked_ideas).where(*cond)).scalar()
    rows = conn.execute(sa.select(tracked_ideas).where(*cond).order_by(t.decision_time.desc(), t.idea_id)
                        .limit(page_size).offset((page - 1) * page_size))
    return [dict(r._mapping) for r in rows], int(total)
