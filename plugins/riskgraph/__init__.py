"""riskgraph: the risk side of the desk.

Owns the user's risk-graph strategies (with an immutable version trail), shareable strategy
templates, the risk analysis (``optionsmath``: payoff curves, Greeks, tail metrics) behind
``/api/risk-graph/analyze``, and risk artifacts computed for trade-log positions — pulled over
HTTP (Pattern A) or recomputed from ``tradelog.events`` (Pattern B). It never imports another
plugin; see docs/riskgraph.md.
"""
