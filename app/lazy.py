"""Import a module on first use, so start-up (``tradeloop --help``, a CLI command, a worker)
does not pay for heavy libraries (pandas, scipy, CatBoost, confluent-kafka, exchange
calendars) that only some code paths need.

    modelops = lazy_module("plugins.mlloop.modelops")   # nothing imported yet
    modelops.train(...)                                 # imported here, once

The first attribute access runs a plain ``importlib.import_module`` (thread-safe under the
import lock; afterwards it is a dict lookup in ``sys.modules``). Prefer a function-level
``import`` where one function uses the library; use this where a thin module (views, CLI)
calls into a heavy one from many places. ``tests/app/test_startup.py`` keeps the CLI light.
"""
from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands in for module ``name`` until an attribute is first read."""

    __slots__ = ("_name",)

    def __init__(self, name: str):
        self._name = name

    def _load(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str):
        return getattr(self._load(), attr)

    def __setattr__(self, attr: str, value) -> None:
        if attr in LazyModule.__slots__:
            object.__setattr__(self, attr, value)
        else:  # e.g. a test's monkeypatch: patch the real module
            setattr(self._load(), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(self._load(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> LazyModule:
    """A stand-in for ``import name`` that imports on first attribute access."""
    return LazyModule(name)
