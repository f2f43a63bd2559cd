"""Profile bulk import bodies: one profile resource per record, batches by count and size.

Bodies are encoded as in ``event_bodies``: compact UTF-8 JSON, sent as it is, so sizes are
the lengths of the bytes sent. Klaviyo limits a job to 10,000 profiles and 5 MB, and a
profile to 100 KB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd

from klaviyo_pipeline import settings
from klaviyo_pipeline.outcomes import Reason, Status
from klaviyo_pipeline.sync.event_bodies import PayloadError, parse_json_object
from klaviyo_pipeline.sync.pointers import PointerTarget, parse_pointer
from klaviyo_pipeline.sync.values import optional_text

PROFILE_COLUMNS = (
    "record_id",
    "row_id",
    "email",
    "phone_number",
    "external_id",
    "profile_key",
    "attributes",
    "content_hash",
)
IDENTIFIERS = ("email", "phone_number", "external_id")
_PROFILES_PREFIX = ("data", "attributes", "profiles", "data")
_SEPARATOR_BYTES = 1
BODY_OPEN = b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":['
BODY_CLOSE = b"]}}}}"
EMPTY_BODY_BYTES = len(BODY_OPEN) + len(BODY_CLOSE)


@dataclass
class ProfilePayloads:
    """Profile resources of all records of a partition.

    Attributes:
        profiles: Profile resource per record position; None for records with an error.
        encoded: The same resources encoded as JSON.
        profile_bytes: Length of each encoded resource.
        keys: Profile key per record position.
        errors: Records whose payload could not be built or is over 100 KB.
    """

    profiles: list[dict[str, Any] | None] = field(default_factory=list)
    encoded: list[bytes | None] = field(default_factory=list)
    profile_bytes: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    errors: list[PayloadError] = field(default_factory=list)


def profile_import_resource(record: dict[str, Any], attributes: dict[str, Any]) -> dict[str, Any]:
    """Build one profile resource: the identifiers, then the other attributes.

    Absent and empty identifiers are left out rather than sent as null or "", because a
    null clears the field on the profile.
    """
    merged = {name: str(record[name]) for name in IDENTIFIERS if optional_text(record.get(name))}
    for name, value in attributes.items():
        if name not in merged:
            merged[name] = value
    return {"type": "profile", "attributes": merged}


def build_profile_payloads(records: pd.DataFrame) -> ProfilePayloads:
    """Build the profile resource of every record and measure its size."""
    payloads = ProfilePayloads()
    for position, record in enumerate(records[list(PROFILE_COLUMNS)].to_dict("records")):
        if not any(optional_text(record.get(name)) for name in IDENTIFIERS):
            detail = "no email, phone_number or external_id"
            _add_error(payloads, position, Reason.NO_IDENTIFIER, detail, record, Status.SKIPPED)
            continue
        try:
            attributes = parse_json_object(record["attributes"]) or {}
        except ValueError as error:
            reason, detail = Reason.MAPPING_FAILED, f"invalid attributes JSON: {error}"
            _add_error(payloads, position, reason, detail, record)
            continue
        profile = profile_import_resource(record, attributes)
        encoded = orjson.dumps(profile)
        size = len(encoded)
        if size > settings.MAX_PROFILE_BYTES:
            detail = f"the profile is {size} bytes, over Klaviyo's limit of 100 KB"
            _add_error(payloads, position, Reason.RECORD_TOO_LARGE, detail, record)
            continue
        payloads.profiles.append(profile)
        payloads.encoded.append(encoded)
        payloads.profile_bytes.append(size)
        payloads.keys.append(str(record["profile_key"]))
    return payloads


def _add_error(
    payloads: ProfilePayloads,
    position: int,
    reason: str,
    detail: str,
    record: dict[str, Any],
    status: str = Status.REJECTED.value,
) -> None:
    payloads.errors.append(PayloadError(position, str(reason), detail, str(status)))
    payloads.profiles.append(None)
    payloads.encoded.append(None)
    payloads.profile_bytes.append(0)
    payloads.keys.append(str(record["profile_key"]))


def plan_profile_batches(
    positions: list[int], payloads: ProfilePayloads, max_profiles: int, max_bytes: int
) -> list[list[int]]:
    """Split positions into jobs within the profile count and body size limits.

    A job never contains two records of the same profile key, because the order in which
    Klaviyo applies them inside one job is not documented. A repeated key starts a new
    job, and jobs run one after another, so the later record is applied last.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    keys: set[str] = set()
    size = EMPTY_BODY_BYTES
    for position in positions:
        added = payloads.profile_bytes[position] + (_SEPARATOR_BYTES if current else 0)
        full = len(current) >= max_profiles or size + added > max_bytes
        if current and (full or payloads.keys[position] in keys):
            batches.append(current)
            current, keys, size = [], set(), EMPTY_BODY_BYTES
            added = payloads.profile_bytes[position]
        current.append(position)
        keys.add(payloads.keys[position])
        size += added
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class ProfileBody:
    """An encoded import body and the record position of each profile, in body order."""

    body: bytes
    positions: list[int]


def build_profile_body(positions: list[int], payloads: ProfilePayloads) -> ProfileBody:
    """Build the encoded import body of one job."""
    profiles = b",".join(payloads.encoded[position] for position in positions)  # type: ignore[misc]
    return ProfileBody(BODY_OPEN + profiles + BODY_CLOSE, list(positions))


def map_profile_pointer(pointer: str | None, body: ProfileBody) -> PointerTarget | None:
    """Map ``/data/attributes/profiles/data/{i}...`` to the record of profile ``i``."""
    parts = parse_pointer(pointer)
    if parts is None or tuple(parts[:4]) != _PROFILES_PREFIX or len(parts) < 5:
        return None
    if not parts[4].isdigit() or int(parts[4]) >= len(body.positions):
        return None
    return PointerTarget([body.positions[int(parts[4])]], exact=True)


def match_original_payload(
    payload: dict[str, Any] | None, body: ProfileBody, payloads: ProfilePayloads
) -> PointerTarget | None:
    """Find the record of an import error by the identifiers in its original payload.

    Returns:
        The target if exactly one profile of the job has the same identifiers, else None.
    """
    if not payload:
        return None
    expected = {name: payload.get(name) for name in IDENTIFIERS if payload.get(name)}
    if not expected:
        return None
    matches = []
    for position in body.positions:
        attributes = (payloads.profiles[position] or {}).get("attributes", {})
        if all(attributes.get(name) == value for name, value in expected.items()):
            matches.append(position)
    return PointerTarget(matches, exact=True) if len(matches) == 1 else None
