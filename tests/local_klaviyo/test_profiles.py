"""Profile import through the real SDK: create or update, matching, null semantics, 409."""

import json
from typing import Any

import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException, BadRequestException
from openapi_client.models import PostProfileResponse

from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from tests.local_klaviyo.payloads import first_error, profile_body, raw_request


def upsert(client: KlaviyoAPI, attributes: dict[str, Any], **data: Any) -> tuple[int, Any]:
    """Send profile-import and return the status code and the typed response."""
    response = client.Profiles.create_or_update_profile_with_http_info(
        profile_body(attributes, **data)
    )
    return response.status_code, response.data


def test_new_profile_returns_201(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    status, response = upsert(
        client,
        {
            "email": "ann@example.com",
            "phone_number": "+15005550006",
            "external_id": "cust-1",
            "first_name": "Ann",
            "location": {"city": "Boston", "zip": "02110"},
            "properties": {"ltv": 12.5, "vip": True},
        },
    )

    assert status == 201
    assert isinstance(response, PostProfileResponse)
    attributes = response.data.attributes
    assert attributes.email == "ann@example.com"
    assert attributes.phone_number == "+15005550006"
    assert attributes.first_name == "Ann"
    assert attributes.location.city == "Boston"
    assert attributes.properties == {"ltv": 12.5, "vip": True}
    assert response.data.links.var_self.endswith(f"/api/profiles/{response.data.id}/")
    assert server.profiles()[0]["id"] == response.data.id


def test_existing_profile_returns_200(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    _, created = upsert(client, {"email": "ann@example.com"})

    status, updated = upsert(client, {"email": "ann@example.com", "first_name": "Ann"})

    assert status == 200
    assert updated.data.id == created.data.id
    assert len(server.profiles()) == 1


def test_plain_method_returns_typed_model(client: KlaviyoAPI) -> None:
    response = client.Profiles.create_or_update_profile(profile_body({"email": "a@example.com"}))

    assert isinstance(response, PostProfileResponse)
    assert response.data.attributes.created is not None


def test_email_match_ignores_case(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    upsert(client, {"email": "Ann@Example.com"})

    status, _ = upsert(client, {"email": "ann@example.com", "last_name": "Lee"})

    assert status == 200
    assert len(server.profiles()) == 1


def test_null_clears_missing_keeps(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    upsert(
        client,
        {
            "email": "ann@example.com",
            "first_name": "Ann",
            "last_name": "Lee",
            "properties": {"coupon": "X1", "tier": "gold"},
            "location": {"city": "Boston", "region": "MA"},
        },
    )

    upsert(
        client,
        {
            "email": "ann@example.com",
            "last_name": None,
            "properties": {"coupon": None},
            "location": {"city": None},
        },
    )

    profile = server.profiles()[0]
    assert profile["first_name"] == "Ann"
    assert profile["last_name"] is None
    assert profile["properties"] == {"tier": "gold"}
    assert profile["location"] == {"region": "MA"}


def test_null_object_clears_all_keys(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    upsert(client, {"email": "ann@example.com", "properties": {"a": 1}, "location": {"city": "X"}})
    body = profile_body({"email": "ann@example.com", "properties": None, "location": None})

    # SDK 25.0.0 drops "location": null from the body, so this request goes out raw.
    response = raw_request(server.base_url, "POST", "/api/profile-import", body)

    assert response.status == 200
    profile = server.profiles()[0]
    assert profile["properties"] == {}
    assert profile["location"] == {}


def test_phone_adds_to_email_profile(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    upsert(client, {"email": "ann@example.com"})

    status, _ = upsert(client, {"email": "ann@example.com", "phone_number": "+14155552671"})
    phone_status, _ = upsert(client, {"phone_number": "+14155552671", "first_name": "Ann"})

    assert status == 200
    assert phone_status == 200
    profiles = server.profiles()
    assert len(profiles) == 1
    assert profiles[0]["phone_number"] == "+14155552671"
    assert profiles[0]["first_name"] == "Ann"


def test_identifiers_of_two_profiles_give_409(
    client: KlaviyoAPI, server: LocalKlaviyoServer
) -> None:
    upsert(client, {"email": "ann@example.com"})
    _, phone_profile = upsert(client, {"phone_number": "+14155552671"})

    with pytest.raises(ApiException) as raised:
        upsert(client, {"email": "ann@example.com", "phone_number": "+14155552671"})

    assert raised.value.status == 409
    error = first_error(raised.value)
    assert error["code"] == "duplicate_profile"
    assert error["source"]["pointer"] == "/data/attributes"
    assert error["meta"]["duplicate_profile_id"] == phone_profile.data.id
    assert [profile["phone_number"] for profile in server.profiles()] == [None, "+14155552671"]


def test_external_id_finds_profile_without_email(
    client: KlaviyoAPI, server: LocalKlaviyoServer
) -> None:
    _, created = upsert(client, {"external_id": "cust-1"})

    status, updated = upsert(client, {"external_id": "cust-1", "email": "ann@example.com"})

    assert status == 200
    assert updated.data.id == created.data.id
    assert len(server.profiles()) == 1


def test_external_id_does_not_merge(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    upsert(client, {"external_id": "cust-1", "email": "ann@example.com"})

    status, _ = upsert(client, {"external_id": "cust-1", "email": "bob@example.com"})
    conflict_status, _ = upsert(client, {"external_id": "cust-2", "email": "ann@example.com"})

    assert status == 201
    assert conflict_status == 200
    profiles = server.profiles()
    assert [profile["external_id"] for profile in profiles] == ["cust-2", "cust-1"]
    assert [profile["email"] for profile in profiles] == ["ann@example.com", "bob@example.com"]


def test_patch_properties_append_and_unset(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    upsert(client, {"email": "ann@example.com", "properties": {"tags": ["a"], "old": 1}})

    upsert(
        client,
        {"email": "ann@example.com"},
        meta={"patch_properties": {"append": {"tags": "b"}, "unset": "old"}},
    )

    assert server.profiles()[0]["properties"] == {"tags": ["a", "b"]}


def test_profile_needs_identifier(client: KlaviyoAPI) -> None:
    with pytest.raises(BadRequestException) as raised:
        upsert(client, {"first_name": "Ann"})

    assert first_error(raised.value)["source"]["pointer"] == "/data/attributes"


def test_invalid_phone_alone_rejected(client: KlaviyoAPI) -> None:
    with pytest.raises(BadRequestException) as raised:
        upsert(client, {"phone_number": "+1415555"})

    assert first_error(raised.value)["source"]["pointer"] == "/data/attributes/phone_number"


def test_profile_over_100_kb_gives_413(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    properties = {f"p{index}": "x" * 1_000 for index in range(110)}

    with pytest.raises(ApiException) as raised:
        upsert(client, {"email": "ann@example.com", "properties": properties})

    assert raised.value.status == 413
    assert first_error(raised.value)["code"] == "payload_too_large"
    assert server.profiles() == []


def test_sparse_fields_limit_attributes(client: KlaviyoAPI) -> None:
    response = client.Profiles.create_or_update_profile(
        profile_body({"email": "ann@example.com", "first_name": "Ann"}),
        fields_profile=["email"],
    )

    # With sparse fields the SDK returns a dict instead of a model.
    assert response["data"]["attributes"] == {"email": "ann@example.com"}


def test_response_json_lists_all_fields(client: KlaviyoAPI) -> None:
    response = client.Profiles.create_or_update_profile_with_http_info(
        profile_body({"email": "ann@example.com"})
    )

    attributes = json.loads(response.raw_data)["data"]["attributes"]
    assert set(attributes) == {
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
    }
