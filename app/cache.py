"""The idempotency cache and in-flight lock: Redis, or in-process for the embedded default.

Both implement the same small interface and pass the same contract tests. The cache is an
accelerator only: every operation may raise ``CacheUnavailable`` and callers then fall back to
the database record, which is always correct on its own.
"""
from __future__ import annotations

import threading
import time


class CacheUnavailable(RuntimeError):
    pass


class LocalCache:
    """Thread-safe dict with expiry."""

    name = "local"

    def __init__(self):
        self._data: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def _live(self, key):
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            self._data.pop(key, None)
            return None
        return item[1]

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._live(key)

    def set(self, key: str, value: bytes, ttl: float) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + ttl, value)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Set only if absent (the in-flight lock). True when this call set it."""
        with self._lock:
            if self._live(key) is not None:
                return False
            self._data[key] = (time.monotonic() + ttl, value)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def publish(self, channel: str, message: str) -> None:
        pass  # one process: the outbox's in-process listeners already fire

    def ping(self) -> bool:
        return True


class RedisCache:
    """Redis with short timeouts; after a failure it is skipped for ``cooldown`` seconds so a
    dead Redis costs one timeout, not one per request."""

    name = "redis"

    def __init__(self, url: str, *, timeout: float = 0.25, cooldown: float = 2.0):
        import redis
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry_on_timeout=False)
        self.cooldown = cooldown
        self._down_until = 0.0

    def _call(self, fn, *args, **kwargs):
        import redis
        if time.monotonic() < self._down_until:
            raise CacheUnavailable("redis marked down")
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            self._down_until = time.monotonic() + self.cooldown
            raise CacheUnavailable(str(exc)) from exc

    def get(self, key):
        return self._call(self.client.get, key)

    def set(self, key, value, ttl):
        self._call(self.client.set, key, value, px=int(ttl * 1000))

    def add(self, key, value, ttl):
        return bool(self._call(self.client.set, key, value, px=int(ttl * 1000), nx=True))

    def delete(self, key):
        self._call(self.client.delete, key)

    def publish(self, channel, message):
        self._call(self.client.publish, channel, message)

    def ping(self):
        return bool(self._call(self.client.ping))


def from_url(url: str | None):
    return RedisCache(url) if url else LocalCache()
