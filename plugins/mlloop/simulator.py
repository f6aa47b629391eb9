"""A synthetic SPX-like world for the ML loop: deterministic for a seed, fast, learnable.

This module owns the simulation only; it calls the rule scorer (scoring.py) and produces
the objects the rest of the domain uses (MarketSnapshot / MarketHistory from features.py,
TradeIdea from scoring.py, IdeaOutcome from labels.py).

The world (formulas and constants in docs/mlloop-domain.md):

* Regimes: a daily Markov chain over the seed's VIX regimes, each with its own VIX level,
  realised-to-implied vol ratio (the volatility risk premium), gamma-flip placement and
  GEX scale.
* Spot: 79 points a session (09:30 .. 16:00 New York, every 5 minutes) plus an overnight
  gap; log-normal steps whose drift carries a latent bias state (partly visible as the
  published bias/LFI), pinning towards the day's max-gamma strike and soft walls while
  spot is above the gamma flip, and larger moves below it.
* Ideas: K a day (singles, verticals, butterflies; calls and puts; long and short
  verticals/butterflies; expiries 0-5 trading days out), priced with Black-Scholes off the
  simulated implied vol (with skew), rounded to the 0.05 tick, rule-scored with
  scoring.score_arrays on the published (observable) context only.
* Paths: every idea is marked each 5-minute bar until its expiry close and settled at
  intrinsic value. Snapshots and mark events are emitted only on trigger events (fill,
  tier boundary, stop / target touch, 1% underlying move, sparse periodic), and the P&L
  event deltas of an idea sum exactly (integer cents) to its settlement P&L.

Everything is vectorised with numpy; the per-day random streams are seeded from
(seed, day, stream) so `World(seed).days(n)` is a prefix of `World(seed).days(n + 1)`.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import cached_property
from typing import Iterator

import numpy as np
from scipy.special import ndtr

from .features import (
    OVERNIGHT_VARIANCE_MINUTES,
    VARIANCE_MINUTES_PER_YEAR,
    MarketContext,
    MarketHistory,
    MarketSnapshot,
    add_trading_days,
    is_opex_week,
    is_trading_day,
    next_trading_day,
    session_open_utc,
)
from .labels import Cohort, IdeaOutcome
from .scoring import (
    COMPONENTS,
    DEFAULT_SELECTOR_PARAMS,
    STRATEGIES,
    SelectorParams,
    TradeIdea,
    leg_arrays,
    score_arrays,
)

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
_T_FILL, _T_TIER, _T_STOP, _T_TARGET, _T_MOVE, _T_PERIODIC = range(1, 7)
SIGNIFICANT_MOVE = 0.01        # underlying moved > 1% since the idea's last snapshot
PERIODIC_MINUTES = 120         # a periodic snapshot after 2 trading hours without one
TIER_HYSTERESIS = 0.05         # in R: a boundary counts once crossed by 5% of R
STOP_R, TARGET_R = 0.5, 2.0    # the labels' hit_stop / hit_target levels

EVENT_TYPES = ("fill", "mark", "settlement", "adjustment")

_STREAM_MARKET, _STREAM_IDEAS, _STREAM_TRADES = 1, 2, 3
_NAMESPACE = uuid.UUID("6f1c8a5e-3b7d-5a2f-9c41-7d2e0b9a4c11")
_CENT = Decimal("0.01")


# ---------------------------------------------------------------------------------------
# Black-Scholes (r = q = 0, variance-clock time)
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# Output records
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PnlEvent:
    """One row of the seed's pnl_events (plus the running total, for convenience)."""

    idea_id: str
    trade_id: str | None
    event_time: datetime          # UTC, ms
    event_type: str               # 'fill' | 'mark' | 'settlement' ('adjustment' never simulated)
    pnl_delta: Decimal            # change of the idea's net P&L since its previous event
    fees: Decimal                 # included in pnl_delta (fill only)
    slippage: Decimal             # included in pnl_delta (fill only)
    underlying_price: Decimal
    cumulative_pnl: Decimal       # net P&L after this event


@dataclass(frozen=True, slots=True)
class IdeaSnapshot:
    """One row of the seed's tracked_idea_snapshots (taken on a trigger only)."""

    idea_id: str
    snapshot_time: datetime
    trigger_type: str
    mark_price: Decimal           # structure mid per share (signed like the debit)
    underlying_price: Decimal
    unrealized_pnl: Decimal       # net of fill costs for traded ideas
    pnl_percent: Decimal          # 100 * unrealized_pnl / risk_unit
    delta: Decimal
    gamma: Decimal
    theta: Decimal
    vega: Decimal
    vix_level: Decimal


@dataclass(frozen=True, slots=True)
class SimTrade:
    trade_id: str
    idea_id: str
    fill_time: datetime
    fill_price: Decimal           # per share, signed (worse than the idea's debit by slippage)
    quantity: int
    fees: Decimal
    slippage: Decimal             # dollars
    net_settlement_pnl: Decimal   # settlement P&L - fees - slippage


# ---------------------------------------------------------------------------------------
# The market
# ---------------------------------------------------------------------------------------

@dataclass
class _State:
    spot: float
    regime: int
    vix_base: float
    bias: float
    tnx: float
    dxy: float


class _Timeline:
    """Per-point arrays over every simulated session (warm-up included), grown per day."""

    FIELDS = ("spot", "vix", "vix3m", "gex", "call_wall", "put_wall", "flip", "lfi",
              "es", "tnx", "dxy", "var_clock", "trade_clock", "regime", "bar", "time_ms")

    def __init__(self):
        self._parts = {f: [] for f in self.FIELDS}
        self._cache: dict[str, np.ndarray] | None = None
        self.times: list[datetime] = []
        self.modes: list[str] = []
        self.dates: list[date] = []

    def add(self, day: date, arrays: dict, times: list[datetime], modes: list[str]):
        for f in self.FIELDS:
            self._parts[f].append(arrays[f])
        self.times.extend(times)
        self.modes.extend(modes)
        self.dates.append(day)
        self._cache = None

    def __getattr__(self, name):
        if name in _Timeline.FIELDS:
            if self._cache is None:
                self._cache = {f: np.concatenate(p) for f, p in self._parts.items()}
            return self._cache[name]
        raise AttributeError(name)

    @property
    def sessions(self) -> int:
        return len(self.dates)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    date: date
    day_index: int                # < 0 for warm-up sessions
    regime: str                   # the latent regime (simulator truth)
    open: float
    close: float
    vix_open: float
    vix_close: float
    gamma_flip: float
    call_wall: float
    put_wall: float


@dataclass(frozen=True)
class SimConfig:
    ideas_per_day: int = 20_000
    trade_fraction: float = 0.005          # share of ideas filled (top score + noise)
    start_date: date = date(2025, 1, 6)
    warmup_days: int = 30                  # sessions simulated before day 0 (iv rank etc.)
    start_spot: float = 6000.0
    start_regime: str = "goldilocks_1"
    selector_params: SelectorParams = DEFAULT_SELECTOR_PARAMS


class World:
    """The simulated world for one seed. `days(n)` yields SimDay objects for days 0..n-1."""

    def __init__(self, seed: int, config: SimConfig | None = None, **overrides):
        if config is None:
            config = SimConfig(**overrides)
        elif overrides:
            raise TypeError("pass either config or keyword overrides")
        if seed < 0:
            raise ValueError("seed must be >= 0")
        self.seed = int(seed)
        self.config = config
        self.history = MarketHistory()
        self._tl = _Timeline()
        first = config.start_date
        while not is_trading_day(first):
            first = next_trading_day(first)
        d = first
        back = []
        for _ in range(config.warmup_days):
            d -= timedelta(days=1)
            while not is_trading_day(d):
                d -= timedelta(days=1)
            back.append(d)
        self._first_session = back[-1] if back else first
        self._day0 = first
        self._state = _State(
            spot=config.start_spot, regime=REGIMES.index(config.start_regime),
            vix_base=float(VIX_MEAN[REGIMES.index(config.start_regime)]), bias=0.0,
            tnx=4.20, dxy=104.0)

    # -- random streams ------------------------------------------------------------------
    def _rng(self, session: int, stream: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(
            np.random.SeedSequence([self.seed, session, stream, 0x7E1A])))

    # -- market --------------------------------------------------------------------------
    def session_index(self, day_index: int) -> int:
        """Position of trading day `day_index` (0 = first returned day) in the timeline."""
        return day_index + self.config.warmup_days

    def _ensure_sessions(self, n_sessions: int) -> None:
        while self._tl.sessions < n_sessions:
            self._simulate_session()

    def _simulate_session(self) -> None:
        s_idx = self._tl.sessions
        day = self._first_session if s_idx == 0 else next_trading_day(self._tl.dates[-1])
        rng = self._rng(s_idx, _STREAM_MARKET)
        st = self._state
        if s_idx > 0:
            st.regime = int(rng.choice(4, p=REGIME_TRANSITIONS[st.regime]))
        else:
            rng.random()
        reg = st.regime
        m = VIX_MEAN[reg]
        st.vix_base = float(max(9.0, m + 0.5 * (st.vix_base - m) + VIX_DAILY_SD[reg] * rng.standard_normal()))
        st.tnx = float(np.clip(st.tnx + 0.05 * rng.standard_normal(), 1.0, 8.0))
        st.dxy = float(np.clip(st.dxy + 0.3 * rng.standard_normal(), 80.0, 130.0))
        st.bias = 0.5 * st.bias + math.sqrt(0.75) * rng.standard_normal()

        day_scale = math.exp(VOL_OF_VOL * rng.standard_normal() - VOL_OF_VOL ** 2)
        rv = RV_RATIO[reg] * day_scale
        # overnight gap: OVERNIGHT_VARIANCE_MINUTES of variance, the bias drifting too
        if s_idx > 0:
            gap_vol = st.vix_base / 100 * rv * math.sqrt(OVERNIGHT_VARIANCE_MINUTES / VARIANCE_MINUTES_PER_YEAR)
            st.spot *= math.exp(BIAS_DRIFT * st.bias * gap_vol * 2 + gap_vol * rng.standard_normal()
                                - 0.5 * gap_vol * gap_vol)
        s_open = st.spot
        day_em = s_open * st.vix_base / 100 * math.sqrt(1 / 252)
        call_wall = math.ceil((s_open + rng.uniform(0.4, 1.5) * day_em) / 25) * 25
        put_wall = math.floor((s_open - rng.uniform(0.4, 1.5) * day_em) / 25) * 25
        flip = round(s_open / (1 + FLIP_OFFSET[reg] + 0.004 * rng.standard_normal()), 2)
        pin = round(s_open / 25) * 25
        pin_k = PIN_STRENGTH * (1.5 if is_opex_week(day) else 1.0)

        eps = rng.standard_normal(POINTS)
        if REGIMES[reg] == "chaos":   # fat tails in chaos: Student t(4), unit variance
            eps = rng.standard_t(4, POINTS) / math.sqrt(2.0)
        eta = rng.standard_normal(POINTS)
        nu = rng.standard_normal(POINTS)
        jumps = (rng.random(POINTS) < JUMP_PROB) * (
            JUMP_MEAN_DAYS + JUMP_SD_DAYS * rng.standard_normal(POINTS)) * math.sqrt(BARS)
        vix_noise = np.cumsum(0.01 * rng.standard_normal(POINTS))
        gex_noise = rng.standard_normal(POINTS)
        es_noise = rng.standard_normal(POINTS)

        spot = np.empty(POINTS)
        bias = np.empty(POINTS)
        s, b = s_open, st.bias
        for k in range(POINTS):
            spot[k], bias[k] = s, b
            if k == BARS:
                break
            vix_k = st.vix_base * min(max(math.exp(-4.0 * math.log(s / s_open) + vix_noise[k]),
                                          VIX_INTRADAY_RANGE[0]), VIX_INTRADAY_RANGE[1])
            long_gamma = s > flip
            vol = vix_k / 100 * rv * GAMMA_VOL[1 if long_gamma else 0] * math.sqrt(BAR_YEARS)
            drift = BIAS_DRIFT * b * vol
            if long_gamma:
                drift -= pin_k * (1 + 2 * k / BARS) * math.log(s / pin)
                if s > call_wall:
                    drift -= WALL_STRENGTH * math.log(s / call_wall)
                elif s < put_wall:
                    drift -= WALL_STRENGTH * math.log(s / put_wall)
            s *= math.exp(drift + vol * (DIFFUSION_SCALE * eps[k] + jumps[k]) - 0.5 * vol * vol)
            b = BIAS_PERSISTENCE * b + math.sqrt(1 - BIAS_PERSISTENCE ** 2) * eta[k]
        st.spot, st.bias = float(spot[-1]), float(bias[-1])

        spot_r = np.round(spot, 2)
        vix = np.round(np.maximum(8.0, st.vix_base * np.clip(
            np.exp(-4.0 * np.log(spot / s_open) + vix_noise), *VIX_INTRADAY_RANGE)), 2)
        lfi = np.round(np.tanh(0.9 * (bias + LFI_NOISE * nu)), 4)
        gex = np.round(GEX_SCALE[reg] * np.tanh((spot - flip) / (0.004 * spot)) + 2e8 * gex_noise, 2)
        vix3m = np.round(vix * VIX3M_RATIO[reg] + 0.3 * rng.standard_normal(), 2)
        es = np.round(0.0045 + 0.0004 * es_noise, 4)
        prev_var = self._tl.var_clock[-1] if s_idx else -float(OVERNIGHT_VARIANCE_MINUTES)
        prev_trade = self._tl.trade_clock[-1] if s_idx else 0.0
        bars = np.arange(POINTS)
        open_utc = session_open_utc(day)
        times = [open_utc + timedelta(minutes=BAR_MINUTES * k) for k in range(POINTS)]
        arrays = {
            "spot": spot_r, "vix": vix, "vix3m": vix3m, "gex": gex,
            "call_wall": np.full(POINTS, float(call_wall)), "put_wall": np.full(POINTS, float(put_wall)),
            "flip": np.full(POINTS, flip), "lfi": lfi, "es": es,
            "tnx": np.full(POINTS, round(st.tnx, 3)), "dxy": np.full(POINTS, round(st.dxy, 2)),
            "var_clock": prev_var + OVERNIGHT_VARIANCE_MINUTES + BAR_MINUTES * bars,
            "trade_clock": prev_trade + BAR_MINUTES * bars,   # overnight adds no trading time
            "regime": np.full(POINTS, reg), "bar": bars,
            "time_ms": np.array([int(t.timestamp()) * 1000 for t in times], dtype=np.int64),
        }
        modes = []
        for k in range(POINTS):
            if abs(lfi[k]) >= 0.35:
                modes.append("trend")
            elif spot[k] > flip:
                modes.append("pin")
            else:
                modes.append("chop")
        self._tl.add(day, arrays, times, modes)
        for k in range(POINTS):
            self.history.append(MarketSnapshot(
                time=times[k], spot=float(spot_r[k]), vix=float(vix[k]), vix3m=float(vix3m[k]),
                gex_total=float(gex[k]), gex_call_wall=float(call_wall),
                gex_put_wall=float(put_wall), gex_gamma_flip=float(flip),
                market_mode=modes[k], bias_lfi=float(lfi[k]), es_futures_premium=float(es[k]),
                tnx_level=round(st.tnx, 3), dxy_level=round(st.dxy, 2)))

    def sessions(self, n: int | None = None) -> list["SessionInfo"]:
        """The simulated sessions so far (warm-up first); simulates up to `n` of them."""
        if n is not None:
            self._ensure_sessions(n)
        tl = self._tl
        out = []
        for i, d in enumerate(tl.dates):
            g = i * POINTS
            out.append(SessionInfo(
                date=d, day_index=i - self.config.warmup_days, regime=REGIMES[int(tl.regime[g])],
                open=float(tl.spot[g]), close=float(tl.spot[g + BARS]),
                vix_open=float(tl.vix[g]), vix_close=float(tl.vix[g + BARS]),
                gamma_flip=float(tl.flip[g]), call_wall=float(tl.call_wall[g]),
                put_wall=float(tl.put_wall[g])))
        return out

    # -- days ----------------------------------------------------------------------------
    def day(self, index: int) -> "SimDay":
        """Trading day `index` (0-based) with its ideas and their whole futures."""
        if index < 0:
            raise ValueError("day index must be >= 0")
        s_idx = self.session_index(index)
        self._ensure_sessions(s_idx + MAX_EXPIRY_DAYS + 1)
        return SimDay(self, index, s_idx)

    def days(self, n: int, start: int = 0) -> Iterator["SimDay"]:
        for i in range(start, start + n):
            yield self.day(i)


# ---------------------------------------------------------------------------------------
# One day of ideas
# ---------------------------------------------------------------------------------------

def _round_ticks(value: np.ndarray) -> np.ndarray:
    return np.rint(value * 100 / TICK_CENTS).astype(np.int64)


def _tier(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """classify_profit_tier, vectorised (x and r in the same unit)."""
    return ((x > -0.5 * r).astype(np.int8) + (x > 0) + (x >= r)).astype(np.int8)


def _proposable(code, width, debit_cents):
    """What the Trade Selector would propose: a premium of at least MIN_PREMIUM_CENTS, a
    defined-risk structure that can still lose at least that much, and a geometric reward /
    risk of at most MAX_GEOMETRIC_R2R (no penny lottery tickets)."""
    prem = np.abs(debit_cents)
    w = width * 100
    long_ = debit_cents > 0
    ok = prem >= MIN_PREMIUM_CENTS
    spread = code > 0
    ok &= ~spread | (w - prem >= MIN_PREMIUM_CENTS)                       # risk / reward left
    ok &= ~(spread & long_) | ((w - prem) <= MAX_GEOMETRIC_R2R * prem)
    return ok


def _dec_cents(c: int) -> Decimal:
    return Decimal(int(c)).scaleb(-2)


class SimDay:
    """One simulated trading day: its market, its ideas, and every idea's future.

    Outcomes of today's ideas lie in the future (up to 5 sessions out): a replay must
    release events by their event_time. `history` is the world's whole history (it
    already holds those future sessions); feature extraction must go through a
    MarketContext, whose as_of keeps it point-in-time.
    """

    def __init__(self, world: World, index: int, session: int):
        self.world = world
        self.index = index
        self.session = session
        tl = world._tl
        self.date: date = tl.dates[session]
        g0 = session * POINTS
        self._g0 = g0
        self.snapshots: list[MarketSnapshot] = list(world.history._snaps[g0: g0 + POINTS])
        self.history = world.history
        self.regime: str = REGIMES[int(tl.regime[g0])]   # simulator truth, not a feature
        self.contexts: dict[str, MarketContext] = {}
        self._context_ids: list[str] = []
        for k in range(DECISION_BARS):
            t = tl.times[g0 + k]
            cid = "SPX:" + t.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            self._context_ids.append(cid)
            self.contexts[cid] = MarketContext(cid, t, world.history)
        self._generate()

    # -- generation ----------------------------------------------------------------------
    def _generate(self) -> None:
        w, cfg, tl = self.world, self.world.config, self.world._tl
        n = cfg.ideas_per_day
        rng = w._rng(self.session, _STREAM_IDEAS)
        g0 = self._g0

        # Draw candidates in bulk and keep the first n a Trade Selector would propose (see
        # _proposable); then order them by decision time.
        picked: list[dict] = []
        have = 0
        while have < n:
            cand = self._candidates(rng, 2 * (n - have) + 64)
            ok = np.nonzero(cand.pop("ok"))[0][: n - have]
            picked.append({k: v[ok] for k, v in cand.items()})
            have += len(ok)
        c = {k: np.concatenate([p[k] for p in picked]) for k in picked[0]}
        order = np.lexsort((c["offset_ms"], c["bar"]))
        c = {k: v[order] for k, v in c.items()}
        bar, offset_ms, code, side, dir_sign = c["bar"], c["offset_ms"], c["code"], c["side"], c["dir_sign"]
        k_exp, width, strike, debit_cents = c["k_exp"], c["width"], c["strike"], c["debit_cents"]
        g = g0 + bar
        x_step = (self.session + k_exp) * POINTS + BARS
        spot = tl.spot[g]
        atm = tl.vix[g] / 100.0
        years = (tl.var_clock[x_step] - tl.var_clock[g]) / VARIANCE_MINUTES_PER_YEAR

        sc = score_arrays(
            cfg.selector_params, strategy_code=code, side_sign=side, dir_sign=dir_sign,
            strike=strike, width=width, debit=debit_cents / 100.0, spot=spot, iv=atm, years=years,
            bias_lfi=tl.lfi[g], gamma_flip=tl.flip[g], call_wall=tl.call_wall[g],
            put_wall=tl.put_wall[g])

        # risk unit (dollars -> cents), the same rule as labels.compute_risk_unit
        w_cents = width * 100
        risk_cents = np.where(dir_sign > 0, np.abs(debit_cents),
                              np.where(code == 0, strike * 100 - np.abs(debit_cents),
                                       w_cents - np.abs(debit_cents))) * 100
        risk_cents = np.maximum(risk_cents, 0)

        # the traded subset: best scores, with noise (Gumbel top-k)
        trng = w._rng(self.session, _STREAM_TRADES)
        m = int(round(n * cfg.trade_fraction))
        key = sc["total"] / 8.0 - np.log(-np.log(trng.random(n)))
        traded = np.zeros(n, bool)
        if m:
            traded[np.argsort(-key, kind="stable")[:m]] = True
        latency_ms = trng.integers(100, 3000, n)
        slip_ticks = trng.choice(3, size=n, p=(0.5, 0.35, 0.15))
        fees_cents = np.where(traded, LEG_CONTRACTS[code] * FEE_PER_CONTRACT_CENTS, 0)
        slip_cents = np.where(traded, slip_ticks * TICK_CENTS * 100, 0)

        decision_ms = tl.time_ms[g] + offset_ms
        expiry_dates = [add_trading_days(self.date, int(k)) for k in range(MAX_EXPIRY_DAYS + 1)]
        dte_by_k = np.array([(d - self.date).days for d in expiry_dates])

        self.table: dict[str, np.ndarray] = {
            "bar": bar, "step": g, "decision_ms": decision_ms,
            "strategy_code": code, "side_sign": side, "dir_sign": dir_sign,
            "strike": strike, "width": width, "expiry_offset": k_exp, "expiry_step": x_step,
            "dte": dte_by_k[k_exp], "debit_cents": debit_cents, "risk_cents": risk_cents,
            "score": sc["total"], **{c: sc[c] for c in COMPONENTS},
            "traded": traded, "fill_ms": decision_ms + latency_ms,
            "fees_cents": fees_cents, "slippage_cents": slip_cents,
            "slippage_ticks": np.where(traded, slip_ticks, 0),
        }
        self._expiry_dates = expiry_dates
        self._simulate_paths()

    def _candidates(self, rng: np.random.Generator, m: int) -> dict[str, np.ndarray]:
        """m random candidate ideas at random decision bars of the day, priced at the bar."""
        tl = self.world._tl
        bar = rng.integers(0, DECISION_BARS, m)
        offset_ms = rng.integers(0, 240_000, m)
        g = self._g0 + bar
        code = rng.choice(3, size=m, p=STRATEGY_P)
        side = np.where(rng.random(m) < 0.5, 1.0, -1.0)
        long_draw = rng.random(m)
        dir_sign = np.where(code == 0, 1.0,
                            np.where(long_draw < np.where(code == 1, LONG_P[1], LONG_P[2]), 1.0, -1.0))
        k_exp = rng.choice(len(EXPIRY_P), size=m, p=EXPIRY_P)
        x_step = (self.session + k_exp) * POINTS + BARS          # expiry close, global step
        spot = tl.spot[g]
        atm = tl.vix[g] / 100.0
        years = (tl.var_clock[x_step] - tl.var_clock[g]) / VARIANCE_MINUTES_PER_YEAR
        em = spot * atm * np.sqrt(years)

        # widths near 0.8 expected moves, widely spread
        wz = np.log(WIDTHS[None, :] / np.maximum(0.8 * em[:, None], 1.0)) / 0.8
        wp = np.exp(-0.5 * wz * wz)
        wp /= wp.sum(axis=1, keepdims=True)
        wi = (wp.cumsum(axis=1) < rng.random(m)[:, None]).sum(axis=1)
        width = np.where(code == 0, 0, WIDTHS[np.minimum(wi, len(WIDTHS) - 1)]).astype(np.int64)

        z = rng.standard_normal(m)
        anchor = np.select(
            [code == 0, (code == 1) & (dir_sign > 0), code == 1],
            [spot + side * np.clip(0.4 + 0.6 * z, -0.5, 1.2) * em,   # singles: mostly OTM
             spot + side * (0.6 * z) * em,                          # debit verticals: near ATM
             spot + side * (0.8 + 0.5 * z) * em],                   # credit verticals: OTM
            default=spot + 0.7 * z * em)                            # butterflies: around spot
        strike = (np.rint(anchor / 5) * 5).astype(np.int64)
        strike = np.maximum(strike, 5 + 2 * width)

        leg_k, leg_q = leg_arrays(code, side, dir_sign, strike, width)
        is_call = (side > 0)[:, None]
        value = (leg_q * bs_price(spot[:, None], leg_k, years[:, None],
                                  implied_vol(atm[:, None], leg_k, spot[:, None]), is_call)).sum(axis=1)
        ticks = _round_ticks(np.abs(value))
        debit_cents = (dir_sign * ticks * TICK_CENTS).astype(np.int64)
        return {"bar": bar, "offset_ms": offset_ms, "code": code, "side": side,
                "dir_sign": dir_sign, "k_exp": k_exp, "width": width, "strike": strike,
                "debit_cents": debit_cents, "ok": _proposable(code, width, debit_cents)}

    def _price_group(self, k: int, ii: np.ndarray, leg_k: np.ndarray, leg_q: np.ndarray):
        """Marks of ideas `ii` (all expiring k sessions out) from the day's open to expiry.

        Returns (value per share [n, cols], P&L in cents [n, cols]); before and at entry the
        P&L is 0, the last column is the exact integer settlement.
        """
        t, tl = self.table, self.world._tl
        x = (self.session + k) * POINTS + BARS
        cols = np.arange(self._g0, x + 1)
        s_cols = tl.spot[cols]
        tau = (tl.var_clock[x] - tl.var_clock[cols]) / VARIANCE_MINUTES_PER_YEAR
        strikes_u, inv = np.unique(leg_k[ii], return_inverse=True)
        inv = inv.reshape(len(ii), 3)
        iv = implied_vol((tl.vix[cols] / 100.0)[:, None], strikes_u[None, :], s_cols[:, None])
        calls = bs_price(s_cols[:, None], strikes_u[None, :], tau[:, None], iv, True)
        puts = np.where(tau[:, None] > 0,
                        np.maximum(calls - s_cols[:, None] + strikes_u[None, :], 0.0),  # parity
                        np.maximum(strikes_u[None, :] - s_cols[:, None], 0.0))
        chain = np.concatenate([calls, puts], axis=1)                    # [cols, 2U]
        side = t["side_sign"][ii]
        li = inv + np.where(side > 0, 0, len(strikes_u))[:, None]
        q = leg_q[ii]
        val = np.einsum("cnl,nl->nc", chain[:, li], q)                    # [n, cols]
        debit = t["debit_cents"][ii]
        pnl = np.rint((val - debit[:, None] / 100.0) * 10_000).astype(np.int64)
        # exact settlement from integer intrinsic values (cents per share)
        s_set = int(round(tl.spot[x] * 100))
        lk = leg_k[ii] * 100
        intr = np.where(side[:, None] > 0, np.maximum(s_set - lk, 0), np.maximum(lk - s_set, 0))
        set_val = (intr * q.astype(np.int64)).sum(axis=1)
        pnl[:, -1] = (set_val - debit) * 100
        val[:, -1] = set_val / 100.0
        rel = t["step"][ii] - self._g0
        pnl[np.arange(pnl.shape[1])[None, :] <= rel[:, None]] = 0
        return val, pnl

    def _simulate_paths(self, chunk: int = 8192) -> None:
        t = self.table
        tl = self.world._tl
        n = len(t["bar"])
        out = {name: np.zeros(n, np.int64) for name in (
            "settlement_cents", "max_cents", "min_cents", "time_to_max_minutes",
            "time_in_drawdown_minutes", "lifetime_minutes")}
        trig = {"idea": [], "step": [], "code": [], "cum_cents": [], "value": []}
        leg_k, leg_q = leg_arrays(t["strategy_code"], t["side_sign"], t["dir_sign"],
                                  t["strike"], t["width"])
        leg_k = leg_k.astype(np.int64)
        span = (MAX_EXPIRY_DAYS + 1) * POINTS
        cols_all = np.arange(self._g0, self._g0 + span)
        tc_all = tl.trade_clock[cols_all]
        s_all = tl.spot[cols_all]
        minutes_w = np.where(tl.bar[cols_all] < BARS, BAR_MINUTES, 0)
        # chunks of ideas sorted by expiry: short-dated chunks walk fewer columns
        order = np.argsort(t["expiry_offset"], kind="stable")
        for lo in range(0, n, chunk):
            ii = order[lo: lo + chunk]
            ks = t["expiry_offset"][ii]
            ncols = (int(ks.max()) + 1) * POINTS
            pnl = np.zeros((len(ii), ncols), np.int64)
            val = np.zeros((len(ii), ncols))
            for k in np.unique(ks):
                sel = np.nonzero(ks == k)[0]
                v, p = self._price_group(int(k), ii[sel], leg_k, leg_q)
                width = p.shape[1]
                pnl[sel, :width] = p
                val[sel, :width] = v
                pnl[sel, width:] = p[:, -1:]          # after expiry: settled, flat
            rel = t["step"][ii] - self._g0
            xrel = (ks + 1) * POINTS - 1
            rows = np.arange(len(ii))
            tc = tc_all[:ncols]
            live = np.arange(ncols)[None, :] <= xrel[:, None]
            out["settlement_cents"][ii] = pnl[rows, xrel]
            out["max_cents"][ii] = np.where(live, pnl, np.iinfo(np.int64).min).max(axis=1)
            out["min_cents"][ii] = np.where(live, pnl, np.iinfo(np.int64).max).min(axis=1)
            first_max = np.where(live, pnl, np.iinfo(np.int64).min).argmax(axis=1)
            out["time_to_max_minutes"][ii] = np.maximum(tc[first_max] - tc[rel], 0)
            underwater = (pnl[:, :-1] < 0) & (np.arange(ncols - 1)[None, :] < xrel[:, None])
            out["time_in_drawdown_minutes"][ii] = (underwater * minutes_w[None, :ncols - 1]).sum(axis=1)
            out["lifetime_minutes"][ii] = tc[xrel] - tc[rel]
            self._triggers(ii, rel, xrel, pnl, val, s_all[:ncols], tc, trig)
        t.update(out)
        t["settlement_price_cents"] = np.rint(tl.spot[t["expiry_step"]] * 100).astype(np.int64)
        if trig["idea"]:
            trig = {k: np.concatenate(v) for k, v in trig.items()}
        else:
            trig = {k: np.zeros(0, np.float64 if k == "value" else np.int64) for k in trig}
        order = np.lexsort((trig["step"], trig["idea"]))
        self.triggers = {k: v[order] for k, v in trig.items()}
        counts = np.bincount(self.triggers["idea"], minlength=n)
        self._trig_off = np.concatenate([[0], np.cumsum(counts)])

    def _triggers(self, ii, rel, xrel, pnl, val, s_cols, tc, out) -> None:
        """Walk the paths bar by bar (vectorised over ideas) and record trigger points.

        One snapshot per idea and bar at most, its type the first of: stop_touch,
        target_touch, tier_boundary, significant_move, periodic. Settlement columns are
        not marks (the settlement event covers them).
        """
        n = len(ii)
        r = self.table["risk_cents"][ii].astype(float)
        h = TIER_HYSTERESIS * r
        # whole-matrix work first; the loop keeps only the sequential state
        tier_up = _tier(pnl - h[:, None], r[:, None]).astype(np.int8)
        tier_down = _tier(pnl + h[:, None], r[:, None]).astype(np.int8)
        below_stop = pnl < -STOP_R * r[:, None]
        above_target = pnl > TARGET_R * r[:, None]
        last_tier = np.ones(n, np.int8)            # entry: flat = small_loss
        stop_done = np.zeros(n, bool)
        target_done = np.zeros(n, bool)
        s_ref = s_cols[rel]
        t_last = tc[rel]
        base = self._g0
        for c in range(int(rel.min()) + 1, int(xrel.max())):
            active = (rel < c) & (c < xrel)
            stop = active & below_stop[:, c] & ~stop_done
            target = active & above_target[:, c] & ~target_done
            up, down = tier_up[:, c], tier_down[:, c]
            new_tier = np.where(up > last_tier, up, np.where(down < last_tier, down, last_tier))
            tier = active & (new_tier != last_tier)
            move = active & (np.abs(s_cols[c] / s_ref - 1.0) > SIGNIFICANT_MOVE)
            periodic = active & (tc[c] - t_last >= PERIODIC_MINUTES)
            hit = stop | target | tier | move | periodic
            if not hit.any():
                continue
            code = np.select([stop, target, tier, move, periodic],
                             [_T_STOP, _T_TARGET, _T_TIER, _T_MOVE, _T_PERIODIC], 0)
            stop_done |= stop
            target_done |= target
            last_tier = np.where(active, new_tier, last_tier)
            s_ref = np.where(hit, s_cols[c], s_ref)
            t_last = np.where(hit, tc[c], t_last)
            j = np.nonzero(hit)[0]
            out["idea"].append(ii[j])
            out["step"].append(np.full(len(j), base + c, np.int64))
            out["code"].append(code[j])
            out["cum_cents"].append(pnl[j, c])
            out["value"].append(val[j, c])

    # -- columnar access -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.table["bar"])

    @cached_property
    def idea_ids(self) -> list[str]:
        prefix = f"{self.world.seed}:{self.date.isoformat()}:"
        return [str(uuid.uuid5(_NAMESPACE, prefix + str(i))) for i in range(len(self))]

    @cached_property
    def _index(self) -> dict[str, int]:
        return {iid: i for i, iid in enumerate(self.idea_ids)}

    def _i(self, idea: str | int) -> int:
        return idea if isinstance(idea, (int, np.integer)) else self._index[idea]

    def trade_id(self, idea: str | int) -> str | None:
        i = self._i(idea)
        if not self.table["traded"][i]:
            return None
        return str(uuid.uuid5(_NAMESPACE, "trade:" + self.idea_ids[i]))

    def context_id(self, idea: str | int) -> str:
        return self._context_ids[int(self.table["bar"][self._i(idea)])]

    def _time(self, step: int) -> datetime:
        return self.world._tl.times[int(step)]

    # -- objects -------------------------------------------------------------------------
    def idea(self, i: str | int) -> TradeIdea:
        i = self._i(i)
        t = self.table
        code = int(t["strategy_code"][i])
        k = int(t["expiry_offset"][i])
        return TradeIdea(
            idea_id=self.idea_ids[i],
            strategy=STRATEGIES[code],
            side="call" if t["side_sign"][i] > 0 else "put",
            direction="long" if t["dir_sign"][i] > 0 else "short",
            strike=Decimal(int(t["strike"][i])),
            width=int(t["width"][i]) if code else None,
            expiration=self._expiry_dates[k],
            dte=int(t["dte"][i]),
            debit=_dec_cents(t["debit_cents"][i]),
            score=Decimal(repr(float(t["score"][i]))).quantize(_CENT),
            decision_time=datetime.fromtimestamp(int(t["decision_ms"][i]) / 1000, timezone.utc),
            context_id=self._context_ids[int(t["bar"][i])],
        )

    @cached_property
    def ideas(self) -> list[TradeIdea]:
        return [self.idea(i) for i in range(len(self))]

    def outcome(self, i: str | int) -> IdeaOutcome:
        i = self._i(i)
        t = self.table
        idea = self.ideas[i] if "ideas" in self.__dict__ else self.idea(i)
        return IdeaOutcome(
            idea=idea,
            settlement_status="settled",
            settlement_pnl=_dec_cents(t["settlement_cents"][i]),
            max_pnl=_dec_cents(t["max_cents"][i]),
            min_pnl=_dec_cents(t["min_cents"][i]),
            time_to_max_pnl_minutes=int(t["time_to_max_minutes"][i]),
            time_in_drawdown_minutes=int(t["time_in_drawdown_minutes"][i]),
            lifetime_minutes=int(t["lifetime_minutes"][i]),
            settled_at=self._time(t["expiry_step"][i]),
            settlement_price=_dec_cents(t["settlement_price_cents"][i]),
        )

    @cached_property
    def outcomes(self) -> list[IdeaOutcome]:
        return [self.outcome(i) for i in range(len(self))]

    def cohort(self, context_id: str) -> Cohort:
        """Settlement P&Ls of every idea generated against `context_id` (itself included)."""
        bar = self._context_ids.index(context_id)
        mask = self.table["bar"] == bar
        return Cohort(_dec_cents(c) for c in self.table["settlement_cents"][mask])

    @cached_property
    def cohorts(self) -> dict[str, Cohort]:
        return {cid: self.cohort(cid) for cid in self._context_ids
                if (self.table["bar"] == self._context_ids.index(cid)).any()}

    @property
    def traded_indices(self) -> np.ndarray:
        return np.nonzero(self.table["traded"])[0]

    @cached_property
    def trades(self) -> list[SimTrade]:
        out = []
        t = self.table
        for i in self.traded_indices:
            fees, slip = int(t["fees_cents"][i]), int(t["slippage_cents"][i])
            out.append(SimTrade(
                trade_id=self.trade_id(i), idea_id=self.idea_ids[i],
                fill_time=datetime.fromtimestamp(int(t["fill_ms"][i]) / 1000, timezone.utc),
                fill_price=_dec_cents(t["debit_cents"][i] + t["slippage_ticks"][i] * TICK_CENTS),
                quantity=1, fees=_dec_cents(fees), slippage=_dec_cents(slip),
                net_settlement_pnl=_dec_cents(t["settlement_cents"][i] - fees - slip)))
        return out

    def _trigger_slice(self, i: int) -> slice:
        return slice(int(self._trig_off[i]), int(self._trig_off[i + 1]))

    def pnl_events(self, idea: str | int) -> list[PnlEvent]:
        """The idea's P&L ledger: [fill,] marks at trigger points, settlement.

        Deltas are differences of the cumulative net P&L in integer cents, so they sum to
        the settlement P&L exactly (net of fees and slippage for a traded idea).
        """
        i = self._i(idea)
        t = self.table
        tl = self.world._tl
        iid, tid = self.idea_ids[i], self.trade_id(i)
        cost = int(t["fees_cents"][i] + t["slippage_cents"][i])
        events: list[PnlEvent] = []
        prev = 0
        zero = Decimal("0.00")
        if t["traded"][i]:
            prev = -cost
            events.append(PnlEvent(
                iid, tid, datetime.fromtimestamp(int(t["fill_ms"][i]) / 1000, timezone.utc), "fill",
                _dec_cents(-cost), _dec_cents(t["fees_cents"][i]), _dec_cents(t["slippage_cents"][i]),
                _dec_cents(round(tl.spot[t["step"][i]] * 100)), _dec_cents(-cost)))
        sl = self._trigger_slice(i)
        for step, cum in zip(self.triggers["step"][sl], self.triggers["cum_cents"][sl]):
            c = int(cum) - cost
            events.append(PnlEvent(iid, tid, self._time(step), "mark", _dec_cents(c - prev), zero, zero,
                                   _dec_cents(round(tl.spot[step] * 100)), _dec_cents(c)))
            prev = c
        final = int(t["settlement_cents"][i]) - cost
        events.append(PnlEvent(iid, tid, self._time(t["expiry_step"][i]), "settlement",
                               _dec_cents(final - prev), zero, zero,
                               _dec_cents(t["settlement_price_cents"][i]), _dec_cents(final)))
        return events

    def snapshot_triggers(self, idea: str | int) -> list[IdeaSnapshot]:
        """tracked_idea_snapshots rows for the idea: one per trigger event (fill first)."""
        i = self._i(idea)
        t = self.table
        tl = self.world._tl
        sl = self._trigger_slice(i)
        steps = list(self.triggers["step"][sl])
        codes = list(self.triggers["code"][sl])
        cums = list(self.triggers["cum_cents"][sl])
        vals = list(self.triggers["value"][sl])
        cost = int(t["fees_cents"][i] + t["slippage_cents"][i])
        times = [self._time(s) for s in steps]
        if t["traded"][i]:
            steps.insert(0, int(t["step"][i]))
            codes.insert(0, _T_FILL)
            cums.insert(0, 0)
            vals.insert(0, t["debit_cents"][i] / 100.0)
            times.insert(0, datetime.fromtimestamp(int(t["fill_ms"][i]) / 1000, timezone.utc))
        if not steps:
            return []
        steps_a = np.array(steps, dtype=np.int64)
        code = int(t["strategy_code"][i])
        leg_k, leg_q = leg_arrays(np.array([code]), np.array([t["side_sign"][i]]),
                                  np.array([t["dir_sign"][i]]), np.array([t["strike"][i]]),
                                  np.array([t["width"][i]]))
        s = tl.spot[steps_a][:, None]
        tau = ((tl.var_clock[t["expiry_step"][i]] - tl.var_clock[steps_a]) / VARIANCE_MINUTES_PER_YEAR)[:, None]
        iv = implied_vol((tl.vix[steps_a] / 100.0)[:, None], leg_k, s)
        greeks = [(g * leg_q).sum(axis=1) for g in bs_greeks(s, leg_k, tau, iv, t["side_sign"][i] > 0)]
        risk = int(t["risk_cents"][i])
        out = []
        for j, step in enumerate(steps_a):
            pnl = int(cums[j]) - cost
            out.append(IdeaSnapshot(
                idea_id=self.idea_ids[i], snapshot_time=times[j], trigger_type=TRIGGER_TYPES[codes[j] - 1],
                mark_price=Decimal(repr(round(float(vals[j]), 4))).quantize(Decimal("0.0001")),
                underlying_price=_dec_cents(round(tl.spot[step] * 100)),
                unrealized_pnl=_dec_cents(pnl),
                pnl_percent=(Decimal(pnl * 100) / Decimal(risk)).quantize(Decimal("0.0001")) if risk else Decimal("0.0000"),
                delta=Decimal(repr(round(float(greeks[0][j]), 4))),
                gamma=Decimal(repr(round(float(greeks[1][j]), 6))),
                theta=Decimal(repr(round(float(greeks[2][j]), 4))),
                vega=Decimal(repr(round(float(greeks[3][j]), 4))),
                vix_level=Decimal(repr(float(tl.vix[step]))).quantize(_CENT)))
        return out

    def iter_pnl_events(self, traded_only: bool = True) -> Iterator[PnlEvent]:
        ids = self.traded_indices if traded_only else range(len(self))
        for i in ids:
            yield from self.pnl_events(int(i))
