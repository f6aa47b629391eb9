"""The simulator's option prices: ``optionsmath``'s Black-Scholes-Merton with r = q = 0, on
the simulated volatility smile.

Time is the variance clock's years (``domain.calendar``: 252 sessions of 420 variance
minutes), which is the ``T`` the simulated implied vols are quoted against; the Greeks follow
optionsmath's one convention (theta per calendar day = annual theta / 365, vega per vol
point). Before optionsmath the simulator had its own Black-Scholes with theta per trading day
(/252): snapshot thetas are now 252/365 of what that reported; prices, delta, gamma and vega
are unchanged.
"""
from __future__ import annotations

import numpy as np
from optionsmath.bsm import bsm_greeks

from plugins.mlloop.sim.config import SKEW_CALL, SKEW_PUT


def bs_price(spot, strike, years, vol, is_call):
    """Black-Scholes price per share (r = q = 0), vectorised; intrinsic value at zero time."""
    return np.maximum(bsm_greeks(spot, strike, years, 0.0, 0.0, vol, np.asarray(is_call, bool))["price"], 0.0)


def bs_greeks(spot, strike, years, vol, is_call):
    """(delta, gamma, theta per calendar day, vega per vol point) per share (r = q = 0)."""
    g = bsm_greeks(spot, strike, years, 0.0, 0.0, vol, np.asarray(is_call, bool))
    return g["delta"], g["gamma"], g["theta"], g["vega"]


def implied_vol(atm_vol, strike, spot):
    """The simulated smile: steeper on the put side."""
    m = np.log(np.asarray(strike, float) / np.asarray(spot, float))
    skew = np.where(m < 0, SKEW_PUT, SKEW_CALL)
    return np.clip(atm_vol * (1.0 - skew * m), 0.5 * atm_vol, 3.0 * atm_vol)
