"""The simulated SPX-like market (deterministic for a seed): ``config`` (constants),
``pricing`` (Black-Scholes and the smile), ``world`` (the market, day by day), ``day`` (one
day's ideas and their futures), ``drive`` (the world through the real use cases)."""
