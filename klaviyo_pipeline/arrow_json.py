"""JSON text built column-wise with Arrow: strings as JSON literals, with few per-row steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from klaviyo_pipeline.sync.values import optional_text


def strings(column: pd.Series) -> pa.Array:
    """Return the column as an Arrow string array, with missing cells as null.

    Cells that are not text are written as ``str()`` writes them. Arrow converts text and
    integer columns, whose text it writes the same way. Each cell of other columns goes
    through ``str()``, because Arrow writes the float ``1.0`` as ``1`` and True as ``true``.
    """
    try:
        array = pa.array(column, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        array = None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array is not None and (pa.types.is_string(array.type) or pa.types.is_integer(array.type)):
        return array if array.type == pa.string() else pc.cast(array, pa.string())
    if array is not None and pa.types.is_large_string(array.type):
        return pc.cast(array, pa.string())
    if array is not None and pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.string())
    values = column.astype(object).tolist()
    return pa.array([optional_text(value) for value in values], pa.string())


def mask(array: pa.Array) -> np.ndarray:
    """Return a boolean Arrow array as a NumPy mask, with null as False."""
    return array.fill_null(False).to_numpy(zero_copy_only=False)


def value_bounds(array: pa.Array) -> np.ndarray:
    """Return the byte offsets of the values, so value i spans bounds[i] to bounds[i + 1].

    Raises:
        TypeError: The array is not of type string, binary, large_string or large_binary.
    """
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    if not (large or pa.types.is_string(array.type) or pa.types.is_binary(array.type)):
        raise TypeError(f"expected a string or binary array, got {array.type}")
    offsets = array.buffers()[1]
    if offsets is None:
        return np.zeros(len(array) + 1, dtype=np.int64)
    offset_type = np.int64 if large else np.int32
    return np.frombuffer(offsets, offset_type)[array.offset : array.offset + len(array) + 1]


def views(array: pa.Array) -> list[memoryview]:
    """Return a view of the bytes of each value of a string or binary array, without copies.

    A null value gives an empty view. The views keep the array's data buffer alive.

    Raises:
        TypeError: The array is not of type string, binary, large_string or large_binary.
    """
    bounds = value_bounds(array)
    if len(array) == 0:
        return []
    data = array.buffers()[2]
    if data is None:
        return [memoryview(b"")] * len(array)
    starts, ends = bounds[:-1].copy(), bounds[1:]
    if array.null_count:
        # Arrow lets a null slot span bytes, so its view is made empty here.
        nulls = mask(array.is_null())
        starts[nulls] = ends[nulls]
    # Arrow buffers export signed bytes ("b"), and readers such as simdjson expect "B".
    whole = memoryview(data).cast("B")
    return [whole[start:end] for start, end in zip(starts.tolist(), ends.tolist(), strict=True)]


def replace(texts: pa.Array, values: dict[int, str]) -> pa.Array:
    """Return `texts` with the strings at the given positions replaced."""
    if not values:
        return texts
    chosen = np.zeros(len(texts), dtype=bool)
    positions = sorted(values)
    chosen[positions] = True
    replacements = pa.array([values[position] for position in positions], pa.string())
    return pc.replace_with_mask(texts, pa.array(chosen), replacements)


# Characters that JSON strings must escape. Other text is quoted as it is.
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'


def json_strings(texts: pa.Array, prefix: str = "", suffix: str = "") -> pa.Array:
    """Return each string as a JSON string literal between `prefix` and `suffix`.

    Missing strings stay null, so that a caller can leave out a member for them.
    """
    # Inserting at both ends keeps nulls and is faster than a join with two scalars.
    return insert(insert(escaped(texts), 0, prefix + '"'), END, '"' + suffix)


# A byte offset past the end of any string, for inserting after its last byte.
END = 2**31 - 1


def insert(texts: pa.Array, offset: int, text: str) -> pa.Array:
    """Return each string with `text` inserted at a byte offset, clamped to the string's end.

    Null strings stay null.
    """
    return pc.binary_replace_slice(texts, offset, offset, text)


def escaped(texts: pa.Array) -> pa.Array:
    """Return each string with JSON's escapes applied, as it reads between the quotes."""
    if not _may_need_escape(texts):
        return texts
    escape = mask(pc.match_substring_regex(texts, _NEEDS_ESCAPE))
    positions = np.flatnonzero(escape).tolist()
    if not positions:
        return texts
    values = texts.take(pa.array(positions)).to_pylist()
    inner = {p: orjson.dumps(v).decode()[1:-1] for p, v in zip(positions, values, strict=True)}
    return replace(texts, inner)


def encoded_per_value(
    column: pd.Series, encode: Callable[[Any], str | None], prefix: str = ""
) -> tuple[pa.Array, np.ndarray]:
    """Encode each distinct value of a column once, and return `prefix` plus its text per row.

    Returns:
        The texts, null where a value is missing or `encode` gives None, and a mask of the
        rows whose value `encode` gave None for.
    """
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    encoded = [encode(value) for value in uniques.tolist()]
    # The last entry is for the code -1 of missing values.
    texts = [None if text is None else prefix + text for text in encoded] + [None]
    left_out = np.array([text is None for text in encoded] + [False], dtype=bool)[codes]
    indices = np.where(codes < 0, len(encoded), codes)
    spread = pa.array(texts, pa.string()).take(pa.array(indices))
    return with_negative_zeros(spread, column, prefix + "-0.0"), left_out


def _may_need_escape(texts: pa.Array) -> bool:
    """Return False if no string has a byte that JSON escapes, checked on the whole buffer.

    The buffer may hold bytes outside the array's strings, which can only give True.
    """
    data = texts.buffers()[2]
    if data is None:
        return False
    raw = np.frombuffer(data, dtype=np.uint8)
    return bool((raw < 0x20).any() or (raw == ord('"')).any() or (raw == ord("\\")).any())


def with_negative_zeros(texts: pa.Array, column: pd.Series, text: str = "-0.0") -> pa.Array:
    """Write `text` where a float column has -0.0, which factorize counts equal to 0.0."""
    if not pd.api.types.is_float_dtype(column.dtype):
        return texts
    values = column.to_numpy(dtype=float, na_value=np.nan)
    negative_zero = np.flatnonzero((values == 0) & np.signbit(values)).tolist()
    return replace(texts, dict.fromkeys(negative_zero, text))
