"""The idempotency cache's contract, run against both implementations: in-process and Redis."""
from __future__ import annotations

import time
import uuid

import pytest

from app.cache import LocalCache, RedisCache


@pytest.fixture(params=["local", "redis"])
def cache(request):
    if request.param == "local":
        return LocalCache()
    return RedisCache(request.getfixturevalue("redis_url"))


def test_get_or_lock_takes_the_lock_once_and_returns_a_stored_value_without_locking(cache):
    key = f"tl-test:{uuid.uuid4().hex}"
    lock = key + ":lock"
    assert cache.get_or_lock(key, lock, 5) == (None, True)   # free: this call locked it
    assert cache.get_or_lock(key, lock, 5) == (None, False)  # held by the first caller
    cache.set_and_delete(key, b"answer", 5, lock)            # completed: value set, lock gone
    assert cache.get(lock) is None
    assert cache.get_or_lock(key, lock, 5) == (b"answer", False)
    assert cache.get(lock) is None  # a replay never takes the lock
    cache.set_and_delete(None, None, 5, key)
    assert cache.get(key) is None


def test_the_lock_expires_after_its_ttl(cache):
    key = f"tl-test:{uuid.uuid4().hex}"
    assert cache.get_or_lock(key, key + ":lock", 0.05) == (None, True)
    time.sleep(0.15)
    assert cache.get_or_lock(key, key + ":lock", 5) == (None, True)
