"""HTTP for the TradeLog context: thin views (arguments in, one service call, response out).

Routes are the seed's: /api/positions..., /api/orders..., /api/journal_entries, plus
/api/positions/{id}/events (replay), settlement, rolls and chains, marks, and
/api/tradelog/stats, /api/tradelog/daily-pnl, /api/tradelog/settlement-prices.
"""
from __future__ import annotations

from flask.views import MethodView

from app import jobs
from app.jobs.views import JobSchema
from app.web import Blueprint, Paged, conn, ext, user
from plugins.tradelog import schemas as s
from plugins.tradelog import imports, journal, orders, pnl, rolls, service, settlement, stats

positions_blp = Blueprint("tradelog_positions", __name__, url_prefix="/api/positions",
                          description="Positions (planned/open/closed), legs, fills, snapshots.")
orders_blp = Blueprint("tradelog_orders", __name__, url_prefix="/api/orders",
                       description="Pending orders: create, cancel, execute into a position.")
journal_blp = Blueprint("tradelog_journal", __name__, url_prefix="/api/journal_entries",
                        description="Journal entries: reflections on a position.")
imports_blp = Blueprint("tradelog_imports", __name__, url_prefix="/api/imports",
                        description="Broker statement imports: executions from a CSV file.")
stats_blp = Blueprint("tradelog_stats", __name__, url_prefix="/api/tradelog",
                      description="Performance statistics, daily P&L and settlement prices.")

ID = "<string(length=36):position_id>"
LEG = "<string(length=36):leg_id>"
OID = "<string(length=36):order_id>"


@positions_blp.route("")
class Positions(MethodView):
    @positions_blp.arguments(s.PositionListArgs, location="query")
    @positions_blp.response(200, s.Position(many=True))
    @positions_blp.paginated
    def get(self, args, pagination):
        """Your positions, newest first: filter by status and symbol (one page; the total and
        the pages are in X-Pagination)."""
        return Paged(*service.list_positions(conn(), user().id, **args, page=pagination.page,
                                             page_size=pagination.page_size))

    @positions_blp.arguments(s.PositionIn)
    @positions_blp.response(201, s.Position)
    @positions_blp.versioned
    def post(self, data):
        """Create a planned position, optionally with legs. Emits PositionCreated."""
        return service.create_position(conn(), user().id, data)


@positions_blp.route(f"/{ID}")
class OnePosition(MethodView):
    @positions_blp.arguments(s.AsOfArgs, location="query")
    @positions_blp.response(200, s.Position)
    @positions_blp.versioned
    def get(self, args, position_id):
        """The position with its legs; ``?as_of=`` answers from what was recorded by then,
        ``?version=`` with that version."""
        return service.get_position(conn(), user().id, position_id, args.get("as_of"), args.get("version"))

    @positions_blp.arguments(s.PositionPatch)
    @positions_blp.response(200, s.Position)
    @positions_blp.versioned(if_match=True)
    def patch(self, data, position_id, expected):
        """Update attributes, open a planned position, add legs or change leg quantities
        (If-Match). Emits PositionAdjusted; 409 on a closed position."""
        return service.update_position(conn(), user().id, position_id, data, expected=expected)


@positions_blp.route(f"/{ID}/fills")
class Fills(MethodView):
    @positions_blp.arguments(s.FillIn)
    @positions_blp.response(201, s.FillResult)
    @positions_blp.versioned(etag_from="position")
    def post(self, data, position_id):
        """Record a fill on a leg (the first fill opens a planned position). Emits
        FillRecorded; 409 naming the state on a closed position."""
        return service.record_fill(conn(), user().id, position_id, data)


@positions_blp.route(f"/{ID}/close")
class Close(MethodView):
    @positions_blp.arguments(s.CloseIn, required=False)
    @positions_blp.response(200, s.Position)
    @positions_blp.versioned(if_match=True)
    def post(self, data, position_id, expected):
        """Close the position (If-Match) and fix its realised P&L. Stock/future legs must be
        flat; held option legs must have expired (settle at 0). Emits PositionClosed."""
        return service.close_position(conn(), user().id, position_id, data or {}, expected=expected)


@positions_blp.route(f"/{ID}/legs/{LEG}/settle")
class Settle(MethodView):
    @positions_blp.arguments(s.LegSettleIn)
    @positions_blp.response(201, s.SettleResult)
    @positions_blp.alt_response(200, schema=s.SettleResult, description="already settled that way: the same answer")
    @positions_blp.versioned(if_match=True, etag_from="position")
    def post(self, data, position_id, leg_id, expected):
        """Settle an option leg (If-Match): expiration (worthless, or at intrinsic when
        cash-settled), exercise of a long option, assignment of a short one; physically
        settled options deliver shares at the strike into a stock leg. Emits LegSettled.
        409 ``not_expired`` before the settlement moment when it must wait for it."""
        result, created = settlement.settle_leg(conn(), user().id, position_id, leg_id, data,
                                                expected=expected)
        return result, 201 if created else 200


@positions_blp.route(f"/{ID}/settlements")
class Settlements(MethodView):
    @positions_blp.response(200, s.Settlement(many=True))
    @positions_blp.paginated
    def get(self, position_id):
        """The position's settlements, in market time order."""
        return settlement.list_settlements(conn(), user().id, position_id)


@positions_blp.route(f"/{ID}/roll")
class RollView(MethodView):
    @positions_blp.arguments(s.RollIn)
    @positions_blp.response(201, s.RollResult)
    @positions_blp.versioned(if_match=True, etag_from="from")
    def post(self, data, position_id, expected):
        """Roll (If-Match on this position), atomically: close the listed legs (the position
        is closed when that leaves it flat) and open a new position with the new legs,
        ``rolled_from`` this one, in the same chain. Emits PositionRolled."""
        return rolls.roll_position(conn(), user().id, position_id, data, expected=expected)


@positions_blp.route(f"/{ID}/chain")
class ChainView(MethodView):
    @positions_blp.response(200, s.Chain)
    def get(self, position_id):
        """The roll chain the position belongs to, with cumulative net credit, fees and
        realized P&L."""
        return rolls.chain(conn(), user().id, position_id)


@positions_blp.route(f"/{ID}/marks")
class MarksView(MethodView):
    @positions_blp.arguments(s.MarksIn)
    @positions_blp.response(201, s.Marks)
    def post(self, data, position_id):
        """Record market prices of legs, for unrealized P&L (snapshot) and marked daily P&L.
        Emits LegsMarked; the position's version is unchanged."""
        return service.record_marks(conn(), user().id, position_id, data)


@positions_blp.route(f"/{ID}/snapshot")
class SnapshotView(MethodView):
    @positions_blp.arguments(s.AsOfArgs, location="query")
    @positions_blp.response(200, s.Snapshot)
    @positions_blp.versioned
    def get(self, args, position_id):
        """The authoritative snapshot for RiskGraph: legs, fills and derived metadata
        (strategy, net debit, DTE, max profit/loss). ``?as_of=`` or ``?version=`` for a past view."""
        return service.snapshot(conn(), user().id, position_id, args.get("as_of"), args.get("version"))


@positions_blp.route(f"/{ID}/events")
class PositionEvents(MethodView):
    @positions_blp.response(200, s.EventOut(many=True))
    @positions_blp.paginated
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
    @positions_blp.paginated
    def get(self, position_id):
        """The risk artifacts linked to the position."""
        return service.list_risk_artifacts(conn(), user().id, position_id)


@orders_blp.route("")
class Orders(MethodView):
    @orders_blp.arguments(s.OrderIn)
    @orders_blp.response(201, s.Order)
    @orders_blp.versioned
    def post(self, data):
        """Create a pending order with a position template. Emits OrderCreated. The host's
        ``check_order_allowed`` hook may refuse it (403 ``order_vetoed``, e.g. the orders kill
        switch is engaged)."""
        return orders.create_order(conn(), user().id, data, ext().check_order_allowed)


@orders_blp.route("/active")
class ActiveOrders(MethodView):
    @orders_blp.response(200, s.Order(many=True))
    @orders_blp.paginated
    def get(self):
        """Your pending orders, oldest first."""
        return orders.active_orders(conn(), user().id)


@orders_blp.route(f"/{OID}")
class OneOrder(MethodView):
    @orders_blp.response(200, s.Order)
    @orders_blp.versioned
    def get(self, order_id):
        """One order."""
        return orders.get_order(conn(), user().id, order_id)

    @orders_blp.response(200, s.Order)
    @orders_blp.versioned(if_match=True)
    def delete(self, order_id, expected):
        """Cancel a pending order (If-Match). Emits OrderCancelled; 409 naming the state
        when it is filled or cancelled."""
        return orders.cancel_order(conn(), user().id, order_id, expected=expected)


@orders_blp.route(f"/{OID}/execute")
class Execute(MethodView):
    @orders_blp.arguments(s.ExecuteIn, required=False)
    @orders_blp.response(201, s.ExecuteResult)
    @orders_blp.versioned(etag_from="order")
    def post(self, data, order_id):
        """Execute a pending order: the host's ``check_order_allowed`` hook first (403
        ``order_vetoed`` listing each veto), then the position and its fills, atomically.
        Emits PositionCreated, FillRecorded per leg, OrderFilled."""
        return orders.execute_order(conn(), user().id, order_id, data or {}, ext().check_order_allowed)


@journal_blp.route("")
class Journal(MethodView):
    @journal_blp.arguments(s.JournalIn)
    @journal_blp.response(201, s.JournalEntry)
    def post(self, data):
        """Write a journal entry on one of your positions. Emits JournalEntryCreated."""
        return journal.create_journal_entry(conn(), user().id, data)

    @journal_blp.arguments(s.JournalListArgs, location="query")
    @journal_blp.response(200, s.JournalEntryLinked(many=True))
    @journal_blp.paginated
    def get(self, args):
        """A position's journal entries, oldest first, each with its links."""
        return journal.list_journal_entries(conn(), user().id, args["position_id"])


@journal_blp.route("/<string(length=36):entry_id>")
class OneJournalEntry(MethodView):
    @journal_blp.response(200, s.JournalEntryLinked)
    def get(self, entry_id):
        """One entry with ``links`` to the position at the version it was written on and the
        riskgraph artifact (and strategy versions) it remembers."""
        return journal.get_journal_entry(conn(), user().id, entry_id)


@stats_blp.route("/stats")
class StatsView(MethodView):
    @stats_blp.arguments(s.StatsArgs, location="query")
    @stats_blp.response(200, s.Stats)
    def get(self, args):
        """Performance of your closed positions, overall and per derived strategy (and per
        ``group_by``: strategy, underlying, tag, weekday, dte_bucket, roll_chain): win rate
        (per position), profit factor, expectancy, average R, max drawdown; fees included."""
        return stats.user_stats(conn(), user().id, args.get("group_by"))


@stats_blp.route("/daily-pnl")
class DailyPnlView(MethodView):
    @stats_blp.arguments(s.DailyPnlArgs, location="query")
    @stats_blp.response(200, s.DailyPnl)
    def get(self, args):
        """P&L per trading day in the exchange's time zone (realized, and marked where marks
        exist), the equity curve, drawdown and win/loss streaks; ``from``/``to`` cut the list."""
        return pnl.daily_pnl(conn(), user().id, start=args.get("start"), end=args.get("end"))


@stats_blp.route("/settlement-prices")
class SettlementPrices(MethodView):
    @stats_blp.arguments(s.SettlementPriceIn)
    @stats_blp.response(200, s.SettlementPrice)
    def put(self, data):
        """Record (or correct) an underlying's settlement value for an expiry and AM/PM
        settlement; ``settle-expired`` settles expired legs from it. Emits
        SettlementPriceRecorded."""
        return settlement.set_settlement_price(conn(), user().id, data)


@imports_blp.route("")
class Imports(MethodView):
    @imports_blp.arguments(s.ImportForm, location="form")
    @imports_blp.arguments(s.ImportFile, location="files")
    @imports_blp.response(202, JobSchema, headers={"Location": {
        "description": "/api/jobs/{id}: follow the import's job", "schema": {"type": "string"}}})
    def post(self, form, files):
        """Import executions from a broker's CSV (multipart: ``file``, ``format``, ``timezone``,
        ``dry_run``, ``skip_bad_rows``) as a job: 202 with the job (``params.import_id`` names
        the import; its ``result`` sums it up). The import itself — positions and legs, FIFO
        matching, settlements, rolls, rows already imported skipped — is one transaction; its
        reconciliation report is at ``/api/imports/{id}``. 422 here for a bad format, time zone
        or file (size, encoding); a file with bad rows fails its job with ``import_rejected``."""
        upload = files["file"]
        record = imports.create_import(conn(), user().id, upload.read(), dict(form, filename=upload.filename))
        job = jobs.submit(conn(), imports.JOB_KIND, {"import_id": record["id"]}, user=user())
        imports.set_job(conn(), user().id, record["id"], job["id"])
        return jobs.accepted(job)

    @imports_blp.response(200, s.ImportRecord(many=True))
    @imports_blp.paginated
    def get(self, pagination):
        """Your imports, newest first."""
        items, total = imports.list_imports(conn(), user().id, page=pagination.page, page_size=pagination.page_size)
        return Paged(items, total)


@imports_blp.route("/<string(length=36):import_id>")
class OneImport(MethodView):
    @imports_blp.response(200, s.ImportRecord)
    def get(self, import_id):
        """One import and its reconciliation report."""
        return imports.get_import(conn(), user().id, import_id)


BLUEPRINTS = [positions_blp, orders_blp, journal_blp, stats_blp, imports_blp]
