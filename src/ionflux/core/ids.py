"""Random ids for rows and requests: one generator (`random_hex`), version-4 UUIDs as 32 hex digits."""

from __future__ import annotations

import os
import threading


class _RandomIds:
    """Random (version 4) UUIDs from `os.urandom` drawn 4 KiB at a time: as unpredictable as `uuid.uuid4()`,
    with one getrandom() call per 256 ids instead of one per id. That call releases the GIL, and on a busy
    process each release can hand the GIL to a database thread for a switch interval (5 ms): ids are
    minted on every webhook, event and message. A forked child starts a fresh buffer."""

    _VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
    _VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._buffer = b""
        self._next = 0

    def hex(self) -> str:
        with self._lock:
            if self._next >= len(self._buffer):
                self._buffer, self._next = os.urandom(4096), 0
            start = self._next
            self._next = start + 16
            value = int.from_bytes(self._buffer[start:start + 16], "big")
        return f"{(value & self._VERSION_MASK) | self._VERSION_BITS:032x}"


random_hex = _RandomIds().hex
