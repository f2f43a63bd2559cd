"""Event properties of a plain `map` rule, serialized column-wise instead of dict by dict.

A rule whose ``data`` is ``{"map": {key: path, ...}}``, with every path a column of
strings, numbers or booleans, gives each row the dict of its defined values in key order.
For such a rule, `encode_plain_map` writes each row's JSON text directly from the
columns: the text that ``orjson.dumps`` writes for that dict. The per-row evaluation
always gives a dict, so a str in a rule group's properties is this JSON text. A row with a
value that the records builder would clean (a non-finite float, a string over the size
limit) gets its dict instead, so it takes the same path as before.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from klaviyo_pipeline import arrow_json, settings
from klaviyo_pipeline.mapping.frame import EventFrame
from klaviyo_pipeline.mapping.values import UNDEFINED

_INT64 = (-(2**63), 2**63)


def plain_map_pairs(data: Any) -> list[tuple[str, str]] | None:
    """Return the (key, path) pairs of ``{"map": {key: path}}``, or None for any other form.

    A value may be a path or ``{"key": path}``. Keys that start with ``$`` and maps with more
    keys than Klaviyo allows go through the records builder's cleaning instead.
    """
    if not isinstance(data, dict) or set(data) != {"map"} or not isinstance(data["map"], dict):
        return None
    pairs = []
    for key, value in data["map"].items():
        path = value["key"] if isinstance(value, dict) and set(value) == {"key"} else value
        if not isinstance(key, str) or key.startswith("$"):
            return None
        if not isinstance(path, str) or not path:
            return None
        pairs.append((key, path))
    return pairs if len(pairs) <= settings.MAX_PROPERTIES else None


def encode_plain_map(frame: EventFrame, pairs: list[tuple[str, str]]) -> list[Any] | None:
    """Return each row's properties as JSON text, or as a dict where a value needs cleaning.

    Returns:
        None if a path is not a column of strings, numbers or booleans.
    """
    members = []
    cleaned = np.zeros(frame.size, dtype=bool)
    for key, path in pairs:
        if not frame.is_scalar_column(path):
            return None
        # Each defined value gives ',"key":value', and an undefined one gives null.
        member = _members(frame.df[path], "," + orjson.dumps(key).decode() + ":")
        if member is None:
            return None
        texts, needs_cleaning = member
        cleaned |= needs_cleaning
        members.append(texts)
    if not members:
        return ["{}"] * frame.size
    joined = pc.binary_join_element_wise(
        pa.scalar("{"),
        *members,
        pa.scalar("}"),
        pa.scalar(""),
        null_handling="replace",
        null_replacement="",
    )
    # The first member's comma follows the opening brace, where it is removed.
    result: list[Any] = pc.replace_substring(joined, "{,", "{", max_replacements=1).to_pylist()
    for position in np.flatnonzero(cleaned).tolist():
        result[position] = _row_dict(frame, pairs, position)
    return result


def _row_dict(frame: EventFrame, pairs: list[tuple[str, str]], position: int) -> dict[str, Any]:
    """Return one row's dict of defined values, as the `map` evaluation builds it."""
    row = {}
    for key, path in pairs:
        value = frame.path(path)[position]
        if value is not UNDEFINED:
            row[key] = value
    return row


def _members(column: pd.Series, prefix: str) -> tuple[pa.Array, np.ndarray] | None:
    """Return `prefix` plus the JSON text of each value (null where undefined), and the rows
    that need cleaning.

    Returns:
        None for a column of another type, such as datetimes or categories.
    """
    dtype = column.dtype
    if pd.api.types.is_string_dtype(dtype):
        try:
            texts = arrow_json.strings(column)
        except UnicodeEncodeError:
            # A lone surrogate has no UTF-8 form; the records builder replaces it per row.
            return None
        return arrow_json.json_strings(texts, prefix), _too_long(texts)
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        return _encoded_per_value(column, prefix)
    if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_unsigned_integer_dtype(dtype):
        return _encoded_per_value(column, prefix)
    return None


def _too_long(texts: pa.Array) -> np.ndarray:
    """Return the rows whose string has more than `SAFE_STRING_CHARACTERS` characters."""
    # A string has at least as many bytes as characters, so without a string of more bytes
    # than the limit no character count is needed.
    longest = pc.max(pc.binary_length(texts)).as_py()
    if longest is None or longest <= settings.SAFE_STRING_CHARACTERS:
        return np.zeros(len(texts), dtype=bool)
    return arrow_json.mask(pc.greater(pc.utf8_length(texts), settings.SAFE_STRING_CHARACTERS))


def _encoded_per_value(column: pd.Series, prefix: str) -> tuple[pa.Array, np.ndarray]:
    """Encode each distinct number or boolean once; ±inf and out-of-range ints are cleaned."""
    return arrow_json.encoded_per_value(column, _plain_text, prefix)


def _plain_text(value: Any) -> str | None:
    return orjson.dumps(value).decode() if _is_plain_number(value) else None


def _is_plain_number(value: Any) -> bool:
    if type(value) is bool:
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is int:
        return _INT64[0] <= value < _INT64[1]
    return False
