"""Regenerate the request schemas in ``schemas/`` from the installed klaviyo-api SDK models.

Run ``python -m klaviyo_pipeline.local_klaviyo.regenerate_schemas`` after upgrading the SDK.
The server itself only reads the JSON files, so it runs without this module's imports.
"""

import argparse
import json
import logging
from importlib import import_module
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SCHEMA_DIRECTORY = Path(__file__).with_name("schemas")

# File name (without .json) -> SDK request model in openapi_client.models.
REQUEST_MODELS: dict[str, str] = {
    "create_event": "EventCreateQueryV2",
    "bulk_create_events": "EventsBulkCreateJob",
    "create_or_update_profile": "ProfileUpsertQuery",
    "bulk_import_profiles": "ProfileImportJobCreateQuery",
}

# Annotation keywords that do not affect validation. ``format`` is dropped too, because the
# server checks ``time`` with its own date-time rules (see rules.py).
_DROPPED_KEYWORDS = frozenset({"description", "title", "default", "examples", "format"})
# Keywords whose value maps names to subschemas, so the names must be kept as they are.
_SCHEMA_MAPS = frozenset({"properties", "$defs"})
_SCHEMA_LISTS = frozenset({"anyOf", "allOf", "oneOf"})


def trim_schema(schema: Any) -> Any:
    """Return a copy of a JSON Schema without annotation keywords.

    Property names such as ``title`` are kept, because only keywords in schema positions
    are dropped.
    """
    if not isinstance(schema, dict):
        return schema
    trimmed: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in _DROPPED_KEYWORDS:
            continue
        if keyword in _SCHEMA_MAPS:
            trimmed[keyword] = {name: trim_schema(sub) for name, sub in value.items()}
        elif keyword in _SCHEMA_LISTS:
            trimmed[keyword] = [trim_schema(sub) for sub in value]
        else:
            trimmed[keyword] = trim_schema(value)
    return trimmed


def build_request_schema(model_name: str) -> dict[str, Any]:
    """Build the trimmed JSON Schema of one SDK request model."""
    models = import_module("openapi_client.models")
    model = getattr(models, model_name)
    return trim_schema(model.model_json_schema(by_alias=True))


def sdk_version() -> str:
    """Return the installed klaviyo-api version."""
    from importlib.metadata import version

    return version("klaviyo-api")


def write_schemas(directory: Path = SCHEMA_DIRECTORY) -> list[Path]:
    """Write one trimmed schema file per request model and return the paths written."""
    written = []
    for file_stem, model_name in REQUEST_MODELS.items():
        path = directory / f"{file_stem}.json"
        schema = build_request_schema(model_name)
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
        logger.info("Wrote %s from %s (klaviyo-api %s)", path, model_name, sdk_version())
    return written


def main() -> None:
    """Parse the command line and write the schema files."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--directory",
        type=Path,
        default=SCHEMA_DIRECTORY,
        help="directory to write the schema files to (default: the package's schemas/)",
    )
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    write_schemas(arguments.directory)


if __name__ == "__main__":
    main()
