"""Probability calibration of the tier forecast: isotonic, Platt or temperature, applied only
when it lowers held-out Brier (the decision is recorded). Pure. See docs/mlloop-models.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from scipy import optimize

from plugins.mlloop.ml.data import P_EPS, onehot
from plugins.mlloop.ml.metrics import brier_per_tier


@dataclass
class Calibration:
    """Per-tier probability calibration plus the record of why it is (not) applied.

    ``method`` is "none", "isotonic", "platt" or "temperature". ``params`` holds plain
    floats/lists only, so the whole object is JSON.
    """

    method: str = "none"
    params: dict = field(default_factory=dict)
    decision: dict = field(default_factory=dict)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrate an (n, 4) or (4,) probability array; rows renormalised to sum to 1."""
        if self.method == "none":
            return probs
        p = np.asarray(probs, dtype=float)
        single = p.ndim == 1
        if single:
            p = p[None, :]
        arrays = self._arrays()
        if self.method == "temperature":
            z = np.log(np.maximum(p, P_EPS)) * arrays["inv_t"]
            z -= z.max(axis=1, keepdims=True)
            q = np.exp(z)
        elif self.method == "platt":
            q = _sigmoid(arrays["a"] * _logit(p) + arrays["b"])
        elif self.method == "isotonic":
            q = np.empty_like(p)
            for i, (xs, ys) in enumerate(arrays["knots"]):
                q[:, i] = np.interp(p[:, i], xs, ys)
        else:
            raise ValueError(f"unknown calibration method {self.method!r}")
        q = np.maximum(q, P_EPS)
        q /= q.sum(axis=1, keepdims=True)
        return q[0] if single else q

    def _arrays(self) -> dict:
        # Parameters as numpy once, not per call: the fast path applies this per idea.
        cached = self.__dict__.get("_cache")
        if cached is None:
            cached = {}
            if self.method == "temperature":
                cached["inv_t"] = 1.0 / self.params["temperature"]
            elif self.method == "platt":
                cached["a"] = np.asarray(self.params["a"], dtype=float)
                cached["b"] = np.asarray(self.params["b"], dtype=float)
            elif self.method == "isotonic":
                cached["knots"] = [(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
                                   for x, y in zip(self.params["x"], self.params["y"])]
            self.__dict__["_cache"] = cached
        return cached

    def to_json(self) -> dict:
        return {"method": self.method, "params": self.params, "decision": self.decision}

    @classmethod
    def from_json(cls, data: Mapping) -> "Calibration":
        return cls(data["method"], dict(data["params"]), dict(data["decision"]))


CALIBRATION_METHODS = ("isotonic", "platt", "temperature")


def fit_calibrator(method: str, probs: np.ndarray, y: np.ndarray) -> Calibration:
    """Fit one calibration method on (probs, y) with no decision logic."""
    p = np.asarray(probs, dtype=float)
    target = onehot(y)
    if method == "none":
        return Calibration("none")
    if method == "isotonic":
        xs, ys = [], []
        for i in range(p.shape[1]):
            x_knots, y_knots = _isotonic_fit(p[:, i], target[:, i])
            xs.append(x_knots)
            ys.append(y_knots)
        return Calibration("isotonic", {"x": xs, "y": ys})
    if method == "platt":
        a_s, b_s = [], []
        for i in range(p.shape[1]):
            a, b = _platt_fit(_logit(p[:, i]), target[:, i])
            a_s.append(a)
            b_s.append(b)
        return Calibration("platt", {"a": a_s, "b": b_s})
    if method == "temperature":
        logp = np.log(np.clip(p, P_EPS, 1.0))
        yi = np.argmax(target, axis=1)

        def nll(log_t: float) -> float:
            z = logp / math.exp(log_t)
            z -= z.max(axis=1, keepdims=True)
            lse = np.log(np.exp(z).sum(axis=1))
            return float(np.mean(lse - z[np.arange(len(z)), yi]))

        res = optimize.minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
        return Calibration("temperature", {"temperature": float(math.exp(res.x))})
    raise ValueError(f"unknown calibration method {method!r}")


def fit_calibration(
    probs: np.ndarray,
    y: np.ndarray,
    *,
    method: str = "auto",
    fit_fraction: float = 0.5,
    min_rows: int = 200,
) -> Calibration:
    """Choose and fit a calibration on held-out predictions, applying it only if it helps.

    ``probs``/``y`` must be out-of-sample predictions in time order. The first
    ``fit_fraction`` of rows fits each candidate (``method="auto"``: isotonic, Platt and
    temperature; otherwise just ``method``); the rest is the evaluation slice. The candidate
    with the lowest mean per-tier Brier on the evaluation slice is applied only if that is
    strictly lower than the uncalibrated Brier on the same slice; it is then refitted on all
    rows. Otherwise the result is method "none". Either way ``decision`` records the numbers.
    """
    p = np.asarray(probs, dtype=float)
    y = np.asarray(y)
    n = len(y)
    decision: dict = {"n_rows": int(n), "requested": method}
    if method == "none":
        decision.update(applied=False, reason="calibration disabled")
        return Calibration("none", {}, decision)
    n_fit = int(n * fit_fraction)
    if n < min_rows or n_fit < 2 or n - n_fit < 2:
        decision.update(applied=False, reason=f"fewer than {min_rows} held-out predictions")
        return Calibration("none", {}, decision)
    p_fit, y_fit, p_eval, y_eval = p[:n_fit], y[:n_fit], p[n_fit:], y[n_fit:]
    before = brier_per_tier(y_eval, p_eval)
    candidates = CALIBRATION_METHODS if method == "auto" else (method,)
    results = {}
    for m in candidates:
        cal = fit_calibrator(m, p_fit, y_fit)
        results[m] = brier_per_tier(y_eval, cal.apply(p_eval))
    best = min(candidates, key=lambda m: (float(np.mean(results[m])), candidates.index(m)))
    decision.update(
        n_fit=n_fit,
        n_eval=n - n_fit,
        brier_uncalibrated=float(np.mean(before)),
        brier_uncalibrated_per_tier=before,
        candidates={m: {"brier": float(np.mean(v)), "brier_per_tier": v}
                    for m, v in results.items()},
        best=best,
    )
    if float(np.mean(results[best])) < float(np.mean(before)):
        final = fit_calibrator(best, p, y)
        decision.update(applied=True, reason=f"{best} lowered held-out Brier")
        return Calibration(best, final.params, decision)
    decision.update(applied=False, reason="no method lowered held-out Brier")
    return Calibration("none", {}, decision)


def _isotonic_fit(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Pool-adjacent-violators on (x, y); returns knots for ``np.interp`` (clipped ends)."""
    order = np.argsort(x, kind="mergesort")
    xs, ys = x[order], y[order].astype(float)
    # Collapse equal x first so the fit is a function of x.
    ux, start = np.unique(xs, return_index=True)
    sums = np.add.reduceat(ys, start)
    counts = np.diff(np.append(start, len(xs))).astype(float)
    vals, wts, lo = [], [], []
    for i in range(len(ux)):
        vals.append(sums[i] / counts[i])
        wts.append(counts[i])
        lo.append(i)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w
            vals[-2:] = [v]
            wts[-2:] = [w]
            lo.pop()
    bounds = lo + [len(ux)]
    knots_x, knots_y = [], []
    for j, v in enumerate(vals):
        a, b = bounds[j], bounds[j + 1] - 1
        knots_x.append(float(ux[a]))
        knots_y.append(float(v))
        if b != a:
            knots_x.append(float(ux[b]))
            knots_y.append(float(v))
    return knots_x, knots_y


def _platt_fit(z: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Logistic regression of t on z (one feature), a lightly regularised Newton fit."""
    t = t.astype(float)

    def loss(ab):
        a, b = ab
        s = a * z + b
        return float(np.mean(np.logaddexp(0, s) - t * s) + 1e-6 * (a * a + b * b))

    def grad(ab):
        a, b = ab
        p = _sigmoid(a * z + b)
        return np.array([np.mean((p - t) * z) + 2e-6 * a, np.mean(p - t) + 2e-6 * b])

    res = optimize.minimize(loss, x0=np.array([1.0, 0.0]), jac=grad, method="BFGS")
    return float(res.x[0]), float(res.x[1])


def _logit(p):
    p = np.clip(p, P_EPS, 1 - P_EPS)
    return np.log(p / (1.0 - p))


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))

