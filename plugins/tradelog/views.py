"""HTTP for the TradeLog context: thin views (arguments in, one service call, response out).

Routes are the seed's: /api/positions..., /api/orders..., /api/journal_entries, plus
/api/positions/{id}/events (replay) and /api/tradelog/stats.
"""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app import conn, ext, requires_if_match, user
from app.concurrency import if_match_version
from plugins.tradelog import schemas as s
from plugins.tradelog import service, stats

positions_blp = Blueprint("tradelog_positions", __name__, url_prefix="/api/positions",
                          description="Positions (planned/open/closed), legs, fills, snapshots.")
orders_blp = Blueprint("tradelog_orders", __name__, url_prefix="/api/orders",
                       description="Pending orders: create, cancel, execute into a position.")
journal_blp = Blueprint("tradelog_journal", __name__, url_prefix="/api/journal_entries",
                        description="Journal entries: reflections on a position.")
stats_blp = Blueprint("tradelog_stats", __name__, url_prefix="/api/tradelog",
                      description="Performance statistics of your closed positions.")

ID = "<string(length=36):position_id>"
OID = "<string(length=36):order_id>"


@positions_blp.route("")
class Positions(MethodView):
    @positions_blp.arguments(s.PositionListArgs, location="query")
    @positions_blp.response(200, s.Position(many=True), headers={"X-Total-Count": {
        "description": "how many positions match (all pages)", "schema": {"type": "integer"}}})
    def get(self, args):
        """Your positions, newest first: filter by status and symbol; ``page`` and
        ``page_size`` (default 50, at most 500); the total is in X-Total-Count."""
        items, total = service.list_positions(conn(), user().id, **args)
        return items, 200, {"X-Total-Count": str(total)}

    @positions_blp.arguments(s.PositionIn)
    @positions_blp.response(201, s.Position)
    def post(self, data):
        """Create a planned position, optionally with legs. Emits PositionCreated."""
        return service.create_position(conn(), user().id, data)


@positions_blp.route(f"/{ID}")
class OnePosition(MethodView):
    @positions_blp.arguments(s.AsOfArgs, location="query")
    @positions_blp.response(200, s.Position)
    def get(self, args, position_id):
        """The position with its legs; ``?as_of=`` answers from what was recorded by then."""
        return service.get_position(conn(), user().id, position_id, args.get("as_of"))

    @requires_if_match
    @positions_blp.arguments(s.PositionPatch)
    @positions_blp.response(200, s.Position)
    def patch(self, data, position_id):
        """Update attributes, open a planned position, add legs or change leg quantities
        (If-Match). Emits PositionAdjusted; 409 on a closed position."""
        return service.update_position(conn(), user().id, position_id, data, expected=if_match_version())


@positions_blp.route(f"/{ID}/fills")
class Fills(MethodView):
    @positions_blp.arguments(s.FillIn)
    @positions_blp.response(201, s.FillResult)
    def post(self, data, position_id):
        """Record a fill on a leg (the first fill opens a planned position). Emits
        FillRecorded; 409 naming the state on a closed position."""
        return service.record_fill(conn(), user().id, position_id, data)


@positions_blp.route(f"/{ID}/close")
class Close(MethodView):
    @requires_if_match
    @positions_blp.arguments(s.CloseIn, required=False)
    @positions_blp.response(200, s.Position)
    def post(self, data, position_id):
        """Close the position (If-Match) and fix its realised P&L. Stock/future legs must be
        flat; held option legs must have expired (settle at 0). Emits PositionClosed."""
        return service.close_position(conn(), user().id, position_id, data or {}, expected=if_match_version())


@positions_blp.route(f"/{ID}/snapshot")
class SnapshotView(MethodView):
    @positions_blp.arguments(s.AsOfArgs, location="query")
    @positions_blp.response(200, s.Snapshot)
    def get(self, args, position_id):
        """The authoritative snapshot for RiskGraph: legs, fills and derived metadata
        (strategy, net debit, DTE, max profit/loss). ``?as_of=`` for a past view."""
        return service.snapshot(conn(), user().id, position_id, args.get("as_of"))


@positions_blp.route(f"/{ID}/events")
class PositionEvents(MethodView):
    @positions_blp.response(200, s.EventOut(many=True))
    def get(self, position_id):
        """The position's events in order (envelopes), for replay."""
        return service.position_events(conn(), user().id, position_id)


@positions_blp.route(f"/{ID}/risk-artifact")
class RiskArtifact(MethodView):
    @positions_blp.arguments(s.RiskArtifactIn)
    @positions_blp.response(201, s.RiskArtifactRef)
    @positions_blp.alt_response(200, schema=s.RiskArtifactRef, description="already linked")
    def post(self, data, position_id):
        """Link a RiskGraph artifact (reference only: ``{artifact_id, computed_at}``).
        Emits RiskArtifactLinked."""
        ref, created = service.link_risk_artifact(conn(), user().id, position_id, data)
        return ref, 201 if created else 200

    @positions_blp.response(200, s.RiskArtifactRef(many=True))
    def get(self, position_id):
        """The risk artifacts linked to the position."""
        return service.list_risk_artifacts(conn(), user().id, position_id)


@orders_blp.route("")
class Orders(MethodView):
    @orders_blp.arguments(s.OrderIn)
    @orders_blp.response(201, s.Order)
    def post(self, data):
        """Create a pending order with a position template. Emits OrderCreated. The host's
        ``check_order_allowed`` hook may refuse it (403 ``order_vetoed``, e.g. the orders kill
        switch is engaged)."""
        return service.create_order(conn(), user().id, data, ext().check_order_allowed)


@orders_blp.route("/active")
class ActiveOrders(MethodView):
    @orders_blp.response(200, s.Order(many=True))
    def get(self):
        """Your pending orders, oldest first."""
        return service.active_orders(conn(), user().id)


@orders_blp.route(f"/{OID}")
class OneOrder(MethodView):
    @orders_blp.response(200, s.Order)
    def get(self, order_id):
        """One order."""
        return service.get_order(conn(), user().id, order_id)

    @requires_if_match
    @orders_blp.response(200, s.Order)
    def delete(self, order_id):
        """Cancel a pending order (If-Match). Emits OrderCancelled; 409 naming the state
        when it is filled or cancelled."""
        return service.cancel_order(conn(), user().id, order_id, expected=if_match_version())


@orders_blp.route(f"/{OID}/execute")
class Execute(MethodView):
    @orders_blp.arguments(s.ExecuteIn, required=False)
    @orders_blp.response(201, s.ExecuteResult)
    def post(self, data, order_id):
        """Execute a pending order: the host's ``check_order_allowed`` hook first (403
        ``order_vetoed`` listing each veto), then the position and its fills, atomically.
        Emits PositionCreated, FillRecorded per leg, OrderFilled."""
        return service.execute_order(conn(), user().id, order_id, data or {}, ext().check_order_allowed)


@journal_blp.route("")
class Journal(MethodView):
    @journal_blp.arguments(s.JournalIn)
    @journal_blp.response(201, s.JournalEntry)
    def post(self, data):
        """Write a journal entry on one of your positions."""
        return service.create_journal_entry(conn(), user().id, data)

    @journal_blp.arguments(s.JournalListArgs, location="query")
    @journal_blp.response(200, s.JournalEntry(many=True))
    def get(self, args):
        """A position's journal entries, oldest first."""
        return service.list_journal_entries(conn(), user().id, args["position_id"])


@stats_blp.route("/stats")
class StatsView(MethodView):
    @stats_blp.response(200, s.Stats)
    def get(self):
        """Performance of your closed positions, overall and per derived strategy: win rate
        (per position), profit factor, expectancy, average R, max drawdown; fees included."""
        return stats.user_stats(conn(), user().id)


BLUEPRINTS = [positions_blp, orders_blp, journal_blp, stats_blp]
