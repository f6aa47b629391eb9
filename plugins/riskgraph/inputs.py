"""The arguments of a risk analysis, shared by ad-hoc analyses (``service.analyze``) and stored
artifacts (``artifacts``): request arguments to the engine's market (``_market``), and the 422
for input the engine can't use (``_input_error``). No Flask, no database."""
from __future__ import annotations

from app import errors
from plugins.riskgraph import risk
from plugins.riskgraph.schemas import today


def _input_error(exc: risk.RiskInputError, location: str = "json") -> errors.Unprocessable:
    """422 naming the field; ``legs.2`` becomes ``{"legs": {"2": [...]}}`` as webargs nests."""
    head, _, index = exc.field.partition(".")
    messages = {index: [exc.message]} if index else [exc.message]
    return errors.Unprocessable(f"{exc.field}: {exc.message}", errors={location: {head: messages}})


def _market(args: dict) -> dict:
    bounds = (args["min"], args["max"]) if args.get("min") is not None else None
    days = args.get("days_forward") or [0]
    days = [0] + sorted({int(d) for d in days if d != 0})  # the T+0 curve always comes first
    return dict(spot=args["spot"], r=args.get("r") or 0.0, q=args.get("q") or 0.0,
                valuation_date=args.get("valuation_date") or today(), points=args.get("points") or 201,
                bounds=bounds, days_forward=days, valuation_time=args.get("valuation_time"),
                model=args.get("model") or "bsm")
