"""Normalization of revenue values and ISO 4217 currency codes."""

import math
from decimal import Decimal
from functools import cache
from typing import Final

import numpy as np
import pandas as pd
import pycountry

from klaviyo_pipeline.normalize._columns import (
    Kind,
    element_kinds,
    empty_reasons,
    object_series,
    plain_column,
    unique_strings,
)
from klaviyo_pipeline.normalize.errors import NormalizationConfigError
from klaviyo_pipeline.outcomes import Reason

_STRICT_NUMBER: Final = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
# The spellings that float() and CSV writers use for NaN and infinity mean a missing value.
_NON_FINITE_WORDS: Final = r"(?i:[+-]?(?:nan|inf|infinity))"

# Locale-aware forms. A grouping separator is accepted only where the string cannot also be
# read with that character as the decimal mark, so "1,299" (1299 or 1.299) matches none.
_COMMA_GROUPS: Final = r"[+-]?\d{1,3}(?:(?:,\d{3})+\.\d+|(?:,\d{3}){2,})"
_DOT_GROUPS: Final = r"[+-]?\d{1,3}(?:(?:\.\d{3})+,\d+|(?:\.\d{3}){2,})"
_SPACE_GROUPS: Final = r"[+-]?\d{1,3}(?:[ \u00a0\u202f']\d{3})+(?:[.,]\d+)?"
_COMMA_DECIMAL: Final = r"[+-]?\d*,\d+"
_AMBIGUOUS_COMMA: Final = r"[+-]?[1-9]\d{0,2},\d{3}"


def _read_locale_numbers(text: pd.Series) -> pd.Series:
    """Rewrite locale-formatted numbers as strict ones, and others as "" (unparseable)."""
    comma_groups = text.str.fullmatch(_COMMA_GROUPS).to_numpy(dtype=bool)
    dot_groups = text.str.fullmatch(_DOT_GROUPS).to_numpy(dtype=bool)
    space_groups = text.str.fullmatch(_SPACE_GROUPS).to_numpy(dtype=bool)
    comma_decimal = (
        text.str.fullmatch(_COMMA_DECIMAL) & ~text.str.fullmatch(_AMBIGUOUS_COMMA)
    ).to_numpy(dtype=bool)

    rewritten = pd.Series("", index=text.index, dtype=object)
    rewritten[comma_groups] = text[comma_groups].str.replace(",", "", regex=False)
    dots_removed = text[dot_groups].str.replace(".", "", regex=False)
    rewritten[dot_groups] = dots_removed.str.replace(",", ".", regex=False)
    spaces_removed = text[space_groups].str.replace(r"[ \u00a0\u202f']", "", regex=True)
    rewritten[space_groups] = spaces_removed.str.replace(",", ".", regex=False)
    rewritten[comma_decimal] = text[comma_decimal].str.replace(",", ".", regex=False)
    return rewritten


def _parse_value_strings(strings: np.ndarray, locale_aware: bool) -> tuple[np.ndarray, np.ndarray]:
    """Parse value strings, each distinct string once, into floats and reasons."""
    codes, originals = unique_strings(strings)
    text = originals.str.strip()
    missing = ((text == "") | text.str.fullmatch(_NON_FINITE_WORDS)).to_numpy(dtype=bool)
    strict = text.str.fullmatch(_STRICT_NUMBER).to_numpy(dtype=bool)

    numeric_text = text.where(strict, "")
    if locale_aware:
        numeric_text = numeric_text.where(strict, _read_locale_numbers(text))
    numbers = pd.to_numeric(numeric_text.replace("", None), errors="coerce")
    numbers = numbers.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)

    # A well-formed number can still overflow to infinity, as "1e400" does.
    parsed = np.isfinite(numbers)
    reasons = empty_reasons(len(text))
    reasons[~parsed & ~missing] = Reason.VALUE_INVALID.value
    numbers[~parsed] = np.nan
    return numbers[codes], reasons[codes]


def _number_as_float(number: object) -> float | None:
    """Return an int or Decimal as a float, NaN for Decimal NaN and ±inf, or None if too large."""
    if isinstance(number, Decimal) and not number.is_finite():
        return math.nan
    try:
        result = float(number)  # type: ignore[arg-type]
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def parse_values(values: pd.Series, locale_aware: bool = False) -> tuple[pd.Series, pd.Series]:
    """Parse revenue values into floats.

    Numbers (ints, floats, Decimals, NumPy scalars) and strict numeric strings ("12.50",
    " 7 ", "-1e3") are values. None, NaN, ±inf, pd.NA, blank strings and the strings "nan" and
    "inf" are missing, and so are booleans, as in walkerOS, whose toNumber returns undefined for
    them. Anything else ("1,299.00", "19.90 EUR", "abc", dicts, dates) is invalid: unlike
    walkerOS's parseFloat, which reads "1,299.00" as 1, no prefix of a string is used.

    With `locale_aware`, strings with grouping separators or a decimal comma are also values,
    when they can be read only one way: "1,299.00", "1.299,00", "1 299,00" and "1'299.00" are
    1299.0, "1,299,000" and "1.299.000" are 1299000.0, and "19,90" is 19.9. A single comma
    before exactly three digits ("1,299") is ambiguous and stays invalid, and a single dot
    ("1.299") is always a decimal point. Currency symbols and codes are invalid in both modes.

    Returns:
        (values, reasons): a float64 Series with NaN where there is no value, and an object
        Series of None or `value_invalid`. Missing values get no reason.
    """
    column = plain_column(values)
    dtype = column.dtype
    index = values.index

    if dtype.kind in "iuf":
        numbers = column.to_numpy().astype(np.float64)
        numbers[~np.isfinite(numbers)] = np.nan
        return pd.Series(numbers, index=index), object_series(empty_reasons(len(numbers)), index)
    if dtype.kind == "b":
        numbers = np.full(len(column), np.nan)
        return pd.Series(numbers, index=index), object_series(empty_reasons(len(numbers)), index)

    kinds = element_kinds(column)
    elements = column.to_numpy(dtype=object)
    numbers = np.full(len(elements), np.nan)
    reasons = empty_reasons(len(elements))

    strings = kinds == Kind.STRING
    numbers[strings], reasons[strings] = _parse_value_strings(elements[strings], locale_aware)

    floats = kinds == Kind.FLOAT
    numbers[floats] = elements[floats].astype(np.float64)
    numbers[floats & ~np.isfinite(numbers)] = np.nan

    # Python ints and Decimals can be too large for a float, so they convert one by one.
    numeric = np.flatnonzero(np.isin(kinds, (Kind.INTEGER, Kind.DECIMAL)))
    converted = [_number_as_float(element) for element in elements[numeric]]
    too_large = np.array([number is None for number in converted], dtype=bool)
    reasons[numeric[too_large]] = Reason.VALUE_INVALID.value
    numbers[numeric] = [math.nan if number is None else number for number in converted]

    invalid_kinds = (Kind.DATETIME, Kind.DATE, Kind.OTHER)
    reasons[np.isin(kinds, invalid_kinds)] = Reason.VALUE_INVALID.value
    return pd.Series(numbers, index=index), object_series(reasons, index)


@cache
def _currency_codes() -> frozenset[str]:
    return frozenset(currency.alpha_3 for currency in pycountry.currencies)


def normalize_currencies(
    values: pd.Series, default: str | None = None
) -> tuple[pd.Series, pd.Series]:
    """Strip and upper-case currency codes, and check them against ISO 4217 (pycountry).

    Missing and blank values get `default`, upper-cased, or None when there is no default.
    Invalid codes such as "US$" and non-string values become None with a reason, and do not
    fall back to the default, which could be the wrong currency.

    Raises:
        NormalizationConfigError: `default` is not an ISO 4217 code.

    Returns:
        (currencies, reasons): object Series of the code or None, and of None or
        `currency_invalid`.
    """
    default_code = None
    if default is not None:
        default_code = default.strip().upper()
        if default_code not in _currency_codes():
            raise NormalizationConfigError(
                f"invalid default currency {default!r}: expected an ISO 4217 code such as "
                "'USD' or 'EUR'"
            )

    column = plain_column(values)
    kinds = element_kinds(column)
    elements = column.to_numpy(dtype=object)
    currencies = np.full(len(elements), default_code, dtype=object)
    reasons = empty_reasons(len(elements))

    strings = np.flatnonzero(kinds == Kind.STRING)
    codes, originals = unique_strings(elements[strings])
    text = originals.str.strip().str.upper()
    blank = (text == "").to_numpy(dtype=bool)
    valid = text.isin(_currency_codes()).to_numpy(dtype=bool)
    unique_currencies = np.where(valid, text.to_numpy(dtype=object), None)
    unique_currencies[blank] = default_code
    unique_reasons = np.where(valid | blank, None, Reason.CURRENCY_INVALID.value)
    currencies[strings] = unique_currencies[codes]
    reasons[strings] = unique_reasons[codes]

    others = np.flatnonzero((kinds != Kind.MISSING) & (kinds != Kind.STRING))
    currencies[others] = None
    reasons[others] = Reason.CURRENCY_INVALID.value
    return object_series(currencies, values.index), object_series(reasons, values.index)
