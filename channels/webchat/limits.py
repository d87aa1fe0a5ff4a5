"""How fast one visitor may write and one address may open chats, per web process: token
buckets keyed on the visitor and the address together, so fifty visitors behind one office's
NAT each chat at their own pace, one visitor cannot flood, and one address cannot mint
visitors without end. Idle buckets are forgotten oldest first beyond ``MAX_KEYS``."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

MAX_KEYS = 100_000
#: A visitor's typing announcements: the widget sends one every 3 s while they type; more
#: than this are dropped without a word (typing is a hint, never worth an error).
TYPING_BURST = 2
TYPING_EVERY = 2.5


@dataclass
class _Bucket:
    tokens: float
    at: float


class Buckets:
    """``burst`` at once, then one every ``every`` seconds, per key."""

    def __init__(self, burst: int, every: float) -> None:
        self.burst = burst
        self.every = every
        self._buckets: OrderedDict[tuple[str, ...], _Bucket] = OrderedDict()

    def take(self, *key: str, now: float | None = None) -> float:
        """0 when allowed (a token taken); else the seconds until the next token."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(key, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) / self.every)
        bucket.at = now
        self._buckets[key] = bucket
        while len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) * self.every
