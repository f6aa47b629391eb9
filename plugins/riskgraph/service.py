"""riskgraph use cases: strategies (with their version trail), templates, risk analysis and
risk artifacts (the artifacts, market inputs and position copies in ``artifacts.py``,
re-exported here). No Flask: every function takes ``conn`` (in an open transaction) and the
user id first, so views, bus handlers, CLI and tests call the same code."""
from __future__ import annotations

import datetime as dt
import os
import secrets

import sqlalchemy as sa

import optionsmath
from app import errors
from app.concurrency import versioned_update
from app.db import is_duplicate_key, new_id, utcnow
from plugins.riskgraph import offload, risk
# Risk artifacts, market inputs and the position copies live in artifacts.py, the analysis
# arguments in inputs.py; re-exported here so ``service.<name>`` keeps working for callers.
from plugins.riskgraph.artifacts import (  # noqa: F401
    apply_fill, apply_position, close_book, compute_position_artifact, get_artifact, get_market_inputs,
    list_artifacts, market_inputs_of, recompute_book, set_market_inputs,
)
from plugins.riskgraph.inputs import _input_error, _market
from plugins.riskgraph.schemas import TOPIC, SharedTemplate, Strategy, today
from plugins.riskgraph.tables import strategies, strategy_versions, templates

GEOMETRY = ("symbol", "underlying", "strategy", "side", "strike", "width", "dte", "expiration")
EDITABLE = GEOMETRY + ("debit", "visible", "sort_order", "color", "label")
_strategy_schema = Strategy()


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


# ======================================================================================
# Strategies
# ======================================================================================
def _strategy(row) -> dict:
    return dict(row._mapping)


def _load(c, user_id: int, strategy_id: str) -> dict | None:
    row = c.execute(sa.select(strategies).where(strategies.c.id == strategy_id,
                                                strategies.c.user_id == user_id)).first()
    return _strategy(row) if row else None


def get_strategy(c, user_id: int, strategy_id: str) -> dict:
    s = _load(c, user_id, strategy_id)
    if s is None:
        raise errors.NotFound(f"strategy {strategy_id} not found")
    return s


def list_strategies(c, user_id: int) -> list[dict]:
    rows = c.execute(sa.select(strategies).where(strategies.c.user_id == user_id, strategies.c.is_active.is_(True))
                     .order_by(strategies.c.sort_order, strategies.c.added_at, strategies.c.id))
    return [_strategy(r) for r in rows]


def _record(c, user_id: int, s: dict, change_type: str, reason: str | None, event: str) -> None:
    """The version row and the event of one change, in the caller's transaction."""
    snapshot = _strategy_schema.dump(s)
    now = s["updated_at"]
    c.execute(strategy_versions.insert().values(
        strategy_id=s["id"], version=s["version"], debit=s["debit"], visible=s["visible"], label=s["label"],
        change_type=change_type, change_reason=reason, snapshot=snapshot, created_at=now))
    TOPIC.emit(c, event, aggregate_type="risk_strategy", aggregate_id=s["id"],
               aggregate_version=s["version"], user_id=user_id, occurred_at=now,
               payload={"strategy": snapshot, "change_type": change_type, "change_reason": reason})


def _check_geometry(s: dict) -> None:
    try:
        risk.strategy_shape(s["strategy"], s["side"], float(s["strike"]),
                            float(s["width"]) if s.get("width") is not None else None)
    except risk.RiskInputError as exc:
        raise _input_error(exc) from None


def create_strategy(c, user_id: int, data: dict, *, strategy_id: str | None = None,
                    change_reason: str | None = None) -> dict:
    now = utcnow()
    symbol = data.get("symbol") or "SPX"
    expiration = data.get("expiration") or (now.date() + dt.timedelta(days=data["dte"]))
    s = dict(
        id=strategy_id or new_id(), user_id=user_id, symbol=symbol,
        underlying=data.get("underlying") or optionsmath.default_underlying(symbol), strategy=data["strategy"], side=data["side"],
        strike=data["strike"], width=data.get("width"), dte=data["dte"], expiration=expiration,
        debit=data.get("debit"), visible=data.get("visible", True), sort_order=data.get("sort_order") or 0,
        color=data.get("color"), label=data.get("label"), added_at=data.get("added_at") or _ms(now),
        is_active=True, version=1, created_at=now, updated_at=now)
    _check_geometry(s)
    try:
        with c.begin_nested():
            c.execute(strategies.insert().values(**s))
    except sa.exc.IntegrityError as exc:  # a client id taken meanwhile (concurrent import)
        if not is_duplicate_key(exc):
            raise
        raise errors.Conflict(f"strategy id {s['id']} is taken; retry the import", code="id_taken") from None
    _record(c, user_id, s, "created", change_reason or data.get("change_reason"), "StrategyAdded")
    return s


def _change_type(changes: dict) -> str:
    if "debit" in changes:
        return "debit_updated"
    if set(changes) == {"visible"}:
        return "visibility_toggled"
    return "edited"


def update_strategy(c, user_id: int, strategy_id: str, data: dict, expected: int) -> dict:
    """PATCH: change what differs; one version row (debit_updated / visibility_toggled /
    edited). A request that changes nothing still checks the version, and writes nothing."""
    s = get_strategy(c, user_id, strategy_id)
    if not s["is_active"]:
        raise errors.InvalidState("strategy is deleted", code="strategy_deleted")
    changes = {k: data[k] for k in EDITABLE if k in data and data[k] != s[k]}
    if not changes:
        if s["version"] != expected:
            raise errors.VersionConflict(f"version {expected} is stale; current version is {s['version']}",
                                         current=_strategy_schema.dump(s), current_version=s["version"])
        return s
    merged = {**s, **changes}
    _check_geometry(merged)
    now = utcnow()
    version = versioned_update(c, strategies, id_value=strategy_id, user_id=user_id, expected=expected,
                               values={**changes, "updated_at": now},
                               current=lambda: _dump_or_none(_load(c, user_id, strategy_id)))
    s = {**merged, "version": version, "updated_at": now}
    _record(c, user_id, s, _change_type(changes), data.get("change_reason"), "StrategyUpdated")
    return s


def _dump_or_none(s):
    return _strategy_schema.dump(s) if s else None


def delete_strategy(c, user_id: int, strategy_id: str, expected: int, reason: str | None = None) -> dict:
    """Soft delete: the row stays (inactive) with its version trail."""
    s = get_strategy(c, user_id, strategy_id)
    if not s["is_active"]:
        raise errors.InvalidState("strategy is already deleted", code="strategy_deleted")
    now = utcnow()
    version = versioned_update(c, strategies, id_value=strategy_id, user_id=user_id, expected=expected,
                               values={"is_active": False, "updated_at": now},
                               current=lambda: _dump_or_none(_load(c, user_id, strategy_id)))
    s = {**s, "is_active": False, "version": version, "updated_at": now}
    _record(c, user_id, s, "deleted", reason, "StrategyRemoved")
    return s


def list_versions(c, user_id: int, strategy_id: str) -> list[dict]:
    get_strategy(c, user_id, strategy_id)  # ownership: another user's id is 404
    rows = c.execute(sa.select(strategy_versions).where(strategy_versions.c.strategy_id == strategy_id)
                     .order_by(strategy_versions.c.version))
    return [dict(r._mapping) for r in rows]


def import_strategies(c, user_id: int, data: dict) -> dict:
    """Idempotent import. An item whose ``id`` is one of your strategies updates it (or
    leaves it unchanged; a deleted one comes back); an unknown id is kept; an id that
    belongs to someone else is replaced by a fresh one (see ``id_map``); no id: a new one."""
    reason = data.get("change_reason") or "import"
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    id_map, out = {}, []
    for item in data["strategies"]:
        given = item.get("id")
        fields = {k: v for k, v in item.items() if k not in ("id", "change_reason")}
        existing = None
        if given:
            row = c.execute(sa.select(strategies).where(strategies.c.id == given)).first()
            if row is not None and row.user_id == user_id:
                existing = _strategy(row)
            elif row is not None:
                given_id, given = given, None  # someone else's id: never touch or reveal it
                s = create_strategy(c, user_id, fields, change_reason=reason)
                id_map[given_id] = s["id"]
                counts["created"] += 1
                out.append(s)
                continue
        if existing is None:
            s = create_strategy(c, user_id, fields, strategy_id=given, change_reason=reason)
            counts["created"] += 1
        else:
            s = _reimport(c, user_id, existing, fields, reason, counts)
        if given:
            id_map[given] = s["id"]
        out.append(s)
    return {**counts, "id_map": id_map, "strategies": out}


def _reimport(c, user_id, existing, fields, reason, counts) -> dict:
    changes = {k: fields[k] for k in EDITABLE if k in fields and fields[k] is not None and fields[k] != existing[k]}
    for k in ("width", "debit", "color", "label"):  # nullable: an explicit null in the file counts
        if k in fields and fields[k] is None and existing[k] is not None:
            changes[k] = None
    if "added_at" in fields and fields["added_at"] and fields["added_at"] != existing["added_at"]:
        changes["added_at"] = fields["added_at"]
    if not changes and existing["is_active"]:
        counts["unchanged"] += 1
        return existing
    merged = {**existing, **changes}
    _check_geometry(merged)
    now = utcnow()
    values = {**changes, "is_active": True, "updated_at": now}
    version = versioned_update(c, strategies, id_value=existing["id"], user_id=user_id,
                               expected=existing["version"], values=values,
                               current=lambda: _dump_or_none(_load(c, user_id, existing["id"])))
    s = {**merged, "is_active": True, "version": version, "updated_at": now}
    _record(c, user_id, s, _change_type(changes) if existing["is_active"] else "edited",
            reason if existing["is_active"] else f"{reason} (restored)", "StrategyUpdated")
    counts["updated"] += 1
    return s


def export_strategies(c, user_id: int) -> dict:
    return {"format": "tradeloop.riskgraph.strategies/1", "exported_at": utcnow(),
            "strategies": list_strategies(c, user_id)}


def reorder_strategies(c, user_id: int, order: list[dict]) -> list[dict]:
    """Set sort_order for many strategies at once: all or nothing (any id that is not one
    of your active strategies -> 404, nothing changed). Each moved strategy gets a version
    (``edited``, reason ``reordered``) and a StrategyUpdated event."""
    ids = [i["id"] for i in order]
    rows = {r.id: _strategy(r) for r in c.execute(sa.select(strategies).where(
        strategies.c.id.in_(ids), strategies.c.user_id == user_id, strategies.c.is_active.is_(True)))}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise errors.NotFound(f"strategy {missing[0]} not found", errors={"json": {"order": [f"unknown id {missing[0]}"]}})
    now = utcnow()
    for item in order:
        s = rows[item["id"]]
        if s["sort_order"] == item["sort_order"]:
            continue
        version = versioned_update(c, strategies, id_value=s["id"], user_id=user_id, expected=s["version"],
                                   values={"sort_order": item["sort_order"], "updated_at": now},
                                   current=lambda s=s: _dump_or_none(_load(c, user_id, s["id"])))
        s.update(sort_order=item["sort_order"], version=version, updated_at=now)
        _record(c, user_id, s, "edited", "reordered", "StrategyUpdated")
    return list_strategies(c, user_id)


# ======================================================================================
# Templates
# ======================================================================================
def _template(row) -> dict:
    return dict(row._mapping)


def create_template(c, user_id: int, data: dict) -> dict:
    t = dict(id=new_id(), user_id=user_id, name=data["name"], description=data.get("description"),
             symbol=data.get("symbol") or "SPX", strategy=data["strategy"], side=data["side"],
             strike_offset=data.get("strike_offset") or 0, width=data.get("width"),
             dte_target=data["dte_target"], debit_estimate=data.get("debit_estimate"),
             is_public=False, share_code=None, use_count=0, created_at=utcnow())
    c.execute(templates.insert().values(**t))
    return t


def list_templates(c, user_id: int) -> list[dict]:
    rows = c.execute(sa.select(templates).where(templates.c.user_id == user_id)
                     .order_by(templates.c.created_at, templates.c.id))
    return [_template(r) for r in rows]


def get_template(c, user_id: int, template_id: str) -> dict:
    row = c.execute(sa.select(templates).where(templates.c.id == template_id,
                                               templates.c.user_id == user_id)).first()
    if row is None:
        raise errors.NotFound(f"template {template_id} not found")
    return _template(row)


def use_template(c, user_id: int, template_id: str, data: dict) -> dict:
    """Instantiate a template as a strategy: strike = ATM (spot rounded to the symbol's
    strike increment) + strike_offset; expiration = date + dte_target, rolled past a
    weekend (or the given expiration); counts use_count."""
    t = get_template(c, user_id, template_id)
    return _instantiate(c, user_id, t, data)


def _instantiate(c, user_id: int, t: dict, data: dict) -> dict:
    day = data.get("date") or today()
    strike = risk.atm_strike(data["spot"], t["symbol"], t["strike_offset"])
    if strike <= 0:
        raise errors.field_error("spot", f"ATM strike + offset {t['strike_offset']} is {strike}, not > 0")
    expiration = data.get("expiration") or risk.roll_to_weekday(day + dt.timedelta(days=t["dte_target"]))
    debit = data["debit"] if data.get("debit") is not None else t["debit_estimate"]
    s = create_strategy(c, user_id, {
        "symbol": t["symbol"], "strategy": t["strategy"], "side": t["side"], "strike": strike,
        "width": t["width"], "dte": (expiration - day).days, "expiration": expiration, "debit": debit,
        "label": data.get("label") or t["name"], "color": data.get("color")},
        change_reason=f"from template {t['name']}"[:255])
    c.execute(templates.update().where(templates.c.id == t["id"]).values(use_count=templates.c.use_count + 1))
    return s


def share_template(c, user_id: int, template_id: str) -> dict:
    """Give the template an unguessable share code (96 random bits, URL-safe); sharing
    again returns the same code."""
    t = get_template(c, user_id, template_id)
    code = t["share_code"]
    while code is None:
        candidate = secrets.token_urlsafe(12)
        try:
            with c.begin_nested():
                c.execute(templates.update().where(templates.c.id == t["id"], templates.c.user_id == user_id)
                          .values(share_code=candidate, is_public=True))
            code = candidate
        except sa.exc.IntegrityError as exc:  # a collision (2^-96): draw again
            if not is_duplicate_key(exc):
                raise
    return {"template_id": t["id"], "share_code": code, "path": f"/api/risk-graph/templates/shared/{code}"}


def _shared(c, code: str) -> dict:
    row = c.execute(sa.select(templates).where(templates.c.share_code == code,
                                               templates.c.is_public.is_(True))).first()
    if row is None:
        raise errors.NotFound("no template is shared with this code")
    return _template(row)


def get_shared_template(c, user_id: int, code: str) -> dict:
    """Any signed-in user may read a shared template — its geometry only, never its owner."""
    return SharedTemplate().dump(_shared(c, code))


def copy_shared_template(c, user_id: int, code: str) -> dict:
    """Copy a shared template into your own templates (seed section 9, item 5)."""
    t = _shared(c, code)
    return create_template(c, user_id, {k: t[k] for k in (
        "name", "description", "symbol", "strategy", "side", "strike_offset", "width", "dte_target",
        "debit_estimate")})


def use_shared_template(c, user_id: int, code: str, data: dict) -> dict:
    """Instantiate someone's shared template as your strategy (counts its use_count)."""
    return _instantiate(c, user_id, _shared(c, code), data)


# ======================================================================================
# Risk analysis
# ======================================================================================
# (price, date, leg) points above which an analysis runs in the process pool, off the
# gevent loop: ~50 ms of work on this machine (an iron condor over 1,001 prices x 10 dates
# is 44k and takes ~3 ms inline; 5,001 prices x 20 dates x 4 legs with Greek curves is 1.7M).
OFF_LOOP_WORK = int(os.environ.get("RISKGRAPH_OFF_LOOP_WORK", "600000"))


def analyze(get_conn, user_id: int, args: dict, *, location: str = "json") -> bytes:
    """Legs and/or saved strategies, overlaid on one price grid: P&L curves (T+n and
    expiry), Greeks at the spot, breakevens, max profit/loss (with unbounded flags), POP.
    Returns the response body as JSON bytes (``AnalyzeOut``), written straight from the
    engine's arrays; a large analysis (``OFF_LOOP_WORK``) is computed in a worker process.
    ``location`` is where the request's arguments came from (json, or query for GET).
    ``get_conn`` is called only to load saved strategies: ad-hoc legs open no transaction,
    so an analysis never holds a database lock (SQLite has one writer) while it computes."""
    m = _market(args)
    sets, meta = [], []
    underlying = args.get("underlying")
    try:
        if args.get("legs"):
            sets.append(risk.request_legs(args["legs"], m["valuation_date"], valuation_time=m["valuation_time"],
                                          underlying=underlying))
            meta.append({"source": "legs", "strategy_id": None, "label": None})
        for i, sid in enumerate(args.get("strategy_ids") or []):
            s = _load(get_conn(), user_id, sid)
            if s is None or not s["is_active"]:
                raise errors.NotFound(f"strategy {sid} not found",
                                      errors={location: {"strategy_ids": {str(i): ["not found"]}}})
            if args.get("iv") is None:
                raise errors.field_error("iv", "required to price saved strategies", location)
            sets.append(risk.strategy_legs(s, spot=m["spot"], r=m["r"], q=m["q"], iv=args["iv"],
                                           valuation_date=m["valuation_date"], valuation_time=m["valuation_time"]))
            meta.append({"source": "strategy", "strategy_id": s["id"], "label": s["label"]})
        if args.get("iv") is not None:
            sets = [[_with_iv(leg, args["iv"]) for leg in legs] for legs in sets]
        greek_curves = bool(args.get("greek_curves"))
        market = dict(m, greek_curves=greek_curves)
        if risk.work_size(sets, m["points"], len(m["days_forward"]), greek_curves) >= OFF_LOOP_WORK:
            return offload.run(risk.analysis_json, sets, meta, market)
        return risk.analysis_json(sets, meta, market)
    except risk.RiskInputError as exc:
        raise _input_error(exc, location) from None


def _with_iv(leg, iv):
    if leg.kind != "option" or leg.iv is not None:
        return leg
    import dataclasses
    return dataclasses.replace(leg, iv=iv)


def strategy_risk(get_conn, user_id: int, strategy_id: str, args: dict) -> bytes:
    s = get_strategy(get_conn(), user_id, strategy_id)
    if not s["is_active"]:
        raise errors.NotFound(f"strategy {strategy_id} not found")
    return analyze(get_conn, user_id, {**args, "legs": None, "strategy_ids": [strategy_id]}, location="query")


