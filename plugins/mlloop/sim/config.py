"""The simulated world's constants and its configuration (formulas in docs/mlloop-domain.md):
the session grid, the regimes and their dynamics, the idea mix, the triggers."""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np

from plugins.mlloop.domain.calendar import VARIANCE_MINUTES_PER_YEAR
from plugins.mlloop.domain.selector_params import DEFAULT_SELECTOR_PARAMS, SelectorParams

# --- the session grid -------------------------------------------------------------------
BAR_MINUTES = 5
BARS = 78                      # 5-minute bars in a 390-minute session
POINTS = BARS + 1              # snapshot points per session: 09:30, 09:35, ..., 16:00
DECISION_BARS = BARS           # ideas are generated at points 0..77 (not at the close)
BAR_YEARS = BAR_MINUTES / VARIANCE_MINUTES_PER_YEAR

# --- regimes (index order) ------------------------------------------------------------
REGIMES = ("zombieland", "goldilocks_1", "goldilocks_2", "chaos")
REGIME_TRANSITIONS = np.array([   # daily, row = today, column = tomorrow
    [0.92, 0.07, 0.01, 0.00],
    [0.06, 0.86, 0.07, 0.01],
    [0.01, 0.09, 0.84, 0.06],
    [0.00, 0.03, 0.15, 0.82],
])
VIX_MEAN = np.array([12.5, 17.0, 24.0, 36.0])
VIX_DAILY_SD = np.array([0.8, 1.0, 1.8, 4.0])
RV_RATIO = np.array([0.95, 1.00, 1.05, 1.10])       # realised / implied vol (before gamma)
FLIP_OFFSET = np.array([0.007, 0.003, -0.001, -0.007])  # spot_open / flip - 1, mean
GEX_SCALE = np.array([6e9, 4e9, 2.5e9, 1.5e9])
VIX3M_RATIO = np.array([1.14, 1.08, 1.02, 0.90])    # contango in calm, backwardation in chaos

# --- dynamics ---------------------------------------------------------------------------
BIAS_PERSISTENCE = 0.97        # AR(1) of the latent bias per bar
BIAS_DRIFT = 0.25              # drift per bar = BIAS_DRIFT * latent bias * bar vol
LFI_NOISE = 0.3                # published LFI = tanh(0.9 (bias + LFI_NOISE * noise))
VIX_INTRADAY_RANGE = (0.6, 2.5)  # intraday VIX / the day's level: spot-vol feedback, bounded
GAMMA_VOL = (1.20, 0.85)       # vol multiplier below / above the gamma flip
PIN_STRENGTH = 0.015           # per bar, rising x3 into the close, x1.5 in opex week
WALL_STRENGTH = 0.05           # per bar, beyond a wall while long gamma
SKEW_PUT, SKEW_CALL = 4.0, 1.5  # iv = atm * (1 - skew * ln(K / S))
# Jumps: fat tails the Black-Scholes smile underprices (cheap wings, rich shoulders), so
# convexity carries a little real edge. Total variance is kept: the diffusion shrinks.
JUMP_PROB = 0.002              # per bar (~0.16 a session)
JUMP_SD_DAYS = 0.6             # jump sd in units of a session's vol
JUMP_MEAN_DAYS = -0.3          # jumps lean down (the put skew is not wrong about sign)
_JUMP_VAR_SHARE = JUMP_PROB * BARS * (JUMP_SD_DAYS ** 2 + JUMP_MEAN_DAYS ** 2)
DIFFUSION_SCALE = math.sqrt(1.0 - _JUMP_VAR_SHARE)
# A session's realised vol is scaled by exp(s z - s^2) (E[scale^2] = 1): quiet days and
# wild days around the same implied vol -- a peaked, fat-tailed mixture that prices
# the centre and the tails too cheaply, the shoulders too richly.
VOL_OF_VOL = 0.35

# --- ideas ------------------------------------------------------------------------------
STRATEGY_P = (0.25, 0.45, 0.30)            # single, vertical, butterfly
LONG_P = {1: 0.60, 2: 0.85}                # share of debit verticals / long flies
EXPIRY_P = (0.40, 0.20, 0.13, 0.11, 0.09, 0.07)   # trading days to expiry 0..5
MAX_EXPIRY_DAYS = len(EXPIRY_P) - 1
WIDTHS = np.array([5, 10, 15, 20, 25, 30, 40, 50])
MIN_PREMIUM_CENTS = 50                     # proposals pay or collect at least $0.50
MAX_GEOMETRIC_R2R = 20.0                   # and promise at most 20:1
TICK_CENTS = 5                             # $0.05 premium tick
FEE_PER_CONTRACT_CENTS = 125               # commission + exchange fee per leg contract
LEG_CONTRACTS = np.array([1, 2, 4])        # single, vertical, butterfly

# --- triggers ---------------------------------------------------------------------------
TRIGGER_TYPES = ("fill", "tier_boundary", "stop_touch", "target_touch",
                 "significant_move", "periodic")
T_FILL, T_TIER, T_STOP, T_TARGET, T_MOVE, T_PERIODIC = range(1, 7)
SIGNIFICANT_MOVE = 0.01        # underlying moved > 1% since the idea's last snapshot
PERIODIC_MINUTES = 120         # a periodic snapshot after 2 trading hours without one
TIER_HYSTERESIS = 0.05         # in R: a boundary counts once crossed by 5% of R
STOP_R, TARGET_R = 0.5, 2.0    # the labels' hit_stop / hit_target levels

EVENT_TYPES = ("fill", "mark", "settlement", "adjustment")

STREAM_MARKET, STREAM_IDEAS, STREAM_TRADES = 1, 2, 3   # per-day random streams
NAMESPACE = uuid.UUID("6f1c8a5e-3b7d-5a2f-9c41-7d2e0b9a4c11")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class SimConfig:
    ideas_per_day: int = 20_000
    trade_fraction: float = 0.005          # share of ideas filled (top score + noise)
    start_date: date = date(2025, 1, 6)
    warmup_days: int = 30                  # sessions simulated before day 0 (iv rank etc.)
    start_spot: float = 6000.0
    start_regime: str = "goldilocks_1"
    selector_params: SelectorParams = DEFAULT_SELECTOR_PARAMS
