"""HTTP API of riskgraph under /api/risk-graph (seed "Risk Graph Service Layer", section 2,
plus the risk API and the TradeLog integration). Views are thin: arguments in, one service
call, response out."""
from __future__ import annotations

import os

from flask import Response, after_this_request, current_app, request
from flask.views import MethodView

from app.web import Blueprint, Paged, conn, user
from plugins.riskgraph import integration, schemas as s, service

blp = Blueprint("riskgraph", __name__, url_prefix="/api/risk-graph",
                description="Risk graph: strategies, templates, risk analysis and risk artifacts.")

ID = "string(minlength=1,maxlength=36)"


# -- strategies ------------------------------------------------------------------------
@blp.route("/strategies")
class Strategies(MethodView):
    @blp.response(200, s.Strategy(many=True))
    @blp.paginated
    def get(self):
        """List your active strategies (by sort_order)."""
        return service.list_strategies(conn(), user().id)

    @blp.arguments(s.StrategyIn)
    @blp.response(201, s.Strategy)
    @blp.versioned
    def post(self, data):
        """Add a strategy (version 1, change_type ``created``; emits StrategyAdded). Send an
        Idempotency-Key to make retries safe."""
        return service.create_strategy(conn(), user().id, data)


@blp.route("/strategies/import")
class ImportStrategies(MethodView):
    @blp.arguments(s.ImportIn)
    @blp.response(200, s.ImportResult)
    def post(self, data):
        """Import strategies (e.g. a previous export or the old localStorage list).
        Idempotent: an id that is already yours updates that strategy (or leaves it
        unchanged), so importing the same file twice never duplicates; an id owned by
        someone else gets a fresh id (see ``id_map``)."""
        return service.import_strategies(conn(), user().id, data)


@blp.route("/strategies/export")
class ExportStrategies(MethodView):
    @blp.response(200, s.ExportOut)
    def get(self):
        """Export your active strategies (the import format)."""
        return service.export_strategies(conn(), user().id)


@blp.route("/strategies/reorder")
class ReorderStrategies(MethodView):
    @blp.arguments(s.ReorderIn)
    @blp.response(200, s.Strategy(many=True))
    def post(self, data):
        """Set sort_order of several strategies at once, atomically: if any id is not one of
        your active strategies, 404 and nothing changes. Answers your active strategies in
        their new order."""
        return service.reorder_strategies(conn(), user().id, data["order"])


@blp.route(f"/strategies/<{ID}:strategy_id>")
class OneStrategy(MethodView):
    @blp.response(200, s.Strategy)
    @blp.versioned
    def get(self, strategy_id):
        """Get one of your strategies (deleted ones too, with is_active false)."""
        return service.get_strategy(conn(), user().id, strategy_id)

    @blp.arguments(s.StrategyPatch)
    @blp.response(200, s.Strategy)
    @blp.versioned(if_match=True)
    def patch(self, data, strategy_id, expected):
        """Change a strategy (If-Match). The version row's change_type is ``debit_updated``
        when the debit changes, ``visibility_toggled`` when only ``visible`` changes, else
        ``edited``; emits StrategyUpdated."""
        return service.update_strategy(conn(), user().id, strategy_id, data, expected=expected)

    @blp.arguments(s.DeleteArgs, location="query")
    @blp.response(200, s.Strategy)
    @blp.versioned(if_match=True)
    def delete(self, args, strategy_id, expected):
        """Remove a strategy (If-Match): a soft delete with a ``deleted`` version row;
        emits StrategyRemoved."""
        return service.delete_strategy(conn(), user().id, strategy_id, expected, args["change_reason"])


@blp.route(f"/strategies/<{ID}:strategy_id>/versions")
class StrategyVersions(MethodView):
    @blp.response(200, s.StrategyVersion(many=True))
    @blp.paginated
    def get(self, strategy_id):
        """The strategy's audit trail, oldest first."""
        return service.list_versions(conn(), user().id, strategy_id)


@blp.route(f"/strategies/<{ID}:strategy_id>/risk")
class StrategyRisk(MethodView):
    @blp.arguments(s.RiskQuery, location="query")
    @blp.response(200, s.AnalyzeOut)
    def get(self, args, strategy_id):
        """Risk of a saved strategy at the given market (spot, iv required)."""
        return _json(service.strategy_risk(conn, user().id, strategy_id, args))


# -- templates -------------------------------------------------------------------------
@blp.route("/templates")
class Templates(MethodView):
    @blp.response(200, s.Template(many=True))
    @blp.paginated
    def get(self):
        """List your templates."""
        return service.list_templates(conn(), user().id)

    @blp.arguments(s.TemplateIn)
    @blp.response(201, s.Template)
    def post(self, data):
        """Create a template; its strike is an offset from the ATM strike."""
        return service.create_template(conn(), user().id, data)


@blp.route(f"/templates/<{ID}:template_id>/use")
class UseTemplate(MethodView):
    @blp.arguments(s.UseIn)
    @blp.response(201, s.Strategy)
    @blp.versioned
    def post(self, data, template_id):
        """Instantiate the template as a strategy at ``spot`` on ``date``: strike =
        round(spot / increment) x increment + strike_offset (SPX 5, SPY 1, default 1);
        expiration = date + dte_target, a weekend rolled to Monday. Counts use_count."""
        return service.use_template(conn(), user().id, template_id, data)


@blp.route(f"/templates/<{ID}:template_id>/share")
class ShareTemplate(MethodView):
    @blp.response(200, s.ShareOut)
    def post(self, template_id):
        """Give the template an unguessable share code (the same code if already shared)."""
        return service.share_template(conn(), user().id, template_id)


@blp.route("/templates/shared/<string(minlength=1,maxlength=20):code>")
class SharedTemplate(MethodView):
    @blp.response(200, s.SharedTemplate)
    def get(self, code):
        """A template shared with a code: any signed-in user sees its geometry, nothing of
        its owner."""
        return service.get_shared_template(conn(), user().id, code)


@blp.route("/templates/shared/<string(minlength=1,maxlength=20):code>/copy")
class CopySharedTemplate(MethodView):
    @blp.response(201, s.Template)
    def post(self, code):
        """Copy a shared template into your templates."""
        return service.copy_shared_template(conn(), user().id, code)


@blp.route("/templates/shared/<string(minlength=1,maxlength=20):code>/use")
class UseSharedTemplate(MethodView):
    @blp.arguments(s.UseIn)
    @blp.response(201, s.Strategy)
    @blp.versioned
    def post(self, data, code):
        """Instantiate a shared template as your own strategy (counts its use_count)."""
        return service.use_shared_template(conn(), user().id, code, data)


# -- risk ------------------------------------------------------------------------------
@blp.route("/analyze")
class Analyze(MethodView):
    @blp.arguments(s.AnalyzeIn)
    @blp.response(200, s.AnalyzeOut)
    def post(self, args):
        """Payoff curves (T+n and expiry), Greeks, breakevens, max P/L and POP for ad-hoc legs
        and/or saved strategies, all on one price grid. Units: P&L in dollars (x quantity x
        multiplier), theta per calendar day, vega per vol point, rho per 1% of r. Max profit/loss,
        breakevens and profit ranges hold over all prices 0..inf (docs/risk-math.md); a large
        analysis runs in a worker process, off the server's event loop."""
        return _json(service.analyze(conn, user().id, args))


# -- artifacts and the TradeLog integration ----------------------------------------------
@blp.route("/artifacts")
class Artifacts(MethodView):
    @blp.arguments(s.ArtifactArgs, location="query")
    @blp.response(200, s.ArtifactSummary(many=True))
    @blp.paginated
    def get(self, args, pagination):
        """Your risk artifacts, newest first (optionally for one position)."""
        return Paged(*service.list_artifacts(conn(), user().id, args["position_id"], page=pagination.page,
                                             page_size=pagination.page_size))


@blp.route(f"/artifacts/<{ID}:artifact_id>")
class OneArtifact(MethodView):
    @blp.response(200, s.Artifact)
    def get(self, artifact_id):
        """One risk artifact with its curves."""
        return service.get_artifact(conn(), user().id, artifact_id)


@blp.route(f"/positions/<{ID}:position_id>/analyze")
class PullPositionRisk(MethodView):
    @blp.arguments(s.PositionAnalyzeIn)
    @blp.response(201, s.PulledArtifact)
    @blp.alt_response(200, schema=s.PulledArtifact, description="an artifact for this snapshot version and inputs exists")
    @blp.alt_response(503, description="the trade log is unreachable or failed; nothing stored")
    def post(self, args, position_id):
        """Pattern A: fetch the trade log's snapshot of the position (with your credentials),
        compute its risk, store an artifact (emits RiskArtifactComputed) and post its
        reference to the trade log after the response. Idempotent by snapshot version and
        inputs; on SQLite with the trade log on the same database, call it without an
        Idempotency-Key (see docs/riskgraph.md)."""
        out = integration.pull_position_risk(conn, user().id, position_id, _tradelog_client(), args, _after_response)
        return out, (200 if out["reused"] else 201)


@blp.route("/market-inputs/<string(minlength=1,maxlength=20):symbol>")
class MarketInputs(MethodView):
    @blp.response(200, s.MarketInputs)
    def get(self, symbol):
        """The market inputs event-driven recomputes use for a symbol."""
        return service.market_inputs_of(conn(), user().id, symbol)

    @blp.arguments(s.MarketInputsIn)
    @blp.response(200, s.MarketInputs)
    def put(self, data, symbol):
        """Set spot/iv/r/q for a symbol: recomputes driven by trade-log events use them."""
        return service.set_market_inputs(conn(), user().id, symbol, data)


def _json(body: bytes) -> Response:
    """The service's ready JSON body (``AnalyzeOut``, written from arrays by orjson)."""
    return Response(body, status=200, mimetype="application/json")


def _own_url() -> str:
    """This server's own address: the socket its WSGI server listens on (``SERVER_NAME`` and
    ``SERVER_PORT`` as gevent/gunicorn set them, before a proxy fix rewrote them), never the
    request's ``Host`` header — the caller chooses that one, and following it would send the
    caller's Authorization header to any host they name (SSRF)."""
    env = request.environ
    orig = env.get("werkzeug.proxy_fix.orig") or {}
    scheme = orig.get("wsgi.url_scheme") or env.get("wsgi.url_scheme", "http")
    name = orig.get("SERVER_NAME") or env.get("SERVER_NAME") or "127.0.0.1"
    port = orig.get("SERVER_PORT") or env.get("SERVER_PORT")
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"   # an IPv6 address
    return f"{scheme}://{name}:{port}/" if port else f"{scheme}://{name}/"


def _tradelog_client() -> integration.TradelogClient:
    cfg = current_app.config
    base = cfg.get("RISKGRAPH_TRADELOG_URL") or os.environ.get("RISKGRAPH_TRADELOG_URL") or _own_url()
    return integration.TradelogClient(base, request.headers.get("Authorization"),
                                      session=current_app.extensions.get("riskgraph.http_session"),
                                      timeout=float(cfg.get("RISKGRAPH_HTTP_TIMEOUT", 10.0)),
                                      headers=_session_headers())


def _session_headers() -> dict:
    """A browser session's credentials for the trade log: its cookie, and — this server
    calling itself — ``Sec-Fetch-Site: same-origin`` for the host's CSRF guard on the link POST.
    Sent only where a bearer caller's Authorization header would go."""
    from app.sessions import COOKIE
    cookie = request.cookies.get(COOKIE)
    return {"Cookie": f"{COOKIE}={cookie}", "Sec-Fetch-Site": "same-origin"} if cookie else {}


def _after_response(fn) -> None:
    """Run ``fn`` once the response is sent (after the host committed this request)."""
    @after_this_request
    def _attach(response):
        if response.status_code < 300:
            response.call_on_close(fn)
        return response
