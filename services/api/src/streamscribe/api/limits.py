"""The per-key rate of submissions: a token bucket per caller, in this process (a replica
admits its own share)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RateLimit:
    per_minute: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, who: str, now: float | None = None) -> float:
        """0 when `who` may submit now (a token is taken), else the seconds until it may."""
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        tokens, then = self._buckets.get(who, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - then) * rate)
        if tokens < 1.0:
            self._buckets[who] = (tokens, now)
            return (1.0 - tokens) / rate
        self._buckets[who] = (tokens - 1.0, now)
        return 0.0
