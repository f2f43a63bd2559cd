"""Server life cycle, the command line and the /_local/ inspection endpoints."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from klaviyo_api import KlaviyoAPI

from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from tests.local_klaviyo.payloads import (
    create_event_body,
    make_client,
    numbered_bulk_body,
    profile_body,
    raw_request,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_base_url_is_loopback_without_slash(server: LocalKlaviyoServer) -> None:
    location = urlsplit(server.base_url)

    assert location.scheme == "http"
    assert location.hostname == "127.0.0.1"
    assert location.port == server.port
    assert server.base_url == f"http://127.0.0.1:{server.port}"


def test_start_returns_self_and_stop_closes() -> None:
    server = LocalKlaviyoServer(port=0)

    assert server.start() is server
    port = server.port
    server.stop()
    server.stop()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_base_url_before_start_raises() -> None:
    with pytest.raises(RuntimeError):
        _ = LocalKlaviyoServer(port=0).base_url


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError):
        LocalKlaviyoServer(time_scale=0)
    with pytest.raises(ValueError):
        LocalKlaviyoServer(job_steps=-1)
    with pytest.raises(ValueError):
        LocalKlaviyoServer(faults={"next": 1})


def test_stop_closes_keep_alive_connections() -> None:
    server = LocalKlaviyoServer(port=0).start()
    client = make_client(server.base_url)
    client.Events.create_event(create_event_body())

    server.stop()

    with pytest.raises(Exception):  # noqa: B017 - urllib3 raises one of several errors.
        client.Events.create_event(create_event_body(unique_id="late"), _request_timeout=2)


def test_local_endpoints_return_store(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    client.Events.bulk_create_events(numbered_bulk_body(2))
    client.Profiles.create_or_update_profile(profile_body({"email": "zoe@example.com"}))

    events = raw_request(server.base_url, "GET", "/_local/events").json()
    profiles = raw_request(server.base_url, "GET", "/_local/profiles").json()
    requests = raw_request(server.base_url, "GET", "/_local/requests").json()

    assert events == server.events()
    assert [event["unique_id"] for event in events] == ["order-0", "order-1"]
    assert set(events[0]) >= {
        "metric",
        "profile",
        "properties",
        "time",
        "value",
        "value_currency",
        "unique_id",
        "backfill",
    }
    assert profiles == server.profiles()
    assert len(profiles) == 3
    assert [(entry["method"], entry["path"], entry["status"]) for entry in requests] == [
        ("POST", "/api/event-bulk-create-jobs", 202),
        ("POST", "/api/profile-import", 201),
    ]
    assert requests[0]["events"] == 2
    assert isinstance(requests[0]["time"], float)


def test_reset_over_http_clears_everything(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    client.Events.create_event(create_event_body())
    server.set_faults({"next": 5, "status": 503})

    response = raw_request(server.base_url, "POST", "/_local/reset")

    assert response.status == 200
    assert server.events() == []
    assert server.profiles() == []
    assert server.requests() == []
    assert raw_request(server.base_url, "GET", "/_local/faults").json() == {}


def test_unknown_local_path_gives_404(server: LocalKlaviyoServer) -> None:
    assert raw_request(server.base_url, "GET", "/_local/nothing").status == 404


def test_returned_records_are_copies(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    client.Events.create_event(create_event_body())

    server.events()[0]["properties"]["OrderId"] = "changed"

    assert server.events()[0]["properties"]["OrderId"] == "1001"


def test_cli_prints_url_and_serves(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "klaviyo_pipeline.local_klaviyo",
            "--port",
            "0",
            "--time-scale",
            "60",
            "--job-steps",
            "0",
            "--fault-next",
            "1",
            "--fault-status",
            "503",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        client = make_client(base_url)
        faulted = raw_request(base_url, "POST", "/api/events", create_event_body())
        client.Events.create_event(create_event_body())
        events = raw_request(base_url, "GET", "/_local/events").json()
    finally:
        process.send_signal(signal.SIGTERM)
        remaining_stdout, stderr = process.communicate(timeout=10)

    location = urlsplit(base_url)
    assert base_url == f"http://127.0.0.1:{location.port}"
    assert faulted.status == 503
    assert len(events) == 1
    assert remaining_stdout == ""
    assert process.returncode == 0
    assert "stopped" in stderr
