"""Handlers of the Klaviyo endpoints: validate a decoded request, apply it, build the response.

Each handler takes the account and an ``ApiRequest`` that already passed authentication,
the revision and content-type checks and rate limiting (see http_server.py), and returns an
``ApiResponse`` or raises ``ApiError``.
"""

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from klaviyo_pipeline.local_klaviyo import limits
from klaviyo_pipeline.local_klaviyo.account import Account, EventGroup
from klaviyo_pipeline.local_klaviyo.errors import ApiError, invalid
from klaviyo_pipeline.local_klaviyo.jobs import ImportRow, ImportRowError
from klaviyo_pipeline.local_klaviyo.profiles import LOCATION_FIELDS
from klaviyo_pipeline.local_klaviyo.request_schemas import validate_request_body
from klaviyo_pipeline.local_klaviyo.rules import parse_event, parse_profile

_BULK_EVENTS_POINTER = "/data/attributes/events-bulk-create/data"
_IMPORT_ROWS_POINTER = "/data/attributes/profiles/data"

PROFILE_RESPONSE_FIELDS = (
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
    "created",
    "updated",
    "last_event_date",
    "location",
    "properties",
    *(f"location.{name}" for name in LOCATION_FIELDS),
    "subscriptions",
    "predictive_analytics",
)
JOB_FIELDS = (
    "completed_at",
    "completed_count",
    "created_at",
    "expires_at",
    "failed_count",
    "id",
    "started_at",
    "status",
    "total_count",
)
LIST_FIELDS = ("created", "id", "name", "opt_in_process", "updated")
IMPORT_ERROR_FIELDS = (
    "code",
    "detail",
    "id",
    "original_payload",
    "source",
    "source.pointer",
    "title",
)


@dataclass
class ApiRequest:
    """A decoded request to one endpoint.

    Attributes:
        route: Route name, such as ``bulk_create_events``.
        path_params: Values captured from the path, such as ``job_id``.
        query: Decoded query parameters, each name with its values in order.
        body: Decoded JSON body, or None for GET.
        body_size: Body size in bytes after decompression.
        received_at: Time the request was received, in UTC.
        base_url: Server base URL without a trailing slash.
        path: Request path as sent, without the query string.
    """

    route: str
    path_params: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    body_size: int
    received_at: datetime
    base_url: str
    path: str


@dataclass
class ApiResponse:
    """Response of one endpoint.

    Attributes:
        status: HTTP status code.
        body: JSON-serializable body, or None for an empty body.
        log: Extra fields for the request log, such as event counts.
    """

    status: int
    body: Any = None
    log: dict[str, Any] = field(default_factory=dict)


def query_value(request: ApiRequest, name: str) -> str | None:
    """Return the single value of a query parameter or None, and reject a repeated one."""
    values = request.query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise invalid(f"Query parameter {name} is given {len(values)} times.", parameter=name)
    return values[0]


def sparse_fields(request: ApiRequest, name: str, allowed: tuple[str, ...]) -> list[str] | None:
    """Parse a ``fields[...]`` parameter (comma-separated names) against its allowed names."""
    value = query_value(request, name)
    if value is None:
        return None
    names = [item.strip() for item in value.split(",") if item.strip()]
    unknown = [item for item in names if item not in allowed]
    if unknown or not names:
        raise invalid(
            f"{unknown or value!r} is not a valid field for {name}. Allowed: {', '.join(allowed)}.",
            parameter=name,
        )
    return names


def create_event(account: Account, request: ApiRequest) -> ApiResponse:
    """Handle ``POST /api/events``: one event, 202 with an empty body."""
    validate_request_body("create_event", request.body)
    attributes = request.body["data"]["attributes"]
    profile = parse_profile(
        attributes["profile"]["data"],
        "/data/attributes/profile/data",
        max_bytes=limits.MAX_EVENT_PROFILE_BYTES,
    )
    event = parse_event(attributes, "/data", profile, request.received_at)
    result = account.ingest_events(
        [(profile, [event])], request.received_at, request.route, reject_repeated_keys=False
    )
    return ApiResponse(
        status=202,
        log={
            "events": result.received,
            "stored": result.stored,
            "duplicates": result.duplicates,
            "ignored_phone_numbers": int(profile.ignored_phone_number),
        },
    )


def bulk_create_events(account: Account, request: ApiRequest) -> ApiResponse:
    """Handle ``POST /api/event-bulk-create-jobs``: up to 1,000 events, 202 with no body."""
    validate_request_body("bulk_create_events", request.body)
    items = request.body["data"]["attributes"]["events-bulk-create"]["data"]
    event_count = sum(len(item["attributes"]["events"]["data"]) for item in items)
    if event_count == 0:
        raise invalid("The request contains no events.", pointer=_BULK_EVENTS_POINTER)
    if event_count > limits.MAX_EVENTS_PER_BULK_REQUEST:
        raise invalid(
            f"The request contains {event_count} events, but at most "
            f"{limits.MAX_EVENTS_PER_BULK_REQUEST:,} are allowed per request.",
            pointer=_BULK_EVENTS_POINTER,
        )

    groups: list[EventGroup] = []
    ignored_phone_numbers = 0
    for group_index, item in enumerate(items):
        group_pointer = f"{_BULK_EVENTS_POINTER}/{group_index}"
        group_attributes = item["attributes"]
        profile = parse_profile(
            group_attributes["profile"]["data"],
            f"{group_pointer}/attributes/profile/data",
            max_bytes=limits.MAX_EVENT_PROFILE_BYTES,
        )
        ignored_phone_numbers += int(profile.ignored_phone_number)
        group_backfill = bool(group_attributes.get("backfill"))
        events = [
            parse_event(
                event["attributes"],
                f"{group_pointer}/attributes/events/data/{event_index}",
                profile,
                request.received_at,
                group_backfill=group_backfill,
            )
            for event_index, event in enumerate(group_attributes["events"]["data"])
        ]
        groups.append((profile, events))

    result = account.ingest_events(
        groups, request.received_at, request.route, reject_repeated_keys=True
    )
    return ApiResponse(
        status=202,
        log={
            "events": result.received,
            "stored": result.stored,
            "duplicates": result.duplicates,
            "ignored_phone_numbers": ignored_phone_numbers,
        },
    )


def create_or_update_profile(account: Account, request: ApiRequest) -> ApiResponse:
    """Handle ``POST /api/profile-import``: 201 for a new profile, 200 for an update."""
    if request.body_size > limits.MAX_PROFILE_BYTES:
        raise ApiError(
            status=413,
            code="payload_too_large",
            detail=(
                f"The request body is {request.body_size} bytes, but profile-import allows "
                f"at most {limits.MAX_PROFILE_BYTES} bytes."
            ),
        )
    fields = sparse_fields(request, "fields[profile]", PROFILE_RESPONSE_FIELDS)
    # NOTE: additional-fields[profile] is accepted but adds nothing, because the local
    # server has no subscription or predictive-analytics data.
    sparse_fields(request, "additional-fields[profile]", ("subscriptions", "predictive_analytics"))
    validate_request_body("create_or_update_profile", request.body)
    profile = parse_profile(request.body["data"], "/data", max_bytes=None)

    write = account.upsert_profile(profile, request.received_at)
    attributes = write.attributes
    if fields is not None:
        attributes = _filter_profile_attributes(attributes, fields)
    profile_url = f"{request.base_url}/api/profiles/{write.profile_id}/"
    body = {
        "data": {
            "type": "profile",
            "id": write.profile_id,
            "attributes": attributes,
            "relationships": {
                "lists": {
                    "links": {
                        "self": f"{profile_url}relationships/lists/",
                        "related": f"{profile_url}lists/",
                    }
                },
                "segments": {
                    "links": {
                        "self": f"{profile_url}relationships/segments/",
                        "related": f"{profile_url}segments/",
                    }
                },
            },
            "links": {"self": profile_url},
        },
        "links": {"self": f"{request.base_url}/api/profile-import/"},
    }
    return ApiResponse(
        status=201 if write.created else 200,
        body=body,
        log={"profile_id": write.profile_id, "created": write.created},
    )


def _filter_profile_attributes(attributes: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    filtered: dict[str, Any] = {}
    for name in fields:
        if name.startswith("location."):
            location_field = name.split(".", 1)[1]
            filtered.setdefault("location", {})[location_field] = attributes["location"].get(
                location_field
            )
        elif name in attributes:
            filtered[name] = attributes[name]
    return filtered


def bulk_import_profiles(account: Account, request: ApiRequest) -> ApiResponse:
    """Handle ``POST /api/profile-bulk-import-jobs``: validate rows and queue a job (202)."""
    fields = sparse_fields(request, "fields[profile-bulk-import-job]", JOB_FIELDS)
    validate_request_body("bulk_import_profiles", request.body)
    data = request.body["data"]
    resources = data["attributes"]["profiles"]["data"]
    if not resources:
        raise invalid("The job contains no profiles.", pointer=_IMPORT_ROWS_POINTER)
    if len(resources) > limits.MAX_PROFILES_PER_IMPORT_JOB:
        raise invalid(
            f"The job contains {len(resources):,} profiles, but at most "
            f"{limits.MAX_PROFILES_PER_IMPORT_JOB:,} are allowed per job.",
            pointer=_IMPORT_ROWS_POINTER,
        )
    lists = ((data.get("relationships") or {}).get("lists") or {}).get("data") or []
    list_ids = [item["id"] for item in lists]

    rows = [_import_row(index, resource) for index, resource in enumerate(resources)]
    resource = account.create_job(rows, list_ids, request.received_at, request.base_url, fields)
    failed_rows = sum(1 for row in rows if row.error is not None)
    return ApiResponse(
        status=202,
        body={
            "data": resource,
            "links": {"self": f"{request.base_url}/api/profile-bulk-import-jobs/"},
        },
        log={"profiles": len(rows), "invalid_profiles": failed_rows, "job_id": resource["id"]},
    )


def _import_row(index: int, resource: dict[str, Any]) -> ImportRow:
    """Validate one row of an import job and turn an invalid row into an import error."""
    pointer = f"{_IMPORT_ROWS_POINTER}/{index}"
    original_payload = resource.get("attributes")
    try:
        profile = parse_profile(resource, pointer, max_bytes=limits.MAX_PROFILE_BYTES)
    except ApiError as error:
        return ImportRow(
            index=index,
            original_payload=original_payload,
            error=ImportRowError(
                code=error.code,
                title="Invalid input",
                detail=error.detail,
                pointer=error.pointer or pointer,
                original_payload=original_payload,
            ),
        )
    return ImportRow(index=index, original_payload=original_payload, profile=profile)


def get_bulk_import_profiles_job(account: Account, request: ApiRequest) -> ApiResponse:
    """Handle ``GET /api/profile-bulk-import-jobs/{job_id}``, which advances the job a step."""
    job_fields = sparse_fields(request, "fields[profile-bulk-import-job]", JOB_FIELDS)
    list_fields = sparse_fields(request, "fields[list]", LIST_FIELDS)
    include = sparse_fields(request, "include", ("lists",))
    job_id = request.path_params["job_id"]

    found = account.read_job(job_id, request.received_at, request.base_url, job_fields)
    if found is None:
        raise _job_not_found(job_id)
    resource, list_ids = found
    body: dict[str, Any] = {
        "data": resource,
        "links": {"self": f"{request.base_url}/api/profile-bulk-import-jobs/{job_id}/"},
    }
    if include:
        # NOTE: the server keeps no lists, so included lists have null attributes.
        list_attributes = {"name": None, "created": None, "updated": None, "opt_in_process": None}
        if list_fields is not None:
            list_attributes = {k: v for k, v in list_attributes.items() if k in list_fields}
        body["included"] = [
            {
                "type": "list",
                "id": list_id,
                "attributes": dict(list_attributes),
                "links": {"self": f"{request.base_url}/api/lists/{list_id}/"},
            }
            for list_id in list_ids
        ]
    return ApiResponse(
        status=200,
        body=body,
        log={"job_id": job_id, "job_status": resource["attributes"].get("status")},
    )


def _job_not_found(job_id: str) -> ApiError:
    return ApiError(
        status=404,
        code="not_found",
        detail=f"Bulk profile import job {job_id!r} does not exist.",
        parameter="id",
    )


def encode_cursor(job_id: str, offset: int) -> str:
    """Encode a page cursor: the job id and the offset of the page's first error."""
    raw = f"{job_id}:{offset}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, job_id: str) -> int:
    """Decode a page cursor of ``job_id`` into an offset.

    Raises:
        ApiError: 400 for a cursor that this server did not issue for this job, such as
            a whole ``links.next`` URL passed as the cursor.
    """
    error = invalid(
        "Invalid page cursor. Pass the page[cursor] value from links.next, not the whole URL.",
        parameter="page[cursor]",
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise error from None
    cursor_job_id, _, offset_text = raw.rpartition(":")
    if cursor_job_id != job_id or not offset_text.isdigit():
        raise error
    return int(offset_text)


def get_errors_for_bulk_import_profiles_job(account: Account, request: ApiRequest) -> ApiResponse:
    """Handle ``GET /api/profile-bulk-import-jobs/{id}/import-errors`` with cursor paging."""
    job_id = request.path_params["job_id"]
    fields = sparse_fields(request, "fields[import-error]", IMPORT_ERROR_FIELDS)
    page_size = _page_size(request)
    cursor = query_value(request, "page[cursor]")
    offset = 0 if cursor is None else decode_cursor(cursor, job_id)

    errors = account.job_errors(job_id)
    if errors is None:
        raise _job_not_found(job_id)
    page = errors[offset : offset + page_size]

    errors_url = f"{request.base_url}/api/profile-bulk-import-jobs/{job_id}/import-errors/"
    next_link = None
    if offset + page_size < len(errors):
        next_link = _page_link(errors_url, request, encode_cursor(job_id, offset + page_size))
    previous_link = None
    if offset > 0:
        previous_offset = max(0, offset - page_size)
        previous_link = _page_link(errors_url, request, encode_cursor(job_id, previous_offset))
    self_link = errors_url if cursor is None else _page_link(errors_url, request, cursor)

    return ApiResponse(
        status=200,
        body={
            "data": [_filter_import_error(error.to_resource(), fields) for error in page],
            "links": {"self": self_link, "next": next_link, "prev": previous_link},
        },
        log={"job_id": job_id, "import_errors": len(page)},
    )


def _page_size(request: ApiRequest) -> int:
    value = query_value(request, "page[size]")
    if value is None:
        return limits.IMPORT_ERRORS_DEFAULT_PAGE_SIZE
    maximum = limits.IMPORT_ERRORS_MAX_PAGE_SIZE
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise invalid(
            f"page[size] must be an integer from 1 to {maximum}, got {value!r}.",
            parameter="page[size]",
        )
    return int(value)


def _page_link(url: str, request: ApiRequest, cursor: str) -> str:
    """Build a page URL in Klaviyo's shape: ``...?page%5Bcursor%5D=<token>&...``."""
    parameters: list[tuple[str, str]] = [("page[cursor]", cursor)]
    for name, values in request.query.items():
        if name != "page[cursor]":
            parameters.extend((name, value) for value in values)
    return f"{url}?{urlencode(parameters, quote_via=quote)}"


def _filter_import_error(resource: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if fields is None:
        return resource
    attributes = resource["attributes"]
    filtered: dict[str, Any] = {}
    for name in fields:
        if name == "source.pointer":
            filtered["source"] = {"pointer": attributes["source"]["pointer"]}
        elif name in attributes:
            filtered[name] = attributes[name]
    return {**resource, "attributes": filtered}
