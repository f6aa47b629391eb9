"""The pluggy manager: entry-point discovery, per-deployment choice, clash detection.

``TRADELOOP_PLUGINS`` names the plugins to enable (entry-point names, or dotted module paths
for plugins that are not installed, such as the small ones under tests/). Unset means every
installed plugin. A plugin that is not enabled is never imported, so it contributes nothing.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Iterable

import pluggy

from app import hookspecs

ENTRY_POINT_GROUP = "tradeloop.plugins"


class PluginError(RuntimeError):
    """A plugin could not be loaded, or two plugins claim the same thing."""


def migrations_branch(module: str, label: str | None = None) -> tuple[str, str]:
    """What ``register_migrations`` returns for a plugin laid out the usual way: the plugin's
    package (``module`` is its plugin.py's ``__name__``) holds ``migrations/``, and the branch
    label is the package's name unless given."""
    package = module.rpartition(".")[0] or module
    spec = importlib.util.find_spec(package)
    directory = os.path.join(os.path.dirname(spec.origin), "migrations")
    return (label or package.rsplit(".", 1)[-1], directory)


def installed() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


class Plugins:
    def __init__(self, enabled: Iterable[str] | None = None):
        self.pm = pluggy.PluginManager("tradeloop")
        self.pm.add_hookspecs(hookspecs.HookSpecs)
        available = installed()
        names = list(available) if enabled is None else list(enabled)
        self.names: list[str] = []
        for name in names:
            if name in available:
                try:
                    module = available[name].load()
                except Exception as exc:
                    raise PluginError(f"plugin {name!r} failed to load: {exc}") from exc
            elif "." in name or ":" in name:
                modname, _, attr = name.partition(":")
                module = importlib.import_module(modname)
                if attr:
                    module = getattr(module, attr)
                name = getattr(module, "PLUGIN_NAME", modname.rsplit(".", 1)[-1])
            else:
                raise PluginError(f"unknown plugin {name!r}; installed: {', '.join(sorted(available)) or 'none'}")
            if name in self.names:
                raise PluginError(f"plugin {name!r} enabled twice")
            self.pm.register(module, name=name)
            self.names.append(name)

    def call(self, hook: str, **kwargs) -> list[tuple[str, object]]:
        """Call a hook on every enabled plugin; return ``[(plugin_name, result)]`` in
        registration order, skipping ``None`` results."""
        caller = getattr(self.pm.hook, hook)
        results = []
        for impl in caller.get_hookimpls():  # registration order (a hook *call* would be LIFO)
            args = {k: kwargs[k] for k in impl.argnames}
            value = impl.function(**args)
            if value is not None:
                results.append((impl.plugin_name, value))
        return results

    def collect_unique(self, hook: str, what: str, key, **kwargs) -> list[tuple[str, object]]:
        """Flatten list results of a hook and fail on two plugins claiming the same ``key``."""
        owners: dict = {}
        out = []
        for plugin, values in self.call(hook, **kwargs):
            for value in values:
                k = key(value)
                if k in owners:
                    raise PluginError(f"{what} {k!r} is claimed by both {owners[k]!r} and {plugin!r}")
                owners[k] = plugin
                out.append((plugin, value))
        return out

    def tables(self) -> dict[str, str]:
        """table name -> owning plugin (clash = start-up error)."""
        owners: dict[str, str] = {}
        for plugin, value in self.call("register_tables"):
            tables = value.tables.values() if hasattr(value, "tables") else value
            for t in tables:
                if t.name in owners:
                    raise PluginError(f"table {t.name!r} is claimed by both {owners[t.name]!r} and {plugin!r}")
                owners[t.name] = plugin
        return owners

    def subscriptions(self) -> dict[str, dict]:
        """plugin (= consumer group) -> {subscription: handler}."""
        return {plugin: dict(subs) for plugin, subs in self.call("register_subscriptions") if subs}
