"""Bulk profile import jobs through the real SDK: lifecycle, counts, import errors, paging."""

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import BadRequestException, NotFoundException
from openapi_client.models import (
    GetImportErrorResponseCollection,
    GetProfileImportJobResponseCompoundDocument,
    PostProfileImportJobResponse,
)

from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from tests.local_klaviyo.payloads import first_error, import_job_body, make_client, raw_request

ROWS_POINTER = "/data/attributes/profiles/data"


@pytest.fixture
def instant_server() -> Iterator[LocalKlaviyoServer]:
    """Server whose jobs complete in the POST response."""
    with LocalKlaviyoServer(port=0, job_steps=0) as local_server:
        yield local_server


def start_job(client: KlaviyoAPI, rows: list[dict[str, Any]], **options: Any) -> str:
    response = client.Profiles.bulk_import_profiles(import_job_body(rows, **options))
    assert isinstance(response, PostProfileImportJobResponse)
    return response.data.id


def test_job_moves_queued_processing_complete(
    client: KlaviyoAPI, server: LocalKlaviyoServer
) -> None:
    response = client.Profiles.bulk_import_profiles(
        import_job_body([{"email": "ann@example.com"}, {"email": "bob@example.com"}])
    )
    assert response.data.attributes.status == "queued"
    assert response.data.attributes.total_count == 2
    assert server.profiles() == []

    first = client.Profiles.get_bulk_import_profiles_job(response.data.id)
    second = client.Profiles.get_bulk_import_profiles_job(response.data.id)
    third = client.Profiles.get_bulk_import_profiles_job(response.data.id)

    assert isinstance(first, GetProfileImportJobResponseCompoundDocument)
    assert first.data.attributes.status == "processing"
    assert first.data.attributes.started_at is not None
    assert second.data.attributes.status == "complete"
    assert second.data.attributes.completed_count == 2
    assert second.data.attributes.failed_count == 0
    assert second.data.attributes.completed_at is not None
    assert third.data.attributes.status == "complete"
    assert [profile["email"] for profile in server.profiles()] == [
        "ann@example.com",
        "bob@example.com",
    ]


def test_zero_steps_completes_at_once(instant_server: LocalKlaviyoServer) -> None:
    client = make_client(instant_server.base_url)

    response = client.Profiles.bulk_import_profiles(import_job_body([{"email": "a@example.com"}]))

    assert response.data.attributes.status == "complete"
    assert response.data.attributes.completed_count == 1
    assert len(instant_server.profiles()) == 1


def test_invalid_rows_reported_not_applied(
    instant_server: LocalKlaviyoServer,
) -> None:
    client = make_client(instant_server.base_url)
    rows = [
        {"email": "ann@example.com", "properties": {"tier": "gold"}},
        {"email": "not-an-email"},
        {"phone_number": "+1415555"},
        {"first_name": "No Identifier"},
        {"external_id": "cust-5"},
    ]

    job_id = start_job(client, rows)
    job = client.Profiles.get_bulk_import_profiles_job(job_id)
    errors = client.Profiles.get_errors_for_bulk_import_profiles_job(job_id)

    assert job.data.attributes.total_count == 5
    assert job.data.attributes.completed_count == 2
    assert job.data.attributes.failed_count == 3
    assert isinstance(errors, GetImportErrorResponseCollection)
    pointers = [error.attributes.source.pointer for error in errors.data]
    assert pointers == [
        f"{ROWS_POINTER}/1/attributes/email",
        f"{ROWS_POINTER}/2/attributes/phone_number",
        f"{ROWS_POINTER}/3/attributes",
    ]
    assert [error.attributes.code for error in errors.data] == ["invalid"] * 3
    assert errors.data[0].attributes.original_payload == {"email": "not-an-email"}
    stored = [(profile["email"], profile["external_id"]) for profile in instant_server.profiles()]
    assert stored == [("ann@example.com", None), (None, "cust-5")]


def test_conflicting_row_is_import_error(instant_server: LocalKlaviyoServer) -> None:
    client = make_client(instant_server.base_url)
    start_job(client, [{"email": "ann@example.com"}, {"phone_number": "+14155552671"}])

    job_id = start_job(client, [{"email": "ann@example.com", "phone_number": "+14155552671"}])
    errors = client.Profiles.get_errors_for_bulk_import_profiles_job(job_id)

    assert errors.data[0].attributes.code == "duplicate_profile"
    assert errors.data[0].attributes.source.pointer == f"{ROWS_POINTER}/0/attributes/phone_number"


def test_list_ids_in_job_and_profiles(instant_server: LocalKlaviyoServer) -> None:
    client = make_client(instant_server.base_url)

    job_id = start_job(client, [{"email": "ann@example.com"}], list_ids=("LIST123",))
    job = client.Profiles.get_bulk_import_profiles_job(job_id, include=["lists"])

    assert [item.id for item in job.data.relationships.lists.data] == ["LIST123"]
    assert [item.id for item in job.included] == ["LIST123"]
    assert instant_server.profiles()[0]["list_ids"] == ["LIST123"]


def test_errors_empty_until_complete(client: KlaviyoAPI) -> None:
    job_id = start_job(client, [{"email": "bad"}])

    before = client.Profiles.get_errors_for_bulk_import_profiles_job(job_id)
    client.Profiles.get_bulk_import_profiles_job(job_id)
    client.Profiles.get_bulk_import_profiles_job(job_id)
    after = client.Profiles.get_errors_for_bulk_import_profiles_job(job_id)

    assert before.data == []
    assert len(after.data) == 1


def test_import_errors_paged_by_cursor(instant_server: LocalKlaviyoServer) -> None:
    client = make_client(instant_server.base_url)
    job_id = start_job(client, [{"email": f"bad-{index}"} for index in range(45)])

    pointers = []
    cursor = None
    pages = 0
    while True:
        page = client.Profiles.get_errors_for_bulk_import_profiles_job(
            job_id, page_size=20, page_cursor=cursor
        )
        pages += 1
        pointers.extend(error.attributes.source.pointer for error in page.data)
        if page.links.next is None:
            break
        assert "page%5Bcursor%5D=" in page.links.next
        # The SDK mangles cursor URLs, so the client passes the bare token.
        cursor = parse_qs(urlsplit(page.links.next).query)["page[cursor]"][0]

    assert pages == 3
    assert pointers == [f"{ROWS_POINTER}/{index}/attributes/email" for index in range(45)]
    assert page.links.prev is not None


def test_next_link_shape(instant_server: LocalKlaviyoServer) -> None:
    client = make_client(instant_server.base_url)
    job_id = start_job(client, [{"email": f"bad-{index}"} for index in range(3)])

    page = client.Profiles.get_errors_for_bulk_import_profiles_job(job_id, page_size=2)

    location = urlsplit(page.links.next)
    assert f"{location.scheme}://{location.netloc}" == instant_server.base_url
    assert location.path == f"/api/profile-bulk-import-jobs/{job_id}/import-errors/"
    assert location.query.startswith("page%5Bcursor%5D=")
    assert parse_qs(location.query)["page[size]"] == ["2"]


def test_next_link_can_be_followed(instant_server: LocalKlaviyoServer) -> None:
    client = make_client(instant_server.base_url)
    job_id = start_job(client, [{"email": f"bad-{index}"} for index in range(3)])
    page = client.Profiles.get_errors_for_bulk_import_profiles_job(job_id, page_size=2)
    location = urlsplit(page.links.next)

    response = raw_request(instant_server.base_url, "GET", f"{location.path}?{location.query}")

    assert response.status == 200
    body = response.json()
    assert [error["attributes"]["source"]["pointer"] for error in body["data"]] == [
        f"{ROWS_POINTER}/2/attributes/email"
    ]
    assert body["links"]["next"] is None
    assert body["links"]["prev"] is not None


def test_whole_next_url_as_cursor_rejected(instant_server: LocalKlaviyoServer) -> None:
    client = make_client(instant_server.base_url)
    job_id = start_job(client, [{"email": f"bad-{index}"} for index in range(3)])
    page = client.Profiles.get_errors_for_bulk_import_profiles_job(job_id, page_size=1)

    # SDK 25.0.0 sends a whole http:// URL as the cursor, which the server rejects like
    # any cursor it did not issue.
    with pytest.raises(BadRequestException) as raised:
        client.Profiles.get_errors_for_bulk_import_profiles_job(
            job_id, page_size=1, page_cursor=page.links.next
        )

    assert first_error(raised.value)["source"]["parameter"] == "page[cursor]"


@pytest.mark.parametrize("page_size", ["0", "101", "ten"])
def test_page_size_out_of_range(instant_server: LocalKlaviyoServer, page_size: str) -> None:
    client = make_client(instant_server.base_url)
    job_id = start_job(client, [{"email": "bad"}])

    response = raw_request(
        instant_server.base_url,
        "GET",
        f"/api/profile-bulk-import-jobs/{job_id}/import-errors?page%5Bsize%5D={page_size}",
    )

    assert response.status == 400
    assert response.json()["errors"][0]["source"]["parameter"] == "page[size]"


def test_unknown_job_gives_404(client: KlaviyoAPI) -> None:
    with pytest.raises(NotFoundException):
        client.Profiles.get_bulk_import_profiles_job("01UNKNOWNJOB00000000000000")
    with pytest.raises(NotFoundException):
        client.Profiles.get_errors_for_bulk_import_profiles_job("01UNKNOWNJOB00000000000000")


def test_over_10000_profiles_rejected(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    rows = [{"email": f"u{index}@example.com"} for index in range(10_001)]

    with pytest.raises(BadRequestException) as raised:
        client.Profiles.bulk_import_profiles(import_job_body(rows))

    assert first_error(raised.value)["source"]["pointer"] == ROWS_POINTER
    assert server.requests()[-1]["status"] == 400


def test_10000_profiles_accepted(instant_server: LocalKlaviyoServer) -> None:
    client = make_client(instant_server.base_url)
    rows = [{"email": f"u{index}@example.com"} for index in range(10_000)]

    response = client.Profiles.bulk_import_profiles(import_job_body(rows))

    assert response.data.attributes.completed_count == 10_000
    assert len(instant_server.profiles()) == 10_000


def test_row_over_100_kb_is_import_error(instant_server: LocalKlaviyoServer) -> None:
    client = make_client(instant_server.base_url)
    big = {f"p{index}": "x" * 1_000 for index in range(110)}

    job_id = start_job(client, [{"email": "a@example.com", "properties": big}])
    errors = client.Profiles.get_errors_for_bulk_import_profiles_job(job_id)

    assert errors.data[0].attributes.source.pointer == f"{ROWS_POINTER}/0"
    assert instant_server.profiles() == []


def test_sparse_job_fields_return_dict(client: KlaviyoAPI) -> None:
    job_id = start_job(client, [{"email": "ann@example.com"}])

    job = client.Profiles.get_bulk_import_profiles_job(
        job_id, fields_profile_bulk_import_job=["status"]
    )

    assert job["data"]["attributes"] == {"status": "processing"}
