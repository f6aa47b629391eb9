"""``breakers``: the safety rails of the seed's ML plan (section 11) as their own context.

It owns the circuit breakers (daily loss limit, max drawdown from high water, order rate,
slippage anomaly, model confidence), each user's trading state (ACTIVE / REDUCING / HALTED),
the kill switches, and the inputs they are computed from (a P&L ledger, the order log, recent
slippage), which it keeps from the bus (``tradelog.events``, ``mlloop.pnl``), never from calls.
It enforces through the host's hooks: ``check_order_allowed`` and ``scoring_mode``.
See docs/breakers.md.
"""
