"""Tests of the normalizers: ids, emails, phones, event times, values, currencies, event names."""

import json
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from klaviyo_pipeline.jsonsafe import MISSING, dumps, to_json_safe
from klaviyo_pipeline.normalize import (
    PHONE_INVALID,
    NormalizationConfigError,
    check_external_ids,
    check_time_range,
    format_ids,
    format_js_number,
    format_times,
    normalize_currencies,
    normalize_emails,
    normalize_event_names,
    normalize_phones,
    parse_timestamps,
    parse_values,
)
from klaviyo_pipeline.normalize._columns import element_kinds
from klaviyo_pipeline.outcomes import Reason

NOW = datetime(2024, 10, 1, 12, 0, 0, tzinfo=UTC)


def single(value: Any) -> pd.Series:
    """Return a one-element object Series, so that pandas infers nothing about the value."""
    return pd.Series([value], dtype=object)


def formatted_time(value: Any, **options: Any) -> tuple[str | None, str | None]:
    """Parse one value and return its wire-format time and its reason."""
    times, reasons = parse_timestamps(single(value), **options)
    return format_times(times).iloc[0], reasons.iloc[0]


# --- format_ids -----------------------------------------------------------------------------

FORMAT_IDS_CASES = [
    ("ORD-1001", "ORD-1001"),  # strings are kept
    (" ORD-1001 ", " ORD-1001 "),  # and not trimmed, as walkerOS passes ids verbatim
    ("", None),  # the empty string means no id
    (90210, "90210"),  # integer ids become their digits
    (np.int64(90210), "90210"),  # NumPy integers too
    (12345.0, "12345"),  # an integral float has no ".0", as in JavaScript
    (0.1, "0.1"),  # shortest round-trip digits
    (-0.0, "0"),  # JavaScript prints negative zero as "0"
    (1e21, "1e+21"),  # exponent form from 1e21 up
    (1e20, "100000000000000000000"),  # and plain digits below it
    (1.5e-7, "1.5e-7"),  # exponent form below 1e-6
    (0.000001, "0.000001"),  # and plain digits from 1e-6
    (123456789012345680000.0, "123456789012345680000"),  # JS digits, not the exact binary value
    (2**70, "1180591620717411303424"),  # Python ints keep every digit
    (Decimal("12345.000"), "12345"),  # integral Decimals become integer digits
    (Decimal("0.10"), "0.1"),  # other Decimals are formatted as their float
    (np.float32(2.5), "2.5"),  # float32 is read as the double it converts to
    (True, None),  # booleans are dropped, as walkerOS drops non-strings
    (np.bool_(False), None),  # NumPy booleans too
    (None, None),  # missing values stay missing
    (np.nan, None),
    (pd.NA, None),
    (pd.NaT, None),
    (math.inf, None),  # JavaScript's resolveId needs a finite number
    (-math.inf, None),
    (Decimal("Infinity"), None),
    ({"id": 1}, None),  # containers are no ids
    ([1], None),
    (datetime(2024, 1, 1), None),  # nor are datetimes
    (np.timedelta64(5, "s"), None),  # nor durations, although NumPy makes them integers
    (np.timedelta64("NaT"), None),
]


@pytest.mark.parametrize(("value", "expected"), FORMAT_IDS_CASES)
def test_format_ids_object_values(value: Any, expected: str | None) -> None:
    assert format_ids(single(value)).iloc[0] == expected


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        # int64 columns take the vectorized astype(str) path
        (pd.Series([1, 90210, -5]), ["1", "90210", "-5"]),
        # float64 columns: NaN is missing, integral floats lose ".0"
        (pd.Series([12345.0, np.nan, 0.5, 1e21]), ["12345", None, "0.5", "1e+21"]),
        # nullable Int64 keeps large integers exact
        (pd.Series([2**62, None], dtype="Int64"), [str(2**62), None]),
        # the default str dtype stores missing values as NaN
        (pd.Series(["a", None, ""]), ["a", None, None]),
        # Arrow strings from Parquet
        (pd.Series(["a", None], dtype=pd.ArrowDtype(pa.string())), ["a", None]),
        # bool columns have no ids
        (pd.Series([True, False]), [None, None]),
        # object columns of integers only, within and beyond int64
        (
            pd.Series([2**63 - 1, -(2**63), np.int64(7), np.uint64(8)], dtype=object),
            [str(2**63 - 1), str(-(2**63)), "7", "8"],
        ),
        (pd.Series([2**63, 1], dtype=object), [str(2**63), "1"]),
        (
            pd.Series([np.uint64(2**64 - 1), -(2**63) - 1], dtype=object),
            [str(2**64 - 1), str(-(2**63) - 1)],
        ),
    ],
)
def test_format_ids_typed_columns(series: pd.Series, expected: list[str | None]) -> None:
    assert format_ids(series).tolist() == expected


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (1.0, "1"),
        (100.0, "100"),
        (1.5, "1.5"),
        (123456.789, "123456.789"),
        (0.1 + 0.2, "0.30000000000000004"),
        (2.0**53, "9007199254740992"),
        (1e21, "1e+21"),
        (-1e21, "-1e+21"),
        (1.2345e25, "1.2345e+25"),
        (1e-7, "1e-7"),
        (1.2e-6, "0.0000012"),
        (123e-20, "1.23e-18"),
        (5e-324, "5e-324"),  # the smallest subnormal double
        (1.7976931348623157e308, "1.7976931348623157e+308"),  # the largest double
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
    ],
)
def test_format_js_number_matches_javascript(number: float, expected: str) -> None:
    # The expected strings are what JavaScript's String(number) returns for these doubles.
    assert format_js_number(number) == expected


def test_format_ids_keeps_index() -> None:
    series = pd.Series([1, "a", None], index=["z", "y", "x"], dtype=object)
    result = format_ids(series)
    assert result.index.equals(series.index)
    assert result.tolist() == ["1", "a", None]


# --- check_external_ids ---------------------------------------------------------------------

EXTERNAL_ID_CASES = [
    ("a" * 300, Reason.EXTERNAL_ID_TOO_LONG),  # over 255 characters is rejected
    ("a" * 256, Reason.EXTERNAL_ID_TOO_LONG),  # the first length over the limit
    ("a" * 255, None),  # exactly the limit is accepted
    ("ü" * 255, None),  # the limit counts characters, not UTF-8 bytes
    (12345, None),  # numbers are checked as their formatted text
    (10**300, Reason.EXTERNAL_ID_TOO_LONG),  # 301 digits
    (None, None),  # missing ids get no reason
    ("", None),
]


@pytest.mark.parametrize(("value", "expected"), EXTERNAL_ID_CASES)
def test_check_external_ids_length(value: Any, expected: str | None) -> None:
    assert check_external_ids(single(value)).iloc[0] == expected


# --- normalize_emails -----------------------------------------------------------------------

EMAIL_CASES = [
    # surrounding whitespace trimmed, domain lower-cased, local part and +tag kept
    ("  User.Name+tag@Example.COM ", "User.Name+tag@example.com", None),
    ("user@example.com", "user@example.com", None),
    ("\u200buser@example.com\ufeff", "user@example.com", None),  # zero-width characters
    ("\tuser@example.com\n", "user@example.com", None),
    ("o'neil@example.co.uk", "o'neil@example.co.uk", None),  # RFC 5322 atext
    ("user@xn--80ak6aa92e.com", "user@xn--80ak6aa92e.com", None),  # punycode domain
    ("not-an-email", None, Reason.EMAIL_INVALID),  # no @
    ("a@b@example.com", None, Reason.EMAIL_INVALID),  # two @
    ("user name@example.com", None, Reason.EMAIL_INVALID),  # space inside
    ("user@exa mple.com", None, Reason.EMAIL_INVALID),
    ("@example.com", None, Reason.EMAIL_INVALID),  # empty local part
    ("user@", None, Reason.EMAIL_INVALID),  # empty domain
    ("user@localhost", None, Reason.EMAIL_INVALID),  # no dot in the domain
    ("user@example..com", None, Reason.EMAIL_INVALID),  # empty label
    ("user@example.com.", None, Reason.EMAIL_INVALID),  # trailing dot
    ("user@-example.com", None, Reason.EMAIL_INVALID),  # label starts with a hyphen
    ("user@example.c", None, Reason.EMAIL_INVALID),  # one-letter top-level domain
    ("user@example.123", None, Reason.EMAIL_INVALID),  # numeric top-level domain
    (".user@example.com", None, Reason.EMAIL_INVALID),  # leading dot in the local part
    ("user.@example.com", None, Reason.EMAIL_INVALID),
    ("us..er@example.com", None, Reason.EMAIL_INVALID),
    ('"quoted"@example.com', None, Reason.EMAIL_INVALID),  # quoted local parts
    ("user@[192.168.0.1]", None, Reason.EMAIL_INVALID),  # IP-literal domains
    ("jürgen.müller@exämple.de", "jürgen.müller@exämple.de", None),  # RFC 6531 addresses
    ("Jürgen@EXÄMPLE.DE", "Jürgen@exämple.de", None),  # Unicode domains are lower-cased too
    ("user\u00a0name@example.com", None, Reason.EMAIL_INVALID),  # Unicode whitespace inside
    ("user@exa\u3000mple.com", None, Reason.EMAIL_INVALID),
    ("user\u200bname@example.com", None, Reason.EMAIL_INVALID),  # zero-width space inside
    ("user@example.com>", None, Reason.EMAIL_INVALID),
    ("a" * 64 + "@example.com", "a" * 64 + "@example.com", None),  # local part of 64
    ("a" * 65 + "@example.com", None, Reason.EMAIL_INVALID),  # local part over 64
    ("a" * 60 + "@" + "b" * 35 + ".com", "a" * 60 + "@" + "b" * 35 + ".com", None),  # 100 long
    ("a" * 60 + "@" + "b" * 36 + ".com", None, Reason.EMAIL_TOO_LONG),  # 101 characters
    (None, None, None),  # missing emails get no reason, so other identifiers decide
    ("", None, None),
    ("   ", None, None),
    (np.nan, None, None),
    (pd.NA, None, None),
    (12345, None, Reason.EMAIL_INVALID),  # numbers are no emails
    (True, None, Reason.EMAIL_INVALID),
]


@pytest.mark.parametrize(("value", "expected", "reason"), EMAIL_CASES)
def test_normalize_emails_cases(value: Any, expected: str | None, reason: str | None) -> None:
    emails, reasons = normalize_emails(single(value))
    assert emails.iloc[0] == expected
    assert reasons.iloc[0] == reason


def test_normalize_emails_lowercase_local() -> None:
    emails, reasons = normalize_emails(
        pd.Series(["  User.Name+tag@Example.COM "]), lowercase_local=True
    )
    assert emails.tolist() == ["user.name+tag@example.com"]
    assert reasons.tolist() == [None]


def test_normalize_emails_repeated_values() -> None:
    # Distinct addresses are checked once, and every repeat gets the result of its address.
    series = pd.Series(
        ["A@Example.com", "bad", None, "A@Example.com", "bad", "b@example.com"] * 50,
        index=range(1000, 1300),
    )
    emails, reasons = normalize_emails(series)
    assert emails.index.equals(series.index)
    assert reasons.index.equals(series.index)
    assert emails.iloc[:6].tolist() == [
        "A@example.com",
        None,
        None,
        "A@example.com",
        None,
        "b@example.com",
    ]
    assert reasons.iloc[:6].tolist() == [None, "email_invalid", None, None, "email_invalid", None]
    assert emails.iloc[294:].tolist() == emails.iloc[:6].tolist()


def test_normalize_emails_bad_row_only() -> None:
    # One malformed email is caught before sending, and the other rows are unaffected.
    emails, reasons = normalize_emails(
        pd.Series(["user@example.com", "not-an-email", "user2@example.com"])
    )
    assert emails.tolist() == ["user@example.com", None, "user2@example.com"]
    assert reasons.tolist() == [None, Reason.EMAIL_INVALID, None]


# --- normalize_phones -----------------------------------------------------------------------

PHONE_CASES = [
    # the fictional 555 number is possible, so it is formatted with the country hint
    ("(555) 555-0123", "US", "+15555550123", None),
    ("555-555-0123", "US", "+15555550123", None),
    ("+1 555 555 0123", None, "+15555550123", None),  # "+" needs no region
    ("+1 555 555 0123 ext. 12", None, "+15555550123", None),  # extensions are dropped
    ("(201) 555-0123", "US", "+12015550123", None),  # libphonenumber's valid US example
    ("030 123456", "DE", "+4930123456", None),  # libphonenumber's valid DE example
    ("0049 30 123456", "DE", "+4930123456", None),  # international prefix from Germany
    ("+49 30 123456", "US", "+4930123456", None),  # the number's own country code wins
    ("0121 234 5678", "GB", "+441212345678", None),
    ("0121 234 5678", "UK", "+441212345678", None),  # "UK" is read as GB
    ("030 123456", "DEU", "+4930123456", None),  # alpha-3 hint
    ("030 123456", "Germany", "+4930123456", None),  # English country name
    ("030 123456", " de ", "+4930123456", None),  # hints are trimmed and upper-cased
    ("030 123456", None, None, PHONE_INVALID),  # a national number without a region
    ("030 123456", "XX", None, PHONE_INVALID),  # an unknown hint is no hint
    ("555-0123", "US", None, PHONE_INVALID),  # no area code: only possible locally
    ("12", "US", None, PHONE_INVALID),  # too short
    ("1" * 30, "US", None, PHONE_INVALID),  # too long
    ("abc", "US", None, PHONE_INVALID),  # not a number
    (15555550123, "US", "+15555550123", None),  # integer columns
    (15555550123.0, "US", "+15555550123", None),  # integral floats
    (Decimal("15555550123"), "US", "+15555550123", None),
    (-15555550123, "US", None, PHONE_INVALID),  # negative numbers are no phone numbers
    (5555550123.5, "US", None, PHONE_INVALID),  # nor are fractions
    (math.inf, "US", None, PHONE_INVALID),
    (True, "US", None, PHONE_INVALID),
    ({"phone": "1"}, "US", None, PHONE_INVALID),
    (None, "US", None, None),  # a NULL phone is missing: no value and no reason
    ("", "US", None, None),
    ("   ", "US", None, None),
    (np.nan, "US", None, None),
]


@pytest.mark.parametrize(("value", "region", "expected", "reason"), PHONE_CASES)
def test_normalize_phones_cases(
    value: Any, region: str | None, expected: str | None, reason: str | None
) -> None:
    phones, reasons = normalize_phones(single(value), single(region))
    assert phones.iloc[0] == expected
    assert reasons.iloc[0] == reason


def test_normalize_phones_possible_not_valid() -> None:
    # The 555 number is formatted although libphonenumber does not rate it valid.
    parsed = phonenumbers.parse("(555) 555-0123", "US")
    assert phonenumbers.is_possible_number(parsed)
    assert not phonenumbers.is_valid_number(parsed)
    phones, _ = normalize_phones(pd.Series(["(555) 555-0123"]), "US")
    assert phones.tolist() == ["+15555550123"]


def test_normalize_phones_default_region() -> None:
    phones, reasons = normalize_phones(pd.Series(["(555) 555-0123", None, "abc"]), "US")
    assert phones.tolist() == ["+15555550123", None, None]
    assert reasons.tolist() == [None, None, PHONE_INVALID]


def test_normalize_phones_per_row_regions() -> None:
    # One number string parses differently per region, so each (number, region) pair counts.
    numbers = pd.Series(["030 123456", "030 123456", "030 123456"], index=[7, 8, 9])
    regions = pd.Series(["DE", None, "DE"], index=[7, 8, 9])
    phones, reasons = normalize_phones(numbers, regions)
    assert phones.tolist() == ["+4930123456", None, "+4930123456"]
    assert reasons.tolist() == [None, PHONE_INVALID, None]
    assert phones.index.equals(numbers.index)


def test_normalize_phones_invalid_default_region() -> None:
    with pytest.raises(NormalizationConfigError, match="'XX'"):
        normalize_phones(pd.Series(["030 123456"]), "XX")


def test_normalize_phones_misaligned_regions() -> None:
    with pytest.raises(ValueError, match="same index"):
        normalize_phones(pd.Series(["030 123456"]), pd.Series(["DE"], index=[5]))


# --- parse_timestamps, check_time_range, format_times ---------------------------------------

TIMESTAMP_CASES = [
    # nanoseconds from the warehouse are truncated, and the wire format has whole seconds
    ("2024-09-11T20:08:49.891912312Z", "2024-09-11T20:08:49Z", None),
    ("2024-09-11T20:08:49.8919123129876Z", "2024-09-11T20:08:49Z", None),  # 13 digits
    ("2024-09-11T20:08:49.999999Z", "2024-09-11T20:08:49Z", None),  # truncated, not rounded
    ("2019-10-01 00:00:00 UTC", "2019-10-01T00:00:00Z", None),  # literal " UTC" suffix
    ("2019-10-01 00:00:00 GMT", "2019-10-01T00:00:00Z", None),
    ("2024-09-11T20:08:49+02:00", "2024-09-11T18:08:49Z", None),  # offsets
    ("2024-09-11T20:08:49-0500", "2024-09-12T01:08:49Z", None),
    ("2024-09-11 20:08:49 +05", "2024-09-11T15:08:49Z", None),
    ("20240911T200849Z", "2024-09-11T20:08:49Z", None),  # ISO 8601 basic format
    ("2024-09-11T20:08:49,5Z", "2024-09-11T20:08:49Z", None),  # decimal comma
    ("2024-09-11t20:08:49z", "2024-09-11T20:08:49Z", None),  # lower-case designators
    ("  2024-09-11T20:08:49Z  ", "2024-09-11T20:08:49Z", None),  # surrounding spaces
    (1726085329891, "2024-09-11T20:08:49Z", None),  # epoch milliseconds
    (np.int64(1726085329891), "2024-09-11T20:08:49Z", None),
    (1726085329891.9, "2024-09-11T20:08:49Z", None),
    ("1726085329891", "2024-09-11T20:08:49Z", None),  # numeric strings are epochs too
    (Decimal("1726085329891"), "2024-09-11T20:08:49Z", None),
    (0, "1970-01-01T00:00:00Z", None),  # 0 is the epoch, not "now" as in walkerOS
    # Python datetimes and Timestamps carry their zone
    (
        datetime(2024, 9, 11, 22, 8, 49, tzinfo=ZoneInfo("Europe/Berlin")),
        "2024-09-11T20:08:49Z",
        None,
    ),
    (pd.Timestamp("2024-09-11T20:08:49.5-04:00"), "2024-09-12T00:08:49Z", None),
    (None, None, Reason.TIME_MISSING),  # missing values
    (np.nan, None, Reason.TIME_MISSING),
    (pd.NA, None, Reason.TIME_MISSING),
    (pd.NaT, None, Reason.TIME_MISSING),
    ("", None, Reason.TIME_MISSING),
    ("   ", None, Reason.TIME_MISSING),
    ("abc", None, Reason.TIME_INVALID),  # unparseable
    ("09/11/2024 20:08", None, Reason.TIME_INVALID),  # not ISO 8601: day and month not guessed
    ("2024-02-30T00:00:00Z", None, Reason.TIME_INVALID),  # no such day
    ("2024-09-11T25:00:00Z", None, Reason.TIME_INVALID),
    ("2024-09-11T20:08:49 Europe/Berlin", None, Reason.TIME_INVALID),  # zone names
    (True, None, Reason.TIME_INVALID),  # booleans are no times
    (math.inf, None, Reason.TIME_INVALID),
    ({"t": 1}, None, Reason.TIME_INVALID),
    (b"2024-09-11", None, Reason.TIME_INVALID),
    (10**30, None, Reason.TIME_OUT_OF_RANGE),  # beyond the year 9999
    (1e30, None, Reason.TIME_OUT_OF_RANGE),
    (1.7976931348623157e308, None, Reason.TIME_OUT_OF_RANGE),  # overflows when scaled to µs
    ("1e30", None, Reason.TIME_OUT_OF_RANGE),
    ("0000-01-01T00:00:00Z", None, Reason.TIME_OUT_OF_RANGE),  # before the year 1
]


@pytest.mark.parametrize(("value", "expected", "reason"), TIMESTAMP_CASES)
def test_parse_timestamps_cases(value: Any, expected: str | None, reason: str | None) -> None:
    # No source timezone: none of these values is naive, so none may raise.
    assert formatted_time(value) == (expected, reason)


NAIVE_CASES = [
    ("2024-09-11 20:08:49", "2024-09-11T18:08:49Z"),  # naive strings are read in the zone
    ("2024-09-11T20:08:49.123", "2024-09-11T18:08:49Z"),
    ("2024-09-11", "2024-09-10T22:00:00Z"),  # a date is midnight in the zone
    (datetime(2024, 9, 11, 20, 8, 49), "2024-09-11T18:08:49Z"),
    (date(2024, 9, 11), "2024-09-10T22:00:00Z"),
    (np.datetime64("2024-09-11T20:08:49"), "2024-09-11T18:08:49Z"),
    (pd.Timestamp("2024-09-11 20:08:49"), "2024-09-11T18:08:49Z"),
    ("2024-01-15 12:00:00", "2024-01-15T11:00:00Z"),  # winter time is UTC+1
]


@pytest.mark.parametrize(("value", "expected"), NAIVE_CASES)
def test_parse_timestamps_naive_in_zone(value: Any, expected: str) -> None:
    assert formatted_time(value, source_timezone="Europe/Berlin") == (expected, None)


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["2024-09-11 20:08:49"]),  # naive strings
        pd.Series([datetime(2024, 9, 11, 20, 8, 49)], dtype=object),  # naive datetimes
        pd.Series(pd.to_datetime(["2024-09-11 20:08:49"])),  # naive datetime64 columns
        pd.Series(["2024-09-11T20:08:49Z", "2024-09-11 20:08:49"]),  # one naive among aware
    ],
)
def test_parse_timestamps_naive_without_zone(values: pd.Series) -> None:
    with pytest.raises(NormalizationConfigError, match=r"source\.timezone") as raised:
        parse_timestamps(values)
    assert isinstance(raised.value, ValueError)
    assert "2024-09-11" in str(raised.value)


def test_parse_timestamps_unparseable_without_zone() -> None:
    # A string that is no time at all is invalid data, not a configuration error.
    times, reasons = parse_timestamps(pd.Series(["abc", None]))
    assert times.isna().all()
    assert reasons.tolist() == [Reason.TIME_INVALID, Reason.TIME_MISSING]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # the repeated hour when clocks go back is read as its first occurrence (EDT)
        ("2024-11-03 01:30:00", "2024-11-03T05:30:00Z"),
        # the skipped hour when clocks go forward moves to the first valid time
        ("2024-03-10 02:30:00", "2024-03-10T07:00:00Z"),
    ],
)
def test_parse_timestamps_daylight_saving(value: str, expected: str) -> None:
    assert formatted_time(value, source_timezone="America/New_York") == (expected, None)


@pytest.mark.parametrize(
    ("value", "unit"),
    [
        (1726085329, "s"),
        (1726085329.891, "s"),
        ("1726085329", "s"),
        (1726085329891, "ms"),
        (1726085329891912, "us"),
        (1726085329891912312, "ns"),
        ("1726085329891912312", "ns"),
        (1.726085329891912e18, "ns"),
    ],
)
def test_parse_timestamps_epoch_units(value: Any, unit: str) -> None:
    assert formatted_time(value, unit=unit) == ("2024-09-11T20:08:49Z", None)


def test_parse_timestamps_seconds_read_as_milliseconds() -> None:
    # Epoch seconds in a millisecond source land in January 1970, which is then out of range.
    times, _ = parse_timestamps(pd.Series([1726085329]), unit="ms")
    assert format_times(times).tolist() == ["1970-01-20T23:28:05Z"]
    assert check_time_range(times, now=NOW).tolist() == [Reason.TIME_OUT_OF_RANGE]


def test_parse_timestamps_invalid_unit() -> None:
    with pytest.raises(NormalizationConfigError, match="timestamp unit"):
        parse_timestamps(pd.Series([1]), unit="minutes")


def test_parse_timestamps_invalid_timezone() -> None:
    with pytest.raises(NormalizationConfigError, match="Mars/Olympus"):
        parse_timestamps(pd.Series([1]), source_timezone="Mars/Olympus")


def test_parse_timestamps_mixed_object_column() -> None:
    values = pd.Series(
        [
            "2024-09-11T20:08:49Z",
            1726085329891,
            datetime(2024, 9, 11, 20, 8, 49, tzinfo=UTC),
            None,
            "bad",
            True,
            "2024-09-11 20:08:49",
        ],
        index=list("abcdefg"),
        dtype=object,
    )
    times, reasons = parse_timestamps(values, source_timezone="UTC")
    assert str(times.dtype) == "datetime64[us, UTC]"
    assert times.index.equals(values.index)
    assert reasons.index.equals(values.index)
    assert format_times(times).tolist() == ["2024-09-11T20:08:49Z"] * 3 + [None] * 3 + [
        "2024-09-11T20:08:49Z"
    ]
    assert reasons.tolist() == [
        None,
        None,
        None,
        "time_missing",
        "time_invalid",
        "time_invalid",
        None,
    ]


@pytest.mark.parametrize(
    "series",
    [
        # tz-aware datetime64 columns are converted to UTC
        pd.Series(pd.to_datetime(["2024-09-11 22:08:49"]).tz_localize("Europe/Berlin")),
        # Arrow timestamps from Parquet
        pd.Series(
            pd.array(
                [datetime(2024, 9, 11, 20, 8, 49, tzinfo=UTC)],
                dtype=pd.ArrowDtype(pa.timestamp("us", tz="UTC")),
            )
        ),
        # the default str dtype
        pd.Series(["2024-09-11T20:08:49Z"]),
        # float epoch milliseconds
        pd.Series([1726085329891.0]),
    ],
)
def test_parse_timestamps_typed_columns(series: pd.Series) -> None:
    times, reasons = parse_timestamps(series)
    assert format_times(times).tolist() == ["2024-09-11T20:08:49Z"]
    assert reasons.tolist() == [None]


def test_parse_timestamps_typed_missing_values() -> None:
    times, reasons = parse_timestamps(pd.Series([np.nan, 1726085329891.0]))
    assert reasons.tolist() == [Reason.TIME_MISSING, None]
    naive = pd.Series(pd.to_datetime([None, "2024-09-11 20:08:49"]))
    times, reasons = parse_timestamps(naive, source_timezone="UTC")
    assert reasons.tolist() == [Reason.TIME_MISSING, None]
    assert format_times(times).tolist() == [None, "2024-09-11T20:08:49Z"]


TIME_RANGE_CASES = [
    ("1970-01-01T00:00:00Z", Reason.TIME_OUT_OF_RANGE),  # a NULL date cast to epoch
    ("1999-12-31T23:59:59Z", Reason.TIME_OUT_OF_RANGE),  # the last second before 2000
    ("2000-01-01T00:00:00Z", None),  # the first accepted second
    ("2024-09-11T20:08:49Z", None),
    ("2025-10-01T12:00:00Z", None),  # exactly now + 365 days
    ("2025-10-01T12:00:01Z", Reason.TIME_OUT_OF_RANGE),  # one second later
    ("2099-01-01T00:00:00Z", Reason.TIME_OUT_OF_RANGE),  # a typo'd future year
    (None, None),  # NaT already has a reason from parse_timestamps
]


@pytest.mark.parametrize(("value", "expected"), TIME_RANGE_CASES)
def test_check_time_range_bounds(value: str | None, expected: str | None) -> None:
    times, _ = parse_timestamps(single(value))
    assert check_time_range(times, now=NOW).iloc[0] == expected


def test_check_time_range_other_rows_unaffected() -> None:
    times, _ = parse_timestamps(pd.Series(["2024-05-01T10:00:00Z", "1970-01-01T00:00:00Z"]))
    assert check_time_range(times, now=NOW).tolist() == [None, Reason.TIME_OUT_OF_RANGE]


def test_check_time_range_default_now() -> None:
    times = pd.Series([pd.Timestamp.now(tz="UTC"), pd.Timestamp.now(tz="UTC") + timedelta(400)])
    assert check_time_range(times).tolist() == [None, Reason.TIME_OUT_OF_RANGE]


def test_check_time_range_rejects_naive() -> None:
    with pytest.raises(ValueError, match="tz-aware"):
        check_time_range(pd.Series(pd.to_datetime(["2024-01-01"])))
    times, _ = parse_timestamps(pd.Series(["2024-01-01T00:00:00Z"]))
    with pytest.raises(ValueError, match="tz-aware"):
        check_time_range(times, now=datetime(2024, 1, 1))


def test_format_times_converts_to_utc() -> None:
    times = pd.Series(pd.to_datetime(["2024-09-11 22:08:49.9", None]).tz_localize("Europe/Berlin"))
    assert format_times(times).tolist() == ["2024-09-11T20:08:49Z", None]


def test_format_times_outside_datetime_range() -> None:
    # datetime64[us] reaches beyond the year 9999, which strftime cannot print.
    far = np.array([np.datetime64("12000-01-01T00:00:00", "us")])
    times = pd.Series(far).dt.tz_localize("UTC")
    assert format_times(times).tolist() == [None]
    assert check_time_range(times, now=NOW).tolist() == [Reason.TIME_OUT_OF_RANGE]


def test_format_times_rejects_naive() -> None:
    with pytest.raises(ValueError, match="tz-aware"):
        format_times(pd.Series(pd.to_datetime(["2024-01-01"])))


# --- parse_values ---------------------------------------------------------------------------

VALUE_CASES = [
    (49.99, 49.99, None),
    (0, 0.0, None),  # zero is a value, not missing
    (np.int64(3), 3.0, None),
    (np.float32(1.5), 1.5, None),
    (Decimal("19.98"), 19.98, None),  # Decimals from NUMERIC columns
    ("12.50", 12.5, None),  # strict numeric strings
    (" 7 ", 7.0, None),
    ("-1e3", -1000.0, None),
    (".5", 0.5, None),
    ("+3", 3.0, None),
    ("5.", 5.0, None),
    (True, math.nan, None),  # booleans are missing, as in walkerOS
    (np.bool_(False), math.nan, None),
    (math.nan, math.nan, None),  # NaN and ±inf are missing, not invalid
    (math.inf, math.nan, None),
    (-math.inf, math.nan, None),
    (Decimal("NaN"), math.nan, None),
    (Decimal("-Infinity"), math.nan, None),
    (None, math.nan, None),
    (pd.NA, math.nan, None),
    ("", math.nan, None),
    ("  ", math.nan, None),
    ("nan", math.nan, None),  # how float() and CSV writers spell NaN
    ("-Infinity", math.nan, None),
    ("1,299.00", math.nan, Reason.VALUE_INVALID),  # walkerOS's parseFloat would give 1
    ("19.90 EUR", math.nan, Reason.VALUE_INVALID),  # walkerOS's parseFloat would give 19.9
    ("$5", math.nan, Reason.VALUE_INVALID),
    ("abc", math.nan, Reason.VALUE_INVALID),
    ("1_000", math.nan, Reason.VALUE_INVALID),  # Python's float() accepts this, JSON does not
    ("0x10", math.nan, Reason.VALUE_INVALID),
    ("19,90", math.nan, Reason.VALUE_INVALID),  # locale forms need locale_aware
    ("1e400", math.nan, Reason.VALUE_INVALID),  # overflows to infinity
    (10**400, math.nan, Reason.VALUE_INVALID),  # too large for a float
    (Decimal("1E+400"), math.nan, Reason.VALUE_INVALID),
    ({"amount": 1}, math.nan, Reason.VALUE_INVALID),
    ([1], math.nan, Reason.VALUE_INVALID),
    (datetime(2024, 1, 1), math.nan, Reason.VALUE_INVALID),
]


def assert_same_number(actual: float, expected: float) -> None:
    if math.isnan(expected):
        assert math.isnan(actual)
    else:
        assert actual == expected


@pytest.mark.parametrize(("value", "expected", "reason"), VALUE_CASES)
def test_parse_values_cases(value: Any, expected: float, reason: str | None) -> None:
    values, reasons = parse_values(single(value))
    assert values.dtype == np.float64
    assert_same_number(values.iloc[0], expected)
    assert reasons.iloc[0] == reason


LOCALE_VALUE_CASES = [
    ("1,299.00", 1299.0, None),  # comma grouping, dot decimal
    ("1.299,00", 1299.0, None),  # dot grouping, comma decimal
    ("19,90", 19.9, None),  # decimal comma
    ("0,5", 0.5, None),
    ("1,2345", 1.2345, None),  # four digits after the comma cannot be a group
    ("1,299,000", 1299000.0, None),  # two comma groups
    ("1.299.000", 1299000.0, None),  # two dot groups
    ("-1.299,00", -1299.0, None),
    ("1 299,50", 1299.5, None),  # space grouping
    ("1\u00a0299,50", 1299.5, None),  # no-break space grouping
    ("1'299.00", 1299.0, None),  # apostrophe grouping
    ("1.299", 1.299, None),  # a single dot is always a decimal point
    ("12.50", 12.5, None),  # strict forms still parse
    ("1,299", math.nan, Reason.VALUE_INVALID),  # 1299 or 1.299: ambiguous
    ("12,345", math.nan, Reason.VALUE_INVALID),
    ("1,2,3", math.nan, Reason.VALUE_INVALID),
    ("12,34,567", math.nan, Reason.VALUE_INVALID),  # lakh grouping is not supported
    ("1,299.00.00", math.nan, Reason.VALUE_INVALID),
    ("19.90 EUR", math.nan, Reason.VALUE_INVALID),  # currency codes stay invalid
    ("€19,90", math.nan, Reason.VALUE_INVALID),
]


@pytest.mark.parametrize(("value", "expected", "reason"), LOCALE_VALUE_CASES)
def test_parse_values_locale_aware(value: str, expected: float, reason: str | None) -> None:
    values, reasons = parse_values(single(value), locale_aware=True)
    assert_same_number(values.iloc[0], expected)
    assert reasons.iloc[0] == reason


def test_parse_values_typed_columns() -> None:
    values, reasons = parse_values(pd.Series([1, 2], index=[5, 6]))
    assert values.tolist() == [1.0, 2.0]
    assert values.index.tolist() == [5, 6]
    assert reasons.tolist() == [None, None]

    values, reasons = parse_values(pd.Series([49.99, np.nan, np.inf]))
    assert values.iloc[0] == 49.99
    assert values.iloc[1:].isna().all()
    assert reasons.tolist() == [None, None, None]

    values, reasons = parse_values(pd.Series([True, False]))
    assert values.isna().all()
    assert reasons.tolist() == [None, None]

    values, reasons = parse_values(pd.Series(["12.50", None, "x"]))
    assert values.iloc[0] == 12.5
    assert reasons.tolist() == [None, None, Reason.VALUE_INVALID]


# --- normalize_currencies -------------------------------------------------------------------

CURRENCY_CASES = [
    ("usd", "GBP", "USD", None),  # lower case is upper-cased
    (" eur ", "GBP", "EUR", None),  # and trimmed
    ("JPY", None, "JPY", None),
    ("US$", "GBP", None, Reason.CURRENCY_INVALID),  # not ISO 4217, and no fallback
    ("XYZ", "GBP", None, Reason.CURRENCY_INVALID),
    ("dollars", None, None, Reason.CURRENCY_INVALID),
    (840, "GBP", None, Reason.CURRENCY_INVALID),  # ISO numeric codes are not accepted
    (None, "gbp", "GBP", None),  # missing takes the default, upper-cased
    ("", "GBP", "GBP", None),
    ("  ", "GBP", "GBP", None),
    (np.nan, "GBP", "GBP", None),
    (None, None, None, None),  # no default: no currency and no reason
]


@pytest.mark.parametrize(("value", "default", "expected", "reason"), CURRENCY_CASES)
def test_normalize_currencies_cases(
    value: Any, default: str | None, expected: str | None, reason: str | None
) -> None:
    currencies, reasons = normalize_currencies(single(value), default=default)
    assert currencies.iloc[0] == expected
    assert reasons.iloc[0] == reason


def test_normalize_currencies_invalid_default() -> None:
    with pytest.raises(NormalizationConfigError, match="'US\\$'"):
        normalize_currencies(pd.Series(["usd"]), default="US$")


# --- normalize_event_names ------------------------------------------------------------------

EVENT_NAME_CASES = [
    (" Order Complete ", "order complete", None),  # trimmed and case-folded
    ("  Order  Complete ", "order complete", None),  # inner runs collapsed
    ("ORDER\tCOMPLETE\n", "order complete", None),  # any whitespace
    ("order\u00a0complete", "order complete", None),  # no-break space
    ("Ｏｒｄｅｒ complete", "order complete", None),  # full-width letters (NFKC)
    ("Straße", "strasse", None),  # case folding, not only lower-casing
    ("order complete", "order complete", None),
    (404, "404", None),  # numbers become strings
    (404.0, "404", None),
    (np.int64(404), "404", None),
    (Decimal("404"), "404", None),
    (None, None, Reason.INVALID_NAME),  # missing names cannot match a rule
    (np.nan, None, Reason.INVALID_NAME),
    (pd.NA, None, Reason.INVALID_NAME),
    ("", None, Reason.INVALID_NAME),
    ("   ", None, Reason.INVALID_NAME),
    (True, None, Reason.INVALID_NAME),
    (math.inf, None, Reason.INVALID_NAME),
    ({"name": "x"}, None, Reason.INVALID_NAME),
]


@pytest.mark.parametrize(("value", "expected", "reason"), EVENT_NAME_CASES)
def test_normalize_event_names_cases(value: Any, expected: str | None, reason: str | None) -> None:
    names, reasons = normalize_event_names(single(value))
    assert names.iloc[0] == expected
    assert reasons.iloc[0] == reason


def test_normalize_event_names_str_column() -> None:
    names, reasons = normalize_event_names(pd.Series([" Order Complete ", None], index=[3, 4]))
    assert names.tolist() == ["order complete", None]
    assert reasons.tolist() == [None, Reason.INVALID_NAME]
    assert names.index.tolist() == [3, 4]


TEXT_NAME_CASES = [name for name, _, _ in EVENT_NAME_CASES if isinstance(name, str)]


@pytest.mark.parametrize("storage", ["python", "pyarrow"])
def test_normalize_event_names_string_dtype(storage: str) -> None:
    values = [*TEXT_NAME_CASES, None, *TEXT_NAME_CASES]
    column = pd.Series(values, dtype=pd.StringDtype(storage), index=range(10, 10 + len(values)))
    names, reasons = normalize_event_names(column)
    expected_names, expected_reasons = normalize_event_names(column.astype(object))
    assert names.tolist() == expected_names.tolist()
    assert reasons.tolist() == expected_reasons.tolist()
    assert names.index.equals(column.index)
    assert names.iloc[0] == "order complete"
    assert reasons.iloc[len(TEXT_NAME_CASES)] == Reason.INVALID_NAME


# --- mixed-type property test ---------------------------------------------------------------

SCALARS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["2024-09-11T20:08:49Z", "2024-09-11 20:08:49", "12.50", "1,299.00", "usd"]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.floats(width=32).map(np.float32),
    st.booleans(),
    st.booleans().map(np.bool_),
    st.sampled_from([None, pd.NA, pd.NaT, np.nan, np.datetime64("NaT")]),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.binary(max_size=8),
    st.timedeltas(),
    st.integers(-(10**6), 10**6).map(lambda seconds: np.timedelta64(seconds, "s")),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)


def reject_constant(token: str) -> None:
    raise AssertionError(f"dumps wrote the non-JSON constant {token}")


def assert_aligned(result: pd.Series, series: pd.Series) -> None:
    assert isinstance(result, pd.Series)
    assert result.index.equals(series.index)


@hypothesis_settings(max_examples=300, deadline=None)
@given(elements=st.lists(VALUES, max_size=10), infer_dtype=st.booleans())
def test_mixed_series_never_raise(elements: list[Any], infer_dtype: bool) -> None:
    index = pd.Index([f"row{position}" for position in reversed(range(len(elements)))])
    if infer_dtype:
        series = pd.Series(elements, index=index)
    else:
        series = pd.Series(elements, index=index, dtype=object)

    times, time_reasons = parse_timestamps(series, source_timezone="Europe/Berlin")
    assert str(times.dtype) == "datetime64[us, UTC]"
    for result in (times, time_reasons, format_times(times), check_time_range(times)):
        assert_aligned(result, series)
    try:
        unzoned_times, _ = parse_timestamps(series)
    except NormalizationConfigError:
        pass  # the documented error for naive values without a source timezone
    else:
        assert_aligned(unzoned_times, series)

    values, value_reasons = parse_values(series, locale_aware=True)
    assert values.dtype == np.float64
    assert not np.isinf(values).any()
    for result in (values, value_reasons, *parse_values(series)):
        assert_aligned(result, series)

    ids = format_ids(series)
    assert_aligned(ids, series)
    assert all(text is None or (type(text) is str and text) for text in ids)
    for result in (
        check_external_ids(series),
        *normalize_emails(series),
        *normalize_phones(series, "US"),
        *normalize_currencies(series, default="USD"),
        *normalize_event_names(series),
    ):
        assert_aligned(result, series)

    for element in elements:
        safe = to_json_safe(element)
        if safe is not MISSING:
            json.loads(dumps(safe), parse_constant=reject_constant)
    json.loads(dumps(to_json_safe({"values": elements})), parse_constant=reject_constant)


MISSING_VALUES = st.sampled_from([None, pd.NA, pd.NaT, np.nan, np.datetime64("NaT")])
# Columns of one kind of element and missing values, or of any elements.
COLUMN_ELEMENTS = st.sampled_from(
    [
        st.text(),
        st.integers(),
        st.integers(-(2**63), 2**63 - 1).map(np.int64),
        st.booleans() | st.booleans().map(np.bool_),
        st.floats(),
        SCALARS,
    ]
).flatmap(lambda kind: st.lists(kind | MISSING_VALUES, max_size=10))


def assert_kinds_per_type(elements: list[Any]) -> None:
    """Check element_kinds of the elements against the kinds found type by type."""
    # A dict makes any column mixed, so the longer column takes the per-type path.
    column = np.array([*elements, {}], dtype=object)
    per_type = element_kinds(pd.Series(column, dtype=object))[:-1]
    assert element_kinds(pd.Series(column[:-1], dtype=object)).tolist() == per_type.tolist()


@hypothesis_settings(max_examples=300, deadline=None)
@given(elements=COLUMN_ELEMENTS)
def test_element_kinds_match_per_type_kinds(elements: list[Any]) -> None:
    assert_kinds_per_type(elements)


@pytest.mark.parametrize(
    "elements",
    [["a", None, np.nan, pd.NA], [1, np.int64(2), None, 2**70], [True, np.bool_(False), None], []],
)
def test_element_kinds_uniform_columns(elements: list[Any]) -> None:
    assert_kinds_per_type(elements)
