"""Hard input cases decided while mapping: each asserts on the record or on the row's outcome."""

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.cases.rows import (
    LINE_ITEMS,
    case_config,
    event_record,
    map_cases,
    outcome,
    profile_attributes,
)

USER = {"email": "user@example.com"}


def order(order_id: str, **fields: Any) -> dict[str, Any]:
    """Return an `order complete` case row for `user@example.com`, with `data` fields."""
    return {
        "event": "order complete",
        "user": USER,
        "data": {"id": order_id, "total": 10, **fields},
    }


@pytest.mark.parametrize(
    ("timestamp", "time"),
    [
        # nanoseconds from a warehouse TIMESTAMP_NS column, as text
        ("2024-09-11T20:08:49.891912312Z", "2024-09-11T20:08:49Z"),
        # microseconds
        ("2024-09-11T20:08:49.891912Z", "2024-09-11T20:08:49Z"),
        # an offset other than UTC
        ("2024-09-11T22:08:49.891+02:00", "2024-09-11T20:08:49Z"),
        # epoch milliseconds, walkerOS's timestamp unit
        (1726085329891, "2024-09-11T20:08:49Z"),
        # a pandas Timestamp with nanoseconds
        (pd.Timestamp("2024-09-11T20:08:49.891912312Z"), "2024-09-11T20:08:49Z"),
    ],
)
def test_time_precision_truncated(timestamp: Any, time: str) -> None:
    mapped = map_cases([{**order("ORD-1001", total=49.99, currency="USD"), "timestamp": timestamp}])

    record = event_record(mapped, "ORD-1001")
    assert record["time"] == time
    assert mapped.outcomes.empty


@pytest.mark.parametrize(
    "timestamp",
    [
        # a NULL date cast to the epoch
        "1970-01-01T00:00:00Z",
        # epoch 0 as a number
        0,
        # one second before the earliest time Klaviyo accepts
        "1999-12-31T23:59:59Z",
        # a typo'd future year
        "2099-01-01T00:00:00Z",
    ],
)
def test_time_out_of_range_rejected(timestamp: Any) -> None:
    mapped = map_cases(
        [
            {**order("ORD-1003"), "timestamp": timestamp},
            order("ORD-1003B"),
        ]
    )

    rejected = outcome(mapped, 0)
    assert rejected["status"] == "rejected"
    assert rejected["reason"] == "time_out_of_range"
    assert "before 2000 or more than a year ahead" in rejected["detail"]
    assert mapped.events["unique_id"].tolist() == ["ORD-1003B"]


# (phone, country hint, E.164 form): all rows go through one partition.
PHONES = [
    # the fictional 555 range is a possible number, so it formats, though it is not valid
    ("(555) 555-0123", "US", "+15555550123"),
    # a national German number with the row's country hint
    ("030 901820", "DE", "+4930901820"),
    # already international, with spaces
    ("+44 20 7946 0958", None, "+442079460958"),
    # no country hint: the default region US applies
    ("415-555-2671", None, "+14155552671"),
]
# Phones that cannot be formatted; each row keeps its email.
UNUSABLE_PHONES = [
    # too short to be a phone number
    "12",
    # letters
    "call me",
    # too long for any region
    "+1 555 555 0123 4567 8901",
]


def phone_order(order_id: str, phone: str, country: str | None = None) -> dict[str, Any]:
    user = {**USER, "phone": phone, "country": country}
    return {"event": "order complete", "user": user, "data": {"id": order_id, "total": 20}}


def test_phone_formatted_e164() -> None:
    rows = [phone_order(f"ORD-{i}", phone, country) for i, (phone, country, _) in enumerate(PHONES)]
    mapped = map_cases(rows)

    for index, (phone, _, expected) in enumerate(PHONES):
        assert event_record(mapped, f"ORD-{index}")["phone_number"] == expected, phone


def test_phone_unusable_dropped_keeps_email() -> None:
    rows = [phone_order(f"ORD-{i}", phone) for i, phone in enumerate(UNUSABLE_PHONES)]
    mapped = map_cases([*rows, order("ORD-OK")])

    for index, phone in enumerate(UNUSABLE_PHONES):
        record = event_record(mapped, f"ORD-{index}")
        assert record["phone_number"] is None, phone
        assert record["email"] == "user@example.com", phone
    assert mapped.warnings["phone_dropped"] == len(UNUSABLE_PHONES)
    assert len(mapped.events) == len(UNUSABLE_PHONES) + 1


def test_unique_ids_same_second_kept() -> None:
    config = case_config(normalize={"prefix_unique_id_with_metric": True})
    rows = [
        {**order("ORD-1010A"), "timestamp": "2024-05-01T10:00:00Z"},
        {**order("ORD-1010B"), "timestamp": "2024-05-01T10:00:00Z"},
    ]
    mapped = map_cases(rows, config)

    assert mapped.events["unique_id"].tolist() == [
        "placed_order:ORD-1010A",
        "placed_order:ORD-1010B",
    ]
    assert mapped.outcomes.empty


@pytest.mark.parametrize(
    "data",
    [
        # no order id column at all
        {"total": 10},
        # a NULL order id
        {"id": None, "total": 10},
        # an empty order id
        {"id": "", "total": 10},
        # a NaN order id from a float column
        {"id": float("nan"), "total": 10},
    ],
)
def test_unique_id_missing_rejected(data: dict[str, Any]) -> None:
    mapped = map_cases(
        [{"event": "order complete", "user": USER, "data": data}, order("ORD-1010C")]
    )

    rejected = outcome(mapped, 0)
    assert rejected["status"] == "rejected"
    assert rejected["reason"] == "unique_id_missing"
    assert mapped.events["unique_id"].tolist() == ["ORD-1010C"]


def fan_out_order(products: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "event": "order complete",
        "timestamp": "2024-05-01T10:00:00Z",
        "user": USER,
        "data": {"id": "ORD-1011", "total": 30, "currency": "USD"},
        "products": products,
    }


def test_line_items_fan_out() -> None:
    config = case_config(normalize={"prefix_unique_id_with_metric": True}, ecommerce=LINE_ITEMS)
    products = [
        {"sku": "SKU-1", "price": 10, "quantity": 1},
        {"sku": "SKU-2", "price": 10, "quantity": 2},
    ]
    mapped = map_cases([fan_out_order(products)], config)

    events = mapped.events.set_index("unique_id")
    assert events.loc["placed_order:ORD-1011", "value"] == 30
    assert events.loc["ordered_product:ORD-1011:0", "value"] == 10
    assert events.loc["ordered_product:ORD-1011:1", "value"] == 20
    assert events.loc["ordered_product:ORD-1011:0", "metric"] == "Ordered Product"
    assert len(mapped.events) == 3


def test_line_items_same_time_no_id() -> None:
    # Four items without ids at one timestamp: each gets its own unique_id, none collapses.
    config = case_config(ecommerce=LINE_ITEMS)
    products = [{"price": 5, "quantity": 1} for _ in range(4)]
    mapped = map_cases([fan_out_order(products)], config)

    lines = mapped.events[mapped.events["metric"] == "Ordered Product"]
    assert lines["unique_id"].tolist() == [f"ORD-1011:{index}" for index in range(4)]


def test_placed_order_item_summary() -> None:
    config = case_config(ecommerce=LINE_ITEMS)
    products = [
        {"sku": "SKU-1", "name": "Sock", "category": "Apparel", "price": 10, "quantity": 1},
        {
            "sku": "SKU-2",
            "name": "Hat",
            "categories": ["Apparel", "Hats"],
            "price": 10,
            "quantity": 2,
        },
    ]
    mapped = map_cases([fan_out_order(products)], config)

    properties = event_record(mapped, "ORD-1011")["properties"]
    assert properties["ItemNames"] == ["Sock", "Hat"]
    assert properties["Categories"] == ["Apparel", "Hats"]
    assert properties["Items"] == products


def test_placed_order_keeps_mapped_items() -> None:
    # A rule that maps Items itself keeps its value; ItemNames and Categories are still added.
    config = case_config(order_data={"Items": "data.cart"}, ecommerce=LINE_ITEMS)
    row = fan_out_order([{"name": "Sock", "category": "Apparel", "price": 1}])
    row["data"]["cart"] = ["mapped"]
    mapped = map_cases([row], config)

    properties = event_record(mapped, "ORD-1011")["properties"]
    assert properties["Items"] == ["mapped"]
    assert properties["ItemNames"] == ["Sock"]
    assert properties["Categories"] == ["Apparel"]


def test_ordered_product_fields_win() -> None:
    # The order's coupon is shared with its lines, but a line's own coupon wins.
    config = case_config(ecommerce=LINE_ITEMS)
    row = fan_out_order([{"sku": "SKU-1", "coupon": "LINE10", "price": 10, "quantity": 1}])
    row["data"]["coupon"] = "ORDER5"
    mapped = map_cases([row], config)

    assert event_record(mapped, "ORD-1011:0")["properties"]["coupon"] == "LINE10"
    assert event_record(mapped, "ORD-1011")["properties"]["coupon"] == "ORDER5"


def test_walkeros_nested_items_fan_out() -> None:
    # walkerOS line items are entities in `nested` with their fields under `data`.
    config = case_config(ecommerce={"ordered_product": True})
    nested = [
        {"entity": "product", "data": {"id": "SKU-1", "name": "Sock", "price": 10, "quantity": 2}},
        {"entity": "product", "data": {"id": "SKU-2", "name": "Hat", "price": 5}},
    ]
    row = {
        "event": "order complete",
        "user": USER,
        "data": {"id": "ORD-1012", "total": 25},
        "nested": nested,
    }
    mapped = map_cases([row], config)

    assert event_record(mapped, "ORD-1012:0")["value"] == 20
    assert event_record(mapped, "ORD-1012:1")["value"] == 5
    assert event_record(mapped, "ORD-1012")["properties"]["ItemNames"] == ["Sock", "Hat"]


def identify(user: dict[str, Any], **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "user": user, "traits": traits}


def test_profile_nulls_omitted() -> None:
    mapped = map_cases([identify({**USER, "phone": None}, first_name="Ada", zip=None)])

    attributes = profile_attributes(mapped, "user@example.com")
    assert attributes == {"first_name": "Ada"}
    assert mapped.profiles.iloc[0]["phone_number"] is None


def test_profile_unset_list_clears() -> None:
    config = case_config(normalize={"unset_profile_fields": ["phone_number", "zip", "plan"]})
    mapped = map_cases([identify({**USER, "phone": None}, first_name="Ada", zip=None)], config)

    attributes = profile_attributes(mapped, "user@example.com")
    assert attributes == {
        "first_name": "Ada",
        "phone_number": None,
        "location": {"zip": None},
        "properties": {"plan": None},
    }


def test_profile_unset_skips_set_field() -> None:
    # Another row of the same profile sets zip, so the unset list does not clear it.
    config = case_config(normalize={"unset_profile_fields": ["zip"]})
    rows = [identify(USER, first_name="Ada", zip=None), identify(USER, zip=12345)]
    mapped = map_cases(rows, config)

    assert profile_attributes(mapped, "user@example.com")["location"] == {"zip": "12345"}


@pytest.mark.parametrize(
    ("total", "coupon", "dropped_properties"),
    [
        # NaN in float columns, as pandas reads a NULL: the coupon is simply absent
        (float("nan"), float("nan"), 0),
        # ±inf, which JSON cannot represent either: the coupon is dropped with a warning
        (float("inf"), float("-inf"), 1),
        # numpy's NaN scalar
        (np.float64("nan"), np.float64("nan"), 0),
    ],
)
def test_non_finite_numbers_omitted(total: Any, coupon: Any, dropped_properties: int) -> None:
    rows = [order("ORD-1020", total=total, coupon=coupon), order("ORD-1021", coupon="SAVE")]
    mapped = map_cases(rows)

    record = event_record(mapped, "ORD-1020")
    assert np.isnan(record["value"])
    assert "coupon" not in record["properties"]
    assert event_record(mapped, "ORD-1021")["properties"]["coupon"] == "SAVE"
    assert mapped.warnings["value_missing"] == 1
    assert mapped.warnings["non_finite_property_dropped"] == dropped_properties


# (currency, value_currency sent): all rows go through one partition.
CURRENCIES = [
    # lower case
    ("usd", "USD"),
    # surrounding whitespace
    (" eur ", "EUR"),
    # not ISO 4217: dropped with a warning
    ("US$", None),
    # no currency and no default: the value is sent without one, with a warning
    (None, None),
]


def test_currency_normalized() -> None:
    rows = [order(f"ORD-{i}", currency=currency) for i, (currency, _) in enumerate(CURRENCIES)]
    mapped = map_cases(rows)

    for index, (currency, expected) in enumerate(CURRENCIES):
        record = event_record(mapped, f"ORD-{index}")
        assert record["value_currency"] == expected, currency
        assert record["value"] == 10, currency
    assert mapped.warnings["currency_dropped"] == 1
    assert mapped.warnings["currency_missing"] == 1


def test_currency_default_applies() -> None:
    mapped = map_cases([order("ORD-1023")], case_config(settings={"currency": "GBP"}))

    assert event_record(mapped, "ORD-1023")["value_currency"] == "GBP"
    assert mapped.warnings["currency_missing"] == 0


def test_currency_invalid_rejected_by_policy() -> None:
    config = case_config(normalize={"drop_invalid_currency": False})
    mapped = map_cases(
        [order("ORD-1023", currency="US$"), order("ORD-1024", currency="usd")], config
    )

    rejected = outcome(mapped, 0)
    assert rejected["status"] == "rejected"
    assert rejected["reason"] == "currency_invalid"
    assert mapped.events["unique_id"].tolist() == ["ORD-1024"]


# Event names that must find the `order complete` rule.
NAME_SPELLINGS = [
    # surrounding spaces and title case
    " Order Complete ",
    # upper case and a run of spaces
    "ORDER   COMPLETE",
    # a tab between the words
    "order\tcomplete",
    # full-width letters, folded by NFKC
    "Ｏｒｄｅｒ ｃｏｍｐｌｅｔｅ",
]
# (event name, words of the reject detail): one column of mixed types, as a variant column.
INVALID_NAMES = [
    # a number has no entity and action
    (404, "no entity and action"),
    # a boolean is not a name
    (True, "type bool"),
    # NULL
    (None, "missing or empty"),
    # blank
    ("   ", "missing or empty"),
    # a JSON object
    ({"a": 1}, "type dict"),
    # an array cell
    (np.array(["order", "complete"]), "type ndarray"),
]


def test_event_name_lookup_normalized() -> None:
    rows = [{**order(f"ORD-{i}"), "event": name} for i, name in enumerate(NAME_SPELLINGS)]
    mapped = map_cases(rows)

    for index, name in enumerate(NAME_SPELLINGS):
        assert event_record(mapped, f"ORD-{index}")["metric"] == "Placed Order", name


def test_event_name_invalid_rejected() -> None:
    rows = [{**order(f"ORD-{i}"), "event": name} for i, (name, _) in enumerate(INVALID_NAMES)]
    mapped = map_cases([*rows, order("ORD-OK")])

    for index, (name, detail) in enumerate(INVALID_NAMES):
        rejected = outcome(mapped, index)
        assert rejected["status"] == "rejected", name
        assert rejected["reason"] == "invalid_name", name
        assert detail in rejected["detail"], name
    assert mapped.events["unique_id"].tolist() == ["ORD-OK"]


def test_user_traits_go_to_profile_properties() -> None:
    config = case_config(normalize={"user_traits_to_profile": True})
    row = {
        "event": "order complete",
        "user": {**USER, "loyalty_tier": "gold"},
        "data": {"id": "ORD-1026", "total": 10},
    }
    mapped = map_cases([row], config)

    record = event_record(mapped, "ORD-1026")
    assert record["profile_properties"] == {"loyalty_tier": "gold"}
    assert "loyalty_tier" not in record["properties"]


def test_user_traits_off_by_default() -> None:
    row = {
        "event": "order complete",
        "user": {**USER, "loyalty_tier": "gold"},
        "data": {"id": "ORD-1026", "total": 10},
    }
    mapped = map_cases([row])

    assert event_record(mapped, "ORD-1026")["profile_properties"] is None


@pytest.mark.parametrize(
    ("email", "lowercase", "expected"),
    [
        # whitespace trimmed, domain lower-cased, local part and +tag kept
        ("  User.Name+tag@Example.COM ", False, "User.Name+tag@example.com"),
        # the option lower-cases the local part too
        ("  User.Name+tag@Example.COM ", True, "user.name+tag@example.com"),
        # a tab and a newline around the address
        ("\tuser@EXAMPLE.com\n", False, "user@example.com"),
    ],
)
def test_email_trimmed_domain_lowered(email: str, lowercase: bool, expected: str) -> None:
    config = case_config(normalize={"lowercase_email": lowercase})
    mapped = map_cases(
        [
            {
                "event": "order complete",
                "user": {"email": email},
                "data": {"id": "ORD-1028", "total": 10},
            }
        ],
        config,
    )

    assert event_record(mapped, "ORD-1028")["email"] == expected


def test_external_id_too_long_rejected() -> None:
    rows = [
        identify({"id": "a" * 300, "email": "user@example.com"}),
        identify({"id": "b", "email": "user2@example.com"}),
    ]
    mapped = map_cases(rows)

    event_outcome = outcome(mapped, 0)
    profile_outcome = outcome(mapped, 0, stream="profile")
    assert event_outcome["reason"] == "external_id_too_long"
    assert event_outcome["status"] == "rejected"
    assert profile_outcome["reason"] == "external_id_too_long"
    assert mapped.profiles["email"].tolist() == ["user2@example.com"]


def test_external_id_too_long_dropped() -> None:
    config = case_config(normalize={"external_id_too_long": "drop"})
    rows = [
        identify({"id": "a" * 300, "email": "user@example.com"}),
        {
            "event": "order complete",
            "user": {"id": "a" * 300, "email": "user@example.com"},
            "data": {"id": "ORD-1030", "total": 10},
        },
    ]
    mapped = map_cases(rows, config)

    profile = mapped.profiles.iloc[0]
    assert profile["email"] == "user@example.com"
    assert profile["external_id"] is None
    assert event_record(mapped, "ORD-1030")["external_id"] is None
    assert mapped.warnings["external_id_dropped"] == 2


def nested_order() -> dict[str, Any]:
    return order(
        "ORD-1032",
        shipping={"method": "express", "address": {"city": "Springfield"}},
        tags=["gift", "rush"],
    )


def test_nested_properties_flattened() -> None:
    config = case_config(normalize={"flatten_properties": True}, ecommerce=LINE_ITEMS)
    row = {**nested_order(), "products": [{"sku": "SKU-1", "price": 10}]}
    mapped = map_cases([row], config)

    properties = event_record(mapped, "ORD-1032")["properties"]
    assert properties["shipping.method"] == "express"
    assert properties["shipping.address.city"] == "Springfield"
    assert properties["tags"] == ["gift", "rush"]
    assert properties["Items"] == [{"sku": "SKU-1", "price": 10}]
    assert "shipping" not in properties


def test_nested_properties_kept_by_default() -> None:
    mapped = map_cases([nested_order()])

    properties = event_record(mapped, "ORD-1032")["properties"]
    assert properties["shipping"] == {"method": "express", "address": {"city": "Springfield"}}


def test_consent_trait_warns_unchanged() -> None:
    mapped = map_cases([identify(USER, accepts_marketing=True)])

    attributes = profile_attributes(mapped, "user@example.com")
    assert attributes == {"properties": {"accepts_marketing": True}}
    assert mapped.warnings["consent_unchanged"] == 1


@pytest.mark.parametrize(
    "user",
    [
        # every identifier NULL
        {"email": None, "phone": None, "id": None},
        # no user section at all
        {},
        # blank strings
        {"email": " ", "id": ""},
    ],
)
def test_missing_identity_skipped(user: dict[str, Any]) -> None:
    rows = [
        {"event": "order complete", "user": user, "data": {"id": "ORD-1039", "total": 10}},
        order("ORD-1040"),
    ]
    mapped = map_cases(rows)

    skipped = outcome(mapped, 0)
    assert skipped["status"] == "skipped"
    assert skipped["reason"] == "no_identifier"
    assert mapped.events["unique_id"].tolist() == ["ORD-1040"]


def test_missing_identity_profile_row() -> None:
    mapped = map_cases([identify({"email": None}, plan="gold")])

    assert outcome(mapped, 0)["reason"] == "no_identifier"
    assert outcome(mapped, 0, stream="profile")["reason"] == "no_identifier"
    assert mapped.profiles.empty
