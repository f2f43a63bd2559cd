"""Column-wise properties of plain `map` rules match the dicts of the per-row evaluation."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klaviyo_pipeline import settings as klaviyo_settings
from klaviyo_pipeline.mapping.frame import EventFrame
from klaviyo_pipeline.mapping.plain import (
    encode_plain_map,
    plain_map_pairs,
)
from klaviyo_pipeline.mapping.plan import compile_value
from klaviyo_pipeline.records import properties_json

texts = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12),
    st.sampled_from(['quote " and \\ slash', "tab\tnewline\n", "é ✓ 😀", "\u2028", ""]),
)
floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
integers = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1))
booleans = st.one_of(st.none(), st.booleans())


def frame_of(columns: dict[str, pd.Series]) -> EventFrame:
    size = len(next(iter(columns.values())))
    return EventFrame(pd.DataFrame({"row_id": range(size), **columns}))


def per_row(frame: EventFrame, mapping: dict[str, str]) -> list[dict]:
    return compile_value({"map": mapping})(frame)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(texts, floats, integers, booleans), min_size=1, max_size=30),
)
def test_plain_map_matches_per_row_dicts(rows):
    text_values, float_values, int_values, bool_values = zip(*rows, strict=True)
    frame = frame_of(
        {
            "data.name": pd.Series(text_values, dtype="str"),
            "data.price": pd.Series(float_values, dtype="float64"),
            "data.count": pd.Series(int_values, dtype="Int64"),
            "data.flag": pd.Series(bool_values, dtype="boolean"),
        }
    )
    mapping = {"Name": "data.name", "Price": "data.price", "Count": "data.count", "On": "data.flag"}
    encoded = encode_plain_map(frame, plain_map_pairs({"map": mapping}))
    expected = per_row(frame, mapping)

    assert encoded is not None
    assert len(encoded) == len(expected)
    for got, want in zip(encoded, expected, strict=True):
        if type(got) is str:
            assert got == orjson.dumps(want).decode()
        else:
            assert got == want
        assert properties_json(got, False) == properties_json(want, False)


def test_infinite_and_long_values_keep_their_dicts():
    long_text = "x" * (klaviyo_settings.SAFE_STRING_CHARACTERS + 1)
    frame = frame_of(
        {
            "data.price": pd.Series([1.5, math.inf, np.nan], dtype="float64"),
            "data.name": pd.Series(["a", "b", long_text], dtype="str"),
        }
    )
    encoded = encode_plain_map(frame, [("Price", "data.price"), ("Name", "data.name")])

    assert encoded[0] == '{"Price":1.5,"Name":"a"}'
    assert encoded[1] == {"Price": math.inf, "Name": "b"}
    assert encoded[2] == {"Name": long_text}


def test_long_multibyte_values_counted_in_characters():
    limit = klaviyo_settings.SAFE_STRING_CHARACTERS
    at_limit, over_limit = "é" * limit, "é" * (limit + 1)
    frame = frame_of({"data.name": pd.Series([at_limit, over_limit, None], dtype="str")})
    encoded = encode_plain_map(frame, [("Name", "data.name")])

    assert encoded[0] == orjson.dumps({"Name": at_limit}).decode()
    assert encoded[1] == {"Name": over_limit}
    assert encoded[2] == "{}"


def test_all_values_undefined_give_empty_object():
    frame = frame_of({"data.name": pd.Series([None, None], dtype="str")})
    encoded = encode_plain_map(frame, [("Name", "data.name")])

    assert encoded == ["{}", "{}"]


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"map": {"$extra": "data.name"}},
        {"map": {"Name": {"key": "data.name", "value": "fallback"}}},
        {"map": {"Name": {"fn": "$code:x"}}},
        {"map": {"Name": ""}},
        {"map": {"Name": "data.name"}, "value": 1},
        {"key": "data"},
    ],
)
def test_other_data_forms_are_not_plain(data):
    assert plain_map_pairs(data) is None


def test_key_form_is_plain():
    assert plain_map_pairs({"map": {"A": "data.a", "B": {"key": "data.b"}}}) == [
        ("A", "data.a"),
        ("B", "data.b"),
    ]


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([pd.Timestamp("2024-01-01", tz="UTC")]),
        pd.Series(["a"], dtype=object),
        pd.Series(["a"], dtype="category"),
        pd.Series([2**63], dtype="uint64"),
    ],
)
def test_other_column_types_are_not_encoded(column):
    frame = frame_of({"data.value": column})

    assert encode_plain_map(frame, [("Value", "data.value")]) is None


def test_missing_column_not_encoded():
    frame = frame_of({"data.name": pd.Series(["a"], dtype="str")})

    assert encode_plain_map(frame, [("Name", "data.missing")]) is None


def test_negative_zero_is_kept():
    frame = frame_of({"data.price": pd.Series([0.0, -0.0], dtype="float64")})
    encoded = encode_plain_map(frame, [("Price", "data.price")])

    assert encoded == ['{"Price":0.0}', '{"Price":-0.0}']


def test_lone_surrogate_not_encoded():
    frame = frame_of({"data.name": pd.Series(["ok", "bad \ud800"], dtype="string[python]")})

    assert encode_plain_map(frame, [("Name", "data.name")]) is None
