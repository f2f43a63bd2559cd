"""Turn a partition's source rows into normalized events with canonical columns.

The canonical columns are `row_id` (position in the partition), `id`, `name`, `name_key`
(the rule lookup form), `timestamp` (UTC) and `time` (ISO 8601 sent to Klaviyo).
`reject_reason` and `reject_detail` are set when the row cannot become an event. Every
event path column of the source (`user.email`, `data.price`, `nested`, ...) is kept.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from klaviyo_pipeline import normalize
from klaviyo_pipeline.jsonsafe import MISSING, dumps, to_json_safe
from klaviyo_pipeline.outcomes import Reason

CANONICAL_COLUMNS = (
    "row_id",
    "id",
    "name",
    "name_key",
    "timestamp",
    "time",
    "reject_reason",
    "reject_detail",
)


class SourceColumnsError(ValueError):
    """The source rows lack a column the pipeline needs; the message names it."""


def row_hashes(df: pd.DataFrame) -> pd.Series:
    """Return a deterministic 16-hex-digit id per row from all of its source columns."""
    ordered = df.reindex(columns=sorted(df.columns))
    for column in ordered.columns:
        if ordered[column].dtype == object:
            ordered[column] = ordered[column].map(dumps_row_value)
    hashed = pd.util.hash_pandas_object(ordered, index=False).to_numpy()
    return pd.Series([f"{value:016x}" for value in hashed.tolist()], index=df.index, dtype=object)


def dumps_row_value(value: Any) -> str:
    """Return a cell as stable text for hashing: JSON for objects, repr for the rest."""
    if isinstance(value, dict | list):
        return dumps(value)
    return repr(value)


_JSON_SCALAR_TYPES = frozenset({str, int, float, bool})


def _json_safe_objects(series: pd.Series) -> pd.Series:
    """Make object cells JSON-safe with `to_json_safe`; NULLs inside objects are dropped.

    Warehouse drivers return Decimal for NUMERIC, UUID, dates and datetimes, which walkerOS
    mappings would drop as non-properties: they become numbers and ISO 8601 text. A value of a
    type `to_json_safe` rejects becomes its `str`, as a text export would write it.
    """

    def clean(value: Any) -> Any:
        if value is None or type(value) in _JSON_SCALAR_TYPES:
            return value
        try:
            safe = to_json_safe(value)
        except TypeError:
            return str(value)
        return None if safe is MISSING else safe

    return series.astype(object).map(clean)


def _has_non_json_cells(series: pd.Series) -> bool:
    """Return whether a column can hold cells other than JSON scalars (object, Arrow decimal)."""
    if series.dtype == object:
        return True
    if isinstance(series.dtype, pd.ArrowDtype):
        arrow_type = series.dtype.pyarrow_dtype
        plain = (
            pa.types.is_string(arrow_type)
            or pa.types.is_large_string(arrow_type)
            or pa.types.is_integer(arrow_type)
            or pa.types.is_floating(arrow_type)
            or pa.types.is_boolean(arrow_type)
            or pa.types.is_timestamp(arrow_type)
        )
        return not plain
    return False


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
                f"source rows have no {needed!r} column; "
                f"columns are {sorted(source.columns)[:20]}. "
                f'Select or map a column AS "{needed}".'
            )

    df = source.reset_index(drop=True).copy()
    if time_column != "timestamp":
        df = df.rename(columns={time_column: "timestamp"})
    if df.empty:
        return pd.DataFrame(
            columns=[*CANONICAL_COLUMNS, *[c for c in df.columns if c not in CANONICAL_COLUMNS]]
        )

    object_columns = [
        c for c in df.columns if _has_non_json_cells(df[c]) and c not in ("name", "timestamp")
    ]
    for column in object_columns:
        df[column] = _json_safe_objects(df[column])

    timestamps, time_reasons = normalize.parse_timestamps(
        df["timestamp"], timestamp_unit, source_timezone
    )
    range_reasons = normalize.check_time_range(timestamps, now=now)
    df["timestamp"] = timestamps
    if window is not None:
        start, end = window
        outside = timestamps.notna() & ((timestamps < start) | (timestamps >= end))
        df = df[~outside.to_numpy()].reset_index(drop=True)
        time_reasons = time_reasons[~outside].reset_index(drop=True)
        range_reasons = range_reasons[~outside].reset_index(drop=True)

    names, name_reasons = normalize.normalize_event_names(df["name"])
    raw_names = df["name"]
    df["name_key"] = names
    df["name"] = _tidy_names(df["name"])

    df["time"] = normalize.format_times(df["timestamp"])
    ids = (
        normalize.format_ids(df["id"])
        if "id" in df.columns
        else pd.Series(None, index=df.index, dtype=object)
    )
    missing = ids.isna()
    if missing.any():
        source_columns = df.columns.difference(["name_key", "time", "id"])
        ids = ids.astype(object)
        ids[missing] = row_hashes(df.loc[missing, source_columns])
    df["id"] = ids

    reasons = time_reasons.where(time_reasons.notna(), range_reasons)
    reasons = reasons.where(reasons.notna(), name_reasons)
    df["reject_reason"] = reasons.astype(object).where(reasons.notna(), None)
    df["reject_detail"] = _reject_details(df, raw_names)
    df.insert(0, "row_id", range(len(df)))
    return df


def _tidy_names(names: pd.Series) -> pd.Series:
    """Return event names with whitespace runs collapsed, or None where a name is missing."""
    if pd.api.types.is_string_dtype(names.dtype) and names.dtype != object:
        # A partition has few distinct names, so each is tidied once.
        codes, uniques = pd.factorize(names, use_na_sentinel=True)
        distinct = pd.Series(uniques, dtype=names.dtype)
        tidy = distinct.str.strip().str.replace(r"\s+", " ", regex=True)
        texts = np.append(tidy.astype(object).where(tidy.notna(), None).to_numpy(), None)
        return pd.Series(texts[codes], index=names.index, dtype=object)
    return names.map(_tidy_name)


def _tidy_name(name: Any) -> str | None:
    # pd.isna is avoided: it returns arrays for list cells and raises on a signaling NaN Decimal.
    if isinstance(name, str):
        return " ".join(name.split())
    if name is None or name is pd.NA or name is pd.NaT:
        return None
    if isinstance(name, Decimal):
        return None if name.is_nan() else str(name)
    if isinstance(name, float | np.floating) and name != name:
        return None
    if isinstance(name, np.datetime64) and np.isnat(name):
        return None
    return " ".join(str(name).split())


def _reject_details(df: pd.DataFrame, raw_names: pd.Series) -> pd.Series:
    details = pd.Series([None] * len(df), index=df.index, dtype=object)
    out_of_range = df["reject_reason"] == Reason.TIME_OUT_OF_RANGE.value
    if out_of_range.any():
        details[out_of_range] = (
            "event time "
            + df.loc[out_of_range, "time"].astype(str)
            + (" is before 2000 or more than a year ahead")
        )
    bad_name = df["reject_reason"] == Reason.INVALID_NAME.value
    if bad_name.any():
        details[bad_name] = [
            "event name is missing or empty"
            if not isinstance(name, str) or not name
            else f"event name of type {type(raw).__name__} is not text or a number: {name[:80]!r}"
            for name, raw in zip(df.loc[bad_name, "name"], raw_names[bad_name], strict=True)
        ]
    return details


def dumps_row(row: dict[str, Any]) -> str:
    """Serialize one normalized row for previews and logs."""
    return dumps(to_json_safe(row))
