"""mlloop's use cases (the service layer): no Flask; each function takes an open connection
(or a ``Database``) first, so views, CLI commands, bus handlers, jobs and tests call the same
code. One module per thing:

``contexts`` market snapshots and contexts · ``selector_params`` rule-score weights ·
``feature_sets`` declared extra features · ``idea_input`` an idea checked against what it can
be · ``decisions`` the scoring request and its decision records · ``outcomes`` the P&L ledger,
settlement, labels, daily performance · ``scoring_plan`` which model scores an idea ·
``settings`` · ``registry`` model versions, promotion, rollback · ``training_data`` ·
``training`` · ``experiments`` · ``drift_reports`` · ``evaluation`` · ``replay`` (and the
deep path for a batch) · ``deep_scores`` (decisions' deep scores, recorded by a job) · ``common``.

Submodules load on first use (``service.decisions.score_ideas(...)``), so importing this
package -- as the views do at start-up -- costs nothing; the heavy libraries (pandas,
scipy, CatBoost) load with the modules that need them.
"""
from __future__ import annotations

import importlib

MODULES = ("common", "contexts", "selector_params", "feature_sets", "idea_input", "decisions",
           "outcomes", "scoring_plan",
           "settings", "registry", "training_data", "training", "experiments", "drift_reports",
           "evaluation", "replay", "deep_scores")


def __getattr__(name: str):
    if name in MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(MODULES))
