"""Request bodies in the shape the klaviyo-api SDK sends, and raw HTTP helpers."""

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException

API_KEY = "pk_test"
SDK_HEADERS = {
    "Authorization": f"Klaviyo-API-Key {API_KEY}",
    "revision": "2026-10-15",
    "Accept": "application/vnd.api+json",
    "Content-Type": "application/vnd.api+json",
}
EVENT_TIME = "2025-05-01T12:30:15+00:00"
BULK_EVENTS_POINTER = "/data/attributes/events-bulk-create/data"


def make_client(base_url: str, max_retries: int = 1) -> KlaviyoAPI:
    """Build an SDK client; ``max_retries`` counts attempts, so 1 means no retry."""
    return KlaviyoAPI(API_KEY, test_host=base_url, max_retries=max_retries)


def event_attributes(
    metric: str = "Placed Order",
    unique_id: str | None = "order-1",
    time: str | None = EVENT_TIME,
    properties: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build the attributes of one event without its profile."""
    attributes: dict[str, Any] = {
        "properties": {"OrderId": "1001"} if properties is None else properties,
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
    }
    if time is not None:
        attributes["time"] = time
    if unique_id is not None:
        attributes["unique_id"] = unique_id
    attributes.update(extra)
    return attributes


def create_event_body(profile: dict[str, Any] | None = None, **event: Any) -> dict[str, Any]:
    """Build a ``POST /api/events`` body for one event."""
    attributes = event_attributes(**event)
    profile_attributes = {"email": "ann@example.com"} if profile is None else profile
    attributes["profile"] = {"data": {"type": "profile", "attributes": profile_attributes}}
    return {"data": {"type": "event", "attributes": attributes}}


def bulk_body(groups: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> dict[str, Any]:
    """Build a ``POST /api/event-bulk-create-jobs`` body from (profile, events) groups."""
    items = [
        {
            "type": "event-bulk-create",
            "attributes": {
                "profile": {"data": {"type": "profile", "attributes": profile}},
                "events": {"data": [{"type": "event", "attributes": event} for event in events]},
            },
        }
        for profile, events in groups
    ]
    return {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {"events-bulk-create": {"data": items}},
        }
    }


def numbered_bulk_body(count: int, prefix: str = "order") -> dict[str, Any]:
    """Build a bulk body of ``count`` events, one profile each, with distinct unique_ids."""
    return bulk_body(
        [
            (
                {"email": f"user{index}@example.com"},
                [event_attributes(unique_id=f"{prefix}-{index}")],
            )
            for index in range(count)
        ]
    )


def profile_body(attributes: dict[str, Any], **data: Any) -> dict[str, Any]:
    """Build a ``POST /api/profile-import`` body."""
    return {"data": {"type": "profile", "attributes": attributes, **data}}


def import_job_body(rows: list[dict[str, Any]], list_ids: tuple[str, ...] = ()) -> dict[str, Any]:
    """Build a ``POST /api/profile-bulk-import-jobs`` body from profile attribute rows."""
    data: dict[str, Any] = {
        "type": "profile-bulk-import-job",
        "attributes": {
            "profiles": {"data": [{"type": "profile", "attributes": row} for row in rows]}
        },
    }
    if list_ids:
        data["relationships"] = {
            "lists": {"data": [{"type": "list", "id": list_id} for list_id in list_ids]}
        }
    return {"data": data}


def first_error(error: ApiException) -> dict[str, Any]:
    """Return the first JSON:API error object of an SDK exception's body."""
    return json.loads(error.body)["errors"][0]


@dataclass
class RawResponse:
    """Status, headers and body bytes of a raw HTTP response."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        """Decode the body as JSON."""
        return json.loads(self.body)


def raw_request(
    base_url: str,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> RawResponse:
    """Send one request with exactly the given path and headers, bypassing the SDK.

    ``headers`` defaults to the SDK's headers. A dict or list body is JSON-encoded.
    """
    location = urlsplit(base_url)
    connection = http.client.HTTPConnection(location.hostname, location.port, timeout=10)
    payload = json.dumps(body).encode() if isinstance(body, dict | list) else body
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (SDK_HEADERS if headers is None else headers).items():
            connection.putheader(name, value)
        if payload is not None:
            connection.putheader("Content-Length", str(len(payload)))
        connection.endheaders(payload)
        response = connection.getresponse()
        return RawResponse(status=response.status, headers=response.headers, body=response.read())
    finally:
        connection.close()
