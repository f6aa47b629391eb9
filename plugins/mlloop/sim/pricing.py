"""Black-Scholes (r = q = 0, time on the variance clock) and the simulated volatility smile."""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from plugins.mlloop.sim.config import SKEW_CALL, SKEW_PUT

def bs_price(spot, strike, years, vol, is_call):
    """Black-Scholes price per share, vectorised; intrinsic value at zero time."""
    spot, strike, years, vol, is_call = np.broadcast_arrays(
        np.asarray(spot, float), np.asarray(strike, float), np.asarray(years, float),
        np.asarray(vol, float), np.asarray(is_call, bool))
    sv = vol * np.sqrt(np.maximum(years, 0.0))
    live = sv > 1e-12
    safe = np.where(live, sv, 1.0)
    d1 = (np.log(spot / strike) + 0.5 * safe * safe) / safe
    call = spot * ndtr(d1) - strike * ndtr(d1 - safe)
    price = np.where(is_call, call, call - spot + strike)
    intrinsic = np.where(is_call, np.maximum(spot - strike, 0.0), np.maximum(strike - spot, 0.0))
    return np.where(live, np.maximum(price, 0.0), intrinsic)


def bs_greeks(spot, strike, years, vol, is_call):
    """(delta, gamma, theta per trading day, vega per vol point) per share."""
    spot, strike, years, vol, is_call = np.broadcast_arrays(
        np.asarray(spot, float), np.asarray(strike, float), np.asarray(years, float),
        np.asarray(vol, float), np.asarray(is_call, bool))
    t = np.maximum(years, 1e-12)
    sv = np.maximum(vol * np.sqrt(t), 1e-12)
    d1 = (np.log(spot / strike) + 0.5 * sv * sv) / sv
    pdf = np.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi)
    delta = np.where(is_call, ndtr(d1), ndtr(d1) - 1.0)
    gamma = pdf / (spot * sv)
    theta = -spot * pdf * vol / (2.0 * np.sqrt(t)) / 252.0
    vega = spot * pdf * np.sqrt(t) / 100.0
    dead = years <= 0
    itm = np.where(is_call, spot > strike, spot < strike)
    delta = np.where(dead, np.where(itm, np.where(is_call, 1.0, -1.0), 0.0), delta)
    zero = np.zeros_like(delta)
    return (delta, np.where(dead, zero, gamma), np.where(dead, zero, theta),
            np.where(dead, zero, vega))


def implied_vol(atm_vol, strike, spot):
    """The simulated smile: steeper on the put side."""
    m = np.log(np.asarray(strike, float) / np.asarray(spot, float))
    skew = np.where(m < 0, SKEW_PUT, SKEW_CALL)
    return np.clip(atm_vol * (1.0 - skew * m), 0.5 * atm_vol, 3.0 * atm_vol)

