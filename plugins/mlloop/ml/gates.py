"""Promotion gates: what a model's held-out evidence must show before it may serve (pure).

Every gate reads the metrics training recorded (``metrics["held_out"]``: the deployed,
walk-forward calibrated forecast scored against the base-rate forecast; ``metrics["control"]``:
the same procedure on shuffled labels) and a configuration (``GateConfig``, from the ML
settings). A gate that fails names itself, its figure and its threshold.

* ``held_out_windows``: at least ``min_windows`` walk-forward windows;
* ``held_out_samples``: at least ``min_samples`` held-out ideas;
* ``skill``: the Brier skill score of the tier forecast against the base rate is above zero
  beyond doubt -- its day-block bootstrap lower bound exceeds ``min_skill``;
* ``control``: a shuffled-label control ran with the training;
* ``skill_above_control``: that lower bound also exceeds the control's skill by
  ``min_skill_over_control`` (calibrating a useless model pulls its Brier a hair below the
  base rate, so a bare "skill > 0" would pass it).

Reported beside them, never gating: the per-tier skill (a tier that carries no signal may sit
at the base rate without failing a useful model) and the seed's "Brier < 0.25 for every tier"
line (a base-rate forecast already meets it).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping

GATE_NAMES = ("held_out_windows", "held_out_samples", "skill", "control", "skill_above_control")


@dataclass(frozen=True)
class GateConfig:
    min_windows: int = 3
    min_samples: int = 200
    min_skill: float = 0.0
    min_skill_over_control: float = 0.0

    @classmethod
    def from_settings(cls, settings: Mapping) -> "GateConfig":
        """From the ML settings (``gate_min_windows`` ...)."""
        names = {f.name for f in fields(cls)}
        kw = {n: settings[f"gate_{n}"] for n in names if f"gate_{n}" in settings}
        for n in ("min_windows", "min_samples"):
            if n in kw:
                kw[n] = int(kw[n])
        return cls(**kw)


def evaluate(metrics: Mapping, config: GateConfig = GateConfig()) -> dict:
    """``{"passed": bool, "gates": [{name, passed, value, threshold, message}], "figures": {...}}``."""
    held = metrics.get("held_out") or {}
    control = metrics.get("control") or None
    windows = int(metrics.get("n_windows") or 0)
    n = int(held.get("n") or 0)
    lower = held.get("bss_lower")
    gates = [
        _gate("held_out_windows", windows >= config.min_windows, windows, config.min_windows,
              f"{windows} walk-forward windows (need {config.min_windows})"),
        _gate("held_out_samples", n >= config.min_samples, n, config.min_samples,
              f"{n} held-out ideas (need {config.min_samples})"),
        _gate("skill", lower is not None and lower > config.min_skill, lower, config.min_skill,
              "Brier skill vs the base rate: bootstrap lower bound "
              f"{_fmt(lower)} (bss {_fmt(held.get('bss'))}) must exceed {config.min_skill:g}"),
        _gate("control", control is not None, control is not None, True,
              "a shuffled-label control ran with the training" if control is not None
              else "no shuffled-label control was run with this training"),
    ]
    c_bss = (control or {}).get("bss")
    need = None if c_bss is None else c_bss + config.min_skill_over_control
    gates.append(_gate(
        "skill_above_control", lower is not None and need is not None and lower > need, lower, need,
        f"skill lower bound {_fmt(lower)} must exceed the shuffled-label control's skill "
        f"{_fmt(c_bss)} + {config.min_skill_over_control:g}"))
    tiers = held.get("tiers") or {}
    return {
        "passed": all(g["passed"] for g in gates),
        "gates": gates,
        "config": config.__dict__,
        "figures": {
            "bss": held.get("bss"), "bss_lower": lower, "bss_upper": held.get("bss_upper"),
            "brier": held.get("brier"), "brier_base": held.get("brier_base"),
            "tiers": {k: {"brier": t.get("brier"), "brier_base": t.get("brier_base"),
                          "bss": t.get("bss")} for k, t in tiers.items()},
            "auc_ovr": held.get("auc_ovr"), "auc_profitable": held.get("auc_profitable"),
            "control_bss": c_bss, "control_auc_profitable": (control or {}).get("auc_profitable"),
            "control_auc_ovr": (control or {}).get("auc_ovr"),
            "seed_brier_below_quarter": held.get("seed_brier_below_quarter"),
        },
    }


def failed(result: Mapping) -> list[dict]:
    return [g for g in result["gates"] if not g["passed"]]


def _gate(name, passed, value, threshold, message) -> dict:
    return {"name": name, "passed": bool(passed), "value": value, "threshold": threshold,
            "message": message}


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"
