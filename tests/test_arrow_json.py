"""JSON text built column-wise with Arrow, checked against orjson and the per-row paths."""

import decimal

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klaviyo_pipeline import arrow_json
from klaviyo_pipeline.mapping.frame import column_values
from klaviyo_pipeline.mapping.values import UNDEFINED
from klaviyo_pipeline.sync.event_bodies import EventPayloads, order_by_profile

TEXTS = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.none() | TEXTS, max_size=20), offset=st.integers(0, 3))
def test_json_strings_match_orjson(texts, offset):
    expected = [None if text is None else orjson.dumps(text).decode() for text in texts]
    # A sliced array keeps the bytes of the strings before it in its buffer.
    sliced = pa.array(['\\ " \n', *texts], pa.string())[1:]

    for array in (pa.array(texts, pa.string()), sliced):
        assert arrow_json.json_strings(array[offset:]).to_pylist() == expected[offset:]
        assert arrow_json.json_strings(array, ',"k":', "!").to_pylist() == [
            None if text is None else f',"k":{text}!' for text in expected
        ]


CELLS = st.one_of(
    st.none(),
    TEXTS,
    st.integers(),
    st.floats(),
    st.sampled_from([pd.NA, pd.NaT, decimal.Decimal("NaN"), decimal.Decimal("1.5")]),
    st.lists(st.integers(), max_size=2),
)


def defined_per_cell(cells):
    return [
        UNDEFINED
        if cell is None or cell is pd.NA or (isinstance(cell, float) and cell != cell)
        else cell
        for cell in cells
    ]


@settings(max_examples=300, deadline=None)
@given(cells=st.lists(CELLS, max_size=10))
def test_column_values_match_per_cell(cells):
    assert column_values(pd.Series(cells, dtype=object)) == defined_per_cell(cells)


def test_column_values_signaling_nan():
    cells = [decimal.Decimal("sNaN"), None, "a"]
    values = column_values(pd.Series(cells, dtype=object))

    assert values[0] is cells[0]
    assert values[1:] == [UNDEFINED, "a"]


@settings(max_examples=300, deadline=None)
@given(groups=st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=30), data=st.data())
def test_profile_order_same_by_number(groups, data):
    chosen = data.draw(st.lists(st.booleans(), min_size=len(groups), max_size=len(groups)))
    positions = [position for position, keep in enumerate(chosen) if keep]
    payloads = EventPayloads(backfill=False, groups=groups)
    codes, names = payloads.codes()

    assert [names[code] for code in codes] == groups
    assert order_by_profile(positions, codes) == order_by_profile(positions, groups)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.none() | TEXTS, max_size=20), offset=st.integers(0, 3))
def test_views_match_values(texts, offset):
    array = pa.array(texts, pa.string())[offset:]
    expected = [b"" if text is None else text.encode() for text in texts[offset:]]

    assert [bytes(view) for view in arrow_json.views(array)] == expected
    assert [bytes(view) for view in arrow_json.views(array.cast(pa.binary()))] == expected
    assert [bytes(view) for view in arrow_json.views(array.cast(pa.large_string()))] == expected


def test_views_of_null_slots_with_bytes():
    # Arrow allows a null slot to span bytes. Here the second slot spans "cd".
    offsets = pa.py_buffer(np.array([0, 2, 4, 5], dtype=np.int32).tobytes())
    validity = pa.py_buffer(np.packbits([1, 0, 1], bitorder="little").tobytes())
    array = pa.StringArray.from_buffers(3, offsets, pa.py_buffer(b"abcde"), validity)

    assert array.to_pylist() == ["ab", None, "e"]
    assert [bytes(view) for view in arrow_json.views(array)] == [b"ab", b"", b"e"]


def test_views_reject_other_types():
    with pytest.raises(TypeError, match="string or binary"):
        arrow_json.views(pa.array(["a"], pa.string_view()))
