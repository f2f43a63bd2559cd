"""Turn a partition's source rows into normalized events with canonical columns.

Canonical columns: `row_id` (position in the partition), `id`, `name`, `name_key` (the
rule lookup form), `timestamp` (UTC), `time` (ISO 8601 sent to Klaviyo), `reject_reason`
and `reject_detail` (set when the row cannot become an event), plus every event path
column of the source (`user.email`, `data.price`, `nested`, ...).
"""

import hashlib
from datetime import datetime
from typing import Any

import pandas as pd

from klaviyo_pipeline import normalize
from klaviyo_pipeline.jsonsafe import MISSING, dumps, to_json_safe
from klaviyo_pipeline.outcomes import Reason

CANONICAL_COLUMNS = ("row_id", "id", "name", "name_key", "timestamp", "time", "reject_reason", "reject_detail")


class SourceColumnsError(ValueError):
    """The source rows lack a column the pipeline needs; the message names it."""


def row_hashes(df: pd.DataFrame) -> pd.Series:
    """Return a deterministic hex id per row from all of its source columns."""
    ordered = df.reindex(columns=sorted(df.columns))
    hashed = pd.util.hash_pandas_object(ordered.astype(str), index=False)
    return hashed.map(lambda value: hashlib.md5(str(value).encode(), usedforsecurity=False).hexdigest()[:16])


def _json_safe_objects(series: pd.Series) -> pd.Series:
    """Make nested object cells (dicts, lists, arrays) JSON-safe; NULLs inside are dropped."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict | list | tuple) or hasattr(value, "tolist"):
            safe = to_json_safe(value)
            return None if safe is MISSING else safe
        return value

    return series.map(clean)


def normalize_events(
    source: pd.DataFrame,
    *,
    time_column: str = "timestamp",
    timestamp_unit: str = "ms",
    source_timezone: str | None = None,
    window: tuple[datetime, datetime] | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Return normalized events for the rows of one partition.

    Rows whose instant falls outside `window` belong to another partition and are left out.
    Rows with a missing or invalid time or name stay in, with `reject_reason` set.

    Raises:
        SourceColumnsError: when the rows have no `name` or no time column.
    """
    for needed in ("name", time_column):
        if needed not in source.columns and len(source):
            raise SourceColumnsError(
                f"source rows have no {needed!r} column; columns are {sorted(source.columns)[:20]}. "
                f"Select or map a column AS \"{needed}\"."
            )

    df = source.reset_index(drop=True).copy()
    if time_column != "timestamp":
        df = df.rename(columns={time_column: "timestamp"})
    if df.empty:
        return pd.DataFrame(columns=[*CANONICAL_COLUMNS, *[c for c in df.columns if c not in CANONICAL_COLUMNS]])

    object_columns = [c for c in df.columns if df[c].dtype == object and c not in ("name", "timestamp")]
    for column in object_columns:
        df[column] = _json_safe_objects(df[column])

    timestamps, time_reasons = normalize.parse_timestamps(df["timestamp"], timestamp_unit, source_timezone)
    range_reasons = normalize.check_time_range(timestamps, now=now)
    df["timestamp"] = timestamps
    if window is not None:
        start, end = window
        outside = timestamps.notna() & ((timestamps < start) | (timestamps >= end))
        df = df[~outside.to_numpy()].reset_index(drop=True)
        time_reasons = time_reasons[~outside].reset_index(drop=True)
        range_reasons = range_reasons[~outside].reset_index(drop=True)

    names, name_reasons = normalize.normalize_event_names(df["name"])
    df["name_key"] = names
    df["name"] = df["name"].map(lambda n: " ".join(str(n).split()) if n is not None and n == n else None)

    df["time"] = normalize.format_times(df["timestamp"])
    if "id" in df.columns:
        ids = normalize.format_ids(df["id"])
        hashes = row_hashes(df.drop(columns=["name_key", "time", "id"]))
        df["id"] = ids.where(ids.notna(), hashes)
    else:
        df["id"] = row_hashes(df.drop(columns=["name_key", "time"]))

    reasons = time_reasons.where(time_reasons.notna(), range_reasons)
    reasons = reasons.where(reasons.notna(), name_reasons)
    df["reject_reason"] = reasons.astype(object).where(reasons.notna(), None)
    df["reject_detail"] = _reject_details(df)
    df.insert(0, "row_id", range(len(df)))
    return df


def _reject_details(df: pd.DataFrame) -> pd.Series:
    details = pd.Series([None] * len(df), index=df.index, dtype=object)
    out_of_range = df["reject_reason"] == Reason.TIME_OUT_OF_RANGE.value
    if out_of_range.any():
        details[out_of_range] = "event time " + df.loc[out_of_range, "time"].astype(str) + (
            " is before 2000 or more than a year ahead"
        )
    bad_name = df["reject_reason"] == Reason.INVALID_NAME.value
    if bad_name.any():
        details[bad_name] = "event name is missing or empty"
    return details


def dumps_row(row: dict[str, Any]) -> str:
    """Serialize one normalized row for previews and logs."""
    return dumps(to_json_safe(row))
