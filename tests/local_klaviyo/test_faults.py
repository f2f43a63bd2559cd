"""Fault injection: error statuses, 429 without Retry-After, delays and dropped connections."""

import time
from collections.abc import Iterator

import pytest
import urllib3
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException, ServiceException

from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from klaviyo_pipeline.local_klaviyo.faults import parse_fault_plan
from tests.local_klaviyo.payloads import (
    create_event_body,
    import_job_body,
    make_client,
    numbered_bulk_body,
    raw_request,
)


@pytest.fixture
def open_server() -> Iterator[LocalKlaviyoServer]:
    """Server without rate limits, so only injected faults fail requests."""
    with LocalKlaviyoServer(port=0, rate_limits=False) as local_server:
        yield local_server


def send_statuses(server: LocalKlaviyoServer, count: int) -> list[int]:
    return [
        raw_request(
            server.base_url, "POST", "/api/events", create_event_body(unique_id=f"f{index}")
        ).status
        for index in range(count)
    ]


def test_next_n_requests_get_status(open_server: LocalKlaviyoServer) -> None:
    open_server.set_faults({"next": 3, "status": 503})

    statuses = send_statuses(open_server, 5)

    assert statuses == [503, 503, 503, 202, 202]
    assert len(open_server.events()) == 2
    assert [entry.get("fault") for entry in open_server.requests()][:3] == ["status_503"] * 3


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_each_injectable_status(open_server: LocalKlaviyoServer, status: int) -> None:
    open_server.set_faults({"next": 1, "status": status})

    response = raw_request(open_server.base_url, "POST", "/api/events", create_event_body())

    assert response.status == status
    error = response.json()["errors"][0]
    assert error["status"] == status
    assert {"id", "code", "title", "detail"} <= set(error)
    assert open_server.events() == []


def test_fraction_is_seeded_and_reproducible(open_server: LocalKlaviyoServer) -> None:
    plan = {"fraction": 0.3, "status": 500, "seed": 7}

    open_server.set_faults(plan)
    first = send_statuses(open_server, 40)
    open_server.set_faults(plan)
    second = send_statuses(open_server, 40)

    assert first == second
    assert 0 < first.count(500) < 40
    assert set(first) == {202, 500}


def test_other_seed_other_sequence(open_server: LocalKlaviyoServer) -> None:
    open_server.set_faults({"fraction": 0.5, "status": 500, "seed": 1})
    first = send_statuses(open_server, 40)
    open_server.set_faults({"fraction": 0.5, "status": 500, "seed": 2})

    second = send_statuses(open_server, 40)

    assert first != second


def test_injected_429_has_retry_after(open_server: LocalKlaviyoServer) -> None:
    open_server.set_faults({"next": 1, "status": 429})

    response = raw_request(open_server.base_url, "POST", "/api/events", create_event_body())

    assert response.headers["Retry-After"] == "1"
    assert response.json()["errors"][0]["code"] == "throttled"


def test_429_without_retry_after(open_server: LocalKlaviyoServer) -> None:
    open_server.set_faults({"next": 1, "status": 429, "retry_after": None})

    response = raw_request(open_server.base_url, "POST", "/api/events", create_event_body())

    assert response.status == 429
    assert response.headers.get("Retry-After") is None


def test_sdk_retries_503_and_stores_once(open_server: LocalKlaviyoServer) -> None:
    client = make_client(open_server.base_url, max_retries=3)
    open_server.set_faults({"next": 1, "status": 503})

    client.Events.bulk_create_events(numbered_bulk_body(3))

    assert [entry["status"] for entry in open_server.requests()] == [503, 202]
    assert len(open_server.events()) == 3


def test_sdk_does_not_retry_500(open_server: LocalKlaviyoServer) -> None:
    client = make_client(open_server.base_url, max_retries=3)
    open_server.set_faults({"next": 1, "status": 500})

    with pytest.raises(ServiceException):
        client.Events.create_event(create_event_body())

    assert len(open_server.requests()) == 1


def test_delay_triggers_client_timeout(open_server: LocalKlaviyoServer) -> None:
    client = make_client(open_server.base_url)
    open_server.set_faults({"next": 1, "delay_seconds": 1.0})

    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        client.Events.create_event(create_event_body(), _request_timeout=0.1)

    client.Events.create_event(create_event_body(unique_id="after"), _request_timeout=5)

    assert open_server.requests()[0]["status"] == 202
    assert "fault" not in open_server.requests()[0]
    # The server still applies the request that the client gave up on.
    deadline = time.monotonic() + 10
    while len(open_server.events()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {event["unique_id"] for event in open_server.events()} == {"order-1", "after"}
    assert open_server.requests()[1]["fault"] == "delay_1s"


@pytest.mark.parametrize("mode", ["before_body", "after_body"])
def test_dropped_request_is_not_applied(open_server: LocalKlaviyoServer, mode: str) -> None:
    client = make_client(open_server.base_url)
    open_server.set_faults({"next": 1, "drop": mode})

    with pytest.raises(urllib3.exceptions.ProtocolError):
        client.Events.bulk_create_events(numbered_bulk_body(5), _request_timeout=5)

    assert open_server.events() == []
    entry = open_server.requests()[0]
    assert entry["status"] is None
    assert entry["fault"] == f"drop_{mode}"


def test_drop_after_apply_then_retry_stores_once(open_server: LocalKlaviyoServer) -> None:
    client = make_client(open_server.base_url)
    body = numbered_bulk_body(5)
    open_server.set_faults({"next": 1, "drop": "after_apply"})

    with pytest.raises(urllib3.exceptions.ProtocolError):
        client.Events.bulk_create_events(body, _request_timeout=5)
    stored_before_retry = len(open_server.events())
    client.Events.bulk_create_events(body, _request_timeout=5)

    assert stored_before_retry == 5
    assert len(open_server.events()) == 5
    assert open_server.requests()[0]["status"] == 202
    assert open_server.requests()[1]["duplicates"] == 5


def test_faults_skip_local_paths(open_server: LocalKlaviyoServer) -> None:
    open_server.set_faults({"next": 1, "status": 503})

    local = raw_request(open_server.base_url, "GET", "/_local/events")
    api = raw_request(open_server.base_url, "POST", "/api/events", create_event_body())

    assert local.status == 200
    assert api.status == 503


def test_faults_limited_to_paths(open_server: LocalKlaviyoServer) -> None:
    open_server.set_faults({"next": 1, "status": 503, "paths": ["/api/event-bulk-create-jobs"]})

    single = raw_request(open_server.base_url, "POST", "/api/events", create_event_body())
    bulk = raw_request(
        open_server.base_url, "POST", "/api/event-bulk-create-jobs", numbered_bulk_body(1)
    )

    assert single.status == 202
    assert bulk.status == 503


def test_faults_over_http_endpoint(open_server: LocalKlaviyoServer) -> None:
    posted = raw_request(open_server.base_url, "POST", "/_local/faults", {"next": 2, "status": 502})
    api = raw_request(open_server.base_url, "POST", "/api/events", create_event_body())
    current = raw_request(open_server.base_url, "GET", "/_local/faults")
    cleared = raw_request(open_server.base_url, "POST", "/_local/faults", {})

    assert posted.status == 200
    assert posted.json()["remaining"] == 2
    assert api.status == 502
    assert current.json()["remaining"] == 1
    assert cleared.json() == {}


def test_constructor_faults(open_server: LocalKlaviyoServer) -> None:
    with LocalKlaviyoServer(port=0, faults={"next": 1, "status": 504}) as server:
        client = make_client(server.base_url)

        with pytest.raises(ServiceException) as raised:
            client.Events.create_event(create_event_body())

    assert raised.value.status == 504


@pytest.mark.parametrize(
    "plan",
    [
        {"status": 503},
        {"next": 1, "fraction": 0.5, "status": 503},
        {"next": 1, "status": 404},
        {"next": 0, "status": 503},
        {"fraction": 1.5, "status": 503},
        {"next": 1},
        {"next": 1, "status": 503, "drop": "after_body"},
        {"next": 1, "drop": "sometimes"},
        {"next": 1, "status": 503, "retry_after": 2},
        {"next": 1, "status": 503, "colour": "red"},
    ],
)
def test_invalid_plans_rejected(open_server: LocalKlaviyoServer, plan: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        parse_fault_plan(plan)
    response = raw_request(open_server.base_url, "POST", "/_local/faults", plan)

    assert response.status == 400
    assert response.json()["errors"][0]["code"] == "invalid"


def test_sdk_sees_injected_429_as_api_exception(
    client: KlaviyoAPI, server: LocalKlaviyoServer
) -> None:
    server.set_faults({"next": 1, "status": 429})

    with pytest.raises(ApiException) as raised:
        client.Events.create_event(create_event_body())

    assert raised.value.status == 429
    assert raised.value.headers["Retry-After"] == "1"


def test_urllib3_retries_dropped_get(open_server: LocalKlaviyoServer) -> None:
    client = make_client(open_server.base_url)
    job = client.Profiles.bulk_import_profiles(import_job_body([{"email": "a@example.com"}]))
    open_server.set_faults({"next": 1, "drop": "after_body"})

    # urllib3's default Retry repeats idempotent requests after a dropped connection.
    read = client.Profiles.get_bulk_import_profiles_job(job.data.id, _request_timeout=5)

    assert read.data.id == job.data.id
    assert [entry["status"] for entry in open_server.requests()] == [202, None, 200]


@pytest.mark.parametrize(
    "plan",
    [
        {"next": 1, "delay_seconds": 0.5},
        {"next": 2, "status": 429, "retry_after": None},
        {"next": 2, "status": 429, "retry_after": 5},
        {"fraction": 0.2, "status": 503, "seed": 3, "paths": ["/api/events"]},
        {"next": 1, "drop": "after_apply"},
    ],
)
def test_stored_plan_round_trips(plan: dict[str, object]) -> None:
    parsed = parse_fault_plan(plan)
    assert parsed is not None

    assert parse_fault_plan(parsed.to_json()) == parsed
