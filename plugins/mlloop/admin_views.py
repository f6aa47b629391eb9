"""Admin HTTP API of the ML loop (part 2), under /api/admin/ml: the model registry (train,
promote, roll back, retire, audit), settings (blend weight, exploration rate), drift,
experiments, the mid-week evaluation endpoints and decision replay.

Admin-only: every view calls ``require_admin()`` first (403 ``admin_only`` otherwise).
System-wide: models and evaluation cover every user's data. Thin views: arguments in, one
service call, response out. Schemas are in ``admin_schemas.py``.
"""
from __future__ import annotations

from flask.views import MethodView

from app import jobs
from app.auth import admin_only, require_admin
from app.jobs.views import LOCATION as JOB_LOCATION, JobSchema
from app.web import Blueprint, conn, user
from plugins.mlloop import service
from plugins.mlloop.admin_schemas import (
    AuditSchema, CheckList, Checklist, ConcludeIn, DriftIn, DriftQuery,
    DriftReportSchema, EvalQuery, ExperimentIn, ExperimentQuery,
    ExperimentSchema, Live, MlVsRules, MlVsRulesQuery, ModelDetail, ModelQuery,
    ModelSchema, ReasonIn, RegimeBreakdown, ReplaySchema, RollbackIn, ScoreOutcomes,
    ScoreOutcomesQuery, SettingsSchema, TierProbabilities, TierProbabilitiesIn, TrainIn,
)

blp = admin_only(Blueprint("mlloop_admin", __name__, url_prefix="/api/admin/ml",
                           description="ML loop administration (admin only: 403 before any input is "
                                       "validated): model registry, training, settings, drift, "
                                       "experiments, evaluation and replay."))

MID = "<int(max=2147483647):model_id>"
EID = "<int(max=2147483647):experiment_id>"


def _admin() -> int:
    return require_admin().id


# -- registry -------------------------------------------------------------------------------
@blp.route("/models")
class Models(MethodView):
    @blp.arguments(ModelQuery, location="query")
    @blp.response(200, ModelSchema(many=True))
    @blp.paginated
    def get(self, args):
        """Registered model versions, newest first (filter by status, regime)."""
        _admin()
        return service.registry.list_models(conn(), **args)


@blp.route("/models/train")
class Train(MethodView):
    @blp.arguments(TrainIn)
    @blp.response(202, JobSchema, headers=JOB_LOCATION)
    def post(self, data):
        """Train a model on every user's settled ideas of a feature set (expanding
        walk-forward windows, purged, embargoed; the shuffled-label control beside it) and
        register it as `validating` — as a background job (`mlloop.train`): 202 with
        `Location: /api/jobs/{id}`. The job's result is the registered model (as GET
        /models/{id}, with the promotion gates' figures); its error e.g. `insufficient_data`
        (409) when too few ideas, or a 422 naming `feature_set_version` if undeclared."""
        _admin()
        return jobs.accepted(jobs.submit(conn(), "mlloop.train", data, user=user()))


@blp.route(f"/models/{MID}")
class OneModel(MethodView):
    @blp.response(200, ModelDetail)
    def get(self, model_id):
        """One model version with its walk-forward metrics."""
        _admin()
        return service.registry.get_model(conn(), model_id)


@blp.route(f"/models/{MID}/promote")
class Promote(MethodView):
    @blp.arguments(ReasonIn)
    @blp.response(200, ModelSchema)
    def post(self, data, model_id):
        """Make the model champion of its regime scope (the previous one is retired). 409
        `feature_set_mismatch` or `drift_over_threshold` when refused. Emits ModelPromoted."""
        actor = _admin()
        return service.registry.promote(conn(), model_id, actor_user_id=actor, reason=data.get("reason"))


@blp.route(f"/models/{MID}/retire")
class Retire(MethodView):
    @blp.arguments(ReasonIn)
    @blp.response(200, ModelSchema)
    def post(self, data, model_id):
        """Retire a model that is not champion and not in a running experiment."""
        actor = _admin()
        return service.registry.retire(conn(), model_id, actor_user_id=actor, reason=data.get("reason"))


@blp.route(f"/models/{MID}/audit")
class Audit(MethodView):
    @blp.response(200, AuditSchema(many=True))
    @blp.paginated
    def get(self, model_id):
        """The model's status changes: who, when, why, from/to."""
        _admin()
        service.registry.get_model(conn(), model_id, with_metrics=False)
        return service.registry.model_audit(conn(), model_id)


@blp.route("/models/rollback")
class Rollback(MethodView):
    @blp.arguments(RollbackIn)
    @blp.response(200, ModelSchema)
    def post(self, data):
        """Retire the champion of the scope and restore the one it replaced. Emits
        ModelRolledBack; 409 when there is nothing to roll back to."""
        actor = _admin()
        return service.registry.rollback(conn(), regime=data.get("regime"), actor_user_id=actor,
                                 reason=data.get("reason"))


@blp.route("/settings")
class Settings(MethodView):
    @blp.response(200, SettingsSchema)
    def get(self):
        """Blend weight (0 = shadow), exploration rate, low-data threshold."""
        _admin()
        return service.settings.get_settings(conn())

    @blp.arguments(SettingsSchema)
    @blp.response(200, SettingsSchema)
    def put(self, data):
        """Change any of the settings (system-wide; used by the next scoring batch)."""
        actor = _admin()
        return service.settings.update_settings(conn(), data, actor_user_id=actor)


# -- drift ----------------------------------------------------------------------------------
@blp.route("/drift")
class Drift(MethodView):
    @blp.arguments(DriftQuery, location="query")
    @blp.response(200, DriftReportSchema(many=True))
    @blp.paginated
    def get(self, args):
        """Stored drift reports, newest first."""
        _admin()
        return service.drift_reports.list_drift_reports(conn(), args.get("model_id"))

    @blp.arguments(DriftIn)
    @blp.response(201, DriftReportSchema)
    def post(self, data):
        """Compare the last `days` of feature snapshots with the model's training reference
        (PSI, KS / Wasserstein, chi-square / Jensen-Shannon; Evidently's defaults) and score
        drift. Stored, emits DriftChecked; drift over threshold blocks promotion."""
        actor = _admin()
        return service.drift_reports.check_drift(conn(), model_id=data.get("model_id"), regime=data.get("regime"),
                                    days=data["days"], config=data["config"], actor_user_id=actor)


# -- experiments ----------------------------------------------------------------------------
@blp.route("/experiments")
class Experiments(MethodView):
    @blp.arguments(ExperimentQuery, location="query")
    @blp.response(200, ExperimentSchema(many=True))
    @blp.paginated
    def get(self, args):
        """Experiments, newest first."""
        _admin()
        return service.experiments.list_experiments(conn(), args.get("status"))

    @blp.arguments(ExperimentIn)
    @blp.response(201, ExperimentSchema)
    def post(self, data):
        """Start champion (the scope's current one; none = rules) vs challenger: traffic
        split, max duration, min samples per arm, early-stop threshold."""
        actor = _admin()
        return service.experiments.create_experiment(conn(), data, actor_user_id=actor)


@blp.route("/experiments/check")
class CheckExperiments(MethodView):
    @blp.response(200, CheckList)
    def post(self):
        """Run the stopping rules on every running experiment (the job's work)."""
        actor = _admin()
        return {"checked": service.experiments.check_experiments(conn(), actor_user_id=actor)}


@blp.route(f"/experiments/{EID}")
class OneExperiment(MethodView):
    @blp.response(200, ExperimentSchema)
    def get(self, experiment_id):
        """The experiment with a live evaluation: SRM check, Welch's t-test on R2R, win
        rate, drawdown and the stopping rules' verdict."""
        _admin()
        return service.experiments.get_experiment(conn(), experiment_id)


@blp.route(f"/experiments/{EID}/conclude")
class Conclude(MethodView):
    @blp.arguments(ConcludeIn)
    @blp.response(200, ExperimentSchema)
    def post(self, data, experiment_id):
        """Conclude: final evaluation; a winning challenger is promoted (if `promote`)."""
        actor = _admin()
        return service.experiments.conclude_experiment(conn(), experiment_id, promote_winner=data["promote"],
                                            actor_user_id=actor, reason=data.get("reason"))


@blp.route(f"/experiments/{EID}/abort")
class Abort(MethodView):
    @blp.arguments(ReasonIn)
    @blp.response(200, ExperimentSchema)
    def post(self, data, experiment_id):
        """Abort an experiment; the challenger goes back to validating."""
        actor = _admin()
        return service.experiments.abort_experiment(conn(), experiment_id, actor_user_id=actor,
                                         reason=data.get("reason"))


# -- evaluation (mid-week plan) -------------------------------------------------------------
@blp.route("/evaluation/score-outcomes")
class ScoreOutcomesView(MethodView):
    @blp.arguments(ScoreOutcomesQuery, location="query")
    @blp.response(200, ScoreOutcomes)
    def get(self, args):
        """Settled decisions by score bucket (0-20 ... 80-100): count, average P&L, win
        rate and the difference to the baseline."""
        _admin()
        return service.evaluation.score_outcomes_report(conn(), **args)


@blp.route("/evaluation/ml-vs-rules")
class MlVsRulesView(MethodView):
    @blp.arguments(MlVsRulesQuery, location="query")
    @blp.response(200, MlVsRules)
    def get(self, args):
        """Where ML agreed with the rules and where it diverged by more than `threshold`
        points, and whether it was right."""
        _admin()
        return service.evaluation.ml_vs_rules_report(conn(), **args)


@blp.route("/evaluation/regime-breakdown")
class RegimeBreakdownView(MethodView):
    @blp.arguments(EvalQuery, location="query")
    @blp.response(200, RegimeBreakdown)
    def get(self, args):
        """Per VIX regime: outcomes and how well the ML and rule scores rank them."""
        _admin()
        return service.evaluation.regime_breakdown_report(conn(), **args)


@blp.route("/evaluation/live")
class LiveView(MethodView):
    @blp.arguments(EvalQuery, location="query")
    @blp.response(200, Live)
    def get(self, args):
        """Live performance of the logged decisions (scope: `user_id`, `model_id`, time): pooled
        AUC of the ML score, of P(profitable) and of the rules for `profitable`, and the Brier of
        the logged calibrated tier forecasts beside each model's training base rate (skill)."""
        _admin()
        return service.evaluation.live_report(conn(), **args)


@blp.route("/decisions/tier-probabilities")
class TierProbabilitiesView(MethodView):
    @blp.arguments(TierProbabilitiesIn)
    @blp.response(200, TierProbabilities(many=True))
    def post(self, data):
        """Tier probabilities of many logged decisions in one call (read-only): each
        re-scored from its stored features with its model's blob (one load per model), beside
        what was logged."""
        _admin()
        return service.replay.tier_probabilities(conn(), data["decision_ids"])


@blp.route("/evaluation/go-live-checklist")
class ChecklistView(MethodView):
    @blp.response(200, Checklist)
    def get(self):
        """The mid-week plan's six success criteria, computed from the data."""
        _admin()
        return service.evaluation.go_live_checklist(conn())


# -- replay ---------------------------------------------------------------------------------
@blp.route("/decisions/<string(length=36):decision_id>/replay")
class Replay(MethodView):
    @blp.response(200, ReplaySchema)
    def get(self, decision_id):
        """Re-score a logged decision from its stored features with its model version's
        blob; `matches` says whether the logged ML score is reproduced exactly."""
        _admin()
        return service.replay.replay_decision(conn(), decision_id)
