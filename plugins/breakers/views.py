"""HTTP: /api/breakers/... (thin: arguments in, one service call, response out)."""
from __future__ import annotations

from flask.views import MethodView

from app.web import Blueprint, Paged, conn, user
from plugins.breakers import schemas as s
from plugins.breakers import service
from plugins.breakers.engine import NAMES

blp = Blueprint("breakers", __name__, url_prefix="/api/breakers",
                description="Circuit breakers, trading state and kill switches.")
BREAKER = f"<any({','.join(NAMES)}):name>"


def actor() -> str:
    u = user()
    return f"{u.name} (user {u.id})"


@blp.route("/status")
class Status(MethodView):
    @blp.response(200, s.StatusOut)
    def get(self):
        """Your trading state, scoring mode, each breaker's value, limit, state and since when,
        the kill switches that apply to you, and your P&L books."""
        return service.status(conn(), user().id)


@blp.route("/config")
class Configs(MethodView):
    @blp.response(200, s.ConfigOut(many=True))
    @blp.paginated
    def get(self):
        """Every breaker's config: yours, the deployment's, and the effective (stricter) one."""
        return service.list_configs(conn(), user().id)


@blp.route(f"/config/{BREAKER}")
class OneConfig(MethodView):
    @blp.response(200, s.ConfigOut)
    def get(self, name):
        """One breaker's config."""
        return service.config_of(conn(), user().id, name)

    @blp.arguments(s.ConfigIn)
    @blp.response(200, s.ConfigOut)
    def put(self, data, name):
        """Set a breaker's limit, severity, reset policy and whether it is on, for you or (admin)
        the deployment; it is evaluated at once. A user's config can tighten the deployment's,
        never loosen it."""
        return service.set_config(conn(), user().id, name, data, actor=actor(), admin=user().is_admin)


@blp.route(f"/{BREAKER}/clear")
class Clear(MethodView):
    @blp.arguments(s.ClearIn)
    @blp.response(200, s.BreakerOut)
    def post(self, data, name):
        """Clear a tripped breaker (who, when and why are recorded). 409 when it is not tripped,
        or when it resets by itself and is still breached."""
        return service.clear_breaker(conn(), user().id, name, data["reason"], actor=actor())


@blp.route("/kill-switch")
class KillSwitch(MethodView):
    @blp.arguments(s.KillSwitchIn)
    @blp.response(200, s.KillSwitchOut)
    def post(self, data):
        """Engage a kill switch at once: ``ml_scoring`` makes scoring rules-only, ``orders``
        refuses every new order. It stays on until released. Already engaged: returned as is."""
        return service.engage_kill_switch(conn(), user().id, data["kind"], data["reason"], scope=data["scope"],
                                          actor=actor(), admin=user().is_admin)


@blp.route("/kill-switch/release")
class ReleaseKillSwitch(MethodView):
    @blp.arguments(s.KillSwitchIn)
    @blp.response(200, s.KillSwitchOut)
    def post(self, data):
        """Release an engaged kill switch (who, when and why are recorded); 409 if not engaged."""
        return service.release_kill_switch(conn(), user().id, data["kind"], data["reason"], scope=data["scope"],
                                           actor=actor(), admin=user().is_admin)


@blp.route("/trading-state")
class TradingState(MethodView):
    @blp.arguments(s.TradingStateIn)
    @blp.response(200, s.TradingStateOut)
    def post(self, data):
        """Set your trading state by hand: HALTED or REDUCING (only orders that reduce an open
        position pass) stays until you set ACTIVE; tripped breakers and kill switches still apply."""
        return service.set_trading_state(conn(), user().id, data["state"], data["reason"], actor=actor())


@blp.route("/inputs/model-confidence")
class Confidence(MethodView):
    @blp.arguments(s.ConfidenceIn)
    @blp.response(200, s.BreakerOut)
    def post(self, data):
        """Report the current regime confidence (0..1); the model_confidence breaker is
        evaluated at once."""
        return service.record_confidence(conn(), user().id, data["value"], data.get("regime"), actor=actor())


@blp.route("/audit")
class Audit(MethodView):
    @blp.response(200, s.AuditOut(many=True))
    @blp.paginated
    def get(self, pagination):
        """Your breaker audit trail, newest first: trips, clears, state transitions, kill
        switches and config changes (deployment-wide entries included)."""
        return Paged(*service.audit_log(conn(), user().id, page=pagination.page, page_size=pagination.page_size))
