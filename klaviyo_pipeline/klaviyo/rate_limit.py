"""Client-side rate limiter per Klaviyo endpoint, shared by all threads of a process.

Klaviyo limits each endpoint per account with two fixed windows: a burst window of one
second and a steady window of one minute. The limiter keeps, per endpoint, the start times
of the requests of the last window and lets a request start only when fewer than the limit
started in the last window of each length. That bounds every interval of a window's
length, so every fixed window on Klaviyo's side is bounded too, as long as the clocks run
at the same rate. A margin on each window covers the variation in network latency between
the client's send time and Klaviyo's receive time: 2 % plus 20 ms on the burst window, and
0.5 % plus 20 ms (320 ms) on the steady window, which costs about 0.5 % of the steady rate.

A 429 with ``Retry-After``, or a response with ``RateLimit-Remaining: 0`` and
``RateLimit-Reset``, pauses the endpoint for every thread until the time has passed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from klaviyo_pipeline.config import RateLimitConfig
from klaviyo_pipeline.klaviyo.errors import RateLimitHeaders

BURST_WINDOW_SECONDS = 1.0
STEADY_WINDOW_SECONDS = 60.0
# Added to each window so that requests that arrive later than they were sent still land
# in separate windows on Klaviyo's side: a share of the window plus real seconds.
BURST_MARGIN_SHARE = 0.02
STEADY_MARGIN_SHARE = 0.005
WINDOW_MARGIN_SECONDS = 0.02
# Pause after a 429 without Retry-After, in real seconds: one burst window of Klaviyo.
DEFAULT_THROTTLE_PAUSE_SECONDS = 1.0
# Maximum pause taken from a header, in seconds. Klaviyo's windows are at most 60 s long,
# so a longer value is treated as malformed, and the retry budget decides what follows.
MAX_PAUSE_SECONDS = 120.0


@dataclass
class _EndpointState:
    burst: int
    steady: int
    burst_starts: deque[float] = field(default_factory=deque)
    steady_starts: deque[float] = field(default_factory=deque)
    paused_until: float = 0.0


@dataclass(frozen=True)
class LimiterStats:
    """Totals of one limiter since it was created."""

    requests: int
    throttles: int
    wait_seconds: float


class RateLimiter:
    """Burst and steady rate limits per endpoint, with pauses from response headers.

    Args:
        limits: Limits per endpoint key. Endpoints without an entry are not limited.
        time_scale: How many times faster than real time the windows pass, to match a
            local server that runs a 60 s window in ``60 / time_scale`` seconds. 1.0 for
            Klaviyo. Header values are real seconds and are not scaled.
        clock: Monotonic clock in seconds.
        sleep: Function that blocks for a number of seconds.
    """

    def __init__(
        self,
        limits: Mapping[str, RateLimitConfig],
        *,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self._states = {
            name: _EndpointState(burst=limit.burst, steady=limit.steady)
            for name, limit in limits.items()
        }
        self._time_scale = time_scale
        self._burst_window = _window_with_margin(
            BURST_WINDOW_SECONDS / time_scale, BURST_MARGIN_SHARE
        )
        self._steady_window = _window_with_margin(
            STEADY_WINDOW_SECONDS / time_scale, STEADY_MARGIN_SHARE
        )
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._requests = 0
        self._throttles = 0
        self._wait_seconds = 0.0

    @property
    def time_scale(self) -> float:
        """How many times faster than real time the windows pass."""
        return self._time_scale

    def acquire(self, endpoint: str) -> float:
        """Wait until a request to `endpoint` may start, record it and return the seconds waited."""
        started = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                delay = self._delay(endpoint, now)
                if delay <= 0:
                    self._record_start(endpoint, now)
                    waited = now - started
                    self._requests += 1
                    self._wait_seconds += waited
                    return waited
            self._sleep(delay)

    def observe(self, endpoint: str, headers: RateLimitHeaders, *, throttled: bool = False) -> None:
        """Update the endpoint from one response's rate-limit headers.

        Args:
            endpoint: The endpoint called.
            headers: The response's parsed rate-limit headers.
            throttled: True for a 429 response. It pauses the endpoint for ``Retry-After``
                seconds, or for one (time-scaled) burst window if the header is missing.
        """
        if throttled:
            seconds = headers.retry_after_seconds
            if seconds is None:
                seconds = DEFAULT_THROTTLE_PAUSE_SECONDS / self._time_scale
            self.pause(endpoint, seconds)
            with self._lock:
                self._throttles += 1
            return
        if headers.remaining is not None and headers.remaining <= 0 and headers.reset_seconds:
            self.pause(endpoint, headers.reset_seconds)

    def pause(self, endpoint: str, seconds: float) -> None:
        """Let no request to `endpoint` start for `seconds` real seconds from now.

        Pauses longer than ``MAX_PAUSE_SECONDS`` are shortened to it.
        """
        with self._lock:
            state = self._state(endpoint)
            until = self._clock() + min(seconds, MAX_PAUSE_SECONDS)
            state.paused_until = max(state.paused_until, until)

    def stats(self) -> LimiterStats:
        """Return the totals since the limiter was created."""
        with self._lock:
            return LimiterStats(self._requests, self._throttles, self._wait_seconds)

    def _state(self, endpoint: str) -> _EndpointState:
        state = self._states.get(endpoint)
        if state is None:
            # Unlimited endpoint: only pauses apply.
            state = _EndpointState(burst=0, steady=0)
            self._states[endpoint] = state
        return state

    def _delay(self, endpoint: str, now: float) -> float:
        state = self._state(endpoint)
        delay = state.paused_until - now
        delay = max(delay, _window_delay(state.burst_starts, state.burst, self._burst_window, now))
        return max(
            delay, _window_delay(state.steady_starts, state.steady, self._steady_window, now)
        )

    def _record_start(self, endpoint: str, now: float) -> None:
        state = self._state(endpoint)
        if state.burst:
            state.burst_starts.append(now)
        if state.steady:
            state.steady_starts.append(now)


def _window_with_margin(seconds: float, share: float) -> float:
    return seconds * (1 + share) + WINDOW_MARGIN_SECONDS


def _window_delay(starts: deque[float], limit: int, window: float, now: float) -> float:
    """Return the seconds until one more request fits the window; 0 for an unlimited window."""
    if not limit:
        return 0.0
    # The same sum as the delay below, so float rounding cannot keep a start that the delay
    # counts as expired, which would let one request more than the limit through.
    while starts and starts[0] + window <= now:
        starts.popleft()
    if len(starts) < limit:
        return 0.0
    return starts[0] + window - now


_shared_limiters: dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def account_key(api_key: str, base_url: str | None) -> str:
    """Return a hash that identifies one Klaviyo account on one host, without the key in it."""
    text = f"{base_url or ''}\n{api_key}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def shared_rate_limiter(
    api_key: str,
    base_url: str | None,
    limits: Mapping[str, RateLimitConfig],
    *,
    time_scale: float = 1.0,
) -> RateLimiter:
    """Return the process-wide limiter of an account, creating it on first use.

    Klaviyo's limits are per account, so every client of the same key and host shares one
    limiter. The first call fixes the limits and the time scale of that account.
    """
    key = account_key(api_key, base_url)
    with _shared_lock:
        limiter = _shared_limiters.get(key)
        if limiter is None:
            limiter = RateLimiter(limits, time_scale=time_scale)
            _shared_limiters[key] = limiter
        return limiter
