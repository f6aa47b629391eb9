"""Position analysis as JSON-ready dicts: price grid, curves per date, Greeks at the spot,
expiry analysis, several strategies on one grid, what-if scenarios."""
from __future__ import annotations

import datetime as dt
from typing import Sequence

import numpy as np

from optionsmath.bsm import DAYS_PER_YEAR, GREEK_UNITS, bsm_greeks, bsm_price
from optionsmath.curves import _Book, _book, _curves, check_model, price_grid
from optionsmath.expiry import REL_TOL, _expiry, _expiry_pnl, _grid_roots, position_scale
from optionsmath.legs import Leg, _as_date


def _date_offsets(dates, valuation_date):
    days = []
    for d in dates:
        if isinstance(d, (dt.date, str)) and not isinstance(d, (int, float)):
            if valuation_date is None:
                raise ValueError("dates: calendar dates need a valuation_date")
            days.append((_as_date(d, "dates") - _as_date(valuation_date, "valuation_date")).days)
        else:
            days.append(float(d))
    return np.array(days, dtype=float)


def _greeks_at_spot(book, spot, r, q):
    """Per-leg Greeks at the spot (per unit and x quantity x multiplier) and the total."""
    names = ("delta", "gamma", "theta", "vega", "rho")
    total = dict.fromkeys(names, 0.0)
    total["value"] = 0.0
    rows = []
    g = None
    if book.strike.size:
        g = bsm_greeks(spot, book.strike, book.years, r, q, book.sigma, book.call)
        if book.black76:  # F held fixed: only the discount factor moves with r
            g["rho"] = -book.years * g["price"] / 100.0
    j = 0
    for i, leg in enumerate(book.legs):
        w = leg.quantity * leg.multiplier
        if leg.kind == "option":
            unit = {k: float(g[k][j]) for k in ("price",) + names}
            j += 1
        else:
            unit = {"price": float(spot), "delta": 1.0, "gamma": 0.0, "theta": 0.0,
                    "vega": 0.0, "rho": 0.0}
        position = {k: unit[k] * w for k in names}
        position["value"] = unit["price"] * w
        for k in total:
            total[k] += position[k]
        rows.append({
            "index": i, "kind": leg.kind, "right": leg.right, "strike": leg.strike,
            "quantity": leg.quantity, "multiplier": leg.multiplier,
            "expiry": leg.expiry.isoformat() if leg.expiry else None,
            "years": book.leg_years[i], "iv": book.leg_iv[i],
            "per_unit": unit, "position": position,
        })
    return {"legs": rows, "total": total}


# value = pnl + net_debit, so only the P&L is sent
_CURVE_KEYS = ("pnl", "delta", "gamma", "theta", "vega", "rho")


def _clean(a):
    """Non-finite floats as NaN (JSON null), never expected but never a 500."""
    return np.where(np.isfinite(a), a, np.nan) if not np.all(np.isfinite(a)) else a


def _analysis(book, S, days, spot, r, q, valuation_date, greek_curves, pop_iv, drift, arrays=False):
    curves = _curves(book, S, days, r, q, greek_curves)
    exp = _expiry(book, spot, r, q, pop_iv, drift, S)
    T = exp.pop("years")
    exp_curve = exp.pop("_curve")
    if exp_curve is None:
        exp_curve = _expiry_pnl(book, S)
    tol = REL_TOL * position_scale(book, spot)
    vdate = _as_date(valuation_date, "valuation_date") if valuation_date is not None else None
    lists = {key: (_clean(curves[key]) if arrays else curves[key].tolist())
             for key in _CURVE_KEYS if key in curves}
    breakevens = _grid_roots(S, curves["pnl"], tol)
    per_date = []
    for i, n in enumerate(days.tolist()):
        row = {"days": n,
               "date": (vdate + dt.timedelta(days=n)).isoformat() if vdate else None}
        for key, rows in lists.items():
            row[key] = rows[i]
        row["breakevens"] = breakevens[i]
        per_date.append(row)
    exp_days = T * DAYS_PER_YEAR
    result = {
        "net_debit": book.net_debit,
        "curves": per_date,
        "expiry": {"days": exp_days,
                   "date": (vdate + dt.timedelta(days=round(exp_days))).isoformat()
                   if vdate else None,
                   "years": T, "pnl": _clean(exp_curve) if arrays else exp_curve.tolist(),
                   "exact": exp.pop("exact")},
        "greeks": _greeks_at_spot(book, spot, r, q),
    }
    result.update(exp)
    return result


def analyze_many(leg_sets: Sequence[Sequence[Leg]], spot, r=0.0, q=0.0, valuation_date=None,
                 *, grid=None, dates=(0,), points=1001, width_sigmas=3.0, bounds=None,
                 iv=None, pop_iv=None, drift=None, greek_curves=False, valuation_time=None,
                 model="bsm", arrays=False) -> dict:
    """``analyze`` for several strategies overlaid on one price grid.

    The grid (unless given) spans every strategy's legs. Returns ``{"spot", "r", "q",
    "valuation_date", "valuation_time", "model", "grid", "units", "strategies": [analysis,
    ...]}`` where each analysis is what ``analyze`` returns minus the shared keys.
    """
    black76 = check_model(model)
    if black76:
        q = r  # Black-76: the grid price is the future's, which carries no drift under Q
    label_date = valuation_date
    if valuation_time is not None:
        # T comes from each leg's expiry_years (years to its settlement moment, see
        # markettime.years_to_settlement); dates only label the curves
        label_date = valuation_time.astimezone(dt.timezone.utc).date()
        valuation_date = None
    books = [_book(legs, spot, r, q, valuation_date, iv, black76) for legs in leg_sets]
    if grid is None:
        every = [leg for legs in leg_sets for leg in legs]
        sigmas = np.concatenate([b.sigma for b in books]) if books else np.array([])
        years = np.concatenate([b.years for b in books]) if books else np.array([])
        union = _Book(every, np.array([leg.strike for leg in every if leg.kind == "option"],
                                      float), years, sigmas, np.array([], bool),
                      np.array([]), 0.0, 0.0, [], [], [])
        S = price_grid(every, spot, valuation_date, points=points, width_sigmas=width_sigmas,
                       bounds=bounds, iv=iv, _book=union if sigmas.size else None)
    else:
        S = np.asarray(grid, dtype=float)
        if S.ndim != 1 or S.size < 2 or np.any(S < 0) or np.any(np.diff(S) <= 0):
            raise ValueError("grid: expected increasing prices >= 0 (at least two)")
    days = _date_offsets(dates, label_date)
    return {
        "spot": float(spot), "r": float(r), "q": float(q),
        "valuation_date": _as_date(label_date, "valuation_date").isoformat()
        if label_date is not None else None,
        "valuation_time": valuation_time.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
        if valuation_time is not None else None,
        "model": model,
        "grid": S if arrays else S.tolist(),
        "units": dict(GREEK_UNITS),
        "strategies": [_analysis(b, S, days, spot, r, q, label_date, greek_curves,
                                 pop_iv, drift, arrays) for b in books],
    }


def analyze(legs: Sequence[Leg], spot, r=0.0, q=0.0, valuation_date=None, *, grid=None,
            dates=(0,), points=1001, width_sigmas=3.0, bounds=None, iv=None, pop_iv=None,
            drift=None, greek_curves=False, valuation_time=None, model="bsm", arrays=False) -> dict:
    """Full risk picture of one position as a JSON-ready dict.

    ``dates``: calendar days after ``valuation_date`` (or dates) to draw T+n curves for;
    ``grid``: explicit prices, else ``points`` prices from ``price_grid``; ``iv``: vol for
    legs without one (otherwise implied from the leg's premium); ``pop_iv``/``drift``: see
    ``expiry_profile``.

    ``greek_curves``: also send the position Greeks along the grid for every date.
    ``valuation_time`` (aware datetime): the legs carry ``expiry_years`` to their settlement
    moments (``leg_from_dict(..., valuation_time=...)``); days forward count from it.
    ``model``: "bsm" or "black76" (options on futures: ``spot`` is the future's price, q = r,
    rho = -T x V). ``arrays``: curves and grid as float ndarrays (non-finite -> NaN) instead
    of lists, for a serializer that writes arrays directly (orjson).

    Keys: spot, r, q, valuation_date, valuation_time, model, grid, units, net_debit,
    curves (per date: days, date, pnl, breakevens, and with ``greek_curves`` delta, gamma,
    theta, vega, rho; position value = pnl + net_debit),
    expiry (days, date, years, pnl, exact), greeks (legs: per_unit/position; total),
    breakevens, max_profit, max_profit_unbounded, max_loss, max_loss_unbounded,
    profit_ranges, pop, pop_iv, pop_drift, tolerance (see ``expiry_profile``).
    """
    out = analyze_many([legs], spot, r, q, valuation_date, grid=grid, dates=dates,
                       points=points, width_sigmas=width_sigmas, bounds=bounds, iv=iv,
                       pop_iv=pop_iv, drift=drift, greek_curves=greek_curves,
                       valuation_time=valuation_time, model=model, arrays=arrays)
    result = out.pop("strategies")[0]
    out.update(result)
    return out


def scenario_pnl(legs: Sequence[Leg], spot, r=0.0, q=0.0, valuation_date=None, *,
                 iv_shifts=(0.0,), days_forward=(0,), price_moves=(0.0,),
                 move_unit="percent", ref_iv=None, sigma_days=None, iv=None) -> dict:
    """P&L for every combination of IV shift x days forward x price move.

    ``iv_shifts`` in vol points (+5 = every leg's iv + 0.05, floored at 0);
    ``days_forward`` in calendar days; ``price_moves`` in percent of spot
    (``move_unit="percent"``, 5 = +5%) or in sigmas (``"sigma"``), where
    sigma = ref_iv x spot x sqrt(days / 365) with days = ``sigma_days`` or else the
    scenario's days forward (one day when that is 0) and ref_iv defaulting to the iv of the
    option leg nearest the spot. Prices are floored at 0.

    Returns a dict with the axes, ``prices[d][m]`` and ``pnl[i][d][m]`` (nested lists).
    """
    if move_unit not in ("percent", "sigma"):
        raise ValueError(f"move_unit: expected 'percent' or 'sigma', got {move_unit!r}")
    book = _book(legs, spot, r, q, valuation_date, iv)
    shifts = np.asarray(iv_shifts, dtype=float) / 100.0
    days = np.asarray(days_forward, dtype=float)
    moves = np.asarray(price_moves, dtype=float)
    if move_unit == "percent":
        prices = np.broadcast_to(spot * (1.0 + moves / 100.0), (days.size, moves.size))
    else:
        if ref_iv is None:
            ref_iv = (float(book.sigma[np.argmin(np.abs(book.strike - spot))])
                      if book.strike.size else 0.0)
        horizon = np.full(days.size, float(sigma_days)) if sigma_days is not None \
            else np.where(days > 0, days, 1.0)
        sigma_abs = ref_iv * spot * np.sqrt(horizon / DAYS_PER_YEAR)
        prices = spot + moves[None, :] * sigma_abs[:, None]
    prices = np.maximum(prices, 0.0)
    value = book.linear_weight * prices[None, :, :]                  # (1, D, M)
    if book.strike.size:
        sig = np.maximum(book.sigma[None, :] + shifts[:, None], 0.0)  # (I, L)
        tau = np.maximum(book.years[None, :] - days[:, None] / DAYS_PER_YEAR, 0.0)  # (D, L)
        unit = bsm_price(prices[None, :, :, None], book.strike, tau[None, :, None, :], r, q,
                         sig[:, None, None, :], book.call)           # (I, D, M, L)
        value = value + unit @ book.weight
    pnl = np.broadcast_to(value - book.net_debit, (shifts.size, days.size, moves.size))
    return {
        "iv_shifts": np.asarray(iv_shifts, dtype=float).tolist(),
        "days_forward": days.tolist(),
        "price_moves": moves.tolist(),
        "move_unit": move_unit,
        "ref_iv": None if move_unit == "percent" else float(ref_iv),
        "prices": np.asarray(prices).tolist(),
        "pnl": pnl.tolist(),
        "net_debit": book.net_debit,
    }
