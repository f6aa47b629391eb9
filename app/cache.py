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

    def get_or_lock(self, key: str, lock_key: str, ttl: float) -> tuple[bytes | None, bool]:
        """``(value, False)`` when ``key`` holds a value; else ``(None, locked)`` where
        ``locked`` says whether this call set ``lock_key`` (absent before; expires after
        ``ttl`` seconds). One atomic step: one round trip on Redis."""
        with self._lock:
            value = self._live(key)
            if value is not None:
                return value, False
            if self._live(lock_key) is not None:
                return None, False
            self._data[lock_key] = (time.monotonic() + ttl, b"1")
            return None, True

    def set_and_delete(self, key: str | None, value: bytes | None, ttl: float, delete_key: str | None) -> None:
        """Set ``key`` (when given) and delete ``delete_key`` (when given): one round trip."""
        with self._lock:
            if key is not None:
                self._data[key] = (time.monotonic() + ttl, value)
            if delete_key is not None:
                self._data.pop(delete_key, None)

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
        self._get_or_lock = None

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

    # GET the value, else SET the lock NX: atomic, one round trip (EVALSHA, loaded on first use).
    _GET_OR_LOCK = """
local v = redis.call('GET', KEYS[1])
if v then return {v, 0} end
if redis.call('SET', KEYS[2], '1', 'PX', ARGV[1], 'NX') then return {false, 1} end
return {false, 0}
"""

    def get_or_lock(self, key, lock_key, ttl):
        if self._get_or_lock is None:
            self._get_or_lock = self.client.register_script(self._GET_OR_LOCK)
        value, locked = self._call(self._get_or_lock, keys=[key, lock_key], args=[int(ttl * 1000)])
        return (value or None), bool(locked)

    def set_and_delete(self, key, value, ttl, delete_key):
        def go():
            pipe = self.client.pipeline(transaction=False)
            if key is not None:
                pipe.set(key, value, px=int(ttl * 1000))
            if delete_key is not None:
                pipe.delete(delete_key)
            return pipe.execute()
        self._call(go)

    def publish(self, channel, message):
        self._call(self.client.publish, channel, message)

    def ping(self):
        return bool(self._call(self.client.ping))


def from_url(url: str | None):
    return RedisCache(url) if url else LocalCache()
