"""The size bound used to plan batches is never below what the SDK sends."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from klaviyo_pipeline.sync.event_bodies import sdk_size_bound

values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_bound_covers_sdk_size(value):
    assert sdk_size_bound(value) >= len(json.dumps(value))


def test_bound_covers_escapes():
    value = {"a": 'é ✓ 😀 \u0001 \n " \\', "f": [1e-7, 1e16, 1.5e300, -0.0]}
    assert sdk_size_bound(value) >= len(json.dumps(value))
