"""A small per-app LRU for analyses that cost more than a query (importance): keyed by what
changes whenever the observations do (count and the experiment's ``updated`` time)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Hashable
from typing import Any
from typing import TypeVar

from flask import current_app

T = TypeVar("T")
MAX_ENTRIES = 256


class Lru:
    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                value: T = self._items[key]
                return value
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


def cached(key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()`` once per ``key`` in this app (process)."""
    lru: Lru = current_app.extensions.setdefault("analytics_cache", Lru())
    return lru.get_or_compute(key, compute)
