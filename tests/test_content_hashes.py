"""Content hashes and profile keys of the records builder."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from klaviyo_pipeline.records import _hashes, _identity_keys

TEXTS = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6)


def reference_hashes(columns: list[pd.Series]) -> list[str]:
    frame = pd.concat(columns, axis=1, ignore_index=True)
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return [f"{value:016x}" for value in hashed.tolist()]


@hypothesis_settings(max_examples=200, deadline=None)
@given(data=st.data(), width=st.integers(1, 4))
def test_hashes_match_pandas(data: st.DataObject, width: int) -> None:
    rows = data.draw(st.integers(1, 12))
    columns = []
    for _ in range(width):
        kind = data.draw(st.sampled_from(["object", "str", "float"]))
        if kind == "float":
            values = data.draw(st.lists(st.floats(), min_size=rows, max_size=rows))
            columns.append(pd.Series(values, dtype="float64"))
            continue
        values = data.draw(st.lists(st.none() | TEXTS, min_size=rows, max_size=rows))
        columns.append(pd.Series(values, dtype=object if kind == "object" else "str"))
    repeated = tuple(data.draw(st.sets(st.integers(0, width - 1))))
    assert _hashes(*columns).tolist() == reference_hashes(columns)
    assert _hashes(*columns, repeated=repeated).tolist() == reference_hashes(columns)


def test_hashes_repeated_and_missing() -> None:
    columns = [
        pd.Series(["a", None, "a", "b"], dtype=object),
        pd.Series(["x", "x", "x", "x"], dtype="str"),
        pd.Series([1.0, np.nan, 1.0, -0.0]),
        pd.Series([None] * 4, dtype=object),
    ]
    hashes = _hashes(*columns)
    assert hashes.tolist() == reference_hashes(columns)
    assert hashes[0] == hashes[2]
    assert len(set(hashes)) == 3
    assert all(len(text) == 16 for text in hashes)


def test_identity_keys_all_identifiers() -> None:
    email = pd.Series(["a@example.com", None, None], dtype=object)
    phone = pd.Series([None, "+15555550123", None], dtype=object)
    external = pd.Series(["7", None, "\ud800"], dtype=object)
    assert _identity_keys(email, phone, external).tolist() == [
        "e:a@example.com|p:|x:7",
        "e:|p:+15555550123|x:",
        "e:|p:|x:\ud800",
    ]


IDENTIFIER_COLUMNS = {
    "none": [None, None, None],
    "some": ["a@example.com", None, "é|b"],
    "all": ["1", "22", "ü"],
}


@pytest.mark.parametrize("email", IDENTIFIER_COLUMNS)
@pytest.mark.parametrize("phone", IDENTIFIER_COLUMNS)
@pytest.mark.parametrize("external", IDENTIFIER_COLUMNS)
def test_identity_keys_missing_columns(email: str, phone: str, external: str) -> None:
    columns = [
        pd.Series(IDENTIFIER_COLUMNS[name], dtype=object, index=[5, 6, 7])
        for name in (email, phone, external)
    ]
    expected = [
        f"e:{e or ''}|p:{p or ''}|x:{x or ''}"
        for e, p, x in zip(*(column.tolist() for column in columns), strict=True)
    ]
    keys = _identity_keys(*columns)
    assert keys.tolist() == expected
    assert keys.index.tolist() == [5, 6, 7]


def test_identity_keys_empty() -> None:
    empty = pd.Series([], dtype=object)
    assert _identity_keys(empty, empty, empty).tolist() == []


def test_hashes_repeated_mixed_objects() -> None:
    # factorize would count 1, 1.0 and True as one value, so only strings are factorized.
    columns = [
        pd.Series([1, 1.0, True, "1"], dtype=object),
        pd.Series([pd.Timestamp("2024-01-01"), None, "a", 2], dtype=object),
    ]
    hashes = _hashes(*columns, repeated=(0, 1)).tolist()
    assert hashes == _hashes(*columns).tolist()
    assert len(set(hashes)) == 4
