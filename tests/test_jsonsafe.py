"""Tests of JSON-safe conversion, Klaviyo's property limits and strict JSON serialization."""

import copy
import enum
import ipaddress
import json
import math
import pickle
import uuid
from collections import OrderedDict
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from klaviyo_pipeline import settings
from klaviyo_pipeline.jsonsafe import MISSING, clean_properties, dumps, to_json_safe
from klaviyo_pipeline.outcomes import Reason


class Tier(enum.Enum):
    GOLD = "gold"


# --- to_json_safe: scalars ------------------------------------------------------------------

SCALAR_CASES = [
    ("text", "text"),
    ("Müller 😀", "Müller 😀"),  # non-ASCII text is kept
    ("\ud83d\ude00", "😀"),  # a surrogate pair written as two code points is joined
    ("a\ud800b", "a\ufffdb"),  # a lone surrogate cannot be UTF-8, so it becomes U+FFFD
    (True, True),
    (np.bool_(True), True),  # NumPy booleans become bool
    (0, 0),
    (np.int64(5), 5),  # the SDK raises AttributeError on NumPy ints
    (np.uint8(7), 7),
    (2**63 - 1, 2**63 - 1),  # the largest signed 64-bit integer stays an int
    (2**63, "9223372036854775808"),  # larger integers keep their digits as a string
    (-(2**63) - 1, "-9223372036854775809"),
    (1.5, 1.5),
    (-0.0, -0.0),
    (np.float64(2.5), 2.5),
    (np.float32(0.5), 0.5),
    (Decimal("19.98"), 19.98),  # the SDK raises AttributeError on Decimals
    (Decimal("12.00"), 12),  # integral Decimals become ints
    (Decimal("-7"), -7),
    (Decimal("123456789012345678901234567890"), "123456789012345678901234567890"),
    (Decimal("1E+400"), "1E+400"),  # beyond the float range, the exact text is kept
    (Decimal("1E-400"), 0.0),  # underflows to zero as a float
    # aware datetimes become UTC with "Z", with microseconds only where they are nonzero
    (datetime(2024, 9, 11, 22, 8, 49, tzinfo=ZoneInfo("Europe/Berlin")), "2024-09-11T20:08:49Z"),
    (datetime(2024, 9, 11, 20, 8, 49, 891912, tzinfo=UTC), "2024-09-11T20:08:49.891912Z"),
    (pd.Timestamp("2024-09-11T20:08:49.891912312Z"), "2024-09-11T20:08:49.891912312Z"),
    (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), "0001-01-01T00:00:00+05:00"),
    (datetime(2024, 9, 11, 20, 8, 49), "2024-09-11T20:08:49"),  # naive: no offset is invented
    (np.datetime64("2024-09-11T20:08:49"), "2024-09-11T20:08:49"),
    (date(2024, 9, 11), "2024-09-11"),
    (time(20, 8, 49), "20:08:49"),
    (timedelta(minutes=1, seconds=30), 90.0),  # durations become seconds
    (pd.Timedelta("1.5s"), 1.5),
    (np.timedelta64(2500, "ms"), 2.5),
    (b"plain text", "plain text"),  # valid UTF-8 bytes become their text
    (b"\xff\x00\x01", "/wAB"),  # other bytes become base64
    (bytearray(b"ab"), "ab"),
    (memoryview(b"ab"), "ab"),
    (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
    (ipaddress.ip_address("192.0.2.1"), "192.0.2.1"),
    (PurePosixPath("/tmp/a"), "/tmp/a"),
    (Tier.GOLD, "gold"),  # enums become their value
    (pa.scalar(5), 5),  # pyarrow scalars become Python values
    (np.array(3), 3),  # a 0-d array is a scalar
]


@pytest.mark.parametrize(("value", "expected"), SCALAR_CASES)
def test_to_json_safe_scalars(value: Any, expected: Any) -> None:
    converted = to_json_safe(value)
    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize(
    "value",
    [
        None,
        math.nan,
        math.inf,
        -math.inf,
        np.nan,
        np.float32("nan"),
        pd.NA,  # the SDK would send {"__module__": "pandas"}
        pd.NaT,
        np.datetime64("NaT"),
        np.timedelta64("NaT"),
        Decimal("NaN"),
        Decimal("sNaN"),  # pd.isna raises on this one
        Decimal("Infinity"),
        pa.scalar(None, type=pa.int64()),
        MISSING,
    ],
)
def test_to_json_safe_missing_values(value: Any) -> None:
    assert to_json_safe(value) is MISSING


def test_to_json_safe_unsupported_type() -> None:
    with pytest.raises(TypeError, match="complex"):
        to_json_safe(1 + 2j)
    with pytest.raises(TypeError, match="object"):
        to_json_safe({"a": [object()]})


# --- to_json_safe: containers ---------------------------------------------------------------


def test_to_json_safe_nested_row() -> None:
    # A warehouse row as pandas returns it: NumPy scalars, Decimals, NaN and pd.NA inside.
    row = {
        "event": "order complete",
        "user": {"email": "user@example.com", "phone": None},
        "data": {
            "id": "ORD-1020",
            "total": float("nan"),
            "coupon": float("nan"),
            "tax": Decimal("1.50"),
            "quantity": np.int64(2),
            "note": pd.NA,
        },
    }
    assert to_json_safe(row) == {
        "event": "order complete",
        "user": {"email": "user@example.com"},
        "data": {"id": "ORD-1020", "tax": 1.5, "quantity": 2},
    }


LIST_CASES = [
    ([1, None, 2, math.nan, 3], [1, 2, 3]),  # MISSING items are left out, order kept
    ((1, "a"), [1, "a"]),  # tuples become lists
    ({3, 1, 2}, [1, 2, 3]),  # sets are sorted by their JSON text
    (frozenset({"b", "a"}), ["a", "b"]),
    ({1, "a"}, ["a", 1]),  # mixed sets sort too, since the JSON text '"a"' sorts before '1'
    (np.array([1.5, np.nan, 2.5]), [1.5, 2.5]),  # NumPy arrays become lists
    (np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]),
    (np.array(["2024-09-11T20:08:49"], dtype="datetime64[s]"), ["2024-09-11T20:08:49"]),
    (pd.Series([1, None, 3], dtype="Int64"), [1, 3]),  # pandas Series and arrays
    (pd.array(["a", None]), ["a"]),
    ([[None], {}], [[], {}]),  # empty containers stay
]


@pytest.mark.parametrize(("value", "expected"), LIST_CASES)
def test_to_json_safe_sequences(value: Any, expected: list[Any]) -> None:
    assert to_json_safe(value) == expected


def test_to_json_safe_keys_become_str() -> None:
    converted = to_json_safe({1: "a", np.int64(2): "b", None: "c", False: "d", 1.5: "e"})
    assert converted == {"1": "a", "2": "b", "None": "c", "False": "d", "1.5": "e"}
    assert to_json_safe(OrderedDict(a=1)) == {"a": 1}


def test_missing_sentinel_is_singleton() -> None:
    assert not MISSING
    assert repr(MISSING) == "MISSING"
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING
    assert copy.deepcopy(MISSING) is MISSING
    assert type(MISSING)() is MISSING


# --- clean_properties -----------------------------------------------------------------------


def test_clean_properties_flat_fast_path() -> None:
    props = {"OrderId": "ORD-1001", "total": 49.99, "count": 2, "gift": False}
    cleaned, reason, detail = clean_properties(props)
    assert cleaned == props
    assert cleaned is not props  # callers may change the result without touching the input
    assert reason is None
    assert detail is None


def test_clean_properties_omits_nulls() -> None:
    # NULL warehouse columns are left out, so they never clear a field in Klaviyo.
    cleaned, reason, detail = clean_properties({"first_name": "Ada", "zip": None, "x": pd.NA})
    assert cleaned == {"first_name": "Ada"}
    assert reason is None
    assert detail is None


def test_clean_properties_warns_on_nan() -> None:
    # NaN and ±inf are left out, and the detail is a warning that names their keys.
    cleaned, reason, detail = clean_properties(
        {"id": "ORD-1020", "total": float("nan"), "coupon": float("inf"), "n": {"x": math.nan}}
    )
    assert cleaned == {"id": "ORD-1020", "n": {}}
    assert reason is None
    assert detail == "left out NaN or infinite numbers in: total, coupon, n"
    json.loads(dumps(cleaned))


def test_clean_properties_drops_reserved_keys() -> None:
    # Legacy "$" keys are attributes in the JSON:API, and $extra is the documented special key.
    cleaned, reason, detail = clean_properties(
        {"$value": 10, "$event_id": "x", "$extra": {"html": "<p>hi</p>"}, "OrderId": "ORD-1"}
    )
    assert cleaned == {"$extra": {"html": "<p>hi</p>"}, "OrderId": "ORD-1"}
    assert reason is None
    assert detail == "dropped reserved $ keys: $value, $event_id"


def test_clean_properties_names_at_most_five_keys() -> None:
    props = {f"$k{number}": number for number in range(7)}
    _, _, detail = clean_properties(props)
    assert detail == "dropped reserved $ keys: $k0, $k1, $k2, $k3, $k4 and 2 more"


def test_clean_properties_converts_sdk_traps() -> None:
    cleaned, reason, _ = clean_properties(
        {
            "price": Decimal("19.98"),
            "qty": np.int64(2),
            "when": pd.Timestamp("2024-01-01", tz="UTC"),
        }
    )
    assert cleaned == {"price": 19.98, "qty": 2, "when": "2024-01-01T00:00:00Z"}
    assert reason is None


def test_clean_properties_flatten_nested() -> None:
    props = {
        "id": "ORD-1032",
        "total": 10,
        "shipping": {"method": "express", "address": {"city": "Springfield"}},
        "tags": ["a", "b"],  # arrays of scalars stay lists
        "items": [{"sku": "SKU-1", "meta": {"size": "M"}}],  # arrays of objects stay as they are
        "$extra": {"html": {"body": "<p>"}},  # $extra is never flattened
        "empty": {},  # an empty object has no keys to flatten into
    }
    cleaned, reason, detail = clean_properties(props, flatten=True)
    assert cleaned == {
        "id": "ORD-1032",
        "total": 10,
        "shipping.method": "express",
        "shipping.address.city": "Springfield",
        "tags": ["a", "b"],
        "items": [{"sku": "SKU-1", "meta": {"size": "M"}}],
        "$extra": {"html": {"body": "<p>"}},
        "empty": {},
    }
    assert reason is None
    assert detail is None


def test_clean_properties_default_keeps_nesting() -> None:
    props = {"shipping": {"method": "express", "address": {"city": "Springfield"}}}
    cleaned, _, _ = clean_properties(props)
    assert cleaned == props


def test_clean_properties_flatten_collision() -> None:
    cleaned, reason, detail = clean_properties({"a.b": 1, "a": {"b": 2, "c": 3}}, flatten=True)
    assert cleaned == {"a.b": 1, "a.c": 3}
    assert reason is None
    assert detail == "kept the first of colliding flattened keys: a.b"


def nested(levels: int) -> dict[str, Any]:
    """Return a property value of `levels` nested dicts."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


LIMIT_CASES = [
    # 400 properties are accepted, 401 are too many
    ({f"p{number}": number for number in range(400)}, False, None),
    ({f"p{number}": number for number in range(401)}, False, Reason.PROPERTIES_TOO_MANY),
    # the count is taken after flattening
    ({"a": {f"p{number}": number for number in range(401)}}, False, None),
    ({"a": {f"p{number}": number for number in range(401)}}, True, Reason.PROPERTIES_TOO_MANY),
    # strings up to 100 KB of UTF-8
    ({"s": "x" * settings.MAX_STRING_BYTES}, False, None),
    ({"s": "x" * (settings.MAX_STRING_BYTES + 1)}, False, Reason.PROPERTY_TOO_LARGE),
    ({"s": "é" * (settings.MAX_STRING_BYTES // 2)}, False, None),  # 2 bytes per character
    ({"s": "é" * (settings.MAX_STRING_BYTES // 2 + 1)}, False, Reason.PROPERTY_TOO_LARGE),
    ({"s": ["x" * (settings.MAX_STRING_BYTES + 1)]}, False, Reason.PROPERTY_TOO_LARGE),  # nested
    # 10 levels of nesting are accepted, 11 are too deep
    ({"d": nested(10)}, False, None),
    ({"d": nested(11)}, False, Reason.PROPERTIES_TOO_DEEP),
    ({"d": [[[[[[[[[[1]]]]]]]]]]}, False, None),  # lists count as levels too
    ({"d": [[[[[[[[[[[1]]]]]]]]]]]}, False, Reason.PROPERTIES_TOO_DEEP),
    ({"d": nested(11)}, True, None),  # flattening removes the nesting
    # arrays of up to 4,000 items
    ({"a": list(range(settings.MAX_ARRAY_ITEMS))}, False, None),
    ({"a": list(range(settings.MAX_ARRAY_ITEMS + 1))}, False, Reason.ARRAY_TOO_LONG),
    ({"a": {"b": list(range(settings.MAX_ARRAY_ITEMS + 1))}}, True, Reason.ARRAY_TOO_LONG),
    # too deep takes precedence over a long array in the same record
    ({"a": list(range(4001)), "d": nested(11)}, False, Reason.PROPERTIES_TOO_DEEP),
]


@pytest.mark.parametrize(("props", "flatten", "reason"), LIMIT_CASES)
def test_clean_properties_limits(props: dict[str, Any], flatten: bool, reason: str | None) -> None:
    _, actual_reason, detail = clean_properties(props, flatten=flatten)
    assert actual_reason == reason
    if reason is not None:
        assert detail is not None
        assert "Klaviyo accepts at most" in detail


@pytest.mark.parametrize(
    ("props", "detail"),
    [
        (
            {"d": nested(11)},
            "property 'd.n.n.n.n.n.n.n.n.n.n' is nested 11 levels deep; Klaviyo accepts at most 10",
        ),
        (
            {"x": {"items": list(range(4001))}},
            "array 'x.items' has 4,001 items; Klaviyo accepts at most 4,000",
        ),
        (
            {"x": [{"s": "y" * 102401}]},
            "string 'x[0].s' is 102,401 bytes of UTF-8; Klaviyo accepts at most 102,400",
        ),
        ({f"p{n}": n for n in range(401)}, "401 properties; Klaviyo accepts at most 400"),
    ],
)
def test_clean_properties_limit_details(props: dict[str, Any], detail: str) -> None:
    assert clean_properties(props)[2] == detail


def test_clean_properties_rejects_non_mapping() -> None:
    with pytest.raises(TypeError, match="mapping"):
        clean_properties(["a"])  # type: ignore[arg-type]


# --- dumps ----------------------------------------------------------------------------------


def test_dumps_compact() -> None:
    assert dumps({"a": [1, 2.5, "ü", True, None]}) == '{"a":[1,2.5,"ü",true,null]}'


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        {"total": math.nan},  # orjson alone would write null
        {"a": [1, {"b": math.inf}]},
        [-math.inf],
        (math.nan,),
        OrderedDict(total=math.nan),  # dict subclasses are checked too
        {"x": np.float64("nan")},
    ],
)
def test_dumps_rejects_non_finite(value: Any) -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        MISSING,  # the sentinel must be removed by to_json_safe, never sent
        {"t": datetime(2024, 1, 1)},  # naive datetimes would go out without an offset
        {"n": np.int64(1)},  # NumPy scalars are to_json_safe's job
        {"d": Decimal("1.5")},
        {1: "a"},  # keys must be str
        2**64,  # beyond 64 bits
    ],
)
def test_dumps_rejects_unconverted(value: Any) -> None:
    with pytest.raises(TypeError):
        dumps(value)


# --- property test --------------------------------------------------------------------------


def object_array(items: list[Any]) -> np.ndarray:
    """Return a 1-d object array of `items`, which np.array would nest if they are sequences."""
    array = np.empty(len(items), dtype=object)
    for position, item in enumerate(items):
        array[position] = item
    return array


LEAVES = st.one_of(
    st.text(max_size=10),
    st.text(st.characters(categories=["Cs"]), max_size=3),  # lone surrogates
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.floats(width=32).map(np.float32),
    st.booleans() | st.booleans().map(np.bool_),
    st.sampled_from([None, pd.NA, pd.NaT, np.nan, np.datetime64("NaT"), MISSING]),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.timedeltas(),
    st.binary(max_size=8),
)
NESTED = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=4) | st.integers(), children, max_size=4)
        | st.lists(children, max_size=4).map(object_array)
    ),
    max_leaves=12,
)


def reject_constant(token: str) -> None:
    raise AssertionError(f"dumps wrote the non-JSON constant {token}")


@hypothesis_settings(max_examples=400, deadline=None)
@given(value=NESTED, flatten=st.booleans())
def test_to_json_safe_output_is_valid_json(value: Any, flatten: bool) -> None:
    safe = to_json_safe(value)
    if safe is not MISSING:
        text = dumps(safe)
        assert json.loads(text, parse_constant=reject_constant) == json.loads(text)

    cleaned, reason, _ = clean_properties({"value": value, "other": 1}, flatten=flatten)
    assert reason is None
    assert all(type(key) is str for key in cleaned)
    json.loads(dumps(cleaned), parse_constant=reject_constant)
