"""Rate limits: per-endpoint fixed windows, 429 bodies and headers, the time scale."""

import time
from collections.abc import Callable
from typing import Any

import pytest

from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from klaviyo_pipeline.local_klaviyo.limits import RATE_LIMITS, RateLimit
from klaviyo_pipeline.local_klaviyo.rate_limits import RateLimiter
from tests.local_klaviyo.payloads import (
    RawResponse,
    create_event_body,
    import_job_body,
    make_client,
    numbered_bulk_body,
    profile_body,
    raw_request,
)

# A time scale of 0.01 stretches the 1 s burst window to 100 s, so no test crosses a
# window boundary by accident.
FROZEN_TIME_SCALE = 0.01


class FakeClock:
    """Monotonic clock that moves only when the test advances it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def make_limiter(time_scale: float = 1.0) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    limiter = RateLimiter({"bulk": RateLimit(burst=10, steady=150)}, time_scale, clock)
    return limiter, clock


def test_documented_limits_per_endpoint() -> None:
    assert {name: (limit.burst, limit.steady) for name, limit in RATE_LIMITS.items()} == {
        "bulk_create_events": (10, 150),
        "bulk_import_profiles": (10, 150),
        "get_bulk_import_profiles_job": (10, 150),
        "get_errors_for_bulk_import_profiles_job": (10, 150),
        "create_event": (350, 3_500),
        "create_or_update_profile": (75, 750),
    }


def test_burst_window_blocks_eleventh() -> None:
    limiter, clock = make_limiter()

    decisions = [limiter.acquire("bulk") for _ in range(11)]

    assert [decision.allowed for decision in decisions] == [True] * 10 + [False]
    assert decisions[-1].retry_after == 1
    clock.now += 1.0
    assert limiter.acquire("bulk").allowed


def test_steady_window_blocks_151st() -> None:
    limiter, clock = make_limiter()
    allowed = 0
    for _ in range(15):
        for _ in range(10):
            allowed += limiter.acquire("bulk").allowed
        clock.now += 1.0

    decision = limiter.acquire("bulk")

    assert allowed == 150
    assert not decision.allowed
    assert decision.retry_after == 45
    clock.now += 45.0
    assert limiter.acquire("bulk").allowed


def test_throttled_requests_do_not_count() -> None:
    limiter, clock = make_limiter()
    for _ in range(30):
        limiter.acquire("bulk")
    clock.now += 1.0

    decision = limiter.acquire("bulk")

    assert decision.allowed
    assert decision.remaining == 150 - 11


def test_time_scale_shortens_retry_after() -> None:
    limiter, clock = make_limiter(time_scale=4.0)
    for _ in range(15):
        for _ in range(10):
            limiter.acquire("bulk")
        clock.now += 0.25

    decision = limiter.acquire("bulk")

    # 45 scaled seconds remain in the steady window: 11.25 real seconds, rounded up.
    assert decision.retry_after == 12
    clock.now += 11.25
    assert limiter.acquire("bulk").allowed


def test_retry_after_is_at_least_one() -> None:
    limiter, _ = make_limiter(time_scale=60.0)
    for _ in range(10):
        limiter.acquire("bulk")

    decision = limiter.acquire("bulk")

    assert not decision.allowed
    assert decision.retry_after == 1


def test_headers_describe_steady_window() -> None:
    limiter, clock = make_limiter()
    clock.now += 20.0
    limiter.acquire("bulk")

    decision = limiter.acquire("bulk")

    assert (decision.limit, decision.remaining) == (150, 148)
    assert 0 < decision.reset <= 60


def job_path(server: LocalKlaviyoServer) -> str:
    client = make_client(server.base_url)
    job = client.Profiles.bulk_import_profiles(import_job_body([{"email": "a@example.com"}]))
    return f"/api/profile-bulk-import-jobs/{job.data.id}"


# Each case: route name, HTTP method, function of the server returning (path, body).
ENDPOINT_CASES: list[Any] = [
    pytest.param(
        "create_event",
        "POST",
        lambda s: ("/api/events", create_event_body(unique_id=None)),
        id="create-event",
    ),
    pytest.param(
        "bulk_create_events",
        "POST",
        lambda s: ("/api/event-bulk-create-jobs", numbered_bulk_body(1)),
        id="bulk-events",
    ),
    pytest.param(
        "create_or_update_profile",
        "POST",
        lambda s: ("/api/profile-import", profile_body({"email": "a@example.com"})),
        id="profile-import",
    ),
    pytest.param(
        "bulk_import_profiles",
        "POST",
        lambda s: ("/api/profile-bulk-import-jobs", import_job_body([{"email": "a@example.com"}])),
        id="import-job",
    ),
    pytest.param("get_bulk_import_profiles_job", "GET", lambda s: (job_path(s), None), id="job"),
    pytest.param(
        "get_errors_for_bulk_import_profiles_job",
        "GET",
        lambda s: (job_path(s) + "/import-errors", None),
        id="import-errors",
    ),
]


@pytest.mark.parametrize(("route", "method", "request_of"), ENDPOINT_CASES)
def test_endpoint_burst_limit_over_http(
    route: str, method: str, request_of: Callable[[LocalKlaviyoServer], tuple[str, Any]]
) -> None:
    with LocalKlaviyoServer(port=0, time_scale=FROZEN_TIME_SCALE, job_steps=0) as server:
        path, body = request_of(server)
        burst = RATE_LIMITS[route].burst
        responses: list[RawResponse] = []
        for _ in range(burst + 1):
            responses.append(raw_request(server.base_url, method, path, body))

    statuses = [response.status for response in responses]
    successes = [status for status in statuses if status < 300]
    # The job endpoints' set-up POST used one request of the import-job bucket only.
    assert len(successes) == burst
    assert statuses[-1] == 429
    assert statuses.index(429) == burst


def test_throttled_response_body_and_headers() -> None:
    with LocalKlaviyoServer(port=0, time_scale=FROZEN_TIME_SCALE) as frozen:
        responses = [
            raw_request(
                frozen.base_url, "POST", "/api/event-bulk-create-jobs", numbered_bulk_body(1)
            )
            for _ in range(11)
        ]

    throttled = responses[-1]
    assert throttled.status == 429
    retry_after = throttled.headers["Retry-After"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= 100
    for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert throttled.headers.get(name) is None
    error = throttled.json()["errors"][0]
    assert error["status"] == 429
    assert error["code"] == "throttled"
    assert error["title"] == "Request was throttled."
    assert error["detail"].startswith("Request was throttled. Expected available in ")
    assert error["source"] == {"pointer": "/data"}


def test_accepted_responses_carry_ratelimit_headers() -> None:
    with LocalKlaviyoServer(port=0, time_scale=FROZEN_TIME_SCALE) as frozen:
        responses = [
            raw_request(
                frozen.base_url, "POST", "/api/event-bulk-create-jobs", numbered_bulk_body(1)
            )
            for _ in range(3)
        ]

    assert [response.headers["RateLimit-Limit"] for response in responses] == ["150"] * 3
    assert [response.headers["RateLimit-Remaining"] for response in responses] == [
        "149",
        "148",
        "147",
    ]
    assert all(response.headers["RateLimit-Reset"].isdigit() for response in responses)


def test_invalid_requests_count_and_carry_headers() -> None:
    with LocalKlaviyoServer(port=0, time_scale=FROZEN_TIME_SCALE) as frozen:
        invalid = raw_request(frozen.base_url, "POST", "/api/event-bulk-create-jobs", {"data": {}})
        valid = raw_request(
            frozen.base_url, "POST", "/api/event-bulk-create-jobs", numbered_bulk_body(1)
        )

    assert invalid.status == 400
    assert invalid.headers["RateLimit-Remaining"] == "149"
    assert valid.headers["RateLimit-Remaining"] == "148"


def test_window_reopens_within_retry_after() -> None:
    # At time scale 2 a burst window lasts 0.5 s, so Retry-After rounds up to 1 s while
    # the window reopens sooner. Ten requests fit into 0.5 s even on a busy machine.
    with LocalKlaviyoServer(port=0, time_scale=2) as server:
        body = numbered_bulk_body(1)
        statuses = []
        for _ in range(100):
            response = raw_request(server.base_url, "POST", "/api/event-bulk-create-jobs", body)
            statuses.append(response.status)
            if response.status == 429:
                break
        retry_after = response.headers["Retry-After"]

        time.sleep(int(retry_after))
        after = raw_request(server.base_url, "POST", "/api/event-bulk-create-jobs", body)

    assert statuses[-1] == 429
    assert retry_after == "1"
    assert after.status == 202


def test_no_rate_limits_option() -> None:
    with LocalKlaviyoServer(port=0, rate_limits=False) as server:
        responses = [
            raw_request(
                server.base_url, "POST", "/api/event-bulk-create-jobs", numbered_bulk_body(1)
            )
            for _ in range(30)
        ]

    assert {response.status for response in responses} == {202}
    assert all(response.headers.get("RateLimit-Limit") is None for response in responses)


def test_reset_empties_windows() -> None:
    with LocalKlaviyoServer(port=0, time_scale=FROZEN_TIME_SCALE) as server:
        for _ in range(11):
            raw_request(
                server.base_url, "POST", "/api/event-bulk-create-jobs", numbered_bulk_body(1)
            )

        server.reset()
        response = raw_request(
            server.base_url, "POST", "/api/event-bulk-create-jobs", numbered_bulk_body(1)
        )

    assert response.status == 202
