"""Tests of the SDK client against a recording server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from urllib.parse import parse_qs, urlsplit

import pytest

from klaviyo_pipeline.config import RateLimitConfig
from klaviyo_pipeline.klaviyo import (
    KlaviyoApiError,
    KlaviyoResponseError,
    KlaviyoTransportError,
    RateLimiter,
    SdkKlaviyoClient,
)
from klaviyo_pipeline.sync.event_bodies import build_event_body, build_event_payloads
from tests.sync.recording_server import RecordingServer, Scripted
from tests.sync.records import event_frame, event_row

API_KEY = "pk_test_not_a_real_key"


def make_client(base_url: str, read_timeout: float = 5.0, **options) -> SdkKlaviyoClient:
    return SdkKlaviyoClient(
        API_KEY,
        base_url,
        connect_timeout_seconds=2.0,
        read_timeout_seconds=read_timeout,
        rate_limiter=options.pop("rate_limiter", None),
        **options,
    )


def event_body() -> bytes:
    rows = [
        event_row(1, email="é@example.com", properties={"Name": "Socke ✓"}, value=1.5),
        event_row(2, time="2024-05-01T12:00:00.25Z"),
    ]
    payloads = build_event_payloads(event_frame(rows), backfill=False)
    return build_event_body([0, 1], payloads).body


def job_document(job_id: str | None = "JOB1", status: str = "queued") -> dict:
    data = {
        "type": "profile-bulk-import-job",
        "attributes": {
            "status": status,
            "created_at": "2024-05-01T00:00:00+00:00",
            "total_count": 3,
            "completed_count": 0,
            "failed_count": 1,
        },
        "links": {"self": "http://127.0.0.1/x"},
    }
    if job_id is not None:
        data["id"] = job_id
    return {"data": data, "links": {"self": "http://127.0.0.1/x"}}


@pytest.fixture
def server():
    with RecordingServer() as running:
        yield running


def test_bulk_request_wire_format(server):
    body = event_body()
    make_client(server.base_url).send_event_bulk(body)
    (request,) = server.requests

    assert request.method == "POST"
    assert request.path == "/api/event-bulk-create-jobs"
    assert request.headers["Authorization"] == f"Klaviyo-API-Key {API_KEY}"
    assert request.headers["revision"] == "2026-10-15"
    assert request.headers["Content-Type"] == "application/vnd.api+json"
    assert request.headers["Content-Length"] == str(len(body))
    assert request.body == body
    assert json.loads(request.body)["data"]["type"] == "event-bulk-create-job"


def test_trailing_slash_stripped(server):
    make_client(server.base_url + "/").send_event_bulk(event_body())

    assert server.requests[0].path == "/api/event-bulk-create-jobs"


def test_no_sdk_retry_on_503(server):
    server.add(Scripted(status=503, body={"errors": [{"code": "service_unavailable"}]}))
    client = make_client(server.base_url)
    with pytest.raises(KlaviyoApiError) as raised:
        client.send_event_bulk(event_body())

    assert raised.value.status == 503
    assert len(server.requests) == 1
    assert client.stats.requests == 1


def test_429_reads_retry_after(server):
    error_body = {"errors": [{"id": "1", "code": "throttled", "title": "t", "detail": "slow down"}]}
    server.add(Scripted(status=429, body=error_body, headers={"Retry-After": "2"}))
    client = make_client(server.base_url)
    with pytest.raises(KlaviyoApiError) as raised:
        client.send_event_bulk(event_body())

    assert raised.value.retry_after_seconds == 2
    assert raised.value.first_code == "throttled"
    assert len(server.requests) == 1
    assert client.stats.throttles == 1


def test_400_error_pointer_parsed(server):
    pointer = "/data/attributes/events-bulk-create/data/1/attributes/events/data/0/attributes/time"
    error_body = {
        "errors": [
            {
                "id": "1",
                "status": 400,
                "code": "invalid",
                "title": "Invalid input.",
                "detail": "bad time",
                "source": {"pointer": pointer},
                "meta": {},
            }
        ]
    }
    server.add(Scripted(status=400, body=error_body))
    with pytest.raises(KlaviyoApiError) as raised:
        make_client(server.base_url).send_event_bulk(event_body())

    assert raised.value.status == 400
    assert raised.value.errors[0].pointer == pointer


def test_connection_refused_is_transport_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(KlaviyoTransportError) as raised:
        make_client(f"http://127.0.0.1:{port}").send_event_bulk(event_body())

    assert raised.value.kind == "connection"


def test_read_timeout_is_transport_error(server):
    server.add(Scripted(delay_seconds=1.0))
    with pytest.raises(KlaviyoTransportError) as raised:
        make_client(server.base_url, read_timeout=0.2).send_event_bulk(event_body())

    assert raised.value.kind == "timeout"
    assert len(server.requests) == 1


def test_dropped_connection_is_transport_error(server):
    server.add(Scripted(drop=True))
    with pytest.raises(KlaviyoTransportError) as raised:
        make_client(server.base_url).send_event_bulk(event_body())

    assert raised.value.kind in ("protocol", "connection")
    assert len(server.requests) == 1


def test_event_body_skips_sdk_models(server):
    # Event bodies bypass the SDK's pydantic models for speed; Klaviyo validates them.
    document = json.loads(event_body())
    item = document["data"]["attributes"]["events-bulk-create"]["data"][0]
    item["attributes"]["events"]["data"][0]["attributes"]["unique_id"] = 12345
    client = make_client(server.base_url)
    client.send_event_bulk(json.dumps(document).encode())
    sent = json.loads(server.requests[0].body)
    sent_item = sent["data"]["attributes"]["events-bulk-create"]["data"][0]

    assert len(server.requests) == 1
    assert sent_item["attributes"]["events"]["data"][0]["attributes"]["unique_id"] == 12345
    assert client.stats.requests == 1


def test_import_job_parsed(server):
    server.add(
        Scripted(status=202, body=job_document()),
        Scripted(status=200, body=job_document(status="complete")),
    )
    client = make_client(server.base_url)
    body = {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {
                "profiles": {
                    "data": [{"type": "profile", "attributes": {"email": "a@example.com"}}]
                }
            },
        }
    }
    job = client.create_profile_import_job(json.dumps(body).encode())
    polled = client.get_profile_import_job(job.id)

    assert job.id == "JOB1"
    assert job.status == "queued"
    assert polled.finished
    assert polled.failed_count == 1
    assert server.requests[1].path == "/api/profile-bulk-import-jobs/JOB1"


def test_job_without_id_is_response_error(server):
    server.add(Scripted(status=202, body=job_document(job_id=None)))
    body = {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {
                "profiles": {
                    "data": [{"type": "profile", "attributes": {"email": "a@example.com"}}]
                }
            },
        }
    }
    with pytest.raises(KlaviyoResponseError):
        make_client(server.base_url).create_profile_import_job(json.dumps(body).encode())


def test_error_pages_send_bare_cursor(server):
    next_link = (
        f"{server.base_url}/api/profile-bulk-import-jobs/JOB1/import-errors"
        "?page%5Bcursor%5D=abc%3D123&page%5Bsize%5D=100"
    )
    error = {
        "type": "import-error",
        "id": "e1",
        "attributes": {
            "code": "invalid",
            "title": "Invalid",
            "detail": "bad email",
            "source": {"pointer": "/data/attributes/profiles/data/0/attributes/email"},
            "original_payload": {"email": "bad"},
        },
    }
    server.add(
        Scripted(status=200, body={"data": [error], "links": {"self": "x", "next": next_link}}),
        Scripted(status=200, body={"data": [], "links": {"self": "x", "next": None}}),
    )
    client = make_client(server.base_url)
    first = client.get_profile_import_errors_page("JOB1")
    second = client.get_profile_import_errors_page("JOB1", first.next_cursor)

    assert first.next_cursor == "abc=123"
    assert first.errors[0].pointer == "/data/attributes/profiles/data/0/attributes/email"
    assert first.errors[0].original_payload == {"email": "bad"}
    assert second.next_cursor is None
    query = parse_qs(urlsplit(server.requests[1].path).query)
    assert query["page[cursor]"] == ["abc=123"]
    assert query["page[size]"] == ["100"]


def test_custom_revision_header(server):
    make_client(server.base_url, revision="2023-02-22").send_event_bulk(event_body())

    assert server.requests[0].headers["revision"] == "2023-02-22"


def test_remaining_zero_pauses_limiter(server):
    server.add(
        Scripted(
            headers={"RateLimit-Limit": "150", "RateLimit-Remaining": "0", "RateLimit-Reset": "30"}
        )
    )
    sleeps: list[float] = []
    limiter = RateLimiter(
        {"event_bulk_create": RateLimitConfig(burst=10, steady=150)},
        sleep=lambda seconds: (sleeps.append(seconds), (_ for _ in ()).throw(TimeoutError)),
    )
    client = make_client(server.base_url, rate_limiter=limiter)
    client.send_event_bulk(event_body())
    with pytest.raises(TimeoutError):
        limiter.acquire("event_bulk_create")

    assert sleeps[0] > 29


def test_repr_hides_key(server):
    client = make_client(server.base_url)

    assert API_KEY not in repr(client)
    assert API_KEY not in str(vars(client).get("base_url"))
