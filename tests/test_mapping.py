"""walkerOS mapping semantics: rule lookup, value forms, column plans equal to per-row results."""

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klaviyo_pipeline.mapping import rules
from klaviyo_pipeline.mapping.frame import EventFrame
from klaviyo_pipeline.mapping.plan import compile_value
from klaviyo_pipeline.mapping.values import UNDEFINED, get_by_path, get_mapping_value


def is_gold(event, context=None):
    return (event.get("user") or {}).get("tier") == "gold"


def never(event, context=None):
    return False


def upper(value, context=None):
    return str((value.get("data") or {}).get("name", "")).upper()


def positive(value, context=None):
    return isinstance(value, int | float) and value > 0


MAPPING = {
    "order": {
        "complete": [{"condition": "tests.test_mapping:never", "name": "A"}],
        "*": {"name": "Order Any"},
    },
    "product": {"view": {"name": "Viewed Product"}, "*": {"name": "Product Any"}},
    "*": {"view": {"name": "Any View"}, "*": {"name": "Catch All"}},
}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # An exact entity and action match wins.
        ("product view", "Viewed Product"),
        # The entity's wildcard action applies when the action is missing.
        ("product add", "Product Any"),
        # `* action` applies only when the entity key is missing.
        ("page view", "Any View"),
        # A failed condition falls through to `* *`, never to `order *`.
        ("order complete", "Catch All"),
        # `order *` applies to other order actions.
        ("order ship", "Order Any"),
        # Nothing else matches.
        ("page click", "Catch All"),
    ],
)
def test_rule_lookup_precedence(name, expected):
    folded = rules.fold_mapping(MAPPING)
    rule = rules.choose(rules.candidates(folded, name), {"name": name})
    assert rule["name"] == expected


def test_rule_lookup_folds_case_and_space():
    folded = rules.fold_mapping({"Order": {"Complete": {"name": "Placed Order"}}})
    assert rules.choose(rules.candidates(folded, "order complete"))["name"] == "Placed Order"


def test_rule_lookup_needs_two_words():
    assert rules.candidates(rules.fold_mapping(MAPPING), "pageview") == []


EVENT = {
    "name": "order complete",
    "data": {"id": "ORD-1", "total": 10, "zero": 0, "empty": "", "flag": False},
    "user": {"email": "a@example.com", "tier": "gold"},
    "nested": [
        {"entity": "product", "data": {"id": "P1", "name": "Sock", "price": 2}},
        {"entity": "product", "data": {"id": "P2", "name": "Shoe", "price": 5}},
    ],
}


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        # A path string reads a value.
        ("data.id", "ORD-1"),
        # 0, "" and false count as found.
        ("data.zero", 0),
        ("data.empty", ""),
        ("data.flag", False),
        # A missing path is undefined; a static value is the fallback.
        ("data.missing", UNDEFINED),
        ({"key": "data.missing", "value": "fallback"}, "fallback"),
        # Alternatives: the first defined one wins.
        (["data.missing", "data.total"], 10),
        # Numeric segments index lists; `*` maps over them.
        ("nested.1.data.id", "P2"),
        ("nested.*.data.id", ["P1", "P2"]),
        # `map` builds an object and omits undefined entries.
        ({"map": {"Id": "data.id", "Nope": "data.missing"}}, {"Id": "ORD-1"}),
        # `loop` maps each item of a list with paths relative to the item.
        ({"loop": ["nested", "data.name"]}, ["Sock", "Shoe"]),
        ({"loop": ["this", "data.id"]}, ["ORD-1"]),
        # `set` keeps unresolved entries as null.
        ({"set": ["data.id", "data.missing"]}, ["ORD-1", None]),
        # `fn` and `validate` name Python callables.
        ({"fn": "tests.test_mapping:upper", "value": "x"}, ""),
        ({"key": "data.total", "validate": "tests.test_mapping:positive"}, 10),
        ({"key": "data.zero", "validate": "tests.test_mapping:positive"}, UNDEFINED),
        # A false condition makes the value undefined even with a static value.
        ({"condition": "tests.test_mapping:never", "value": 1}, UNDEFINED),
        ({"condition": "tests.test_mapping:is_gold", "value": 1}, 1),
        # Consent not granted gives the static value.
        ({"consent": {"marketing": True}, "key": "data.id", "value": "anon"}, "anon"),
    ],
)
def test_value_forms(mapping, expected):
    assert get_mapping_value(EVENT, mapping) == expected


def test_null_poisons_object_in_row_mode():
    assert get_by_path({"data": {"a": None}}, "data.a") is None
    assert get_mapping_value({"data": {"a": None, "b": 1}}, "data") is UNDEFINED


def _frame(rows):
    flat = []
    for row in rows:
        flat.append(
            {
                f"{section}.{key}": value
                for section, values in row.items()
                for key, value in values.items()
            }
        )
    return EventFrame(pd.DataFrame(flat))


def test_frame_assembles_sections_without_nulls():
    frame = _frame([{"data": {"a": 1, "b": None}}, {"data": {"a": None, "b": "x"}}])
    assert frame.path("data") == [{"a": 1}, {"b": "x"}]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=False, width=32),
    st.text(max_size=5),
)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "data": st.fixed_dictionaries({"a": scalars, "b": scalars}),
            "user": st.fixed_dictionaries({"id": scalars}),
        }
    ),
    min_size=1,
    max_size=8,
)
mappings = st.recursive(
    st.sampled_from(["data.a", "data.b", "user.id", "data", "data.missing"]),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3),
        st.fixed_dictionaries({"key": st.sampled_from(["data.a", "user.id"]), "value": scalars}),
        st.fixed_dictionaries(
            {"map": st.dictionaries(st.sampled_from(["X", "Y", "Z"]), inner, max_size=3)}
        ),
        st.fixed_dictionaries({"set": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"value": scalars}),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(rows=rows, mapping=mappings)
def test_column_plan_equals_row_evaluation(rows, mapping):
    frame = _frame(rows)
    by_columns = compile_value(mapping)(frame)
    by_rows = [get_mapping_value(event, mapping) for event in frame.events]
    assert by_columns == by_rows
