"""Tests of the rate limiter with an injected clock."""

from __future__ import annotations

import threading
import time

from klaviyo_pipeline.config import RateLimitConfig
from klaviyo_pipeline.klaviyo import RateLimiter, RateLimitHeaders, shared_rate_limiter
from klaviyo_pipeline.klaviyo.rate_limit import MAX_PAUSE_SECONDS, account_key


class FakeClock:
    """Monotonic clock that advances only when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_limiter(clock: FakeClock, burst: int = 10, steady: int = 150) -> RateLimiter:
    limits = {"event_bulk_create": RateLimitConfig(burst=burst, steady=steady)}
    return RateLimiter(limits, clock=clock, sleep=clock.sleep)


def max_in_window(times: list[float], window: float) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def test_burst_limit_spreads_requests():
    clock = FakeClock()
    limiter = make_limiter(clock)
    starts = []
    for _ in range(25):
        limiter.acquire("event_bulk_create")
        starts.append(clock.now)

    assert max_in_window(starts, 1.0) <= 10
    assert starts[9] == starts[0]
    assert starts[10] > starts[0] + 1.0


def test_steady_limit_spreads_requests():
    clock = FakeClock()
    limiter = make_limiter(clock, burst=100, steady=150)
    starts = []
    for _ in range(320):
        limiter.acquire("event_bulk_create")
        starts.append(clock.now)

    assert max_in_window(starts, 60.0) <= 150
    assert starts[150] > starts[0] + 60.0
    assert starts[300] > starts[0] + 120.0


def test_wait_is_returned_and_counted():
    clock = FakeClock()
    limiter = make_limiter(clock, burst=1, steady=100)
    assert limiter.acquire("event_bulk_create") == 0
    waited = limiter.acquire("event_bulk_create")

    assert waited > 1.0
    assert limiter.stats().wait_seconds == waited
    assert limiter.stats().requests == 2


def test_retry_after_pauses_endpoint():
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.acquire("event_bulk_create")
    limiter.observe("event_bulk_create", RateLimitHeaders(retry_after_seconds=7), throttled=True)
    start = clock.now
    limiter.acquire("event_bulk_create")

    assert clock.now - start >= 7
    assert limiter.stats().throttles == 1


def test_throttle_without_retry_after_pauses():
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.observe("event_bulk_create", RateLimitHeaders(), throttled=True)
    start = clock.now
    limiter.acquire("event_bulk_create")

    assert clock.now - start >= 1.0


def test_remaining_zero_pauses_until_reset():
    clock = FakeClock()
    limiter = make_limiter(clock)
    headers = RateLimitHeaders(limit=150, remaining=0, reset_seconds=12)
    limiter.observe("event_bulk_create", headers)
    start = clock.now
    limiter.acquire("event_bulk_create")

    assert clock.now - start >= 12
    assert limiter.stats().throttles == 0


def test_remaining_above_zero_does_not_pause():
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.observe("event_bulk_create", RateLimitHeaders(remaining=3, reset_seconds=12))
    start = clock.now
    limiter.acquire("event_bulk_create")

    assert clock.now == start


def test_pause_is_per_endpoint():
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.pause("event_bulk_create", 30)
    start = clock.now
    limiter.acquire("profile_bulk_import")

    assert clock.now == start


def test_time_scale_shortens_windows():
    clock = FakeClock()
    limits = {"event_bulk_create": RateLimitConfig(burst=100, steady=10)}
    limiter = RateLimiter(limits, time_scale=60.0, clock=clock, sleep=clock.sleep)
    for _ in range(11):
        limiter.acquire("event_bulk_create")

    # A 60 s window at 60 times real speed lasts about one real second.
    assert 1.0 < clock.now - 1000.0 < 1.1


def test_threads_share_limit():
    limits = {"event_bulk_create": RateLimitConfig(burst=5, steady=1000)}
    limiter = RateLimiter(limits, time_scale=10.0)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            limiter.acquire("event_bulk_create")
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(starts) == 15
    # The window is 0.1 s at this time scale; 0.08 s leaves room for thread scheduling.
    assert max_in_window(sorted(starts), 0.08) <= 5


def test_shared_limiter_per_account():
    limits = {"event_bulk_create": RateLimitConfig(burst=10, steady=150)}
    first = shared_rate_limiter("pk_a", "http://127.0.0.1:1", limits)
    again = shared_rate_limiter("pk_a", "http://127.0.0.1:1", limits)
    other_key = shared_rate_limiter("pk_b", "http://127.0.0.1:1", limits)
    other_host = shared_rate_limiter("pk_a", "http://127.0.0.1:2", limits)

    assert first is again
    assert first is not other_key
    assert first is not other_host


def test_account_key_hides_api_key():
    key = account_key("pk_secret_value", "http://127.0.0.1:1")

    assert "pk_secret_value" not in key
    assert len(key) == 16


def test_long_retry_after_is_capped():
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.observe(
        "event_bulk_create", RateLimitHeaders(retry_after_seconds=86_400), throttled=True
    )
    start = clock.now
    limiter.acquire("event_bulk_create")

    assert clock.now - start == MAX_PAUSE_SECONDS
