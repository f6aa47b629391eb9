"""One simulated trading day (`SimDay`): its ideas (priced with Black-Scholes off the simulated
smile, rule-scored on the published context only), every idea's path to expiry, the P&L events
and snapshots its triggers produce, and the traded subset. Vectorised with numpy.
"""
from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Iterator

import numpy as np
from optionsmath.decimals import quantize, to_decimal

from plugins.mlloop.domain.calendar import VARIANCE_MINUTES_PER_YEAR, add_trading_days
from plugins.mlloop.domain.features import MarketContext, MarketSnapshot
from plugins.mlloop.domain.ideas import STRATEGIES, TradeIdea
from plugins.mlloop.domain.labels import Cohort, IdeaOutcome
from plugins.mlloop.domain.rules import COMPONENTS, leg_arrays, score_arrays
from plugins.mlloop.sim.config import (
    BARS, BAR_MINUTES, DECISION_BARS, EXPIRY_P, FEE_PER_CONTRACT_CENTS, LEG_CONTRACTS,
    LONG_P, MAX_EXPIRY_DAYS, MAX_GEOMETRIC_R2R, MIN_PREMIUM_CENTS, NAMESPACE, POINTS, REGIMES,
    STRATEGY_P, STREAM_IDEAS, STREAM_TRADES, TICK_CENTS, TRIGGER_TYPES, T_FILL, WIDTHS,
)
from plugins.mlloop.sim.paths import record_triggers
from plugins.mlloop.sim.pricing import bs_greeks, bs_price, implied_vol
from plugins.mlloop.sim.records import IdeaSnapshot, PnlEvent, SimTrade

if TYPE_CHECKING:
    from plugins.mlloop.sim.world import World

# Output records
# ---------------------------------------------------------------------------------------

def _round_ticks(value: np.ndarray) -> np.ndarray:
    return np.rint(value * 100 / TICK_CENTS).astype(np.int64)


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
        rng = w._rng(self.session, STREAM_IDEAS)
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
        trng = w._rng(self.session, STREAM_TRADES)
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
            record_triggers(t["risk_cents"], self._g0, ii, rel, xrel, pnl, val, s_all[:ncols], tc, trig)
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

    # -- columnar access -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.table["bar"])

    @cached_property
    def idea_ids(self) -> list[str]:
        prefix = f"{self.world.seed}:{self.date.isoformat()}:"
        return [str(uuid.uuid5(NAMESPACE, prefix + str(i))) for i in range(len(self))]

    @cached_property
    def _index(self) -> dict[str, int]:
        return {iid: i for i, iid in enumerate(self.idea_ids)}

    def _i(self, idea: str | int) -> int:
        return idea if isinstance(idea, (int, np.integer)) else self._index[idea]

    def trade_id(self, idea: str | int) -> str | None:
        i = self._i(idea)
        if not self.table["traded"][i]:
            return None
        return str(uuid.uuid5(NAMESPACE, "trade:" + self.idea_ids[i]))

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
            score=quantize(float(t["score"][i]), 2),
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
            codes.insert(0, T_FILL)
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
                mark_price=quantize(round(float(vals[j]), 4), 4),
                underlying_price=_dec_cents(round(tl.spot[step] * 100)),
                unrealized_pnl=_dec_cents(pnl),
                pnl_percent=(Decimal(pnl * 100) / Decimal(risk)).quantize(Decimal("0.0001")) if risk else Decimal("0.0000"),
                delta=to_decimal(round(float(greeks[0][j]), 4)),
                gamma=to_decimal(round(float(greeks[1][j]), 6)),
                theta=to_decimal(round(float(greeks[2][j]), 4)),
                vega=to_decimal(round(float(greeks[3][j]), 4)),
                vix_level=quantize(float(tl.vix[step]), 2)))
        return out

    def iter_pnl_events(self, traded_only: bool = True) -> Iterator[PnlEvent]:
        ids = self.traded_indices if traded_only else range(len(self))
        for i in ids:
            yield from self.pnl_events(int(i))
