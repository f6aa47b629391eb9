"""Snapshot triggers along simulated P&L paths: which bars of an idea's path take a snapshot
(stop / target touch, profit-tier boundary with hysteresis, 1% underlying move, sparse
periodic), vectorised over ideas."""
from __future__ import annotations

import numpy as np

from plugins.mlloop.sim.config import (
    PERIODIC_MINUTES, SIGNIFICANT_MOVE, STOP_R, T_MOVE, T_PERIODIC, T_STOP, T_TARGET, T_TIER,
    TARGET_R, TIER_HYSTERESIS,
)


def profit_tier(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """classify_profit_tier, vectorised (x and r in the same unit)."""
    return ((x > -0.5 * r).astype(np.int8) + (x > 0) + (x >= r)).astype(np.int8)


def record_triggers(risk_cents, base, ii, rel, xrel, pnl, val, s_cols, tc, out) -> None:
    """Walk the paths bar by bar (vectorised over ideas) and record trigger points.

    One snapshot per idea and bar at most, its type the first of: stop_touch,
    target_touch, tier_boundary, significant_move, periodic. Settlement columns are
    not marks (the settlement event covers them).
    """
    n = len(ii)
    r = risk_cents[ii].astype(float)
    h = TIER_HYSTERESIS * r
    # whole-matrix work first; the loop keeps only the sequential state
    tier_up = profit_tier(pnl - h[:, None], r[:, None]).astype(np.int8)
    tier_down = profit_tier(pnl + h[:, None], r[:, None]).astype(np.int8)
    below_stop = pnl < -STOP_R * r[:, None]
    above_target = pnl > TARGET_R * r[:, None]
    last_tier = np.ones(n, np.int8)            # entry: flat = small_loss
    stop_done = np.zeros(n, bool)
    target_done = np.zeros(n, bool)
    s_ref = s_cols[rel]
    t_last = tc[rel]
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
                         [T_STOP, T_TARGET, T_TIER, T_MOVE, T_PERIODIC], 0)
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
