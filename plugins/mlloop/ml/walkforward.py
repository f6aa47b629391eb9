"""Walk-forward evaluation of the selector's training procedure (pure).

For every window: the day-level-feature guard and the regimes' eligibility are decided on
the window's training rows alone; the global models (MultiClass on ``profit_tier``, Logloss
on ``profitable``) and the eligible regimes' sub-models are fitted there; the validation
rows are scored by the global model and, for an eligible regime's rows, by its sub-model too.

After the windows:

1. each regime's sub-model must have earned its place (``regimes.earned``: lower held-out
   Brier than the global model on that regime's rows); the routed out-of-sample forecast
   uses the sub-model only for earned regimes;
2. the *deployed* forecast is evaluated the way it would have been served: each window's
   raw probabilities pass through a calibrator fitted only on the earlier windows'
   out-of-sample output (the rule of ``calibration.fit_calibration``), and are scored
   against the base-rate forecast of that window's training rows (``skill``), with a
   day-block bootstrap bound on the Brier skill score;
3. the final calibrator is fitted on every window's out-of-sample output.

See docs/mlloop-models.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from plugins.mlloop.ml import guard as day_guard
from plugins.mlloop.ml import regimes as rg
from plugins.mlloop.ml import skill
from plugins.mlloop.ml.calibration import fit_calibration
from plugins.mlloop.ml.data import CLASS_ORDER, as_utc_ns
from plugins.mlloop.ml.metrics import classification_metrics, evaluate_predictions, roc_auc
from plugins.mlloop.ml.windows import Window

DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class Rules:
    """The procedure's knobs besides the windows (defaults: docs/mlloop-models.md)."""
    regime_column: str = "regime"
    min_regime_samples: int = 500
    regime_min_days: int = 10
    regime_condition_column: str | None = "bias_direction"
    regime_min_condition_share: float = 0.25
    regime_min_val_rows: int = 200
    regime_min_improvement: float | None = 0.01   # None: eligible sub-models are kept untested
    day_feature_min_days: int = 60                # 0: the day-level guard is off
    day_feature_min_share: float = 0.95
    calibration: str = "auto"
    bootstrap: int = 1000
    bootstrap_seed: int = 0

    def eligible(self, frame: pd.DataFrame) -> dict[str, dict]:
        return rg.eligibility(frame, self.regime_column, min_samples=self.min_regime_samples,
                              min_days=self.regime_min_days,
                              condition_column=self.regime_condition_column,
                              min_condition_share=self.regime_min_condition_share)

    def features(self, frame, features, cats):
        return day_guard.guard(frame, features, cats, min_days=self.day_feature_min_days,
                               min_share=self.day_feature_min_share)

    def spec(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Result:
    """What a walk-forward evaluation produced (``metrics`` is JSON-ready)."""
    windows: list[dict] = field(default_factory=list)
    pooled: dict = field(default_factory=dict)
    held_out: dict = field(default_factory=dict)
    regimes: dict = field(default_factory=dict)
    guard: list[dict] = field(default_factory=list)
    earned: set = field(default_factory=set)
    oos_probs: np.ndarray | None = None
    oos_y: np.ndarray | None = None


Fit = Callable[[pd.DataFrame, np.ndarray, Sequence[str], str], object]


def evaluate(frame: pd.DataFrame, X: pd.DataFrame, features: Sequence[str], cats: Sequence[str],
             windows: Sequence[Window], rules: Rules, fit: Fit, *, score_column: str | None,
             on_window: Callable[[int, dict], None] | None = None) -> Result:
    """Run the windows. ``frame`` is sorted by decision time, ``X`` its prepared features;
    ``fit(X, y, cats, loss)`` returns a fitted classifier. ``on_window(i, metrics)`` after each."""
    y_all = frame["profit_tier"].to_numpy()
    prof_all = frame["profitable"].astype(int).to_numpy()
    rows = []          # per window: (window, raw global probs, global p_prof, subs, base rate)
    out = Result()
    for w in windows:
        train = frame.iloc[w.train_idx]
        kept, g = rules.features(train, features, cats)
        out.guard.append({"window": w.index, **g})
        kcats = [c for c in cats if c in kept]
        Xt, Xv = X.iloc[w.train_idx][kept], X.iloc[w.val_idx][kept]
        yt, pt = y_all[w.train_idx], prof_all[w.train_idx]
        tier_g, prof_g = fit(Xt, yt, kcats, "MultiClass"), fit(Xt, pt, kcats, "Logloss")
        probs, p_prof = tier_g.predict_proba(Xv), prof_g.predict_proba(Xv)[:, 1]
        subs = {}
        train_regimes = rg.regime_labels(train, rules.regime_column)
        val_regimes = rg.regime_labels(frame.iloc[w.val_idx], rules.regime_column)
        for r, info in rules.eligible(train).items():
            mask, vmask = train_regimes == r, val_regimes == r
            if not info["eligible"] or not vmask.any() or len(np.unique(yt[mask])) < 2 \
                    or len(np.unique(pt[mask])) < 2:
                continue
            sub_t = fit(Xt[mask], yt[mask], kcats, "MultiClass")
            sub_p = fit(Xt[mask], pt[mask], kcats, "Logloss")
            subs[r] = (vmask, sub_t.predict_proba(Xv[vmask]), sub_p.predict_proba(Xv[vmask])[:, 1])
        rows.append((w, probs, p_prof, subs, skill.base_rates(yt)))
        if on_window is not None:
            on_window(w.index, {"n_val": int(len(w.val_idx)), "sub_models": sorted(subs)})
    if not rows:
        return out

    # -- which regimes earned their sub-model (pooled over windows, latest prediction per row)
    held = {}
    for r in sorted({r for *_, subs, _ in rows for r in subs}):
        pos, sub, glob = [], [], []
        for w, probs, _, subs, _ in rows:
            if r in subs:
                vmask, sp, _ = subs[r]
                pos.append(w.val_idx[vmask]), sub.append(sp), glob.append(probs[vmask])
        pos, sub, glob = np.concatenate(pos), np.concatenate(sub), np.concatenate(glob)
        keep = _latest(pos)
        yy = y_all[pos[keep]]
        held[r] = {"n": int(len(keep)), "windows": sum(r in s for *_, s, _ in rows),
                   "brier_sub": float(skill.row_brier(yy, sub[keep]).mean()),
                   "brier_global": float(skill.row_brier(yy, glob[keep]).mean()),
                   "auc_sub": roc_auc(prof_all[pos[keep]], sub[keep][:, 2] + sub[keep][:, 3]),
                   "auc_global": roc_auc(prof_all[pos[keep]], glob[keep][:, 2] + glob[keep][:, 3])}
    if rules.regime_min_improvement is None:
        decided = {r: {**h, "kept": True, "reason": "kept untested (no held-out rule)"} for r, h in held.items()}
    else:
        decided = rg.earned(held, min_val_rows=rules.regime_min_val_rows,
                            min_improvement=rules.regime_min_improvement)
    out.earned = {r for r, d in decided.items() if d["kept"]}
    out.regimes = decided

    # -- the routed out-of-sample forecast, per window and pooled
    pos_l, probs_l, prof_l, win_l, base_l = [], [], [], [], []
    for w, probs, p_prof, subs, base in rows:
        probs, p_prof = probs.copy(), p_prof.copy()
        models = []
        for r, (vmask, sp, pp) in subs.items():
            if r in out.earned:
                probs[vmask], p_prof[vmask] = sp, pp
                models.append(r)
        m = {**w.describe(), "regime_models": sorted(models)}
        m.update(evaluate_predictions(frame.iloc[w.val_idx], probs, p_prof, score_column))
        out.windows.append(m)
        pos_l.append(w.val_idx), probs_l.append(probs), prof_l.append(p_prof)
        win_l.append(np.full(len(w.val_idx), w.index)), base_l.append(np.tile(base, (len(w.val_idx), 1)))
    pos = np.concatenate(pos_l)
    keep = _latest(pos)
    keep = keep[np.argsort(pos[keep], kind="mergesort")]     # time order (frame is sorted)
    pos, probs, p_prof = pos[keep], np.concatenate(probs_l)[keep], np.concatenate(prof_l)[keep]
    win, base = np.concatenate(win_l)[keep], np.concatenate(base_l)[keep]
    out.pooled = evaluate_predictions(frame.iloc[pos], probs, p_prof, score_column)
    out.oos_probs, out.oos_y = probs, y_all[pos]
    out.held_out = _deployed(frame.iloc[pos], y_all[pos], prof_all[pos], probs, win, base, rules)
    return out


def _deployed(rows: pd.DataFrame, y, profitable, raw, win, base, rules: Rules) -> dict:
    """The calibrated, walk-forward forecast scored against the base rate (module docstring)."""
    calibrated = raw.copy()
    applied = 0
    for i in np.unique(win):
        before, now = win < i, win == i
        cal = fit_calibration(raw[before], y[before], method=rules.calibration)
        if cal.method != "none":
            calibrated[now] = cal.apply(raw[now])
            applied += 1
    day = as_utc_ns(rows["decision_time"]) // DAY_NS
    s = skill.skill(y, calibrated, base)
    boot = skill.bootstrap_bss(y, calibrated, base, day, n_boot=rules.bootstrap, seed=rules.bootstrap_seed)
    cm = classification_metrics(y, calibrated)
    return {**s, "bss_lower": boot["lower"], "bss_upper": boot["upper"], "bootstrap": boot,
            "n_windows": int(len(np.unique(win))), "n_days": int(len(np.unique(day))),
            "calibrated_windows": applied, "auc_ovr": cm["auc_ovr"],
            "auc_profitable": roc_auc(profitable, calibrated[:, 2] + calibrated[:, 3]),
            "base_rate": [float(v) for v in skill.base_rates(y)],
            # the seed's line, kept for reference: pooled per-tier Brier < 0.25 (not a gate)
            "seed_brier_below_quarter": all(cm[f"brier_tier_{k}"] < 0.25 for k in CLASS_ORDER)}


def _latest(pos: np.ndarray) -> np.ndarray:
    """Indices of each position's last occurrence (windows overlap when step < val_days)."""
    return pd.Series(np.arange(len(pos))).groupby(pos).last().to_numpy()


def summary(result: Result) -> dict:
    """The held-out figures a control run is compared on."""
    h, p = result.held_out, result.pooled
    return {"auc_ovr": p.get("auc_ovr"), "auc_profitable": p.get("auc_profitable"),
            "score_auc_profitable": p.get("score_auc_profitable"), "n": h.get("n"),
            "bss": h.get("bss"), "bss_lower": h.get("bss_lower"), "bss_upper": h.get("bss_upper"),
            "brier": h.get("brier"), "brier_base": h.get("brier_base")}
