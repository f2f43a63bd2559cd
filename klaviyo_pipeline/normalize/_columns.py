"""Column helpers shared by the normalizers: element kinds, per-unique mapping, result Series."""

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from enum import IntEnum
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.types import infer_dtype


class Kind(IntEnum):
    """Kind of one column element, which decides how a normalizer reads it."""

    MISSING = 0  # None, float NaN, pd.NA, pd.NaT, NaT datetime64, Decimal NaN
    STRING = 1
    BOOL = 2
    INTEGER = 3
    FLOAT = 4  # finite or infinite, because NaN is MISSING
    DECIMAL = 5  # finite or infinite, because NaN is MISSING
    DATETIME = 6  # datetime.datetime, pd.Timestamp, np.datetime64
    DATE = 7  # datetime.date without a time
    OTHER = 8  # dict, list, bytes, timedelta and anything else


def plain_column(values: pd.Series) -> pd.Series:
    """Return `values` with extension dtypes converted to NumPy, `str` or tz-aware datetime dtypes.

    Arrow timestamps become datetime64 and Arrow strings the `str` dtype, so both keep their
    vectorized paths. Other extension dtypes (nullable Int64, boolean, categorical, Arrow numbers)
    become object columns of Python scalars and pd.NA, which keeps integers exact.
    """
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype | pd.DatetimeTZDtype | np.dtype):
        return values

    if isinstance(dtype, pd.ArrowDtype):
        arrow_type = dtype.pyarrow_dtype
        if pa.types.is_timestamp(arrow_type):
            zone = f", {arrow_type.tz}" if arrow_type.tz else ""
            return values.astype(f"datetime64[{arrow_type.unit}{zone}]")
        if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
            return values.astype("str")

    return values.astype(object)


@cache
def _kind_of_type(value_type: type) -> Kind:
    # The order matters: bool is an int subclass, np.timedelta64 an np.integer subclass, and
    # pd.NaT's type a datetime subclass.
    if value_type in (type(None), type(pd.NA), type(pd.NaT)):
        return Kind.MISSING
    if issubclass(value_type, bool | np.bool_):
        return Kind.BOOL
    if issubclass(value_type, str):
        return Kind.STRING
    if issubclass(value_type, np.timedelta64):
        return Kind.OTHER
    if issubclass(value_type, int | np.integer):
        return Kind.INTEGER
    if issubclass(value_type, float | np.floating):
        return Kind.FLOAT
    if issubclass(value_type, Decimal):
        return Kind.DECIMAL
    if issubclass(value_type, datetime | np.datetime64):
        return Kind.DATETIME
    if issubclass(value_type, date):
        return Kind.DATE
    return Kind.OTHER


# The element kind of each `infer_dtype` result (with skipna) that means one kind of element.
_SINGLE_KINDS = {
    "empty": Kind.MISSING,
    "string": Kind.STRING,
    "integer": Kind.INTEGER,
    "boolean": Kind.BOOL,
    "floating": Kind.FLOAT,
}


def _object_kinds(elements: np.ndarray) -> np.ndarray:
    single = _SINGLE_KINDS.get(infer_dtype(elements, skipna=True))
    if single is not None:
        # skipna passes over missing values such as None, NaN and pd.NA.
        return np.where(pd.isna(elements), Kind.MISSING, single).astype(np.int8)
    types = pd.Series(elements, dtype=object, copy=False).map(type)
    codes, unique_types = pd.factorize(types.to_numpy())
    kind_of_code = np.array([_kind_of_type(value_type) for value_type in unique_types], np.int8)
    kinds = kind_of_code[codes] if len(elements) else np.empty(0, np.int8)

    # In pandas 3.1, pd.isna raises decimal.InvalidOperation on a signaling Decimal NaN, so
    # Decimals are checked with is_nan() and kept away from pd.isna.
    decimal_positions = np.flatnonzero(kinds == Kind.DECIMAL)
    decimal_nan = np.array([elements[i].is_nan() for i in decimal_positions], dtype=bool)
    kinds[decimal_positions[decimal_nan]] = Kind.MISSING

    other_positions = np.flatnonzero(np.isin(kinds, (Kind.FLOAT, Kind.DATETIME, Kind.OTHER)))
    other_missing = pd.isna(elements[other_positions]).astype(bool)
    kinds[other_positions[other_missing]] = Kind.MISSING
    return kinds


def element_kinds(column: pd.Series) -> np.ndarray:
    """Return the `Kind` of each element of a column returned by `plain_column`, as int8 codes."""
    dtype = column.dtype
    count = len(column)

    if isinstance(dtype, pd.StringDtype):
        return np.where(column.isna().to_numpy(), Kind.MISSING, Kind.STRING).astype(np.int8)
    if isinstance(dtype, pd.DatetimeTZDtype) or dtype.kind == "M":
        return np.where(column.isna().to_numpy(), Kind.MISSING, Kind.DATETIME).astype(np.int8)
    if dtype.kind == "b":
        return np.full(count, Kind.BOOL, np.int8)
    if dtype.kind in "iu":
        return np.full(count, Kind.INTEGER, np.int8)
    if dtype.kind == "f":
        return np.where(np.isnan(column.to_numpy()), Kind.MISSING, Kind.FLOAT).astype(np.int8)
    if dtype.kind == "O":
        return _object_kinds(column.to_numpy())
    return np.where(column.isna().to_numpy(), Kind.MISSING, Kind.OTHER).astype(np.int8)


def map_unique(elements: np.ndarray, function: Callable[[Any], Any]) -> np.ndarray:
    """Call `function` once per distinct element and return its results in element order.

    The elements must be hashable. Equal elements of different types, such as 1 and 1.0, share
    one call with the first of them.
    """
    codes, uniques = pd.factorize(np.asarray(elements, dtype=object))
    results = np.empty(len(uniques), dtype=object)
    for position, unique in enumerate(uniques):
        results[position] = function(unique)
    return results[codes]


def unique_strings(strings: np.ndarray) -> tuple[np.ndarray, pd.Series]:
    """Factorize strings into codes and an object Series of the distinct strings.

    The Series has object dtype so that `.str` methods use Python's `re`, with its Unicode
    `\\s`, whatever the storage of the input column.
    """
    codes, uniques = pd.factorize(np.asarray(strings, dtype=object))
    return codes, pd.Series(uniques, dtype=object)


def text_lengths(values: pd.Series | np.ndarray) -> np.ndarray:
    """Return the length of each str value, and -1 for any other value."""
    elements = np.asarray(values, dtype=object)
    if infer_dtype(elements, skipna=False) == "string":
        return np.fromiter(map(len, elements.tolist()), dtype=np.int64, count=len(elements))
    return np.fromiter(
        (len(value) if isinstance(value, str) else -1 for value in elements.tolist()),
        dtype=np.int64,
        count=len(elements),
    )


def all_strings(elements: np.ndarray | list[Any]) -> bool:
    """Return whether every element of an object array or list is a str, so none is missing.

    `infer_dtype` stops at the first element of another type, which makes this faster than
    a missing-value scan of an object column. Pass the values, not a Series, because for a
    Series of a string dtype `infer_dtype` returns "string" even when values are missing.
    """
    return infer_dtype(elements, skipna=False) == "string"


def empty_reasons(count: int) -> np.ndarray:
    """Return an object array of `count` Nones, to be filled with reason strings."""
    return np.full(count, None, dtype=object)


def object_series(elements: np.ndarray, index: pd.Index) -> pd.Series:
    """Wrap an object array of values or reasons (None where there is none) in a Series."""
    return pd.Series(elements, index=index, dtype=object)
