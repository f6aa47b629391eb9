"""Use cases of the breakers context. No Flask here: views, CLI commands, bus handlers and tests
call these with a ``conn`` in an open transaction.

Latching: a breaker trips when an evaluation after a new input (a closed position, a fill's
slippage, a confidence reading, an execution, a config change) finds it breached; it then stays
tripped until a person clears it or its reset policy does (``session_open``: at the next
session open; ``auto``: as soon as it is no longer breached). Each trip, clear and trading-state
transition is written to ``breaker_audit`` and emitted on ``breakers.events`` in the same
transaction.
"""
from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import sqlalchemy as sa

from app import errors
from app.db import is_duplicate_key, new_id, utcnow
from bus.envelope import iso
from plugins.breakers import engine
from plugins.breakers import tables as t
from plugins.breakers.schemas import TOPIC
from plugins.breakers.engine import NAMES, SPECS

SYSTEM = engine.SYSTEM


def now() -> dt.datetime:
    """The clock (tests move it)."""
    return utcnow()


# -- recording ------------------------------------------------------------------------------
def _num(v) -> Decimal | None:
    """Values and limits on events carry 6 places, like the API."""
    return None if v is None else engine.q6(v)


def _audit(conn, user_id, at, action: str, actor: str, *, breaker=None, from_state=None, to_state=None,
           value=None, limit=None, reason=None) -> None:
    conn.execute(t.audit.insert().values(
        user_id=user_id, at=at, action=action, breaker=breaker, from_state=from_state, to_state=to_state,
        current_value=value, limit_value=limit, actor=actor[:120], reason=(reason or "")[:400] or None))


def _upsert_state(conn, user_id: int, breaker: str, values: dict) -> None:
    done = conn.execute(t.states.update().where(t.states.c.user_id == user_id, t.states.c.breaker == breaker)
                        .values(**values)).rowcount
    if not done:
        conn.execute(t.states.insert().values(user_id=user_id, breaker=breaker, **values))


def _latch(conn, user_id: int, cfg: engine.Config, m: engine.Measure, at) -> None:
    _upsert_state(conn, user_id, cfg.breaker, dict(
        tripped=True, current_value=m.value, limit_value=cfg.limit, severity=cfg.severity,
        message=m.message[:400], since=at, tripped_at=at, cleared_by=None, cleared_at=None, clear_reason=None))
    _audit(conn, user_id, at, "breaker_tripped", SYSTEM, breaker=cfg.breaker, value=m.value,
           limit=cfg.limit, reason=m.message)
    TOPIC.emit(conn, "BreakerTripped", aggregate_type="breaker", aggregate_id=f"{user_id}:{cfg.breaker}",
               user_id=user_id, occurred_at=at, payload={
                   "user_id": user_id, "breaker": cfg.breaker, "value": _num(m.value), "limit": _num(cfg.limit),
                   "severity": cfg.severity, "message": m.message, "tripped_at": at})


def _unlatch(conn, user_id: int, breaker: str, at, by: str, reason: str) -> None:
    _upsert_state(conn, user_id, breaker, dict(tripped=False, since=at, cleared_by=by[:120], cleared_at=at,
                                               clear_reason=reason[:400]))
    _audit(conn, user_id, at, "breaker_cleared", by, breaker=breaker, reason=reason)
    TOPIC.emit(conn, "BreakerCleared", aggregate_type="breaker", aggregate_id=f"{user_id}:{breaker}",
               user_id=user_id, occurred_at=at, payload={
                   "user_id": user_id, "breaker": breaker, "cleared_by": by, "cleared_at": at, "reason": reason})


def _ensure_trading_row(conn, user_id: int, at) -> None:
    if conn.execute(sa.select(t.trading_state.c.user_id).where(t.trading_state.c.user_id == user_id)).first():
        return
    try:
        with conn.begin_nested():
            conn.execute(t.trading_state.insert().values(
                user_id=user_id, state="ACTIVE", since=at, reason=None, manual_state="ACTIVE", lock_seq=0))
    except sa.exc.IntegrityError as exc:
        if not is_duplicate_key(exc):
            raise


def lock_user(conn, user_id: int) -> None:
    """Take this user's row lock until the transaction ends (an UPDATE, so it works the same
    on SQLite's single writer and on MySQL/MariaDB). It serialises the user's executions, and
    every writer of the user's breaker rows takes it first, so locks are always taken in the
    same order (no deadlocks between an execution and a bus handler)."""
    bump = t.trading_state.update().where(t.trading_state.c.user_id == user_id).values(
        lock_seq=t.trading_state.c.lock_seq + 1)
    if not conn.execute(bump).rowcount:
        _ensure_trading_row(conn, user_id, utcnow())
        conn.execute(bump)


def sync(conn, user_id: int, at: dt.datetime, evaluate=(), actor: str = SYSTEM) -> engine.Snapshot:
    """Bring the recorded state in line with the rules at ``at``: latch breakers in
    ``evaluate`` that are breached, record automatic resets, and record the trading-state
    transition (audit + events). Returns the snapshot after the changes."""
    lock_user(conn, user_id)
    snap = engine.snapshot(conn, user_id, at, measure_all=False)
    for name, row in snap.rows.items():
        if row.tripped and name not in snap.configs:
            _unlatch(conn, user_id, name, at, SYSTEM, f"{name} is no longer configured (disabled)")
    for name, e in snap.effective.items():
        latched = bool(e.row is not None and e.row.tripped)
        if e.reset_at is not None:
            _unlatch(conn, user_id, name, e.reset_at, "auto:session_open", f"{name} reset at the session open")
            latched = False
        if e.config.reset_policy == "auto":
            if latched and not e.tripped:
                _unlatch(conn, user_id, name, at, "auto", f"{name} no longer breached")
            elif not latched and e.tripped:
                _latch(conn, user_id, e.config, e.measure, at)
        elif name in evaluate and not latched:
            m = engine.measure(conn, user_id, e.config, at)
            if m.breached:
                _latch(conn, user_id, e.config, m, at)
    snap = engine.snapshot(conn, user_id, at)
    _record_state(conn, snap, at, actor)
    return snap


def _record_state(conn, snap: engine.Snapshot, at, actor: str) -> None:
    state, why = snap.state()
    stored = snap.trading_row.state if snap.trading_row else "ACTIVE"
    if snap.trading_row is None:
        _ensure_trading_row(conn, snap.user_id, at)
    if state == stored:
        return
    conn.execute(t.trading_state.update().where(t.trading_state.c.user_id == snap.user_id)
                 .values(state=state, since=at, reason=why["reason"][:400]))
    _audit(conn, snap.user_id, at, "state_changed", actor, breaker=why["breaker"], from_state=stored,
           to_state=state, value=why["value"], limit=why["limit"], reason=why["reason"])
    TOPIC.emit(conn, "TradingStateChanged", aggregate_type="trading_state", aggregate_id=str(snap.user_id),
               user_id=snap.user_id, occurred_at=at, payload={
                   "user_id": snap.user_id, "from_state": stored, "to_state": state, "breaker": why["breaker"],
                   "value": _num(why["value"]), "limit": _num(why["limit"]), "reason": why["reason"]})


# -- enforcement (the host hooks) ----------------------------------------------------------
_LOG_EXECUTION = t.order_log.insert()


def check_order_allowed(conn, user_id: int, order: dict) -> list[tuple[str, str, dict]]:
    """Vetoes for executing ``order`` now, as (source, message, detail). Runs in the executing
    transaction. With an order-rate limit L it locks the user's row, counts the executions of
    the trailing second and refuses the order when there are already L, else records this one:
    the lock serialises a user's executions until commit, so at most L commit in any
    one-second window. Two to four statements on the allowing path.

    ``order["stage"] == "create"`` (POST /api/orders): a new order is refused while trading is
    HALTED (the orders kill switch, a manual halt, a tripped critical breaker) or, unless it
    reduces a position, REDUCING; the order rate counts executions only, so it neither refuses
    nor counts a creation."""
    if order.get("stage") == "create":
        snap = engine.snapshot(conn, user_id, now(), lean=True)
        state, _ = snap.state()
        if state == "HALTED":
            return _halt_vetoes(snap)
        if state == "REDUCING" and not order.get("reduces_position"):
            return _reduce_vetoes(snap)
        return []
    snap = engine.snapshot(conn, user_id, now(), lean=True, lock_clock=now, ensure_row=lock_user)
    state, _ = snap.state()
    if state == "HALTED":
        return _halt_vetoes(snap)
    if state == "REDUCING" and not order.get("reduces_position"):
        return _reduce_vetoes(snap)
    rate = snap.effective.get(engine.ORDER_RATE)
    if rate is not None:
        n, limit = int(rate.measure.value), rate.config.limit
        if n >= limit:
            return [(engine.ORDER_RATE, f"order rate: {n} executions in the last second; the limit is "
                     f"{limit.normalize():f}/s, retry in a moment",
                     {"value": Decimal(n), "limit": limit, "severity": rate.config.severity})]
        conn.execute(_LOG_EXECUTION, {"user_id": user_id, "order_id": str(order.get("order_id") or "")[:64] or None,
                                      "executed_at": snap.now})
        if random.random() < 0.02:  # keep the log short (only the last second matters)
            conn.execute(t.order_log.delete().where(t.order_log.c.user_id == user_id,
                                                    t.order_log.c.executed_at < snap.now - dt.timedelta(minutes=1)))
        if n + 1 >= limit or snap.dirty():
            sync(conn, user_id, snap.now, evaluate=(engine.ORDER_RATE,))
    elif snap.dirty():
        sync(conn, user_id, snap.now)
    return []


def _veto_of(e: engine.Effective) -> tuple[str, str, dict]:
    c = engine.breaker_cause(e)
    row = e.row
    return (e.config.breaker, c["reason"], {
        "value": c["value"], "limit": e.config.limit, "severity": e.config.severity,
        "tripped_at": row.tripped_at if row is not None and row.tripped else None,
        "reset_policy": e.config.reset_policy})


def _halt_vetoes(snap: engine.Snapshot) -> list:
    """Vetoes name who engaged a switch or set the state only as ``engine.shown_by`` allows
    (another user is "an administrator"); times are UTC with milliseconds."""
    out = []
    ks = snap.switch("orders")
    if ks is not None:
        by = engine.shown_by(ks.engaged_by, snap.user_id)
        out.append(("kill_switch:orders", f"the orders kill switch is engaged ({'deployment' if ks.scope_key == 0 else 'you'}) "
                    f"by {by} at {iso(ks.engaged_at)}: {ks.reason}",
                    {"kill_switch_id": ks.id, "engaged_by": by, "engaged_at": ks.engaged_at}))
    tr = snap.trading_row
    if tr is not None and tr.manual_state == "HALTED":
        by = engine.shown_by(tr.manual_by, snap.user_id)
        out.append(("trading_state", f"trading is HALTED by {by}: {tr.manual_reason}",
                    {"state": "HALTED", "set_by": by, "set_at": tr.manual_at}))
    out += [_veto_of(e) for e in snap.tripped("critical")]
    return out


def _reduce_vetoes(snap: engine.Snapshot) -> list:
    out = []
    tr = snap.trading_row
    if tr is not None and tr.manual_state == "REDUCING":
        out.append(("trading_state", f"trading is REDUCING (set by {engine.shown_by(tr.manual_by, snap.user_id)}: {tr.manual_reason}); "
                    "only orders that reduce an open position pass", {"state": "REDUCING"}))
    for e in snap.tripped("reduce_only"):
        source, message, detail = _veto_of(e)
        out.append((source, message + "; only orders that reduce an open position pass", detail))
    return out


def scoring_mode(conn, user_id: int | None) -> str | None:
    """``rules_only`` when the ML kill switch (the user's or the deployment's) is engaged or any
    of the user's breakers is tripped; else None (no opinion)."""
    if user_id is None:
        on = conn.execute(sa.select(t.kill_switches.c.id).where(
            t.kill_switches.c.engaged.is_(True), t.kill_switches.c.kind == "ml_scoring",
            t.kill_switches.c.scope_key == 0)).first()
        return "rules_only" if on else None
    snap = engine.snapshot(conn, user_id, now(), lean=True)
    return "rules_only" if snap.scoring_mode() == "rules_only" else None


# -- inputs (from the bus handlers and the API) ---------------------------------------------
def _add_pnl(conn, user_id: int, book: str, source_key: str, pnl: Decimal, occurred_at) -> bool:
    """Add one realized P&L to a book; False when this source was already counted."""
    try:
        with conn.begin_nested():
            conn.execute(t.pnl_ledger.insert().values(user_id=user_id, book=book, source_key=source_key,
                                                      pnl=pnl, occurred_at=occurred_at))
    except sa.exc.IntegrityError as exc:
        if is_duplicate_key(exc):
            return False
        raise
    row = engine.book_row(conn, user_id, book)
    if row is None:
        cum = Decimal(pnl)
        conn.execute(t.pnl_book.insert().values(user_id=user_id, book=book, cumulative=cum,
                                                high_water=max(cum, Decimal(0)), updated_at=utcnow()))
    else:
        cum = row.cumulative + Decimal(pnl)
        conn.execute(t.pnl_book.update().where(t.pnl_book.c.user_id == user_id, t.pnl_book.c.book == book)
                     .values(cumulative=cum, high_water=max(row.high_water, cum), updated_at=utcnow()))
    return True


def record_realized_pnl(conn, user_id: int, source_key: str, pnl: Decimal, occurred_at) -> None:
    """A trade's realized P&L (net of fees): daily P&L, cumulative, high water; then evaluate
    the daily loss and drawdown breakers."""
    if _add_pnl(conn, user_id, "trades", source_key, pnl, occurred_at):
        sync(conn, user_id, now(), evaluate=(engine.DAILY_LOSS, engine.DRAWDOWN))


def record_ml_pnl(conn, user_id: int, source_key: str, pnl: Decimal, occurred_at) -> None:
    """The ML ledger's (paper) P&L goes to its own book, kept apart from real trades'."""
    _add_pnl(conn, user_id, "ml", source_key, pnl, occurred_at)


def record_slippage(conn, user_id: int, order_id: str, slippage: Decimal, filled_at) -> None:
    """One executed order's slippage (per unit, positive = worse than the limit)."""
    try:
        with conn.begin_nested():
            conn.execute(t.slippage_log.insert().values(user_id=user_id, order_id=order_id[:64],
                                                        slippage=slippage, filled_at=filled_at))
    except sa.exc.IntegrityError as exc:
        if is_duplicate_key(exc):
            return
        raise
    stale = conn.execute(sa.select(t.slippage_log.c.filled_at).where(t.slippage_log.c.user_id == user_id)
                         .order_by(t.slippage_log.c.filled_at.desc()).offset(engine.SLIPPAGE_WINDOW * 5).limit(1)).scalar()
    if stale is not None:
        conn.execute(t.slippage_log.delete().where(t.slippage_log.c.user_id == user_id,
                                                   t.slippage_log.c.filled_at <= stale))
    sync(conn, user_id, now(), evaluate=(engine.SLIPPAGE,))


def record_confidence(conn, user_id: int, value: Decimal, regime: str | None, actor: str) -> dict:
    at = now()
    done = conn.execute(t.inputs.update().where(t.inputs.c.user_id == user_id)
                        .values(model_confidence=value, regime=regime, confidence_at=at)).rowcount
    if not done:
        conn.execute(t.inputs.insert().values(user_id=user_id, model_confidence=value, regime=regime, confidence_at=at))
    sync(conn, user_id, at, evaluate=(engine.CONFIDENCE,), actor=actor)
    return breaker_status(conn, user_id, engine.CONFIDENCE)


# -- configuration ---------------------------------------------------------------------------
def _check_limit(name: str, data: dict) -> None:
    limit = data["limit"]
    if name == engine.DRAWDOWN:
        if not (0 < limit <= 1):
            raise errors.field_error("limit", "max_drawdown is a fraction: 0 < limit <= 1 (0.1 = 10%)")
        if data.get("capital") is None:
            raise errors.field_error("capital", "max_drawdown needs the account equity (capital) it is a fraction of")
    elif name == engine.CONFIDENCE:
        if not (0 <= limit <= 1):
            raise errors.field_error("limit", "model_confidence is a confidence: 0 <= limit <= 1")
    elif name == engine.ORDER_RATE:
        if limit < 1 or limit != limit.to_integral_value():
            raise errors.field_error("limit", "order_rate is a whole number of orders per second >= 1")
    elif name == engine.DAILY_LOSS:
        if limit <= 0:
            raise errors.field_error("limit", "daily_loss_limit is a positive amount of dollars")
    elif limit < 0:
        raise errors.field_error("limit", "must be >= 0")


def set_config(conn, user_id: int, name: str, data: dict, *, actor: str, admin: bool) -> dict:
    """Create or replace a breaker's config for the user (or, for an admin, the deployment),
    then evaluate it at once."""
    spec = SPECS[name]
    deployment = data.get("scope") == "deployment"
    if deployment and not admin:
        raise errors.Forbidden("only an admin may set deployment-wide limits", code="admin_only")
    _check_limit(name, data)
    scope_key = 0 if deployment else user_id
    at = now()
    values = dict(
        user_id=None if deployment else user_id, limit_value=data["limit"],
        severity=data.get("severity") or spec.severity, enabled=data.get("enabled", True),
        reset_policy=data.get("reset_policy") or spec.reset_policy, capital=data.get("capital"),
        session_open=data.get("session_open") or engine.DEFAULT_SESSION_OPEN,
        session_tz=data.get("session_tz") or engine.DEFAULT_SESSION_TZ, updated_by=actor[:120], updated_at=at)
    done = conn.execute(t.configs.update().where(t.configs.c.scope_key == scope_key, t.configs.c.breaker == name)
                        .values(**values)).rowcount
    if not done:
        conn.execute(t.configs.insert().values(id=new_id(), scope_key=scope_key, breaker=name, **values))
    _audit(conn, None if deployment else user_id, at, "config_set", actor, breaker=name, limit=data["limit"],
           reason=f"{'deployment' if deployment else 'user'} {name}: limit {data['limit']}, severity "
                  f"{values['severity']}, reset {values['reset_policy']}, enabled {values['enabled']}")
    if user_id:  # a deployment-wide change reaches other users at their next evaluation
        sync(conn, user_id, at, evaluate=(name,), actor=actor)
    return config_of(conn, user_id, name)


def config_of(conn, user_id: int, name: str) -> dict:
    rows = [r for r in engine.config_rows(conn, user_id) if r.breaker == name]
    eff = engine.merge(rows)
    by_scope = {("deployment" if r.user_id is None else "user"): _config_row(r, user_id or None) for r in rows}
    return {"breaker": name, "effective": _config_dict(eff) if eff else None,
            "user": by_scope.get("user"), "deployment": by_scope.get("deployment")}


def list_configs(conn, user_id: int) -> list[dict]:
    return [config_of(conn, user_id, n) for n in NAMES]


def _config_dict(c: engine.Config) -> dict:
    return {"limit": c.limit, "severity": c.severity, "reset_policy": c.reset_policy, "capital": c.capital,
            "session_open": c.session_open, "session_tz": c.session_tz, "scope": c.scope}


def _config_row(r, viewer_id: int | None) -> dict:
    return {"limit": r.limit_value, "severity": r.severity, "enabled": r.enabled, "reset_policy": r.reset_policy,
            "capital": r.capital, "session_open": r.session_open, "session_tz": r.session_tz,
            "updated_by": engine.shown_by(r.updated_by, viewer_id), "updated_at": r.updated_at}


# -- people's actions ---------------------------------------------------------------------------
def clear_breaker(conn, user_id: int, name: str, reason: str, *, actor: str) -> dict:
    """A person clears a tripped breaker (recorded with who, when and why). It trips again only
    when a later input breaches it again."""
    lock_user(conn, user_id)  # the user's row first, like every writer (see lock_user)
    at = now()
    snap = engine.snapshot(conn, user_id, at)
    e = snap.effective.get(name)
    row = snap.rows.get(name)
    if e is not None and e.config.reset_policy == "auto" and e.tripped:
        raise errors.InvalidState(f"{name} is still breached and resets automatically once it is not "
                                  f"({e.measure.message})", code="still_breached")
    if row is None or not row.tripped or (e is not None and e.reset_at is not None):
        raise errors.InvalidState(f"{name} is not tripped", code="not_tripped")
    _unlatch(conn, user_id, name, at, actor, reason)
    sync(conn, user_id, at, actor=actor)
    return breaker_status(conn, user_id, name)


def set_trading_state(conn, user_id: int, state: str, reason: str, *, actor: str) -> dict:
    """Set the manual floor of the user's trading state (HALTED / REDUCING; ACTIVE removes
    it). Tripped breakers and kill switches still apply on top."""
    at = now()
    _ensure_trading_row(conn, user_id, at)
    conn.execute(t.trading_state.update().where(t.trading_state.c.user_id == user_id).values(
        manual_state=state, manual_reason=reason[:400], manual_by=actor[:120], manual_at=at))
    _audit(conn, user_id, at, "manual_state_set", actor, to_state=state, reason=reason)
    sync(conn, user_id, at, actor=actor)
    return status(conn, user_id)["trading_state"]


def engage_kill_switch(conn, user_id: int, kind: str, reason: str, *, scope: str, actor: str, admin: bool) -> dict:
    """Engage a kill switch at once (idempotent: an engaged one is returned as it is)."""
    deployment = scope == "deployment"
    if deployment and not admin:
        raise errors.Forbidden("only an admin may engage a deployment-wide kill switch", code="admin_only")
    scope_key = 0 if deployment else user_id
    existing = _engaged(conn, scope_key, kind)
    if existing is not None:
        return _switch_dict(existing, user_id)
    at = now()
    sid = new_id()
    conn.execute(t.kill_switches.insert().values(
        id=sid, scope_key=scope_key, user_id=None if deployment else user_id, kind=kind, engaged=True,
        engaged_by=actor[:120], engaged_at=at, reason=reason[:400]))
    ks = _switch_dict(_engaged(conn, scope_key, kind))
    owner = None if deployment else user_id
    _audit(conn, owner, at, "kill_switch_engaged", actor, breaker=f"kill_switch:{kind}", reason=reason)
    TOPIC.emit(conn, "KillSwitchEngaged", aggregate_type="kill_switch", aggregate_id=sid, user_id=owner,
               occurred_at=at, payload=ks)
    if not deployment:
        sync(conn, user_id, at, actor=actor)
    return ks


def release_kill_switch(conn, user_id: int, kind: str, reason: str, *, scope: str, actor: str, admin: bool) -> dict:
    deployment = scope == "deployment"
    if deployment and not admin:
        raise errors.Forbidden("only an admin may release a deployment-wide kill switch", code="admin_only")
    scope_key = 0 if deployment else user_id
    row = _engaged(conn, scope_key, kind)
    if row is None:
        raise errors.InvalidState(f"the {scope} {kind} kill switch is not engaged", code="not_engaged")
    at = now()
    conn.execute(t.kill_switches.update().where(t.kill_switches.c.scope_key == scope_key,
                                                t.kill_switches.c.kind == kind, t.kill_switches.c.engaged.is_(True))
                 .values(engaged=False, released_by=actor[:120], released_at=at, release_reason=reason[:400]))
    ks = _switch_dict(conn.execute(sa.select(t.kill_switches).where(t.kill_switches.c.id == row.id)).first())
    owner = None if deployment else user_id
    _audit(conn, owner, at, "kill_switch_released", actor, breaker=f"kill_switch:{kind}", reason=reason)
    TOPIC.emit(conn, "KillSwitchReleased", aggregate_type="kill_switch", aggregate_id=row.id, user_id=owner,
               occurred_at=at, payload=ks)
    if not deployment:
        sync(conn, user_id, at, actor=actor)
    return ks


def _engaged(conn, scope_key: int, kind: str):
    return conn.execute(sa.select(t.kill_switches).where(
        t.kill_switches.c.scope_key == scope_key, t.kill_switches.c.kind == kind,
        t.kill_switches.c.engaged.is_(True))).first()


def _switch_dict(r, viewer_id: int | None = None) -> dict:
    """A kill switch; with ``viewer_id``, who engaged and released it as ``engine.shown_by``
    lets that user see it (the events carry the stored actors)."""
    return {"id": r.id, "kind": r.kind, "scope": "deployment" if r.scope_key == 0 else "user",
            "user_id": r.user_id, "engaged": bool(r.engaged), "engaged_by": engine.shown_by(r.engaged_by, viewer_id),
            "engaged_at": r.engaged_at, "reason": r.reason, "released_by": engine.shown_by(r.released_by, viewer_id),
            "released_at": r.released_at, "release_reason": r.release_reason}


# -- reading ---------------------------------------------------------------------------------
def _breaker_dict(snap: engine.Snapshot, name: str, viewer_id: int | None) -> dict:
    spec = SPECS[name]
    e = snap.effective.get(name)
    row = snap.rows.get(name)
    if e is None:
        return {"name": name, "configured": False, "value": None, "limit": None, "severity": None,
                "reset_policy": None, "unit": spec.unit, "tripped": False,
                "since": row.since if row is not None else None, "tripped_at": None, "message": spec.description,
                "cleared_by": engine.shown_by(row.cleared_by, viewer_id) if row is not None else None,
                "cleared_at": row.cleared_at if row is not None else None}
    m = e.measure
    latched_at = row.tripped_at if row is not None and row.tripped and e.tripped else None
    if e.tripped:
        since = latched_at or snap.now
    elif e.reset_at is not None:
        since = e.reset_at
    else:
        since = row.since if row is not None else None
    cleared_by = ("auto:session_open" if e.reset_at is not None
                  else engine.shown_by(row.cleared_by, viewer_id) if row is not None else None)
    return {"name": name, "configured": True, "value": m.value, "limit": e.config.limit,
            "severity": e.config.severity, "reset_policy": e.config.reset_policy, "unit": spec.unit,
            "tripped": e.tripped, "since": since, "tripped_at": latched_at,
            "message": (row.message if row is not None and e.tripped and row.message and e.config.reset_policy != "auto"
                        else m.message),
            "cleared_by": None if e.tripped else cleared_by,
            "cleared_at": None if e.tripped else (e.reset_at or (row.cleared_at if row is not None else None))}


def breaker_status(conn, user_id: int, name: str) -> dict:
    return _breaker_dict(engine.snapshot(conn, user_id, now(), measure_all=True), name, user_id)


def status(conn, user_id: int, *, reveal_actors: bool = False) -> dict:
    """Trading state, scoring mode, each breaker (value, limit, state, since), kill switches and
    the P&L books, as of now (reset policies applied). Who acted is shown as
    ``engine.shown_by`` lets the user see it, unless ``reveal_actors`` (the operator's CLI)."""
    viewer = None if reveal_actors else user_id
    at = now()
    snap = engine.snapshot(conn, user_id, at, measure_all=True)
    state, why = snap.state(reveal=reveal_actors)
    tr = snap.trading_row
    since = tr.since if tr is not None and tr.state == state else at
    daily = snap.configs.get(engine.DAILY_LOSS)
    opened = engine.last_session_open(at, *((daily.session_open, daily.session_tz) if daily else ()))
    books = {}
    for book in engine.BOOKS:
        row = engine.book_row(conn, user_id, book)
        books[book] = {"daily_pnl": engine.daily_pnl(conn, user_id, opened, book),
                       "cumulative": row.cumulative if row else Decimal(0),
                       "high_water": row.high_water if row else Decimal(0)}
    return {
        "user_id": user_id, "as_of": at,
        "trading_state": {"state": state, "since": since, "reason": why["reason"], "breaker": why["breaker"],
                          "manual_state": tr.manual_state if tr is not None else "ACTIVE"},
        "scoring_mode": snap.scoring_mode(),
        "session_open": opened,
        "breakers": [_breaker_dict(snap, n, viewer) for n in NAMES],
        "kill_switches": [_switch_dict(k, viewer) for k in snap.kill_switches],
        "books": books,
    }


def audit_log(conn, user_id: int, *, page: int = 1, page_size: int = 100) -> tuple[list[dict], int]:
    """One page of the user's audit trail (deployment-wide entries included), newest first, and
    how many entries there are."""
    mine = sa.or_(t.audit.c.user_id == user_id, t.audit.c.user_id.is_(None))
    total = conn.execute(sa.select(sa.func.count()).select_from(t.audit).where(mine)).scalar_one()
    rows = conn.execute(sa.select(t.audit).where(mine).order_by(t.audit.c.id.desc())
                        .limit(page_size).offset((page - 1) * page_size)).fetchall()
    return [{"id": r.id, "at": r.at, "action": r.action, "breaker": r.breaker, "from_state": r.from_state,
             "to_state": r.to_state, "value": r.current_value, "limit": r.limit_value,
             "actor": engine.shown_by(r.actor, user_id),
             "reason": r.reason, "scope": "deployment" if r.user_id is None else "user"} for r in rows], int(total)
