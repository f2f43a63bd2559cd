"""Request schemas: stored copies match the SDK, and the compiled checks match jsonschema."""

import copy
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klaviyo_pipeline.local_klaviyo.regenerate_schemas import REQUEST_MODELS, build_request_schema
from klaviyo_pipeline.local_klaviyo.request_schemas import SCHEMA_FILES, load_schema
from klaviyo_pipeline.local_klaviyo.schema_validator import SchemaCompileError, compile_schema
from tests.local_klaviyo.payloads import (
    bulk_body,
    create_event_body,
    event_attributes,
    import_job_body,
    profile_body,
)

VALID_BODIES: dict[str, Any] = {
    "create_event": create_event_body(value=1.5, properties={"a": [1, {"b": None}]}),
    "bulk_create_events": bulk_body(
        [({"email": "a@example.com", "location": {"latitude": 1}}, [event_attributes()])]
    ),
    "create_or_update_profile": profile_body(
        {"email": "a@example.com", "properties": {"x": 1}},
        meta={"patch_properties": {"unset": ["y"]}},
    ),
    "bulk_import_profiles": import_job_body([{"email": "a@example.com"}], list_ids=("L1",)),
}


@pytest.mark.parametrize("route", sorted(SCHEMA_FILES))
def test_stored_schema_matches_installed_sdk(route: str) -> None:
    assert load_schema(route) == build_request_schema(REQUEST_MODELS[route])


@pytest.mark.parametrize("route", sorted(SCHEMA_FILES))
def test_valid_body_passes(route: str) -> None:
    assert compile_schema(load_schema(route))(VALID_BODIES[route]) is None


def test_unknown_keyword_fails_compile() -> None:
    with pytest.raises(SchemaCompileError):
        compile_schema({"type": "string", "maxLength": 3})


def test_violation_path_and_message() -> None:
    check = compile_schema(load_schema("bulk_create_events"))
    body = copy.deepcopy(VALID_BODIES["bulk_create_events"])
    group = body["data"]["attributes"]["events-bulk-create"]["data"][0]
    group["attributes"]["events"]["data"][0]["attributes"]["value"] = "12"

    violation = check(body)

    assert violation is not None
    assert violation.path == [
        "data",
        "attributes",
        "events-bulk-create",
        "data",
        0,
        "attributes",
        "events",
        "data",
        0,
        "attributes",
        "value",
    ]
    assert "string" in violation.message


@pytest.mark.parametrize("value", [True, False])
def test_boolean_is_not_a_number(value: bool) -> None:
    check = compile_schema({"type": "number"})

    assert check(value) is not None


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-10, max_value=10),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["event", "metric", "profile", "list", "x"]),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["data", "type", "id", "name"]), children, max_size=3)
    ),
    max_leaves=6,
)


def member_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """List the paths of every member inside a JSON value."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths.extend(member_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths.extend(member_paths(item, (*prefix, index)))
    return paths


def replace_at(value: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    if not path:
        return replacement
    target = value
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    return value


@settings(max_examples=150, deadline=None, database=None)
@given(
    route=st.sampled_from(sorted(SCHEMA_FILES)),
    choice=st.integers(min_value=0, max_value=10_000),
    replacement=JSON_VALUES,
)
def test_compiled_check_agrees_with_jsonschema(route: str, choice: int, replacement: Any) -> None:
    schema = load_schema(route)
    body = copy.deepcopy(VALID_BODIES[route])
    paths = member_paths(body)
    path = paths[choice % len(paths)]
    mutated = replace_at(body, path, replacement)

    violation = compile_schema(schema)(mutated)
    reference_errors = list(jsonschema.Draft202012Validator(schema).iter_errors(mutated))

    assert (violation is None) == (not reference_errors)
    if violation is not None:
        reference_paths = {
            tuple(part for part in error.absolute_path) for error in _flatten(reference_errors)
        }
        assert any(
            tuple(violation.path)[: len(reference)] == reference for reference in reference_paths
        )


def _flatten(errors: list[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    flattened = []
    for error in errors:
        flattened.append(error)
        flattened.extend(_flatten(list(error.context or [])))
    return flattened
