"""Request body schemas of the served endpoints, loaded from ``schemas/`` and compiled once."""

import functools
import json
from importlib import resources
from typing import Any

from klaviyo_pipeline.local_klaviyo.rules import raise_schema_violation
from klaviyo_pipeline.local_klaviyo.schema_validator import Check, compile_schema

# Route name -> file in schemas/ (see schemas/SOURCE.md).
SCHEMA_FILES: dict[str, str] = {
    "create_event": "create_event.json",
    "bulk_create_events": "bulk_create_events.json",
    "create_or_update_profile": "create_or_update_profile.json",
    "bulk_import_profiles": "bulk_import_profiles.json",
}


def load_schema(route: str) -> dict[str, Any]:
    """Load the JSON Schema of a route's request body."""
    schema_file = (
        resources.files("klaviyo_pipeline.local_klaviyo") / "schemas" / SCHEMA_FILES[route]
    )
    return json.loads(schema_file.read_text(encoding="utf-8"))


@functools.cache
def compiled_check(route: str) -> Check:
    """Return the compiled check of a route's request body, compiling it on first use."""
    return compile_schema(load_schema(route))


def validate_request_body(route: str, body: Any) -> None:
    """Raise 400 ``invalid`` with a pointer if ``body`` does not match the route's schema."""
    violation = compiled_check(route)(body)
    if violation is not None:
        raise_schema_violation(violation)
