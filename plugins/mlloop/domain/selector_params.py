"""One row of ``selector_params``: the rule score's component weights (summing to 1) and its
formulas' constants, validated. Pure Python (the vectorised score is ``domain.rules``), so the
API schemas can name the components without loading numpy at start-up."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

COMPONENTS = ("convexity", "r2r", "width_fit", "gamma_alignment")
DEFAULT_WEIGHTS = {"convexity": 0.40, "r2r": 0.25, "width_fit": 0.20, "gamma_alignment": 0.15}


class InvalidSelectorParams(ValueError):
    """A selector_params row that cannot be used for scoring."""


@dataclass(frozen=True)
class SelectorParams:
    """One `selector_params` row: weights per component (summing to 1) and constants."""

    version: int
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    r2r_scale: float = 2.0            # R2R component = 100 (1 - exp(-r2r / r2r_scale))
    convexity_scale: float = 1.5      # convexity = 100 (1 - exp(-L / convexity_scale))
    width_target_em: Mapping[str, float] = field(
        default_factory=lambda: {"vertical": 1.0, "butterfly": 0.75})
    width_tolerance: float = 0.5      # sd of ln(width / target width)
    single_width_score: float = 50.0  # width fit of a single option (it has no width)
    gamma_em_adjust: float = 0.2      # expected move x (1 - adjust * gamma state)

    def __post_init__(self):
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise InvalidSelectorParams("version must be a positive integer")
        if not isinstance(self.weights, Mapping):
            raise InvalidSelectorParams("weights must be a mapping of component -> weight")
        keys = set(self.weights)
        if keys != set(COMPONENTS):
            missing, extra = set(COMPONENTS) - keys, keys - set(COMPONENTS)
            raise InvalidSelectorParams(
                f"weights must name exactly {list(COMPONENTS)}"
                + (f"; missing {sorted(missing)}" if missing else "")
                + (f"; unknown {sorted(extra)}" if extra else ""))
        weights = {}
        for k in COMPONENTS:
            try:
                w = float(self.weights[k])
            except (TypeError, ValueError):
                raise InvalidSelectorParams(f"weight {k!r} is not a number") from None
            if not math.isfinite(w) or w < 0:
                raise InvalidSelectorParams(f"weight {k!r} must be a finite number >= 0")
            weights[k] = w
        total = math.fsum(weights.values())
        if abs(total - 1.0) > 1e-6:
            raise InvalidSelectorParams(f"weights must sum to 1, not {total:.6f}")
        object.__setattr__(self, "weights", MappingProxyType(weights))
        object.__setattr__(self, "width_target_em", MappingProxyType(
            {k: float(v) for k, v in dict(self.width_target_em).items()}))
        for name in ("r2r_scale", "convexity_scale", "width_tolerance"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v <= 0:
                raise InvalidSelectorParams(f"{name} must be > 0")
            object.__setattr__(self, name, v)
        for k in ("vertical", "butterfly"):
            if float(self.width_target_em.get(k, 0)) <= 0:
                raise InvalidSelectorParams(f"width_target_em[{k!r}] must be > 0")
        if not 0 <= float(self.single_width_score) <= 100:
            raise InvalidSelectorParams("single_width_score must be within 0..100")
        if not 0 <= float(self.gamma_em_adjust) < 1:
            raise InvalidSelectorParams("gamma_em_adjust must be within [0, 1)")

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "SelectorParams":
        """From a stored row: {'version', 'weights' (dict or JSON text), optional constants}."""
        import json

        data = dict(row)
        if isinstance(data.get("weights"), (str, bytes)):
            data["weights"] = json.loads(data["weights"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_row(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "weights": dict(self.weights),
            "r2r_scale": self.r2r_scale,
            "convexity_scale": self.convexity_scale,
            "width_target_em": dict(self.width_target_em),
            "width_tolerance": self.width_tolerance,
            "single_width_score": self.single_width_score,
            "gamma_em_adjust": self.gamma_em_adjust,
        }


DEFAULT_SELECTOR_PARAMS = SelectorParams(version=1)
