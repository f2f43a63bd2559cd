"""Wire behaviour: paths, headers, authentication, content types, payload size, keep-alive."""

import contextlib
import gzip
import http.client
import json
from urllib.parse import urlsplit

import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException, NotFoundException, UnauthorizedException

from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from tests.local_klaviyo.payloads import (
    SDK_HEADERS,
    bulk_body,
    create_event_body,
    event_attributes,
    first_error,
    raw_request,
)


def headers_without(name: str) -> dict[str, str]:
    return {key: value for key, value in SDK_HEADERS.items() if key != name}


def test_trailing_slash_is_tolerated(server: LocalKlaviyoServer) -> None:
    response = raw_request(server.base_url, "POST", "/api/events/", create_event_body())

    assert response.status == 202
    assert len(server.events()) == 1


def test_double_slash_host_gives_404(server: LocalKlaviyoServer) -> None:
    client = KlaviyoAPI("pk_test", test_host=server.base_url + "/", max_retries=1)

    with pytest.raises(NotFoundException):
        client.Events.create_event(create_event_body())

    assert server.requests()[-1]["path"] == "//api/events"
    assert server.events() == []


@pytest.mark.parametrize("path", ["/api//events", "//api/profile-import", "/api/unknown"])
def test_unknown_paths_give_404(server: LocalKlaviyoServer, path: str) -> None:
    response = raw_request(server.base_url, "POST", path, create_event_body())

    assert response.status == 404
    assert response.json()["errors"][0]["code"] == "not_found"


def test_wrong_method_gives_405(server: LocalKlaviyoServer) -> None:
    response = raw_request(server.base_url, "GET", "/api/events")

    assert response.status == 405
    assert response.headers["Allow"] == "POST"


def test_missing_authorization_gives_401(server: LocalKlaviyoServer) -> None:
    response = raw_request(
        server.base_url,
        "POST",
        "/api/events",
        create_event_body(),
        headers_without("Authorization"),
    )

    assert response.status == 401
    error = response.json()["errors"][0]
    assert error["code"] == "not_authenticated"
    assert set(error) >= {"id", "status", "title", "detail", "source", "meta"}
    assert server.events() == []


def test_bearer_token_gives_401(server: LocalKlaviyoServer) -> None:
    client = KlaviyoAPI(None, access_token="oauth-token", test_host=server.base_url, max_retries=1)

    with pytest.raises(UnauthorizedException) as raised:
        client.Events.create_event(create_event_body())

    assert first_error(raised.value)["code"] == "not_authenticated"


@pytest.mark.parametrize("revision", [None, "latest", "2026/10/15"])
def test_missing_or_bad_revision_gives_400(
    server: LocalKlaviyoServer, revision: str | None
) -> None:
    headers = headers_without("revision")
    if revision is not None:
        headers["revision"] = revision

    response = raw_request(server.base_url, "POST", "/api/events", create_event_body(), headers)

    assert response.status == 400
    assert response.json()["errors"][0]["source"]["parameter"] == "revision"


def test_revision_with_suffix_accepted(server: LocalKlaviyoServer) -> None:
    headers = {**SDK_HEADERS, "revision": "2026-10-15.pre"}

    response = raw_request(server.base_url, "POST", "/api/events", create_event_body(), headers)

    assert response.status == 202


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_wrong_content_type_gives_415(server: LocalKlaviyoServer, content_type: str | None) -> None:
    headers = headers_without("Content-Type")
    if content_type is not None:
        headers["Content-Type"] = content_type

    response = raw_request(server.base_url, "POST", "/api/events", create_event_body(), headers)

    assert response.status == 415
    assert response.json()["errors"][0]["code"] == "unsupported_media_type"
    assert server.events() == []


def test_content_type_parameters_accepted(server: LocalKlaviyoServer) -> None:
    headers = {**SDK_HEADERS, "Content-Type": "application/vnd.api+json; charset=utf-8"}

    response = raw_request(server.base_url, "POST", "/api/events", create_event_body(), headers)

    assert response.status == 202


def test_unknown_query_parameter_gives_400(server: LocalKlaviyoServer) -> None:
    response = raw_request(
        server.base_url, "POST", "/api/events?include=profile", create_event_body()
    )

    assert response.status == 400
    assert response.json()["errors"][0]["source"]["parameter"] == "include"


def test_invalid_json_gives_400(server: LocalKlaviyoServer) -> None:
    response = raw_request(server.base_url, "POST", "/api/events", b'{"data": ')

    assert response.status == 400
    assert response.json()["errors"][0]["source"]["pointer"] == "/"


def test_payload_over_5_mb_gives_413(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    big = "x" * (99 * 1024)
    body = bulk_body(
        [
            ({"email": f"u{index}@example.com"}, [event_attributes(properties={"html": big})])
            for index in range(53)
        ]
    )
    assert len(json.dumps(body)) > 5 * 1024 * 1024

    with pytest.raises(ApiException) as raised:
        client.Events.bulk_create_events(body)

    assert raised.value.status == 413
    assert first_error(raised.value)["code"] == "payload_too_large"
    assert server.events() == []


def test_gzip_body_is_decompressed(server: LocalKlaviyoServer) -> None:
    payload = gzip.compress(json.dumps(create_event_body()).encode())
    headers = {**SDK_HEADERS, "Content-Encoding": "gzip"}

    response = raw_request(server.base_url, "POST", "/api/events", payload, headers)

    assert response.status == 202
    assert len(server.events()) == 1


def test_chunked_body_gives_411(server: LocalKlaviyoServer) -> None:
    location = urlsplit(server.base_url)
    connection = http.client.HTTPConnection(location.hostname, location.port, timeout=10)
    try:
        # The server may answer 411 and close before the chunked body is written.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request(
                "POST",
                "/api/events",
                body=iter([json.dumps(create_event_body()).encode()]),
                headers=SDK_HEADERS,
                encode_chunked=True,
            )
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()

    assert response.status == 411
    assert response.headers["Connection"] == "close"


def test_responses_have_length_no_gzip(server: LocalKlaviyoServer) -> None:
    headers = {**SDK_HEADERS, "Accept-Encoding": "gzip"}
    body = {"data": {"type": "profile", "attributes": {"email": "ann@example.com"}}}

    response = raw_request(server.base_url, "POST", "/api/profile-import", body, headers)

    assert response.status == 201
    assert response.headers["Content-Length"] == str(len(response.body))
    assert response.headers.get("Content-Encoding") is None
    assert response.headers["Content-Type"] == "application/vnd.api+json"


def test_keep_alive_serves_many_requests(server: LocalKlaviyoServer) -> None:
    location = urlsplit(server.base_url)
    connection = http.client.HTTPConnection(location.hostname, location.port, timeout=10)
    statuses = []
    try:
        for index in range(3):
            body = json.dumps(create_event_body(unique_id=f"k{index}")).encode()
            connection.request("POST", "/api/events", body=body, headers=SDK_HEADERS)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            assert response.headers.get("Connection") != "close"
        socket_used = connection.sock
        connection.request("GET", "/_local/events")
        events = json.loads(connection.getresponse().read())
        assert connection.sock is socket_used
    finally:
        connection.close()

    assert statuses == [202, 202, 202]
    assert len(events) == 3


def test_sdk_reuses_one_connection(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    for index in range(5):
        client.Events.create_event(create_event_body(unique_id=f"r{index}"))

    pool = client.api_client.rest_client.pool_manager.connection_from_url(server.base_url)
    assert pool.num_connections == 1
    assert len(server.events()) == 5
