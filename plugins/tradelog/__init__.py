"""``tradelog``: the TradeLog–Journal context — positions (planned/open/closed) with legs and
fills, pending orders, journal entries, an as-of history of every position version, derived
snapshot metadata (strategy, net debit, DTE, max profit/loss), risk-artifact references and
performance statistics. It publishes ``tradelog.events`` and ``/sse/trade-log``."""
