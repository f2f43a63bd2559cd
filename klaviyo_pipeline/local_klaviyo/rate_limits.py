"""Fixed-window rate limiting per endpoint, with a time scale for fast tests.

Klaviyo limits each endpoint per account with two fixed windows: a burst window of 1 s and
a steady window of 60 s. A request is throttled when either window is full. Throttled
requests do not count against the windows.

Time scale: with ``time_scale`` X, a window of W seconds lasts W / X real seconds. Header
values are real seconds, rounded up to whole seconds because the SDK parses
``Retry-After`` with ``int()``. ``Retry-After`` is at least 1, so at time_scale > 1 the header can
be 1 while the window reopens sooner. A client that waits the header's value is never
throttled again by the same window.
"""

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from klaviyo_pipeline.local_klaviyo.limits import (
    BURST_WINDOW_SECONDS,
    STEADY_WINDOW_SECONDS,
    RateLimit,
)


@dataclass(frozen=True)
class RateDecision:
    """Result of counting one request against an endpoint's windows.

    Attributes:
        allowed: False when the request is throttled (429).
        retry_after: Whole real seconds until the full windows reopen, set when throttled.
        limit: Requests allowed per steady window, for ``RateLimit-Limit``.
        remaining: Requests left in the steady window, for ``RateLimit-Remaining``.
        reset: Whole real seconds until the steady window resets, for ``RateLimit-Reset``.
    """

    allowed: bool
    retry_after: int
    limit: int
    remaining: int
    reset: int


@dataclass
class _Window:
    seconds: float
    limit: int
    index: int = -1
    count: int = 0

    def roll(self, scaled_now: float) -> None:
        index = math.floor(scaled_now / self.seconds)
        if index != self.index:
            self.index = index
            self.count = 0

    def scaled_seconds_left(self, scaled_now: float) -> float:
        return (self.index + 1) * self.seconds - scaled_now


class RateLimiter:
    """Thread-safe burst and steady fixed windows for each endpoint of one account."""

    def __init__(
        self,
        rate_limits: dict[str, RateLimit],
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create windows for each endpoint.

        Args:
            rate_limits: Limits per route name.
            time_scale: How many times faster than real time the windows pass.
            clock: Monotonic clock in real seconds.
        """
        if time_scale <= 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self._limits = dict(rate_limits)
        self._time_scale = time_scale
        self._clock = clock
        self._origin = clock()
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[_Window, _Window]] = {}
        self.reset()

    def reset(self) -> None:
        """Empty every window."""
        with self._lock:
            self._windows = {
                route: (
                    _Window(BURST_WINDOW_SECONDS, limit.burst),
                    _Window(STEADY_WINDOW_SECONDS, limit.steady),
                )
                for route, limit in self._limits.items()
            }

    def acquire(self, route: str) -> RateDecision | None:
        """Count one request to ``route`` and return the decision, or None for unlimited routes."""
        if route not in self._windows:
            return None
        with self._lock:
            scaled_now = (self._clock() - self._origin) * self._time_scale
            burst, steady = self._windows[route]
            burst.roll(scaled_now)
            steady.roll(scaled_now)

            full = [window for window in (burst, steady) if window.count >= window.limit]
            if full:
                scaled_wait = max(window.scaled_seconds_left(scaled_now) for window in full)
                return RateDecision(
                    allowed=False,
                    retry_after=max(1, math.ceil(scaled_wait / self._time_scale)),
                    limit=steady.limit,
                    remaining=0,
                    reset=self._real_seconds(steady.scaled_seconds_left(scaled_now)),
                )

            burst.count += 1
            steady.count += 1
            return RateDecision(
                allowed=True,
                retry_after=0,
                limit=steady.limit,
                remaining=steady.limit - steady.count,
                reset=self._real_seconds(steady.scaled_seconds_left(scaled_now)),
            )

    def _real_seconds(self, scaled_seconds: float) -> int:
        return math.ceil(scaled_seconds / self._time_scale)
