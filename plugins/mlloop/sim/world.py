"""A synthetic SPX-like world for the ML loop: deterministic for a seed, fast, learnable.

`World` owns the market; `SimDay` (sim/day.py) one day's ideas and their futures; this
package owns the simulation only; it calls the rule scorer (scoring.py) and produces
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
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Iterator

import numpy as np

from plugins.mlloop.domain.calendar import (
    OVERNIGHT_VARIANCE_MINUTES, VARIANCE_MINUTES_PER_YEAR, is_opex_week, is_trading_day,
    next_trading_day, session_open_utc,
)
from plugins.mlloop.domain.features import MarketHistory, MarketSnapshot
from plugins.mlloop.sim.config import (
    BAR_MINUTES, BAR_YEARS, BARS, BIAS_DRIFT, BIAS_PERSISTENCE, DIFFUSION_SCALE, FLIP_OFFSET,
    GAMMA_VOL, GEX_SCALE, JUMP_MEAN_DAYS, JUMP_PROB, JUMP_SD_DAYS, LFI_NOISE, MAX_EXPIRY_DAYS,
    PIN_STRENGTH, POINTS, REGIME_TRANSITIONS, REGIMES, RV_RATIO, VIX3M_RATIO, VIX_DAILY_SD,
    VIX_INTRADAY_RANGE, VIX_MEAN, VOL_OF_VOL, WALL_STRENGTH, SimConfig, STREAM_MARKET,
)
from plugins.mlloop.sim.day import SimDay

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
        rng = self._rng(s_idx, STREAM_MARKET)
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

    def sessions(self, n: int | None = None) -> list[SessionInfo]:
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
    def day(self, index: int) -> SimDay:
        """Trading day `index` (0-based) with its ideas and their whole futures."""
        if index < 0:
            raise ValueError("day index must be >= 0")
        s_idx = self.session_index(index)
        self._ensure_sessions(s_idx + MAX_EXPIRY_DAYS + 1)
        return SimDay(self, index, s_idx)

    def days(self, n: int, start: int = 0) -> Iterator[SimDay]:
        for i in range(start, start + n):
            yield self.day(i)


# ---------------------------------------------------------------------------------------
# One day of ideas
