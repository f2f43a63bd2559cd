"""Metric-name drift caught by config validation, before any row is read."""

from typing import Any

import pytest

from klaviyo_pipeline.config import ConfigError, PipelineConfig, parse_config
from tests.cases.rows import map_cases


def config_with(mapping: dict[str, Any], **sections: Any) -> PipelineConfig:
    raw = {
        "partitions": {"start": "2024-01-01"},
        "source": {"kind": "files", "path": "unused.ndjson"},
        "destination": {"settings": {"apiKey": "pk_test_cases_key"}, "mapping": mapping},
        **sections,
    }
    return parse_config(raw)


@pytest.mark.parametrize(
    ("mapping", "sections", "message"),
    [
        # two rules whose names differ only in case
        (
            {
                "order": {"complete": {"name": "Placed order"}},
                "purchase": {"*": {"name": "Placed Order"}},
            },
            {},
            "only in case or spacing",
        ),
        # a double space
        (
            {"order": {"complete": {"name": "Placed  Order"}}},
            {},
            "double spaces",
        ),
        # a trailing space
        (
            {"order": {"complete": {"name": "Placed Order "}}},
            {},
            "trailing",
        ),
        # over Klaviyo's limit
        (
            {"order": {"complete": {"name": "P" * 129}}},
            {},
            "at most",
        ),
        # the fan-out's order metric spelled differently from the rule
        (
            {"order": {"complete": {"name": "Placed order"}}},
            {"ecommerce": {"ordered_product": True}},
            "ecommerce.order_metric",
        ),
        # the line item metric spelled differently from a rule
        (
            {"product": {"buy": {"name": "ordered product"}}},
            {"ecommerce": {"ordered_product": True}},
            "ecommerce.line_item_metric",
        ),
    ],
)
def test_metric_drift_rejected(
    mapping: dict[str, Any], sections: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        config_with(mapping, **sections)

    assert message in str(raised.value)


def test_metric_repeated_spelling_accepted() -> None:
    mapping = {
        "order": {"complete": {"name": "Placed Order"}},
        "purchase": {"*": {"name": "Placed Order"}},
    }
    config = config_with(mapping, ecommerce={"ordered_product": True})

    assert config.ecommerce.order_metric == "Placed Order"


def test_metric_of_128_rejected() -> None:
    # Klaviyo requires a metric name of fewer than 128 characters.
    with pytest.raises(ConfigError):
        config_with({"order": {"complete": {"name": "P" * 128}}})


def test_metric_emitted_as_configured() -> None:
    rows = [
        {
            "event": " ORDER complete ",
            "user": {"email": "user@example.com"},
            "data": {"id": "ORD-1", "total": 1},
        },
        {
            "event": "order  Complete",
            "user": {"email": "user@example.com"},
            "data": {"id": "ORD-2", "total": 1},
        },
    ]
    mapped = map_cases(rows)

    assert mapped.events["metric"].tolist() == ["Placed Order", "Placed Order"]
