"""Glue between riskgraph's records and the risk engine (``optionsmath``).

Turns a saved strategy's geometry (single / vertical / butterfly, call / put, strike, width,
debit) or a trade-log position (legs + fills) into engine legs, runs the engine, and shapes
its output for the API and for stored artifacts. No Flask, no database.
"""
from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_HALF_UP, Decimal

import optionsmath as om

MULTIPLIER = 100  # index/equity options: P&L figures are dollars per contract x 100

# Strike grid per symbol (a template's ATM strike is rounded to it); others use 1.
STRIKE_INCREMENTS = {"SPX": 5, "SPXW": 5, "RUT": 5, "NDX": 10, "XSP": 1, "SPY": 1, "QQQ": 1, "IWM": 1}


class RiskInputError(ValueError):
    """Input the engine can't use; ``field`` names it for a 422."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message

    def __reduce__(self):  # raised in a worker process, re-raised here
        return type(self), (self.field, self.message)


def strike_increment(symbol: str) -> int:
    return STRIKE_INCREMENTS.get((symbol or "").upper(), 1)


def atm_strike(spot: Decimal, symbol: str, offset: int = 0) -> Decimal:
    """round(spot / increment) x increment + offset (halves round up)."""
    inc = Decimal(strike_increment(symbol))
    return (Decimal(spot) / inc).quantize(Decimal(1), rounding=ROUND_HALF_UP) * inc + Decimal(offset)


def roll_to_weekday(day: dt.date) -> dt.date:
    """Saturday and Sunday roll forward to Monday (options expire on trading days)."""
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


# -- strategies -------------------------------------------------------------------------
def strategy_shape(kind: str, side: str, strike: float, width: float | None) -> list[tuple[float, int]]:
    """(strike, signed quantity) per leg of one unit of the strategy.

    single: long 1 at the strike. vertical: long the strike, short the strike + width for
    calls (- width for puts) — a debit spread. butterfly: +1 / -2 / +1 at strike - width,
    strike, strike + width (the strike is the body)."""
    if kind == "single":
        return [(strike, 1)]
    if not width or width <= 0:
        raise RiskInputError("width", f"a {kind} needs a positive width")
    if kind == "vertical":
        far = strike + width if side == "call" else strike - width
        if far <= 0:
            raise RiskInputError("width", "the short strike would be <= 0")
        return [(strike, 1), (far, -1)]
    if kind == "butterfly":
        if strike - width <= 0:
            raise RiskInputError("width", "the lower wing would be <= 0")
        return [(strike - width, 1), (strike, -2), (strike + width, 1)]
    raise RiskInputError("strategy", f"unknown strategy {kind!r}")


def strategy_legs(s: dict, *, spot: float, r: float, q: float, iv: float,
                  valuation_date: dt.date, valuation_time: dt.datetime | None = None) -> list[om.Leg]:
    """Engine legs for a saved strategy. The strategy's ``debit`` (per unit) is its net
    premium: each leg is priced at its model value and the difference to the debit is put on
    the long legs (or, if that would make a long premium negative, on the short legs), so the
    legs' net premium equals the debit exactly. Without a debit, the model value is used."""
    expiry = s["expiration"]
    if isinstance(expiry, str):
        expiry = dt.date.fromisoformat(expiry)
    if valuation_time is not None:
        # T to the settlement moment of an option on the strategy's symbol (past it: settled)
        try:
            years = om.years_to_settlement(valuation_time, s.get("symbol"), expiry)
        except ValueError as exc:
            raise RiskInputError("valuation_time", str(exc)) from None
    else:
        if expiry < valuation_date:
            raise RiskInputError("valuation_date", f"strategy {s.get('id')} expired on {expiry.isoformat()}")
        years = (expiry - valuation_date).days / om.DAYS_PER_YEAR
    shape = strategy_shape(s["strategy"], s["side"], float(s["strike"]),
                           float(s["width"]) if s.get("width") is not None else None)
    theo = [float(om.bsm_price(spot, k, years, r, q, iv, s["side"])) for k, _ in shape]
    premiums = list(theo)
    if s.get("debit") is not None:
        diff = float(s["debit"]) - sum(p * n for p, (_, n) in zip(theo, shape))
        longs = sum(n for _, n in shape if n > 0)
        shorts = sum(-n for _, n in shape if n < 0)
        add_long = [p + diff / longs if n > 0 else p for p, (_, n) in zip(theo, shape)]
        if all(p >= 0 for p in add_long) or not shorts:
            premiums = [max(p, 0.0) for p in add_long]
        else:
            premiums = [p - diff / shorts if n < 0 else p for p, (_, n) in zip(theo, shape)]
    return [om.Leg(kind="option", right=s["side"], strike=k, quantity=n, premium=p, iv=iv,
                        multiplier=MULTIPLIER, expiry=expiry, expiry_years=years)
            for (k, n), p in zip(shape, premiums)]


# -- request legs -----------------------------------------------------------------------
def request_legs(rows: list[dict], valuation_date: dt.date, *, valuation_time: dt.datetime | None = None,
                 underlying: str | None = None) -> list[om.Leg]:
    """Engine legs from the API's leg objects (already validated by the schema)."""
    out = []
    for i, row in enumerate(rows):
        d = {k: (float(v) if isinstance(v, Decimal) else v) for k, v in row.items() if v is not None}
        try:
            out.append(om.leg_from_dict(d, None if valuation_time else valuation_date,
                                        valuation_time=valuation_time, underlying=underlying))
        except om.InvalidLeg as exc:
            raise RiskInputError(f"legs.{i}", str(exc)) from None
    return out


# -- trade-log positions ----------------------------------------------------------------
def position_legs(position: dict, *, valuation_date: dt.date, iv: float | None,
                  valuation_time: dt.datetime | None = None) -> tuple[list[om.Leg], list[str]]:
    """Engine legs for a trade-log position (its snapshot or riskgraph's event-built copy).

    A leg's premium is the average price of its fills in the leg's direction (fills are
    signed like the leg); a leg without such fills has no premium, so the engine values it
    at the model (returned in the second list, so the artifact can say so). Legs with
    quantity 0 (closed out) and expired option legs are left out.

    A trade-log snapshot's legs carry what is **open** (FIFO lots: ``open_quantity`` and
    ``average_price``, with ``cost_basis``); those are used when present, so riskgraph and the
    snapshot agree on net debit, max profit and max loss of what is open (docs/tradelog.md)."""
    fills = list(position.get("fills") or [])
    for leg in position.get("legs") or []:
        fills.extend(dict(f, leg_id=leg.get("id")) for f in leg.get("fills") or [])
    legs, unpriced = [], []
    opened = position.get("status") != "planned"
    for leg in position.get("legs") or []:
        lots = "cost_basis" in leg and opened  # a snapshot leg: open quantity and average open price
        qty = int(Decimal(str((leg.get("open_quantity") if lots else leg.get("quantity")) or 0)))
        if qty == 0:
            continue
        kind = (leg.get("instrument_type") or "option").lower()
        right = leg.get("right") or leg.get("option_right")
        expiry = leg.get("expiry")
        today = valuation_time.astimezone(dt.timezone.utc).date() if valuation_time else valuation_date
        if kind == "option" and expiry and dt.date.fromisoformat(str(expiry)[:10]) < today:
            continue
        if lots:
            premium = float(Decimal(str(leg["average_price"]))) if leg.get("average_price") is not None else None
        else:
            same_way = [f for f in fills if f.get("leg_id") == leg.get("id")
                        and int(Decimal(str(f.get("quantity") or 0))) * qty > 0]
            units = sum(abs(int(Decimal(str(f["quantity"])))) for f in same_way)
            premium = (float(sum(Decimal(str(f["price"])) * abs(int(Decimal(str(f["quantity"])))) for f in same_way)
                             / units) if units else None)
        if premium is None:
            unpriced.append(str(leg.get("id")))
        row = {"instrument_type": kind, "right": right, "strike": leg.get("strike"), "expiry": expiry,
               "quantity": qty, "price": premium, "iv": leg.get("iv") or iv,
               "multiplier": leg.get("multiplier")}
        try:
            legs.append(om.leg_from_dict({k: v for k, v in row.items() if v is not None},
                                         None if valuation_time else valuation_date,
                                         valuation_time=valuation_time, underlying=position.get("symbol")))
        except om.InvalidLeg as exc:
            raise RiskInputError("legs", f"leg {leg.get('id')}: {exc}") from None
    if not legs:
        raise RiskInputError("legs", "the position has no open, unexpired legs")
    return legs, unpriced


# -- running the engine -----------------------------------------------------------------
def run(leg_sets: list[list[om.Leg]], *, spot: float, r: float, q: float, valuation_date: dt.date,
        points: int, bounds: tuple[float, float] | None, days_forward: list[int],
        greek_curves: bool = False, valuation_time: dt.datetime | None = None, model: str = "bsm",
        arrays: bool = False) -> dict:
    """``om.analyze_many`` with the engine's errors turned into ``RiskInputError``. With
    ``arrays`` the curves stay ndarrays (non-finite values as NaN, written as JSON null)."""
    try:
        out = om.analyze_many(leg_sets, spot, r, q, None if valuation_time else valuation_date, points=points,
                              bounds=bounds, dates=list(days_forward), greek_curves=greek_curves,
                              valuation_time=valuation_time, model=model, arrays=arrays)
    except om.InvalidLeg as exc:
        raise RiskInputError("legs", str(exc)) from None
    except (om.ImpliedVolatilityError, ValueError) as exc:
        text = str(exc)
        field = text.split(":", 1)[0] if ":" in text and len(text.split(":", 1)[0]) < 40 else "legs"
        raise RiskInputError(field, text) from None
    if not arrays:
        for a in out["strategies"]:
            _finite(a)
    return out


def _finite(obj):
    """JSON has no NaN/Infinity: replace any with None (never expected, but never a 500).
    Only for the stored artifacts' lists; the API path writes arrays with orjson, which
    writes non-finite floats as null."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, float) and not math.isfinite(v):
                obj[k] = None
            else:
                _finite(v)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            if isinstance(v, float) and not math.isfinite(v):
                obj[i] = None
            else:
                _finite(v)
    return obj


def analysis_json(leg_sets: list[list[om.Leg]], meta: list[dict], market: dict) -> bytes:
    """The whole ``/analyze`` response body as JSON bytes: ``run`` with arrays, each
    strategy's ``meta`` (source, strategy_id, label) merged in, written by orjson straight
    from the ndarrays (no per-float Python work). Pure and picklable, so a process pool can
    run it (see ``offload``)."""
    import orjson

    out = run(leg_sets, arrays=True, **market)
    for analysis, info in zip(out["strategies"], meta):
        analysis.update(info)
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)


def work_size(leg_sets: list[list[om.Leg]], points: int, days: int, greek_curves: bool) -> int:
    """(price, date, leg) points an analysis evaluates (x 4 with Greek curves): the measure
    the off-loop threshold is taken on."""
    legs = sum(len(legs) for legs in leg_sets)
    return points * (days + 1) * max(legs, 1) * (4 if greek_curves else 1)


def summary_of(analysis: dict, *, spot: float, iv: float | None, unpriced: list[str] | None = None) -> dict:
    """The small part of an analysis kept in an artifact's summary and its event."""
    return {
        "spot": spot,
        "iv": iv,
        "net_debit": analysis["net_debit"],
        "breakevens": analysis["breakevens"],
        "max_profit": analysis["max_profit"],
        "max_profit_unbounded": analysis["max_profit_unbounded"],
        "max_loss": analysis["max_loss"],
        "max_loss_unbounded": analysis["max_loss_unbounded"],
        "pop": analysis["pop"],
        "expiry_date": analysis["expiry"]["date"],
        "greeks": {k: analysis["greeks"]["total"][k] for k in ("value", "delta", "gamma", "theta", "vega", "rho")},
        "legs": len(analysis["greeks"]["legs"]),
        "unpriced_legs": list(unpriced or []),
    }


def curves_of(result: dict, analysis: dict) -> dict:
    """The curves an artifact keeps: the grid, P&L at expiry and per requested date."""
    return {"grid": result["grid"], "expiry_pnl": analysis["expiry"]["pnl"],
            "curves": [{"days": c["days"], "date": c["date"], "pnl": c["pnl"], "breakevens": c["breakevens"]}
                       for c in analysis["curves"]]}
