"""Normalization of profile identifiers and ids: emails, phone numbers, external and unique ids."""

import math
import re
from decimal import Decimal
from functools import cache
from typing import Final

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
import pycountry
from pandas.api.types import infer_dtype

from klaviyo_pipeline import settings
from klaviyo_pipeline.normalize._columns import (
    Kind,
    element_kinds,
    empty_reasons,
    map_unique,
    object_series,
    plain_column,
    text_lengths,
    unique_strings,
)
from klaviyo_pipeline.normalize.errors import NormalizationConfigError
from klaviyo_pipeline.outcomes import Reason

# TODO: outcomes.Reason has no member for an unusable phone number yet. This is the value
# proposed for it, and callers compare against this string until the member exists.
PHONE_INVALID: Final = "phone_invalid"

# Floats up to 2**53 in magnitude that have no fraction convert to int64 without rounding.
_MAX_EXACT_FLOAT_INTEGER: Final = 2.0**53

# RFC 5321 limits the local part of an address to 64 octets. This limit counts characters,
# which is the same for ASCII addresses.
_MAX_EMAIL_LOCAL_LENGTH: Final = 64

# Whitespace and the invisible characters that copy-pasted addresses often carry at either end.
_EDGE_SPACE: Final = r"^[\s\u200b\u200c\u200d\u2060\ufeff]+|[\s\u200b\u200c\u200d\u2060\ufeff]+$"

# An RFC 5322 dot-atom local part and a host name with at least two labels, where RFC 6531
# also allows non-ASCII characters (internationalized addresses), here all but whitespace and
# invisible format characters. The last label starts with a letter and has at least two
# characters, which admits punycode ("xn--p1ai").
_NON_ASCII: Final = r"[^\x00-\x7f\s\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]"
_ATEXT: Final = rf"(?:[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]|{_NON_ASCII})"
_LABEL_CHARACTER: Final = rf"(?:[A-Za-z0-9]|{_NON_ASCII})"
_LABEL: Final = rf"{_LABEL_CHARACTER}(?:(?:{_LABEL_CHARACTER}|-){{0,61}}{_LABEL_CHARACTER})?"
_TOP_LABEL: Final = (
    rf"(?:[A-Za-z]|{_NON_ASCII})(?:(?:{_LABEL_CHARACTER}|-){{0,61}}{_LABEL_CHARACTER})"
)
_EMAIL_PATTERN: Final = re.compile(
    rf"^(?P<local>{_ATEXT}+(?:\.{_ATEXT}+)*)@(?P<domain>(?:{_LABEL}\.)+{_TOP_LABEL})\Z"
)

# "UK" is not an ISO 3166-1 code, but ISO reserves it for the United Kingdom and it is common.
_REGION_ALIASES: Final = {"UK": "GB"}


def format_js_number(number: float) -> str:
    """Format a float as JavaScript's `String(number)` does (ECMAScript Number::toString).

    Python's `repr` gives the shortest digits that round-trip, which are the digits that
    ECMAScript requires. Only the placement of the decimal point differs: JavaScript writes
    plain digits from 1e-6 up to 1e21 and the exponent form ("1e+21", "1.5e-7") outside.
    """
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    if number < 0:
        return "-" + format_js_number(-number)

    mantissa, _, exponent = repr(number).partition("e")
    integer_part, _, fraction_part = mantissa.partition(".")
    digits = integer_part + fraction_part
    # `point` is the position of the decimal point relative to the start of `digits`.
    point = len(integer_part) + int(exponent or 0)
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    digit_count = len(digits)

    if digit_count <= point <= 21:
        return digits + "0" * (point - digit_count)
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits

    power = point - 1
    sign = "+" if power >= 0 else "-"
    mantissa_text = digits if digit_count == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa_text}e{sign}{abs(power)}"


def _format_decimal(number: Decimal) -> str | None:
    if not number.is_finite():
        return None
    if number == number.to_integral_value():
        return str(int(number))
    return format_js_number(float(number))


def _format_floats(numbers: np.ndarray) -> np.ndarray:
    ids = np.full(len(numbers), None, dtype=object)
    finite = np.isfinite(numbers)
    exact = finite & (numbers == np.trunc(numbers)) & (np.abs(numbers) < _MAX_EXACT_FLOAT_INTEGER)
    ids[exact] = numbers[exact].astype(np.int64).astype(str).astype(object)
    inexact = finite & ~exact
    ids[inexact] = map_unique(numbers[inexact], format_js_number)
    return ids


def _format_integers(numbers: np.ndarray) -> np.ndarray:
    """Format an object array of Python and NumPy ints as their exact digits."""
    try:
        exact = numbers.astype(np.int64)
    except OverflowError:
        return np.array([str(number) for number in numbers.tolist()], dtype=object)
    # Arrow writes an int64 with the digits that str() writes, in less time.
    return pc.cast(pa.array(exact), pa.string()).to_numpy(zero_copy_only=False)


def format_ids(values: pd.Series) -> pd.Series:
    """Format identifiers and unique ids as strings, the way walkerOS resolves ids.

    Strings are kept as they are, and the empty string becomes None. Floats and fractional
    Decimals are formatted like JavaScript's `String(n)` (12345.0 -> "12345", 1e21 ->
    "1e+21", -0.0 -> "0"). Integers and integral Decimals keep every digit, where JavaScript
    would round above 2**53: warehouse keys are exact, and rounding them would merge distinct ids.
    Booleans, NaN, ±inf, None, pd.NA and other types become None.

    Returns:
        An object Series of str or None on the index of `values`.
    """
    column = plain_column(values)
    dtype = column.dtype

    if isinstance(dtype, pd.StringDtype):
        ids = column.to_numpy(dtype=object, na_value=None, copy=True)
        ids[ids == ""] = None
        return object_series(ids, values.index)
    if dtype.kind in "iu":
        return object_series(column.astype(str).to_numpy(dtype=object), values.index)
    if dtype.kind == "f":
        return object_series(_format_floats(column.to_numpy()), values.index)

    # Columns of text ids or of integer ids without missing values skip the per-kind steps.
    elements = column.to_numpy(dtype=object)
    inferred = infer_dtype(elements, skipna=False)
    if inferred == "string":
        ids = elements.copy()
        ids[ids == ""] = None
        return object_series(ids, values.index)
    if inferred == "integer":
        return object_series(_format_integers(elements), values.index)

    kinds = element_kinds(column)
    ids = np.full(len(elements), None, dtype=object)

    strings = np.flatnonzero(kinds == Kind.STRING)
    texts = elements[strings]
    ids[strings[texts != ""]] = texts[texts != ""]
    integers = kinds == Kind.INTEGER
    ids[integers] = _format_integers(elements[integers])
    floats = kinds == Kind.FLOAT
    ids[floats] = _format_floats(elements[floats].astype(float))
    decimals = kinds == Kind.DECIMAL
    ids[decimals] = map_unique(elements[decimals], _format_decimal)
    return object_series(ids, values.index)


def check_external_ids(values: pd.Series) -> pd.Series:
    """Return `external_id_too_long` where an id, formatted by `format_ids`, exceeds 255 characters.

    Returns:
        An object Series of reasons or None on the index of `values`.
    """
    too_long = text_lengths(format_ids(values)) > settings.MAX_EXTERNAL_ID_LENGTH
    reasons = empty_reasons(len(too_long))
    reasons[too_long] = Reason.EXTERNAL_ID_TOO_LONG.value
    return object_series(reasons, values.index)


def _normalize_unique_emails(
    addresses: pd.Series, lowercase_local: bool
) -> tuple[np.ndarray, np.ndarray]:
    trimmed = addresses.str.replace(_EDGE_SPACE, "", regex=True)
    blank = (trimmed == "").to_numpy()
    parts = trimmed.str.extract(_EMAIL_PATTERN)

    local = parts["local"]
    if lowercase_local:
        local = local.str.lower()
    emails = local + "@" + parts["domain"].str.lower()

    matched = parts["local"].notna().to_numpy()
    short_local = (parts["local"].str.len() <= _MAX_EMAIL_LOCAL_LENGTH).to_numpy()
    valid = matched & short_local
    too_long = valid & (emails.str.len() > settings.MAX_EMAIL_LENGTH).to_numpy()

    reasons = empty_reasons(len(addresses))
    reasons[~valid & ~blank] = Reason.EMAIL_INVALID.value
    reasons[too_long] = Reason.EMAIL_TOO_LONG.value
    result = np.where(valid & ~too_long, emails.to_numpy(dtype=object), None).astype(object)
    return result, reasons


def normalize_emails(
    values: pd.Series, lowercase_local: bool = False
) -> tuple[pd.Series, pd.Series]:
    """Trim emails and lower-case their domain, and the local part if `lowercase_local` is set.

    Tags such as "+news" are kept. An address is valid when it is an RFC 5322 dot-atom local
    part of at most 64 characters, one "@", and a domain of at least two labels whose last
    label starts with a letter. Non-ASCII characters are allowed as RFC 6531 allows them, and
    kept as they are, as walkerOS passes them. Quoted local parts and IP-literal domains are
    rejected. None, NaN, pd.NA and blank strings are missing and get no reason: the caller
    decides whether the row keeps its other identifiers.

    NOTE: whether Klaviyo accepts internationalized (non-ASCII) addresses is unverified. If it
    rejects one, the row gets Klaviyo's error rather than `email_invalid`.

    Returns:
        (emails, reasons): object Series of the normalized email or None, and of None,
        `email_invalid` (including non-string values) or `email_too_long` (over 100
        characters after trimming).
    """
    column = plain_column(values)
    kinds = element_kinds(column)
    elements = column.to_numpy(dtype=object)
    emails = np.full(len(elements), None, dtype=object)
    reasons = empty_reasons(len(elements))

    strings = np.flatnonzero(kinds == Kind.STRING)
    codes, addresses = unique_strings(elements[strings])
    unique_emails, unique_reasons = _normalize_unique_emails(addresses, lowercase_local)
    emails[strings] = unique_emails[codes]
    reasons[strings] = unique_reasons[codes]

    reasons[(kinds != Kind.MISSING) & (kinds != Kind.STRING)] = Reason.EMAIL_INVALID.value
    return object_series(emails, values.index), object_series(reasons, values.index)


@cache
def _region_code(hint: str) -> str:
    """Return the libphonenumber region for a country code or name, or "" when there is none."""
    code = hint.strip().upper()
    code = _REGION_ALIASES.get(code, code)
    if code in phonenumbers.SUPPORTED_REGIONS:
        return code
    try:
        country = pycountry.countries.lookup(code)
    except LookupError:
        return ""
    return country.alpha_2 if country.alpha_2 in phonenumbers.SUPPORTED_REGIONS else ""


def _region_hints(regions: pd.Series | str | None, index: pd.Index) -> np.ndarray:
    """Return the libphonenumber region of each row, or "" where there is no usable hint."""
    if regions is None:
        return np.full(len(index), "", dtype=object)

    if isinstance(regions, str):
        code = _region_code(regions)
        if not code:
            raise NormalizationConfigError(
                f"invalid default phone region {regions!r}: expected a two-letter region code "
                "such as 'US' or 'DE' (normalize.default_region)"
            )
        return np.full(len(index), code, dtype=object)

    _check_aligned(regions, index)
    column = plain_column(regions)
    kinds = element_kinds(column)
    hints = np.full(len(index), "", dtype=object)
    strings = kinds == Kind.STRING
    hints[strings] = map_unique(column.to_numpy(dtype=object)[strings], _region_code)
    return hints


def _check_aligned(regions: pd.Series, index: pd.Index) -> None:
    if not regions.index.equals(index):
        raise ValueError("regions must be a Series on the same index as the phone numbers")


def _format_phone(number: str, region: str | None) -> str | None:
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    # IS_POSSIBLE_LOCAL_ONLY numbers lack an area code, so their E.164 form would be wrong.
    possibility = phonenumbers.is_possible_number_with_reason(parsed)
    if possibility != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _phone_texts(column: pd.Series, kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return phone values as text ("" where missing or blank) and a mask of unusable values."""
    elements = column.to_numpy(dtype=object)
    texts = np.full(len(elements), "", dtype=object)
    numeric_kinds = (Kind.INTEGER, Kind.FLOAT, Kind.DECIMAL)
    unusable = ~np.isin(kinds, (Kind.MISSING, Kind.STRING, *numeric_kinds))

    strings = np.flatnonzero(kinds == Kind.STRING)
    texts[strings] = pd.Series(elements[strings], dtype=object).str.strip().to_numpy()

    # Warehouses often store phone numbers as integers. Negative or fractional numbers are not
    # phone numbers, so they are unusable.
    numbers = np.flatnonzero(np.isin(kinds, numeric_kinds))
    number_ids = format_ids(pd.Series(elements[numbers], dtype=object)).to_numpy()
    digits_only = np.array([bool(text) and text.isdigit() for text in number_ids], dtype=bool)
    texts[numbers[digits_only]] = number_ids[digits_only]
    unusable[numbers[~digits_only]] = True
    return texts, unusable


def normalize_phones(
    values: pd.Series, regions: pd.Series | str | None
) -> tuple[pd.Series, pd.Series]:
    """Format phone numbers as E.164 with libphonenumber, using a region for national numbers.

    `regions` is one of:
    * a region for every row, such as `NormalizeConfig.default_region`;
    * a Series of per-row hints on the same index: ISO 3166 alpha-2 or alpha-3 codes or
      English country names, where an unknown hint counts as no hint;
    * None, so that only numbers written with "+" and a country code parse.
    Combine a per-row hint with the default as `country.fillna(default_region)`.

    A number is kept when it parses and libphonenumber rates it a *possible* number for its
    region. Possible is weaker than valid: the fictional 555 numbers are possible, so "(555)
    555-0123" with region US becomes "+15555550123". Numbers that lack an area code
    (IS_POSSIBLE_LOCAL_ONLY) are rejected. Extensions are dropped. Each distinct
    (number, region) pair is parsed once.

    Raises:
        NormalizationConfigError: `regions` is a string that names no known region.
        ValueError: `regions` is a Series on a different index.

    Returns:
        (phones, reasons): object Series of the E.164 number or None, and of None or
        `phone_invalid`. Missing and blank values get None and no reason.
    """
    column = plain_column(values)
    kinds = element_kinds(column)
    if (kinds == Kind.MISSING).all():
        # Without numbers there is nothing to parse, but the regions are still checked.
        if isinstance(regions, pd.Series):
            _check_aligned(regions, values.index)
        else:
            _region_hints(regions, values.index)
        nothing = empty_reasons(len(kinds))
        return object_series(nothing, values.index), object_series(nothing.copy(), values.index)
    hints = _region_hints(regions, values.index)
    texts, unusable = _phone_texts(column, kinds)
    phones = np.full(len(texts), None, dtype=object)
    reasons = empty_reasons(len(texts))
    reasons[unusable] = PHONE_INVALID

    # Each distinct (number, region) pair is parsed once. The pair code combines the codes of
    # the number and of the region.
    present = np.flatnonzero(~unusable & (texts != ""))
    number_codes, unique_numbers = pd.factorize(texts[present])
    region_codes, unique_regions = pd.factorize(hints[present])
    pair_keys = number_codes.astype(np.int64) * max(len(unique_regions), 1) + region_codes
    codes, unique_keys = pd.factorize(pair_keys)
    formatted = np.empty(len(unique_keys), dtype=object)
    for position, key in enumerate(unique_keys):
        number_code, region_code = divmod(int(key), max(len(unique_regions), 1))
        region = unique_regions[region_code]
        formatted[position] = _format_phone(unique_numbers[number_code], region or None)
    failed = np.array([phone is None for phone in formatted], dtype=bool)

    phones[present] = formatted[codes]
    reasons[present[failed[codes]]] = PHONE_INVALID
    return object_series(phones, values.index), object_series(reasons, values.index)
