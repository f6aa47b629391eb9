"""riskgraph's risk artifacts of trade-log positions (TradeLog integration): compute and store
one per position version and inputs (``RiskArtifactComputed``), list and read them; the
user's market inputs per symbol for event-driven recomputes; and the copy of positions built
from ``tradelog.events`` (Pattern B books). ``service`` re-exports the public names.
Every function takes ``c`` (a connection in an open transaction) and the user id first."""
from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa

from app import errors
from app.db import is_duplicate_key, new_id, utcnow
from plugins.riskgraph import risk
from plugins.riskgraph.inputs import _input_error, _market
from plugins.riskgraph.schemas import TOPIC
from plugins.riskgraph.tables import market_inputs, position_books, risk_artifacts


# ======================================================================================
# Risk artifacts (TradeLog integration)
# ======================================================================================
def _inputs(args: dict) -> dict:
    m = _market(args)
    out = {"spot": m["spot"], "iv": args.get("iv"), "r": m["r"], "q": m["q"],
           "valuation_date": m["valuation_date"].isoformat(), "points": m["points"],
           "bounds": list(m["bounds"]) if m["bounds"] else None, "days_forward": list(m["days_forward"])}
    if m["valuation_time"] is not None:  # only when given, so older inputs keep their hash
        out["valuation_time"] = m["valuation_time"].isoformat()
        del out["valuation_date"]
    if m["model"] != "bsm":
        out["model"] = m["model"]
    return out


def _hash(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _artifact(row) -> dict:
    return dict(row._mapping)


def compute_position_artifact(c, user_id: int, position: dict, args: dict, *, source: str) -> tuple[dict, bool]:
    """Compute and store the risk artifact of a trade-log position (its snapshot, or the
    copy built from events) and emit RiskArtifactComputed. The same position version with
    the same inputs returns the stored artifact (``reused`` True) and emits nothing."""
    position_id = str(position.get("position_id") or position.get("id"))
    version = position.get("version")
    inputs = _inputs(args)
    digest = _hash(inputs)
    row = c.execute(sa.select(risk_artifacts).where(
        risk_artifacts.c.user_id == user_id, risk_artifacts.c.position_id == position_id,
        risk_artifacts.c.source == source, risk_artifacts.c.source_version == version,
        risk_artifacts.c.inputs_hash == digest)).first()
    if row is not None:
        return _artifact(row), True
    m = _market(args)
    try:
        legs, unpriced = risk.position_legs(position, valuation_date=m["valuation_date"], iv=args.get("iv"),
                                            valuation_time=m["valuation_time"])
        out = risk.run([legs], **m)
    except risk.RiskInputError as exc:
        raise _input_error(exc) from None
    analysis = out["strategies"][0]
    now = utcnow()
    a = dict(id=new_id(), user_id=user_id, position_id=position_id, strategy_id=None, source=source,
             source_version=version, inputs_hash=digest, inputs=inputs,
             summary={**risk.summary_of(analysis, spot=m["spot"], iv=args.get("iv"), unpriced=unpriced),
                      "symbol": position.get("symbol")},
             curves=risk.curves_of(out, analysis), computed_at=now)
    c.execute(risk_artifacts.insert().values(**a))
    TOPIC.emit(c, "RiskArtifactComputed", aggregate_type="risk_artifact", aggregate_id=a["id"],
               aggregate_version=1, user_id=user_id, occurred_at=now,
               payload={"artifact_id": a["id"], "position_id": position_id, "strategy_id": None,
                        "source_version": version, "computed_at": now, "summary": a["summary"]})
    return a, False


def list_artifacts(c, user_id: int, position_id: str | None = None, *, page: int = 1,
                   page_size: int = 50) -> tuple[list[dict], int]:
    """One page of the user's artifacts, newest first, and how many there are."""
    cond = [risk_artifacts.c.user_id == user_id]
    if position_id:
        cond.append(risk_artifacts.c.position_id == position_id)
    total = c.execute(sa.select(sa.func.count()).select_from(risk_artifacts).where(*cond)).scalar_one()
    q = (sa.select(risk_artifacts).where(*cond).order_by(risk_artifacts.c.computed_at.desc(), risk_artifacts.c.id)
         .limit(page_size).offset((page - 1) * page_size))
    return [_artifact(r) for r in c.execute(q)], int(total)


def get_artifact(c, user_id: int, artifact_id: str) -> dict:
    row = c.execute(sa.select(risk_artifacts).where(risk_artifacts.c.id == artifact_id,
                                                    risk_artifacts.c.user_id == user_id)).first()
    if row is None:
        raise errors.NotFound(f"risk artifact {artifact_id} not found")
    return _artifact(row)


# -- market inputs (for event-driven recomputes) ------------------------------------------
def set_market_inputs(c, user_id: int, symbol: str, data: dict) -> dict:
    now = utcnow()
    inputs = {k: data[k] for k in ("spot", "iv", "r", "q") if data.get(k) is not None}
    done = c.execute(market_inputs.update().where(market_inputs.c.user_id == user_id,
                                                  market_inputs.c.symbol == symbol)
                     .values(inputs=inputs, updated_at=now)).rowcount
    if not done:
        try:
            with c.begin_nested():
                c.execute(market_inputs.insert().values(user_id=user_id, symbol=symbol, inputs=inputs, updated_at=now))
        except sa.exc.IntegrityError as exc:
            if not is_duplicate_key(exc):
                raise
            c.execute(market_inputs.update().where(market_inputs.c.user_id == user_id,
                                                   market_inputs.c.symbol == symbol)
                      .values(inputs=inputs, updated_at=now))
    return {"symbol": symbol, **inputs, "updated_at": now}


def market_inputs_of(c, user_id: int, symbol: str) -> dict:
    found = get_market_inputs(c, user_id, symbol)
    if found is None:
        raise errors.NotFound(f"no market inputs for {symbol}")
    return found


def get_market_inputs(c, user_id: int, symbol: str) -> dict | None:
    row = c.execute(sa.select(market_inputs).where(market_inputs.c.user_id == user_id,
                                                   market_inputs.c.symbol == symbol)).first()
    return {"symbol": symbol, **row.inputs, "updated_at": row.updated_at} if row else None


# -- Pattern B: riskgraph's copy of positions, from tradelog.events -----------------------
def _book(c, position_id: str):
    return c.execute(sa.select(position_books).where(position_books.c.position_id == position_id)).first()


def apply_position(c, user_id: int, position: dict, version: int | None) -> dict | None:
    """Store (replace) the copy of a position from PositionCreated / PositionAdjusted.
    Returns the book, or None when the event is older than what we hold."""
    pid = str(position.get("id") or position.get("position_id"))
    fills = list(position.get("fills") or [])
    for leg in position.get("legs") or []:
        fills.extend(dict(f, leg_id=leg.get("id")) for f in leg.get("fills") or [])
    legs = [{k: v for k, v in leg.items() if k != "fills"} for leg in position.get("legs") or []]
    existing = _book(c, pid)
    if existing is not None:
        if existing.user_id != user_id or (version is not None and version < existing.version):
            return None
        if not fills:  # a representation without fills keeps the fills we have collected
            fills = existing.book.get("fills", [])
    book = _json({"position_id": pid, "symbol": position.get("symbol"), "status": position.get("status"),
                  "legs": legs, "fills": fills})
    return _save_book(c, user_id, pid, version or (existing.version + 1 if existing else 1), book, existing)


def apply_fill(c, user_id: int, position_id: str, fill: dict, version: int | None) -> dict | None:
    existing = _book(c, position_id)
    if existing is None or existing.user_id != user_id:
        return None  # a fill for a position we never saw: wait for its PositionCreated
    book = dict(existing.book)
    if any(f.get("id") == fill.get("id") for f in book.get("fills", [])):
        return book
    book["fills"] = list(book.get("fills", [])) + [_json(fill)]
    return _save_book(c, user_id, position_id, max(version or 0, existing.version), book, existing)


def _save_book(c, user_id, pid, version, book, existing) -> dict:
    now = utcnow()
    if existing is None:
        c.execute(position_books.insert().values(position_id=pid, user_id=user_id, version=version, book=book,
                                                 updated_at=now))
    else:
        c.execute(position_books.update().where(position_books.c.position_id == pid)
                  .values(version=version, book=book, updated_at=now))
    return {**book, "version": version}


def recompute_book(c, user_id: int, book: dict) -> dict | None:
    """Recompute a position's artifact from the copy, with the user's market inputs for its
    symbol; without market inputs (or for a closed position) nothing is computed."""
    if book.get("status") == "closed":
        return None
    market = get_market_inputs(c, user_id, book.get("symbol") or "")
    if market is None:
        return None
    args = {"spot": market["spot"], "iv": market.get("iv"), "r": market.get("r", 0.0), "q": market.get("q", 0.0),
            "points": 201}
    try:
        artifact, _ = compute_position_artifact(c, user_id, book, args, source="events")
    except errors.Unprocessable:
        return None  # nothing computable (no open legs yet, unpriced without iv...)
    return artifact


def _json(obj):
    from bus.envelope import dumps
    return json.loads(dumps(obj))


def close_book(c, user_id: int | None, position_id: str, version: int | None) -> None:
    existing = _book(c, position_id)
    if existing is None or existing.user_id != user_id:
        return
    c.execute(position_books.update().where(position_books.c.position_id == position_id)
              .values(book={**existing.book, "status": "closed"},
                      version=max(version or 0, existing.version), updated_at=utcnow()))
