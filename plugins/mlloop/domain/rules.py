"""The Trade Selector's rule score.

This module owns:

* the score itself: 0-100 = weighted sum of four components, each 0-100 --
  convexity (40%), R2R (25%), width fit (20%), gamma alignment (15%) by default.
  The formulas are in docs/mlloop-domain.md; `score_arrays` is the vectorised core that
  `score_idea` / `score_ideas` and the simulator share.

The geometry it scores (`TradeIdea`) is in `domain.ideas`; its weights and constants
(`SelectorParams`, one row of `selector_params`) in `domain.selector_params`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
from optionsmath.decimals import cents

from plugins.mlloop.domain.calendar import VARIANCE_MINUTES_PER_YEAR, years_to_expiry
from plugins.mlloop.domain.ideas import STRATEGY_CODE, TradeIdea
from plugins.mlloop.domain.selector_params import COMPONENTS, SelectorParams

# Expected moves never shrink below this much option time (variance minutes).
MIN_SCORING_MINUTES = 15.0
# Reward of an open-ended single option is measured at a move of this many expected moves.
SINGLE_REWARD_MOVES = 2.0


@dataclass(frozen=True, slots=True)
class ScoringContext:
    """The market as the scorer sees it at decision time (all observable)."""

    as_of: datetime
    spot: float
    iv: float                          # ATM implied vol, annualised (e.g. VIX / 100)
    bias_lfi: float = 0.0
    gex_gamma_flip: float | None = None
    gex_call_wall: float | None = None
    gex_put_wall: float | None = None

    @classmethod
    def from_market_features(cls, features: Mapping[str, Any]) -> "ScoringContext":
        vix = features.get("vix_level")
        return cls(
            as_of=features["snapshot_time"],
            spot=float(features["spot_price"]),
            iv=float(vix) / 100.0 if vix is not None else 0.2,
            bias_lfi=float(features.get("bias_lfi") or 0.0),
            gex_gamma_flip=features.get("gex_gamma_flip"),
            gex_call_wall=features.get("gex_call_wall"),
            gex_put_wall=features.get("gex_put_wall"),
        )


@dataclass(frozen=True, slots=True)
class RuleScore:
    total: Decimal                     # 0.00 .. 100.00
    components: Mapping[str, Decimal]  # each 0.00 .. 100.00
    params_version: int


# ---------------------------------------------------------------------------------------
# Vectorised geometry
# ---------------------------------------------------------------------------------------

def leg_arrays(strategy_code, side_sign, dir_sign, strike, width):
    """Per idea, three legs: (strikes[n, 3], signed quantities[n, 3]); unused legs qty 0."""
    strategy_code = np.asarray(strategy_code)
    side_sign = np.asarray(side_sign, dtype=float)
    s = np.asarray(dir_sign, dtype=float)
    k = np.asarray(strike, dtype=float)
    w = np.nan_to_num(np.asarray(width, dtype=float))
    n = k.shape[0]
    strikes = np.empty((n, 3))
    qty = np.zeros((n, 3))
    single = strategy_code == 0
    vert = strategy_code == 1
    fly = strategy_code == 2
    strikes[:, 0] = np.where(fly, k - w, k)
    strikes[:, 1] = np.where(vert, k + side_sign * w, k)
    strikes[:, 2] = k + w
    qty[:, 0] = s
    qty[:, 1] = np.where(vert, -s, np.where(fly, -2 * s, 0.0))
    qty[:, 2] = np.where(fly, s, 0.0)
    # A single's unused legs point at its own strike with zero quantity.
    strikes[single, 1] = k[single]
    strikes[single, 2] = k[single]
    return strikes, qty


def expiry_value(x, leg_strikes, leg_qty, side_sign):
    """Structure value per share at expiry price x ([n] or [n, m]) -> same shape as x."""
    x = np.asarray(x, dtype=float)
    ss = np.asarray(side_sign, dtype=float)
    if x.ndim == 1:
        intr = np.maximum(ss[:, None] * (x[:, None] - leg_strikes), 0.0)
        return (intr * leg_qty).sum(axis=1)
    intr = np.maximum(ss[:, None, None] * (x[:, :, None] - leg_strikes[:, None, :]), 0.0)
    return (intr * leg_qty[:, None, :]).sum(axis=2)


def max_loss_profit(strategy_code, side_sign, dir_sign, strike, width, debit, spot, em):
    """Per-share (max_loss, max_profit), floats. Open-ended singles are measured at a move
    of SINGLE_REWARD_MOVES expected moves (for the reward, or for a short call's loss)."""
    code = np.asarray(strategy_code)
    ss = np.asarray(side_sign, dtype=float)
    s = np.asarray(dir_sign, dtype=float)
    k = np.asarray(strike, dtype=float)
    w = np.nan_to_num(np.asarray(width, dtype=float))
    d = np.asarray(debit, dtype=float)
    far = spot + ss * SINGLE_REWARD_MOVES * em          # favourable for a long single
    single_move_value = np.maximum(ss * (far - k), 0.0)
    long_ = s > 0
    single = code == 0
    ml = np.where(long_, d, w + d)                      # long: the debit; short: W - credit
    mp = np.where(long_, w - d, -d)                     # long: W - debit; short: the credit
    # singles
    ml_single = np.where(
        long_, d,
        np.where(ss < 0, k + d, single_move_value + d))  # short put: K - credit
    mp_single = np.where(long_, np.maximum(single_move_value - d, 0.0), -d)
    ml = np.where(single, ml_single, ml)
    mp = np.where(single, mp_single, mp)
    return np.maximum(ml, 0.01), np.maximum(mp, 0.0)


def score_arrays(
    params: SelectorParams,
    *,
    strategy_code,
    side_sign,
    dir_sign,
    strike,
    width,
    debit,
    spot,
    iv,
    years,
    bias_lfi,
    gamma_flip=None,
    call_wall=None,
    put_wall=None,
) -> dict[str, np.ndarray]:
    """Vectorised rule score. Every argument is an array of n ideas (or broadcastable).

    Returns {'convexity', 'r2r', 'width_fit', 'gamma_alignment', 'total'} float arrays,
    each 0..100; components unrounded, total rounded to cents of a point.
    """
    code = np.asarray(strategy_code)
    n = code.shape[0]

    def arr(x, default):
        if x is None:
            return np.full(n, default, dtype=float)
        a = np.broadcast_to(np.asarray(x, dtype=float), (n,)).astype(float)
        return a if math.isnan(default) else np.where(np.isnan(a), default, a)

    spot = arr(spot, np.nan)
    iv = arr(iv, 0.2)
    years = np.maximum(arr(years, 0.0), MIN_SCORING_MINUTES / VARIANCE_MINUTES_PER_YEAR)
    flip = arr(gamma_flip, np.nan)
    flip = np.where(np.isnan(flip), spot, flip)
    g = np.tanh((spot - flip) / (0.004 * spot))          # +1 well above the flip (long gamma)
    # The move to plan for: the implied expected move, damped where dealers are long gamma
    # (above the flip) and stretched where they are short it.
    em = spot * iv * np.sqrt(years) * (1.0 - params.gamma_em_adjust * g)
    ss = arr(side_sign, 1.0)
    s = arr(dir_sign, 1.0)
    k = arr(strike, np.nan)
    w = arr(width, 0.0)
    d = arr(debit, 0.0)
    bias = np.clip(arr(bias_lfi, 0.0), -1.0, 1.0)
    cwall = arr(call_wall, np.nan)
    pwall = arr(put_wall, np.nan)

    strikes, qty = leg_arrays(code, ss, s, k, w)
    ml, mp = max_loss_profit(code, ss, s, k, w, d, spot, em)

    # R2R: geometric reward / risk, saturating.
    r2r = 100.0 * (1.0 - np.exp(-(mp / ml) / params.r2r_scale))

    # Convexity: best expiry P&L reachable within +-1 expected move, per unit of risk.
    grid = spot[:, None] + em[:, None] * np.linspace(-1.0, 1.0, 9)[None, :]
    lo, hi = (spot - em)[:, None], (spot + em)[:, None]
    pts = np.concatenate([grid, np.clip(strikes, lo, hi)], axis=1)
    best = (expiry_value(pts, strikes, qty, ss) - d[:, None]).max(axis=1)
    leverage = np.maximum(best, 0.0) / ml
    convexity = 100.0 * (1.0 - np.exp(-leverage / params.convexity_scale))

    # Width fit: log-normal bump around a target width of k expected moves.
    target = np.where(code == 2, params.width_target_em["butterfly"],
                      params.width_target_em["vertical"]) * em
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(np.maximum(w, 1e-9) / np.maximum(target, 1e-9)) / params.width_tolerance
    width_fit = np.where(code == 0, float(params.single_width_score), 100.0 * np.exp(-0.5 * z * z))

    # Gamma alignment: lean with the bias, own gamma where dealers are short it (below the
    # flip moves extend), sell it where they are long it (above the flip moves are damped),
    # and leave room before the wall in the trade's direction.
    pos_gamma = (g + 1.0) / 2.0
    bullish = np.where(code == 2, 0.0, ss * s)            # +1 bullish, -1 bearish, 0 fly
    room_pts = np.where(bullish > 0, cwall - spot, spot - pwall)
    room = np.where(np.isnan(room_pts), 3.0, np.maximum(room_pts, 0.0) / np.maximum(em, 1e-9))
    room_term = 2.0 * np.tanh(room) - 1.0                 # -1 wall at spot .. +1 far away
    directional = 50.0 + 30.0 * bullish * bias - 15.0 * g * s + 5.0 * pos_gamma * room_term
    center_dist = np.abs(k - spot) / np.maximum(em, 1e-9)
    pin = 50.0 + 30.0 * g + 20.0 * (2.0 * np.exp(-center_dist ** 2) - 1.0)
    fly_align = np.where(s > 0, pin, 100.0 - pin)
    gamma_alignment = np.clip(np.where(code == 2, fly_align, directional), 0.0, 100.0)

    comps = {
        "convexity": np.clip(convexity, 0.0, 100.0),
        "r2r": np.clip(r2r, 0.0, 100.0),
        "width_fit": np.clip(width_fit, 0.0, 100.0),
        "gamma_alignment": gamma_alignment,
    }
    total = sum(params.weights[c] * comps[c] for c in COMPONENTS)
    comps["total"] = np.round(np.clip(total, 0.0, 100.0), 2)
    return comps


def _idea_arrays(ideas: Sequence[TradeIdea]):
    return dict(
        strategy_code=np.array([STRATEGY_CODE[i.strategy] for i in ideas]),
        side_sign=np.array([1.0 if i.side == "call" else -1.0 for i in ideas]),
        dir_sign=np.array([1.0 if i.direction == "long" else -1.0 for i in ideas]),
        strike=np.array([float(i.strike) for i in ideas]),
        width=np.array([float(i.width or 0) for i in ideas]),
        debit=np.array([float(i.debit) for i in ideas]),
    )


def _dec(x: float) -> Decimal:
    return cents(round(float(x), 2))


def score_ideas(
    ideas: Sequence[TradeIdea], context: ScoringContext, params: SelectorParams
) -> list[RuleScore]:
    """Score many ideas against one market context (vectorised)."""
    if not ideas:
        return []
    years = np.array([years_to_expiry(context.as_of, i.expiration) for i in ideas])
    out = score_arrays(
        params, **_idea_arrays(ideas), spot=context.spot, iv=context.iv, years=years,
        bias_lfi=context.bias_lfi, gamma_flip=context.gex_gamma_flip,
        call_wall=context.gex_call_wall, put_wall=context.gex_put_wall)
    result = []
    for j in range(len(ideas)):
        result.append(RuleScore(
            total=_dec(out["total"][j]),
            components=MappingProxyType({c: _dec(out[c][j]) for c in COMPONENTS}),
            params_version=params.version,
        ))
    return result


def score_idea(idea: TradeIdea, context: ScoringContext, params: SelectorParams) -> RuleScore:
    """The rule score of one idea: total 0-100 plus its four components."""
    return score_ideas([idea], context, params)[0]
