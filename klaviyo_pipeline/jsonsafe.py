"""Conversion of warehouse values into JSON that the Klaviyo SDK and API accept.

The klaviyo-api 25 SDK raises on Decimal and NumPy integers, writes NaN as the invalid token
`NaN`, and sends pd.NA as `{"__module__": "pandas"}`. `to_json_safe` turns every such value
into a plain JSON type, `clean_properties` also applies Klaviyo's event property limits, and
`dumps` writes JSON and raises on NaN rather than emitting it.
"""

import base64
import ipaddress
import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any, Final

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from klaviyo_pipeline import settings
from klaviyo_pipeline.outcomes import Reason

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
# Decimals with more integer digits than this are converted through float, so that a value
# such as Decimal("1E+100000") never becomes a 100,000-digit int.
_MAX_DECIMAL_DIGITS: Final = 40
# A UTF-8 character is at most 4 bytes, so a string this short always fits the string limit.
_SAFE_STRING_LENGTH: Final = settings.MAX_STRING_BYTES // 4
# Lone UTF-16 surrogates are valid in a Python str but cannot be encoded as UTF-8.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_FAST_SCALAR_TYPES: Final = frozenset({str, int, float, bool})
# Types whose str() is their standard text form.
_TEXT_TYPES: Final = (
    uuid.UUID,
    PurePath,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
)
# Klaviyo documents `$extra` as the one `$`-prefixed event property, for non-segmentable data.
_EXTRA_KEY: Final = "$extra"
# At most this many keys are named in a warning detail.
_MAX_NAMED_KEYS: Final = 5


class _Missing:
    """Type of `MISSING`, the result of converting a value that JSON should leave out."""

    _instance: "_Missing | None" = None

    def __new__(cls) -> "_Missing":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def _repair_text(text: str) -> str:
    """Return `text` as valid UTF-8 text: surrogate pairs joined, lone surrogates as U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        joined = text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
        return _SURROGATE.sub("\ufffd", joined)
    return text


def _convert_int(number: int) -> int | str:
    # Klaviyo accepts at most 64-bit signed integers, so larger integers are sent as their
    # exact decimal digits. orjson 3.13 also raises beyond the unsigned 64-bit range.
    if _INT64_MIN <= number <= _INT64_MAX:
        return number
    return str(number)


def _format_datetime(moment: datetime) -> str:
    """Format an aware datetime in UTC with a "Z" suffix, and a naive one without an offset."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.isoformat()
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        # Near year 1 or 9999 the UTC time can fall outside datetime's range.
        return moment.isoformat()
    return utc.replace(tzinfo=None).isoformat() + "Z"


class _Converter:
    """Recursive conversion to JSON types that counts the NaN and ±inf numbers it drops."""

    def __init__(self) -> None:
        self.non_finite_count = 0

    def convert(self, value: Any) -> Any:
        value_type = type(value)
        if value_type is str:
            return _repair_text(value)
        if value_type is bool:
            return value
        if value_type is int:
            return _convert_int(value)
        if value_type is float:
            return value if math.isfinite(value) else self._drop_non_finite()
        if value is None:
            return MISSING
        if value_type is dict:
            return self.convert_mapping(value)
        if value_type is list or value_type is tuple:
            return self.convert_items(value)
        return self._convert_other(value)

    def convert_mapping(self, mapping: Mapping[Any, Any]) -> dict[str, Any]:
        converted = {}
        for key, item in mapping.items():
            item = self.convert(item)
            if item is not MISSING:
                converted[_convert_key(key)] = item
        return converted

    def convert_items(self, items: Any) -> list[Any]:
        converted = []
        for item in items:
            item = self.convert(item)
            if item is not MISSING:
                converted.append(item)
        return converted

    def _drop_non_finite(self) -> _Missing:
        self.non_finite_count += 1
        return MISSING

    def _convert_other(self, value: Any) -> Any:
        # Subclasses of the plain types first, then NumPy, pandas and standard library types.
        if value is MISSING or value is pd.NA or value is pd.NaT:
            return MISSING
        if isinstance(value, str):
            return _repair_text(str(value))
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, np.timedelta64):
            # NumPy makes timedelta64 a subclass of np.signedinteger.
            return self._convert_timedelta(value)
        if isinstance(value, int | np.integer):
            return _convert_int(int(value))
        if isinstance(value, float | np.floating):
            return self.convert(float(value))
        if isinstance(value, Decimal):
            return self._convert_decimal(value)

        if isinstance(value, datetime):
            return _format_datetime(value)
        if isinstance(value, date | time):
            return value.isoformat()
        if isinstance(value, np.datetime64):
            return self._convert_datetime64(value)
        if isinstance(value, timedelta):
            return self._convert_timedelta(value)

        if isinstance(value, bytes | bytearray | memoryview):
            return _convert_bytes(bytes(value))

        if isinstance(value, Mapping):
            return self.convert_mapping(value)
        if isinstance(value, list | tuple):
            return self.convert_items(value)
        if isinstance(value, set | frozenset):
            return self._convert_set(value)
        if isinstance(value, np.ndarray):
            return self._convert_array(value)
        if isinstance(value, pd.Series | pd.Index | pd.api.extensions.ExtensionArray):
            return self.convert_items(value.tolist())

        if isinstance(value, pa.Scalar):
            return self.convert(value.as_py())
        if isinstance(value, Enum):
            return self.convert(value.value)
        if isinstance(value, _TEXT_TYPES):
            return str(value)
        raise TypeError(
            f"cannot convert a value of type {type(value).__qualname__} to JSON: "
            "convert it to str, a number, a list or a dict before building properties"
        )

    def _convert_decimal(self, number: Decimal) -> Any:
        if not number.is_finite():
            return self._drop_non_finite()
        if number == number.to_integral_value() and number.adjusted() < _MAX_DECIMAL_DIGITS:
            return _convert_int(int(number))
        converted = float(number)
        # Finite Decimals beyond the float range keep their exact text.
        return converted if math.isfinite(converted) else str(number)

    def _convert_datetime64(self, moment: np.datetime64) -> Any:
        if np.isnat(moment):
            return MISSING
        try:
            return _format_datetime(pd.Timestamp(moment))
        except (OverflowError, ValueError):
            # Outside what pd.Timestamp can hold, NumPy's own ISO 8601 text is used.
            return str(moment)

    def _convert_timedelta(self, duration: timedelta | np.timedelta64) -> Any:
        if isinstance(duration, timedelta):
            return duration.total_seconds()
        if np.isnat(duration):
            return MISSING
        return float(duration / np.timedelta64(1, "us")) / 1e6

    def _convert_set(self, items: set[Any] | frozenset[Any]) -> list[Any]:
        # Sets have no order, so their items are sorted by their JSON text for stable output.
        converted = self.convert_items(items)
        return sorted(converted, key=orjson.dumps)

    def _convert_array(self, array: np.ndarray) -> Any:
        if array.ndim == 0:
            return self.convert(array[()])
        # tolist() returns datetime64 and timedelta64 items as plain ints, so those stay scalars.
        if array.dtype.kind in "mM":
            return self.convert_items(list(array))
        return self.convert_items(array.tolist())


def _convert_bytes(data: bytes) -> str:
    # Text columns often arrive as bytes, so valid UTF-8 becomes that text. Other bytes become
    # standard base64. NOTE: a receiver cannot tell the two forms apart.
    try:
        return _repair_text(data.decode("utf-8"))
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii")


def _convert_key(key: Any) -> str:
    """Return a dict key as str: strings as they are, other keys as `str(key)`."""
    if type(key) is str:
        return _repair_text(key)
    return _repair_text(str(key))


def to_json_safe(value: Any) -> Any:
    """Convert a value recursively into str, int, float, bool, list and dict, or `MISSING`.

    * None, NaN, ±inf, pd.NA, pd.NaT and NaT become `MISSING`. Dicts leave out `MISSING`
      values, and lists, tuples and sets leave out `MISSING` items and keep the others in order.
    * Decimals become ints when integral, otherwise floats. Integers outside the signed 64-bit
      range that Klaviyo accepts become their decimal digits as a string.
    * NumPy scalars and arrays, pandas Series, and pyarrow scalars become Python values.
    * Aware datetimes become ISO 8601 in UTC with a "Z" suffix, and microseconds only where
      nonzero. Naive datetimes become ISO 8601 without an offset, because no zone is known
      here. Dates and times become ISO 8601, and timedeltas become seconds as a float.
    * Bytes become their text when they are valid UTF-8, otherwise base64.
    * Sets become lists sorted by their JSON text. Dict keys become str (`str(key)`).
    * Enums become their value; UUIDs, paths and IP addresses become str.
    * Lone UTF-16 surrogates in strings become U+FFFD, because UTF-8 cannot encode them.

    Raises:
        TypeError: the value, or an item inside it, has a type not listed above.
    """
    return _Converter().convert(value)


def _flatten(properties: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Flatten nested dicts into dotted keys, and return the keys that collided.

    Lists and `$extra` stay as they are. When a dotted key already exists, as with
    {"a.b": 1, "a": {"b": 2}}, the first value in iteration order is kept.
    """
    flat: dict[str, Any] = {}
    collisions: list[str] = []

    def add(key: str, value: Any) -> None:
        if type(value) is dict and value and key != _EXTRA_KEY:
            for child_key, child in value.items():
                add(f"{key}.{child_key}", child)
        elif key in flat:
            collisions.append(key)
        else:
            flat[key] = value

    for key, value in properties.items():
        add(key, value)
    return flat, collisions


class _LimitCheck:
    """First violation of each of Klaviyo's nesting, array and string limits in properties."""

    def __init__(self) -> None:
        self.too_deep: str | None = None
        self.array_too_long: str | None = None
        self.string_too_large: str | None = None
        self._path: list[str] = []

    def visit_properties(self, properties: dict[str, Any]) -> None:
        for key, value in properties.items():
            self._path.append(key)
            self.visit(value, 0)
            self._path.pop()

    def visit(self, value: Any, depth: int) -> None:
        if self.too_deep is not None:
            return
        value_type = type(value)
        if value_type is str:
            self._check_string(value)
        elif value_type is dict:
            self._visit_dict(value, depth + 1)
        elif value_type is list:
            self._visit_list(value, depth + 1)

    def _visit_dict(self, mapping: dict[str, Any], depth: int) -> None:
        if depth > settings.MAX_NESTING_DEPTH:
            self.too_deep = (
                f"property {self._where()} is nested {depth} levels deep; "
                f"Klaviyo accepts at most {settings.MAX_NESTING_DEPTH}"
            )
            return
        for key, item in mapping.items():
            self._path.append(key)
            self.visit(item, depth)
            self._path.pop()

    def _visit_list(self, items: list[Any], depth: int) -> None:
        if depth > settings.MAX_NESTING_DEPTH:
            self.too_deep = (
                f"property {self._where()} is nested {depth} levels deep; "
                f"Klaviyo accepts at most {settings.MAX_NESTING_DEPTH}"
            )
            return
        if len(items) > settings.MAX_ARRAY_ITEMS and self.array_too_long is None:
            self.array_too_long = (
                f"array {self._where()} has {len(items):,} items; "
                f"Klaviyo accepts at most {settings.MAX_ARRAY_ITEMS:,}"
            )
        for position, item in enumerate(items):
            self._path.append(f"[{position}]")
            self.visit(item, depth)
            self._path.pop()

    def _check_string(self, text: str) -> None:
        if self.string_too_large is not None or len(text) <= _SAFE_STRING_LENGTH:
            return
        size = len(text.encode("utf-8"))
        if size > settings.MAX_STRING_BYTES:
            self.string_too_large = (
                f"string {self._where()} is {size:,} bytes of UTF-8; "
                f"Klaviyo accepts at most {settings.MAX_STRING_BYTES:,}"
            )

    def _where(self) -> str:
        path = ""
        for part in self._path:
            path += part if part.startswith("[") or not path else "." + part
        return repr(path)


def _find_violation(properties: dict[str, Any]) -> tuple[str, str] | None:
    """Return the reason and detail of the first Klaviyo limit that `properties` breaks.

    A dict or list that is a property value is at level 1, and each container inside it adds
    a level.
    """
    # NOTE: Klaviyo documents 10 levels of "any combination of objects and arrays" but states
    # that only objects are checked so far, and does not state whether the properties object
    # counts. Counting lists is stricter than the API, and not counting the properties object
    # may be looser.
    if len(properties) > settings.MAX_PROPERTIES:
        return (
            Reason.PROPERTIES_TOO_MANY.value,
            f"{len(properties):,} properties; Klaviyo accepts at most {settings.MAX_PROPERTIES}",
        )
    check = _LimitCheck()
    check.visit_properties(properties)
    if check.too_deep is not None:
        return Reason.PROPERTIES_TOO_DEEP.value, check.too_deep
    if check.array_too_long is not None:
        return Reason.ARRAY_TOO_LONG.value, check.array_too_long
    if check.string_too_large is not None:
        return Reason.PROPERTY_TOO_LARGE.value, check.string_too_large
    return None


def _encodes_as_utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_plain_key(key: Any) -> bool:
    return type(key) is str and not key.startswith("$") and _encodes_as_utf8(key)


def _is_plain_scalar(value: Any) -> bool:
    """Return whether `value` is a str, int, float or bool that needs no conversion or check."""
    value_type = type(value)
    if value_type is str:
        short = len(value) <= _SAFE_STRING_LENGTH
        short = short or (value.isascii() and len(value) <= settings.MAX_STRING_BYTES)
        return short and _encodes_as_utf8(value)
    if value_type is float:
        return math.isfinite(value)
    if value_type is int:
        return _INT64_MIN <= value <= _INT64_MAX
    return value_type in _FAST_SCALAR_TYPES


def _name_keys(label: str, keys: list[str]) -> str:
    named = ", ".join(keys[:_MAX_NAMED_KEYS])
    more = len(keys) - _MAX_NAMED_KEYS
    return f"{label}: {named}" + (f" and {more} more" if more > 0 else "")


def clean_properties(
    props: Mapping[Any, Any], flatten: bool = False
) -> tuple[dict[str, Any], str | None, str | None]:
    """Convert event or profile properties with `to_json_safe` and check Klaviyo's limits.

    None and the other missing values are left out, so they never clear a profile field.
    Keys that start with "$", other than `$extra`, are dropped: they are the legacy Track
    API's special properties (`$value`, `$event_id`), which the JSON:API sets as attributes
    (`value`, `unique_id`), so inside properties they would only be misread. With `flatten`,
    nested dicts become dotted keys ("shipping.address.city"), while lists and `$extra` stay
    as they are, so arrays of objects such as line items remain usable in templates.

    Limits, checked after flattening: at most 400 properties, nesting at most 10 levels of
    dicts and lists, lists of at most 4,000 items and strings of at most 100 KB of UTF-8.

    Returns:
        (properties, reason, detail). A reason (`properties_too_many`, `properties_too_deep`,
        `array_too_long` or `property_too_large`, the first that applies in that order) means
        that the record must be rejected, and the detail names the property and the limit.
        With no reason, a detail is a warning to report: it names dropped `$` keys, keys whose
        NaN or ±inf numbers were left out, and dotted keys that collided when flattening.
        Neither is set when nothing needed attention.

    Raises:
        TypeError: `props` is not a mapping, or a value has a type `to_json_safe` rejects.
    """
    if not isinstance(props, Mapping):
        raise TypeError(f"properties must be a mapping, got {type(props).__qualname__}")

    if len(props) <= settings.MAX_PROPERTIES and all(
        _is_plain_key(key) and _is_plain_scalar(value) for key, value in props.items()
    ):
        return dict(props), None, None

    converter = _Converter()
    cleaned: dict[str, Any] = {}
    reserved_keys: list[str] = []
    non_finite_keys: list[str] = []
    for key, value in props.items():
        name = _convert_key(key)
        if name.startswith("$") and name != _EXTRA_KEY:
            reserved_keys.append(name)
            continue
        dropped_before = converter.non_finite_count
        converted = converter.convert(value)
        if converter.non_finite_count > dropped_before:
            non_finite_keys.append(name)
        if converted is not MISSING:
            cleaned[name] = converted

    collisions: list[str] = []
    if flatten:
        cleaned, collisions = _flatten(cleaned)

    violation = _find_violation(cleaned)
    if violation is not None:
        return cleaned, violation[0], violation[1]

    warnings = []
    if reserved_keys:
        warnings.append(_name_keys("dropped reserved $ keys", reserved_keys))
    if non_finite_keys:
        warnings.append(_name_keys("left out NaN or infinite numbers in", non_finite_keys))
    if collisions:
        warnings.append(_name_keys("kept the first of colliding flattened keys", collisions))
    return cleaned, None, "; ".join(warnings) or None


def _check_finite(value: Any) -> None:
    """Raise ValueError if a float inside `value` is NaN or ±inf."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(
                    f"out-of-range float {item!r} is not valid JSON: "
                    "convert values with to_json_safe before dumps"
                )
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)


def dumps(value: Any) -> str:
    """Serialize JSON types compactly with orjson, rejecting NaN and ±inf like allow_nan=False.

    orjson 3.13 writes NaN and ±inf as `null`, which clears a profile field, so `value` is
    checked first. Datetimes and dataclasses are rejected too, because their conversion is
    `to_json_safe`'s job.

    Raises:
        ValueError: a float in `value` is NaN or ±inf.
        TypeError: `value` contains a type that JSON has no form for (orjson.JSONEncodeError),
            such as `MISSING`, a NumPy scalar or an integer beyond 64 bits.
    """
    _check_finite(value)
    options = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    return orjson.dumps(value, option=options).decode("utf-8")
