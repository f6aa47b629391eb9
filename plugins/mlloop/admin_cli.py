"""``tradeloop ml ...`` admin commands of the model registry, drift and experiments
(part 1's plugin adds ``COMMANDS`` to its ``ml`` group)."""
from __future__ import annotations

COMMANDS: list = []
