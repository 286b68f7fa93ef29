"""A thread-safe, byte-bounded LRU cache for decoded tiles."""


from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np

__all__ = ['TileCache']

_SEEN_KEYS = 1 << 16


class TileCache:
    """Least-recently-used cache of arrays, bounded by their total ``nbytes``.

    Callers ask :meth:`admit` before caching a miss, which admits a key on
    its second miss ("second-hit" admission).

    Parameters
    ----------
    max_bytes : int
        Upper bound on the summed ``nbytes`` of the cached arrays. An array
        larger than the bound is never cached. ``0`` disables caching.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._items)

    def admit(self, key: Hashable) -> bool:
        """Whether a tile just missed should be kept: only on its second miss.

        A scan (patch export, inference) reads each tile once; keeping those
        tiles would cost fresh memory per tile and evict the tiles a viewer
        returns to. Only the keys of recent misses are remembered.
        """
        if self.max_bytes == 0:
            return False
        with self._lock:
            if key in self._seen:
                del self._seen[key]
                return True
            self._seen[key] = None
            if len(self._seen) > _SEEN_KEYS:
                self._seen.popitem(last=False)
            return False

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        size = value.nbytes
        if size > self.max_bytes:
            return
        # Cached tiles are shared between callers, so nobody may write to them.
        value.flags.writeable = False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= old.nbytes
            self._items[key] = value
            self._nbytes += size
            while self._nbytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._nbytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._seen.clear()
            self._nbytes = 0
