"""mlloop's trading domain, pure (no SQL, no Flask): the trading calendar and variance clock
(``calendar``), trade-idea geometry (``ideas``), the rule score (``rules``), point-in-time
market and idea features (``features``), outcome labels (``labels``) and the P&L path with
its snapshot triggers (``ledger``)."""
