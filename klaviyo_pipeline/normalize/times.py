"""Normalization of event times: parsing to UTC, Klaviyo's accepted range, and the wire format."""

from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from klaviyo_pipeline import settings
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

# Parsed times are stored as microseconds since the epoch, in UTC.
_RESOLUTION: Final = "datetime64[us]"
_MICROSECONDS_PER_UNIT: Final = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1e-3}

# Python's datetime, and so strftime and the SDK, cover the years 1 to 9999.
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_MIN_MICROSECONDS: Final = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND
_MAX_MICROSECONDS: Final = (
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH
) // _MICROSECOND

_EPOCH_PATTERN: Final = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:E[+-]?\d+)?"
_INTEGER_PATTERN: Final = r"[+-]?\d+"
# A trailing zone designator after a time of day: "Z", "+05", "+0530" or "+05:30".
_OFFSET_PATTERN: Final = r"(?:\d[T ]\d.*)(?:Z|[+-]\d{2}(?::?\d{2})?)$"

# The strftime form of the event times that format_times writes.
EVENT_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


def _check_unit(unit: str) -> None:
    if unit not in _MICROSECONDS_PER_UNIT:
        raise NormalizationConfigError(
            f"invalid timestamp unit {unit!r}: expected one of 's', 'ms', 'us' or 'ns' "
            "(source.timestamp_unit)"
        )


def _check_timezone(source_timezone: str | None) -> None:
    if source_timezone is None:
        return
    try:
        ZoneInfo(source_timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise NormalizationConfigError(
            f"invalid source timezone {source_timezone!r}: expected an IANA timezone such as "
            "'UTC' or 'Europe/Berlin' (source.timezone)"
        ) from error


def _utc_microseconds(element: object) -> np.datetime64:
    """Return a datetime, date, pd.Timestamp or np.datetime64 as datetime64[us], in UTC if aware."""
    if isinstance(element, pd.Timestamp):
        if element.tzinfo is not None:
            element = element.tz_convert("UTC").tz_localize(None)
        return element.to_datetime64().astype(_RESOLUTION)
    if isinstance(element, datetime) and element.tzinfo is not None:
        offset = element.utcoffset() or timedelta(0)
        element = element.replace(tzinfo=None) - offset
    return np.datetime64(element, "us")


class _TimeColumn:
    """UTC times and reasons of a column, filled in one subset of rows at a time.

    Every `positions` argument contains the row positions of the values passed with it. Callers
    pass present values only, so that NaT in a result always means an invalid value.
    """

    def __init__(self, count: int, source_timezone: str | None) -> None:
        self.times = np.full(count, np.datetime64("NaT"), dtype=_RESOLUTION)
        self.reasons = empty_reasons(count)
        self.source_timezone = source_timezone

    def set_reason(self, positions: np.ndarray, reason: Reason) -> None:
        self.reasons[positions] = reason.value

    def set_utc(self, positions: np.ndarray, times: np.ndarray) -> None:
        """Store UTC times given as naive datetime64, with NaT for invalid values."""
        times = times.astype(_RESOLUTION)
        invalid = np.isnat(times)
        self.set_reason(positions[invalid], Reason.TIME_INVALID)

        microseconds = times.astype(np.int64)
        out_of_range = ~invalid & (
            (microseconds < _MIN_MICROSECONDS) | (microseconds > _MAX_MICROSECONDS)
        )
        self.set_reason(positions[out_of_range], Reason.TIME_OUT_OF_RANGE)

        keep = ~invalid & ~out_of_range
        self.times[positions[keep]] = times[keep]

    def set_aware(self, positions: np.ndarray, times: pd.Series) -> None:
        """Store a tz-aware datetime Series, with NaT for invalid values."""
        utc = times.dt.tz_convert("UTC").dt.tz_localize(None)
        self.set_utc(positions, utc.to_numpy())

    def set_naive(self, positions: np.ndarray, times: np.ndarray, originals: np.ndarray) -> None:
        """Store naive wall-clock times (NaT for invalid values) read in the source timezone.

        Raises:
            NormalizationConfigError: a naive time is present and no source timezone is set.
        """
        times = times.astype(_RESOLUTION)
        parsed = ~np.isnat(times)
        if parsed.any() and self.source_timezone is None:
            count = int(parsed.sum())
            example = str(originals[parsed][0])
            raise NormalizationConfigError(
                f"{count} timestamp{'s' if count > 1 else ''} without a timezone, for example "
                f"{example!r}, and no source timezone is configured: set source.timezone to the "
                "timezone that the warehouse writes them in, for example 'UTC'"
            )
        if self.source_timezone in (None, "UTC"):
            self.set_utc(positions, times)
            return

        # A wall-clock time that occurs twice when clocks go back is read as the first
        # occurrence (daylight saving time, like Python's fold=0). A time skipped when clocks go
        # forward is moved forward to the first valid time.
        local = pd.Series(times).dt.tz_localize(
            self.source_timezone,
            ambiguous=np.ones(len(times), dtype=bool),
            nonexistent="shift_forward",
        )
        self.set_aware(positions, local)

    def set_epochs(self, positions: np.ndarray, numbers: np.ndarray, unit: str) -> None:
        """Store epoch numbers, given in `unit` as an int or float array."""
        factor = _MICROSECONDS_PER_UNIT[unit]
        if numbers.dtype.kind == "u":
            fits_int64 = numbers.max(initial=0) <= np.iinfo(np.int64).max
            numbers = numbers.astype(np.int64 if fits_int64 else np.float64)

        if numbers.dtype.kind == "i" and unit == "ns":
            # Every int64 count of nanoseconds lies between the years 1677 and 2262.
            in_range = np.ones(len(numbers), dtype=bool)
            microseconds = numbers // 1000
        elif numbers.dtype.kind == "i":
            limit = _MAX_MICROSECONDS // int(factor)
            in_range = (numbers >= -limit) & (numbers <= limit)
            microseconds = np.where(in_range, numbers, 0) * int(factor)
        else:
            numbers = numbers.astype(np.float64)
            finite = np.isfinite(numbers)
            self.set_reason(positions[~finite], Reason.TIME_INVALID)
            # A finite number can overflow to infinity when scaled, which the range check catches.
            with np.errstate(over="ignore"):
                scaled = numbers[finite] * factor
            positions = positions[finite]
            in_range = (scaled >= _MIN_MICROSECONDS) & (scaled <= _MAX_MICROSECONDS)
            microseconds = np.round(np.where(in_range, scaled, 0)).astype(np.int64)

        self.set_reason(positions[~in_range], Reason.TIME_OUT_OF_RANGE)
        self.set_utc(positions[in_range], microseconds[in_range].astype(_RESOLUTION))

    def result(self, index: pd.Index) -> tuple[pd.Series, pd.Series]:
        times = pd.Series(self.times, index=index).dt.tz_localize("UTC")
        return times, object_series(self.reasons, index)


def _clean_time_strings(strings: pd.Series) -> pd.Series:
    """Rewrite time strings into the ISO 8601 forms that pandas parses, keeping their meaning."""
    text = strings.str.strip().str.upper()
    # A trailing " UTC" or " GMT", as in "2019-10-01 00:00:00 UTC", means "+00:00".
    text = text.str.replace(r"\s*(?:UTC|GMT)$", "+00:00", regex=True)
    text = text.str.replace(r"\s+(?=[+-]\d{2}(?::?\d{2})?$)", "", regex=True)
    # ISO 8601 allows a decimal comma in the seconds, extended (":49,5") or basic ("T200849,5").
    # Digits past microseconds are truncated, because parsed times have microsecond resolution.
    seconds = r"((?::|T\d{4})\d{2})"
    text = text.str.replace(seconds + r",(?=\d)", r"\1.", regex=True)
    return text.str.replace(seconds + r"(\.\d{6})\d+", r"\1\2", regex=True)


def _parse_epoch_strings(
    column: _TimeColumn, positions: np.ndarray, text: pd.Series, unit: str
) -> None:
    numbers = pd.to_numeric(text, errors="coerce").to_numpy()
    integers = text.str.fullmatch(_INTEGER_PATTERN).to_numpy(dtype=bool)
    if integers.all() and numbers.dtype.kind in "iu":
        column.set_epochs(positions, numbers, unit)
    else:
        column.set_epochs(positions, numbers.astype(np.float64), unit)


def _parse_time_strings(
    column: _TimeColumn, positions: np.ndarray, strings: np.ndarray, unit: str
) -> None:
    """Parse time strings, each distinct string once."""
    codes, originals = unique_strings(strings)
    text = _clean_time_strings(originals)
    unique_positions = np.arange(len(text))
    unique_column = _TimeColumn(len(text), column.source_timezone)

    blank = (text == "").to_numpy(dtype=bool)
    epoch = text.str.fullmatch(_EPOCH_PATTERN).to_numpy(dtype=bool)
    aware = ~epoch & text.str.contains(_OFFSET_PATTERN, regex=True).to_numpy(dtype=bool)
    naive = ~blank & ~epoch & ~aware

    unique_column.set_reason(unique_positions[blank], Reason.TIME_MISSING)
    if epoch.any():
        _parse_epoch_strings(unique_column, unique_positions[epoch], text[epoch], unit)
    if aware.any():
        times = pd.to_datetime(text[aware], format="ISO8601", utc=True, errors="coerce")
        unique_column.set_aware(unique_positions[aware], times)
    if naive.any():
        times = pd.to_datetime(text[naive], format="ISO8601", errors="coerce")
        if isinstance(times.dtype, pd.DatetimeTZDtype):
            # Only zone designators that _OFFSET_PATTERN misses, such as "2024-09-11Z".
            unique_column.set_aware(unique_positions[naive], times)
        else:
            naive_originals = originals[naive].to_numpy()
            unique_column.set_naive(unique_positions[naive], times.to_numpy(), naive_originals)

    column.times[positions] = unique_column.times[codes]
    column.reasons[positions] = unique_column.reasons[codes]


def _parse_datetime_objects(
    column: _TimeColumn, positions: np.ndarray, elements: np.ndarray
) -> None:
    """Parse datetimes, dates, pd.Timestamps and np.datetime64s, each in its own zone or naive."""
    aware = np.array(
        [getattr(element, "tzinfo", None) is not None for element in elements], dtype=bool
    )
    times = np.full(len(elements), np.datetime64("NaT"), dtype=_RESOLUTION)
    for position, element in enumerate(elements):
        try:
            times[position] = _utc_microseconds(element)
        except OverflowError:
            column.set_reason(positions[position : position + 1], Reason.TIME_OUT_OF_RANGE)

    converted = ~np.isnat(times)
    column.set_utc(positions[aware & converted], times[aware & converted])
    naive = ~aware & converted
    column.set_naive(positions[naive], times[naive], elements[naive])


def _parse_integer_objects(
    column: _TimeColumn, positions: np.ndarray, elements: np.ndarray, unit: str
) -> None:
    # Python ints can exceed int64, so they are range-checked before conversion to NumPy.
    numbers = np.array([int(element) for element in elements], dtype=object)
    fits = np.array([-(2**62) <= number <= 2**62 for number in numbers], dtype=bool)
    column.set_reason(positions[~fits], Reason.TIME_OUT_OF_RANGE)
    column.set_epochs(positions[fits], numbers[fits].astype(np.int64), unit)


def parse_timestamps(
    values: pd.Series, unit: str = "ms", source_timezone: str | None = None
) -> tuple[pd.Series, pd.Series]:
    """Parse event times of any warehouse type into UTC.

    Accepted values:
    * datetime64 columns, naive or tz-aware, and Python datetimes, dates and pd.Timestamps;
    * ISO 8601 strings, basic or extended, with "Z", an offset ("+05", "+0530", "+05:30") or a
      trailing " UTC"/" GMT", and any number of fractional digits;
    * epoch numbers in `unit` ("s", "ms", "us" or "ns"), as ints, floats, Decimals or numeric
      strings. Epoch 0 is 1970-01-01, not "now" as in walkerOS, so `check_time_range` rejects it.

    A naive value (no zone) is read as wall-clock time in `source_timezone`. Guessing a zone
    would shift every event, so a naive value without `source_timezone` is an error.
    Sub-microsecond digits are truncated. Strings in other formats, such as "09/11/2024", are
    invalid rather than guessed.

    Raises:
        NormalizationConfigError: a naive time is present and `source_timezone` is None, or
            `unit` or `source_timezone` is invalid.

    Returns:
        (times, reasons): a datetime64[us, UTC] Series with NaT where there is no usable time,
        and an object Series of reasons or None. The reasons are:
        * `time_missing` for None, NaN, pd.NA, NaT and blank strings;
        * `time_invalid` for unparseable strings, booleans, ±inf and other types;
        * `time_out_of_range` outside the years 1 to 9999, which Python's datetime cannot hold.
    """
    _check_unit(unit)
    _check_timezone(source_timezone)
    column = plain_column(values)
    times = _TimeColumn(len(column), source_timezone)
    kinds = element_kinds(column)
    everything = np.arange(len(column))
    times.set_reason(everything[kinds == Kind.MISSING], Reason.TIME_MISSING)
    present = everything[kinds != Kind.MISSING]

    if isinstance(column.dtype, pd.DatetimeTZDtype):
        times.set_aware(present, column.iloc[present])
        return times.result(values.index)
    if column.dtype.kind == "M":
        naive = column.to_numpy()[present]
        times.set_naive(present, naive, naive)
        return times.result(values.index)
    if column.dtype.kind in "iuf":
        times.set_epochs(present, column.to_numpy()[present], unit)
        return times.result(values.index)

    elements = column.to_numpy(dtype=object)
    times.set_reason(everything[np.isin(kinds, (Kind.BOOL, Kind.OTHER))], Reason.TIME_INVALID)

    strings = everything[kinds == Kind.STRING]
    _parse_time_strings(times, strings, elements[strings], unit)
    integers = everything[kinds == Kind.INTEGER]
    _parse_integer_objects(times, integers, elements[integers], unit)
    floats = everything[kinds == Kind.FLOAT]
    times.set_epochs(floats, elements[floats].astype(np.float64), unit)
    decimals = everything[kinds == Kind.DECIMAL]
    numbers = np.array([float(number) for number in elements[decimals]], dtype=np.float64)
    times.set_epochs(decimals, numbers, unit)
    datetimes = everything[np.isin(kinds, (Kind.DATETIME, Kind.DATE))]
    _parse_datetime_objects(times, datetimes, elements[datetimes])
    return times.result(values.index)


def check_time_range(times: pd.Series, now: datetime | None = None) -> pd.Series:
    """Return `time_out_of_range` for times before 2000-01-01T00:00:00Z or after now + 365 days.

    Klaviyo rejects event times outside that range, and in a bulk request one such event fails
    the whole request. NaT gets no reason, because `parse_timestamps` has already given one.

    Args:
        times: tz-aware times, as `parse_timestamps` returns them.
        now: the current time, tz-aware; defaults to the system clock.

    Raises:
        ValueError: `times` or `now` is naive.

    Returns:
        An object Series of reasons or None on the index of `times`.
    """
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        raise ValueError(
            f"times must be a tz-aware datetime Series, got dtype {times.dtype}: "
            "parse them with parse_timestamps first"
        )
    if now is None:
        now = datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError(f"now must be tz-aware, got {now.isoformat()}")

    earliest = pd.Timestamp(datetime(settings.MIN_EVENT_YEAR, 1, 1, tzinfo=UTC))
    latest = pd.Timestamp(now) + pd.Timedelta(days=settings.MAX_EVENT_DAYS_AHEAD)
    out_of_range = (times.notna() & ((times < earliest) | (times > latest))).to_numpy()
    reasons = np.where(out_of_range, Reason.TIME_OUT_OF_RANGE.value, None).astype(object)
    return object_series(reasons, times.index)


def format_times(times: pd.Series) -> pd.Series:
    """Format tz-aware times as RFC 3339 in UTC with whole seconds, as '2024-09-11T20:08:49Z'.

    Fractional seconds are truncated, as Klaviyo truncates event times to the second.

    Raises:
        ValueError: `times` is not a tz-aware datetime Series.

    Returns:
        An object Series of str on the index of `times`, with None for NaT and for years
        outside 1 to 9999, which `check_time_range` rejects anyway.
    """
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        raise ValueError(
            f"times must be a tz-aware datetime Series, got dtype {times.dtype}: "
            "parse them with parse_timestamps first"
        )
    seconds = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[s]")
    as_integers = seconds.astype(np.int64)
    printable = ~np.isnat(seconds) & (as_integers >= _MIN_MICROSECONDS // 1_000_000)
    printable &= as_integers <= _MAX_MICROSECONDS // 1_000_000

    # Casting to seconds floors, which truncates fractions. Arrow casts a timestamp to text
    # as "2019-10-01 00:00:00", with years below 1000 zero-padded, so only the "T" and the
    # "Z" are missing. That is faster than strftime or NumPy's datetime_as_string.
    formatted = pc.cast(pa.array(seconds[printable]), pa.string())
    iso = pc.binary_join_element_wise(pc.utf8_replace_slice(formatted, 10, 11, "T"), "Z", "")
    text = np.full(len(seconds), None, dtype=object)
    text[printable] = iso.to_numpy(zero_copy_only=False)
    return object_series(text, times.index)
