"""Builders of event and profile record frames in the records builder's output format."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

PARTITION = "2024-05-01"


def _content_hash(values: dict[str, Any]) -> str:
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _default_profile_key(email: str | None, phone: str | None, external_id: str | None) -> str:
    return f"email:{email}" if email else f"key:{phone or external_id}"


def event_row(
    row_id: int,
    *,
    email: str | None = None,
    phone_number: str | None = None,
    external_id: str | None = None,
    metric: str = "Placed Order",
    unique_id: str | None = None,
    time: str = "2024-05-01T12:00:00+00:00",
    value: float = float("nan"),
    value_currency: str | None = None,
    properties: dict[str, Any] | None = None,
    profile_properties: dict[str, Any] | None = None,
    profile_key: str | None = None,
) -> dict[str, Any]:
    """Build one event record; by default the profile is user<row_id>@example.com."""
    if email is None and phone_number is None and external_id is None:
        email = f"user{row_id}@example.com"
    row = {
        "record_id": str(row_id),
        "row_id": row_id,
        "partition": PARTITION,
        "metric": metric,
        "unique_id": unique_id if unique_id is not None else f"order-{row_id}",
        "email": email,
        "phone_number": phone_number,
        "external_id": external_id,
        "profile_key": profile_key or _default_profile_key(email, phone_number, external_id),
        "time": time,
        "value": value,
        "value_currency": value_currency,
        "properties": json.dumps(properties or {"OrderId": str(row_id)}, separators=(",", ":")),
        "profile_properties": (
            json.dumps(profile_properties, separators=(",", ":")) if profile_properties else None
        ),
    }
    row["content_hash"] = _content_hash(row)
    return row


def event_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Build an event record frame with the contract's dtypes."""
    frame = pd.DataFrame(rows)
    frame["row_id"] = frame["row_id"].astype(np.int64)
    frame["value"] = frame["value"].astype(np.float64)
    return frame


def events(count: int, start: int = 0, **options: Any) -> pd.DataFrame:
    """Build `count` events of distinct profiles with row ids from `start`."""
    return event_frame([event_row(start + i, **options) for i in range(count)])


def profile_row(
    row_id: int,
    *,
    email: str | None = None,
    phone_number: str | None = None,
    external_id: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one profile record; by default the profile is user<row_id>@example.com."""
    if email is None and phone_number is None and external_id is None:
        email = f"user{row_id}@example.com"
    row = {
        "record_id": f"p{row_id}",
        "row_id": row_id,
        "partition": PARTITION,
        "email": email,
        "phone_number": phone_number,
        "external_id": external_id,
        "profile_key": _default_profile_key(email, phone_number, external_id),
        "attributes": json.dumps(
            attributes if attributes is not None else {"first_name": f"Ann{row_id}"},
            separators=(",", ":"),
        ),
    }
    row["content_hash"] = _content_hash(row)
    return row


def profile_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Build a profile record frame with the contract's dtypes."""
    frame = pd.DataFrame(rows)
    frame["row_id"] = frame["row_id"].astype(np.int64)
    return frame


def profiles(count: int, start: int = 0, **options: Any) -> pd.DataFrame:
    """Build `count` profiles with row ids from `start`."""
    return profile_frame([profile_row(start + i, **options) for i in range(count)])
