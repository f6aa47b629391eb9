"""HTTP for the ML loop (part 1), under /api/ml: market contexts, selector params, scoring,
decisions, the P&L ledger, settlement, actions, labels and daily performance. Thin views:
arguments in, one service call, response out; everything is scoped to the signed-in user."""
from __future__ import annotations

from flask.views import MethodView

from app.web import Blueprint, Paged, conn, ext, user
from plugins.mlloop import service
from plugins.mlloop import schemas as s

blp = Blueprint("mlloop", __name__, url_prefix="/api/ml",
                description="ML feedback loop: reproducible scoring decisions, the P&L ledger, labels.")

IDEA = "<string(maxlength=64):idea_id>"


@blp.route("/contexts")
class Contexts(MethodView):
    @blp.arguments(s.ContextsIn)
    @blp.response(201, s.ContextsOut)
    @blp.alt_response(200, schema=s.ContextsOut, description="every context already existed (unchanged)")
    def post(self, data):
        """Append market snapshots (immutable per time) and define market contexts: each context's
        features are computed once, as of its ``as_of``, from snapshots at or before it."""
        contexts, created = service.contexts.create_contexts(conn(), user().id, data)
        return {"contexts": contexts}, 201 if created else 200


@blp.route("/contexts/<string(maxlength=100):context_id>")
class OneContext(MethodView):
    @blp.response(200, s.Context)
    def get(self, context_id):
        """A market context and its point-in-time features."""
        return service.contexts.get_context(conn(), user().id, context_id)


@blp.route("/selector-params")
class SelectorParams(MethodView):
    @blp.response(200, s.Params(many=True))
    @blp.paginated
    def get(self):
        """Every version of your rule-score weights (version 1 = the defaults)."""
        return service.selector_params.list_params(conn(), user().id)

    @blp.arguments(s.ParamsIn)
    @blp.response(201, s.Params)
    @blp.versioned
    def post(self, data):
        """A new selector_params version (weights summing to 1), active for decisions from now on."""
        return service.selector_params.create_params(conn(), user().id, data)


@blp.route("/feature-sets")
class FeatureSets(MethodView):
    @blp.response(200, s.FeatureSet(many=True))
    @blp.paginated
    def get(self):
        """Declared feature sets (the built-in one, ``v1.0``, has no extras and is not listed)."""
        return service.feature_sets.list_sets(conn())

    @blp.arguments(s.FeatureSetIn)
    @blp.response(201, s.FeatureSet)
    @blp.alt_response(200, schema=s.FeatureSet, description="already declared with these features (unchanged)")
    def post(self, data):
        """Declare a feature set: extra numeric and categorical features your ideas carry when
        scored under its version (``feature_set_version`` in /score), which models trained on it
        use. 409 ``feature_set_exists`` if the version means other features."""
        row, created = service.feature_sets.declare(conn(), user().id, data)
        return row, 201 if created else 200


@blp.route("/feature-sets/<string(maxlength=20):version>")
class OneFeatureSet(MethodView):
    @blp.response(200, s.FeatureSet)
    def get(self, version):
        """A declared feature set."""
        return service.feature_sets.get(conn(), version)


@blp.route("/score")
class Score(MethodView):
    @blp.arguments(s.ScoreIn)
    @blp.response(200, s.ScoreOut)
    def post(self, data):
        """Score a batch of ideas against a market context: ranked by ``final_score`` with
        ``original_score`` (rules: the selector's, or the idea's own ``rule_score``),
        ``ml_score`` (the calibrated tier forecast on a 0..100 scale; null without a model)
        with ``p_profitable`` beside it, and a decision id each. Ideas may carry their own
        ``decision_time`` and, under a declared ``feature_set_version``, extra ``features``;
        an entry price outside the structure's bounds is 422 naming the field. The same idea
        in the same context returns the same decision (nothing new is recorded). Decisions and
        features travel on ``mlloop.decisions`` / ``mlloop.features``."""
        c = conn()
        mode = ext().scoring_mode(c, user().id)
        return service.decisions.score_ideas(c, user().id, data, mode=mode)


@blp.route("/decisions/<string(length=36):decision_id>")
class OneDecision(MethodView):
    @blp.response(200, s.Decision)
    def get(self, decision_id):
        """A decision with everything needed to reproduce it: exact features and versions, the
        idea's geometry, the selector_params weights and the model reference."""
        return service.decisions.get_decision(conn(), user().id, decision_id)


@blp.route("/decisions/<string(length=36):decision_id>/deep-score")
class DecisionDeepScore(MethodView):
    @blp.response(200, s.DeepScore)
    def get(self, decision_id):
        """The decision's deep score: its model's full batch path over the decision's stored
        features (tier forecast, confidence, P(profitable) from the Logloss sub-models),
        recorded once by the ``mlloop.deep_score`` job (scheduled every minute; ``POST
        /api/jobs {"kind": "mlloop.deep_score"}`` runs it for your decisions now). 404
        ``no_deep_score`` until then (and for a rules-only decision)."""
        return service.deep_scores.deep_score_of(conn(), user().id, decision_id)


@blp.route("/ideas")
class Ideas(MethodView):
    @blp.arguments(s.IdeaListArgs, location="query")
    @blp.response(200, s.TrackedIdea(many=True))
    @blp.paginated
    def get(self, args, pagination):
        """Your tracked ideas, newest first (filter by settlement status or context)."""
        return Paged(*service.decisions.list_ideas(conn(), user().id, **args, page=pagination.page,
                                                   page_size=pagination.page_size))


@blp.route(f"/ideas/{IDEA}")
class OneIdea(MethodView):
    @blp.response(200, s.TrackedIdea)
    @blp.versioned
    def get(self, idea_id):
        """A tracked idea: geometry, entry context, running P&L path and settlement."""
        return service.outcomes.get_idea(conn(), user().id, idea_id)


@blp.route(f"/ideas/{IDEA}/events")
class IdeaEvents(MethodView):
    @blp.response(200, s.PnlEvent(many=True))
    @blp.paginated
    def get(self, idea_id):
        """The idea's P&L ledger in time order (the deltas sum to its settlement P&L)."""
        return service.outcomes.idea_events(conn(), user().id, idea_id)


@blp.route(f"/ideas/{IDEA}/snapshots")
class IdeaSnapshots(MethodView):
    @blp.response(200, s.IdeaSnapshot(many=True))
    @blp.paginated
    def get(self, idea_id):
        """The idea's event-triggered snapshots (fill, tier boundary, stop/target touch, 1% move, periodic)."""
        return service.outcomes.idea_snapshots(conn(), user().id, idea_id)


@blp.route(f"/ideas/{IDEA}/labels")
class IdeaLabels(MethodView):
    @blp.response(200, s.Labels)
    def get(self, idea_id):
        """The settled idea's outcome labels (404 until settled and labelled)."""
        return service.outcomes.idea_labels(conn(), user().id, idea_id)


@blp.route(f"/ideas/{IDEA}/settle")
class SettleIdea(MethodView):
    @blp.arguments(s.SettleIn)
    @blp.response(200, s.TrackedIdea)
    @blp.versioned
    def post(self, data, idea_id):
        """Settle the idea at expiry: one settlement event so its ledger sums to the settlement
        P&L (value at the settlement price, entered at its debit, net of recorded costs)."""
        return service.outcomes.settle_idea(conn(), user().id, idea_id, data)


@blp.route(f"/ideas/{IDEA}/actions")
class IdeaActions(MethodView):
    @blp.response(200, s.Action(many=True))
    @blp.paginated
    def get(self, idea_id):
        """What you did with the idea (viewed, dismissed, starred, traded, trade_closed)."""
        return service.outcomes.idea_actions(conn(), user().id, idea_id)

    @blp.arguments(s.ActionIn)
    @blp.response(201, s.Action)
    def post(self, data, idea_id):
        """Record an action on the idea (append-only); ``traded`` with a trade_id links the trade."""
        return service.outcomes.record_action(conn(), user().id, idea_id, data)


@blp.route("/pnl-events")
class PnlEvents(MethodView):
    @blp.arguments(s.PnlEventsIn)
    @blp.response(201, s.PnlEventsOut)
    def post(self, data):
        """Append P&L events (marks, fills, adjustments, settlements) to ideas' ledgers, in time
        order per idea. Snapshots are taken only on trigger events. Emits PnlRecorded each."""
        return service.outcomes.record_pnl_events(conn(), user().id, data["events"])


@blp.route("/daily-performance")
class DailyPerformance(MethodView):
    @blp.arguments(s.DailyArgs, location="query")
    @blp.response(200, s.Daily)
    def get(self, args):
        """Your daily performance (traded ideas), with plot-ready series and the running total."""
        return service.outcomes.daily(conn(), user().id, args.get("start"), args.get("end"))
