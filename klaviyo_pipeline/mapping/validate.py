"""Validate a walkerOS destination config before anything runs."""

import json
import re
from typing import Any

import pycountry

from klaviyo_pipeline import settings as klaviyo_limits
from klaviyo_pipeline.config import ConfigError
from klaviyo_pipeline.mapping.callables import CallableError, resolve_callable
from klaviyo_pipeline.mapping.values import VALUE_CONFIG_KEYS

DESTINATION_KEYS = frozenset(
    {
        "settings",
        "mapping",
        "data",
        "policy",
        "include",
        "consent",
        "id",
        "batch",
        "queue",
        "verbose",
        "logLevel",
        "disabled",
        "primary",
        "env",
        "loadScript",
        "init",
    }
)
SETTINGS_KEYS = frozenset(
    {"apiKey", "email", "externalId", "phoneNumber", "identify", "currency", "uniqueId"}
)
RULE_KEYS = frozenset(
    {
        "name",
        "data",
        "settings",
        "silent",
        "skip",
        "ignore",
        "condition",
        "consent",
        "policy",
        "include",
        "remove",
        "batch",
    }
)
RULE_SETTINGS_KEYS = frozenset({"identify", "value", "uniqueId", "currency"})
INCLUDE_SECTIONS = frozenset({"data", "globals", "context", "user", "source", "event", "all"})


class DestinationConfigError(ConfigError):
    """Invalid walkerOS destination config; the message names the key path and the fix."""


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(path: str, value: Any, expected: str) -> None:
    raise DestinationConfigError(f"invalid config: {path}: {expected} (got {_shown(value)})")


def _check_callable(path: str, reference: Any) -> None:
    if isinstance(reference, str) and reference.startswith("$code:"):
        _fail(
            path,
            reference,
            "JavaScript functions cannot run here; name a Python callable "
            "as 'package.module:function'",
        )
    try:
        resolve_callable(reference)
    except CallableError as error:
        _fail(path, reference, str(error))


def _check_no_javascript(path: str, value: Any) -> None:
    """Reject walkerOS `$code:` JavaScript anywhere, so that none is sent as a literal."""
    if isinstance(value, str) and value.startswith("$code:"):
        _fail(
            path,
            value,
            "JavaScript functions cannot run here; name a Python callable "
            "as 'package.module:function' in an fn, condition or validate key",
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_no_javascript(f"{path}.{key}", item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_no_javascript(f"{path}.{index}", item)


def check_mapping_value(path: str, value: Any) -> None:
    """Check a mapping value: a path string, a value config or a list of alternatives."""
    if isinstance(value, str):
        return
    if isinstance(value, list):
        for index, alternative in enumerate(value):
            check_mapping_value(f"{path}.{index}", alternative)
        return
    if not isinstance(value, dict):
        _fail(path, value, "expected a path string, a value config object or a list of them")
    unknown = sorted(set(value) - VALUE_CONFIG_KEYS)
    if unknown:
        _fail(
            f"{path}.{unknown[0]}",
            value[unknown[0]],
            f"unknown value config key; expected one of {sorted(VALUE_CONFIG_KEYS)}",
        )
    for key in ("fn", "condition", "validate"):
        if value.get(key) is not None:
            _check_callable(f"{path}.{key}", value[key])
    if "key" in value and not isinstance(value["key"], str):
        _fail(f"{path}.key", value["key"], "expected a dotted path string")
    if "map" in value:
        if not isinstance(value["map"], dict):
            _fail(f"{path}.map", value["map"], "expected an object of output key to mapping value")
        for key, item in value["map"].items():
            check_mapping_value(f"{path}.map.{key}", item)
    if "loop" in value:
        loop = value["loop"]
        if not isinstance(loop, list) or len(loop) != 2:
            _fail(
                f"{path}.loop", loop, "expected [scope, item mapping], e.g. ['nested', 'data.id']"
            )
        if loop[0] != "this":
            check_mapping_value(f"{path}.loop.0", loop[0])
        check_mapping_value(f"{path}.loop.1", loop[1])
    if "set" in value:
        if not isinstance(value["set"], list):
            _fail(f"{path}.set", value["set"], "expected a list of mapping values")
        for index, item in enumerate(value["set"]):
            check_mapping_value(f"{path}.set.{index}", item)
    if "consent" in value and not isinstance(value["consent"], dict):
        _fail(f"{path}.consent", value["consent"], "expected an object such as {marketing: true}")


def _check_currency(path: str, currency: Any) -> None:
    if (
        not isinstance(currency, str)
        or pycountry.currencies.get(alpha_3=currency.strip().upper()) is None
    ):
        _fail(path, currency, "expected an ISO 4217 currency code such as 'USD' or 'EUR'")


def _check_settings(settings: Any) -> None:
    if not isinstance(settings, dict):
        _fail("destination.settings", settings, "expected an object")
    unknown = sorted(set(settings) - SETTINGS_KEYS)
    if unknown:
        _fail(
            f"destination.settings.{unknown[0]}",
            settings[unknown[0]],
            f"unknown setting; expected one of {sorted(SETTINGS_KEYS)}",
        )
    api_key = settings.get("apiKey")
    if api_key is not None and not isinstance(api_key, str):
        _fail(
            "destination.settings.apiKey",
            "(hidden)",
            "expected a string such as '$KLAVIYO_API_KEY'",
        )
    for key in ("email", "externalId", "phoneNumber", "identify", "uniqueId"):
        if settings.get(key) not in (None, ""):
            check_mapping_value(f"destination.settings.{key}", settings[key])
    if settings.get("currency") not in (None, ""):
        _check_currency("destination.settings.currency", settings["currency"])


def _metric_key(name: str) -> str:
    return re.sub(r"\s+", "", name).casefold()


def _check_rule(path: str, rule: Any, metrics: dict[str, tuple[str, str]]) -> None:
    if not isinstance(rule, dict):
        _fail(path, rule, "expected a rule object")
    unknown = sorted(set(rule) - RULE_KEYS)
    if unknown:
        _fail(
            f"{path}.{unknown[0]}",
            rule[unknown[0]],
            f"unknown rule key; expected one of {sorted(RULE_KEYS)}",
        )
    if rule.get("condition") is not None:
        _check_callable(f"{path}.condition", rule["condition"])
    name = rule.get("name")
    if name is not None:
        _check_metric_name(f"{path}.name", name, metrics)
    if rule.get("data") is not None:
        check_mapping_value(f"{path}.data", rule["data"])
    for flag in ("silent", "skip", "ignore"):
        if flag in rule and not isinstance(rule[flag], bool):
            _fail(f"{path}.{flag}", rule[flag], "expected true or false")
    rule_settings = rule.get("settings", {})
    if not isinstance(rule_settings, dict):
        _fail(f"{path}.settings", rule_settings, "expected an object")
    unknown = sorted(set(rule_settings) - RULE_SETTINGS_KEYS)
    if unknown:
        _fail(
            f"{path}.settings.{unknown[0]}",
            rule_settings[unknown[0]],
            f"unknown rule setting; expected one of {sorted(RULE_SETTINGS_KEYS)}",
        )
    for key, item in rule_settings.items():
        if item is not None:
            check_mapping_value(f"{path}.settings.{key}", item)
    if "include" in rule:
        _check_include(f"{path}.include", rule["include"])


def _check_metric_name(path: str, name: Any, metrics: dict[str, tuple[str, str]]) -> None:
    if not isinstance(name, str) or not name.strip():
        _fail(path, name, "expected a non-empty metric name")
    if len(name) > klaviyo_limits.MAX_METRIC_NAME_LENGTH:
        _fail(
            path,
            name,
            f"Klaviyo metric names have at most {klaviyo_limits.MAX_METRIC_NAME_LENGTH} characters",
        )
    if name != name.strip() or "  " in name:
        _fail(path, name, "metric names must not have leading, trailing or double spaces")
    key = _metric_key(name)
    if key in metrics and metrics[key][0] != name:
        other_name, other_path = metrics[key]
        _fail(
            path,
            name,
            f"differs from {other_name!r} at {other_path} only in case or spacing, "
            "which creates two metrics in Klaviyo; use one spelling",
        )
    metrics.setdefault(key, (name, path))


def _check_include(path: str, include: Any) -> None:
    if not isinstance(include, list) or not all(isinstance(item, str) for item in include):
        _fail(path, include, f"expected a list of sections from {sorted(INCLUDE_SECTIONS)}")
    unknown = sorted(set(include) - INCLUDE_SECTIONS)
    if unknown:
        _fail(
            path, unknown[0], f"unknown include section; expected one of {sorted(INCLUDE_SECTIONS)}"
        )


def _check_mapping(mapping: Any, metrics: dict[str, tuple[str, str]]) -> None:
    if not isinstance(mapping, dict):
        _fail("destination.mapping", mapping, "expected an object of entity to action to rule")
    for entity, actions in mapping.items():
        if not isinstance(actions, dict):
            _fail(f"destination.mapping.{entity}", actions, "expected an object of action to rule")
        for action, rules in actions.items():
            path = f"destination.mapping.{entity}.{action}"
            for index, rule in enumerate(rules if isinstance(rules, list) else [rules]):
                _check_rule(f"{path}.{index}" if isinstance(rules, list) else path, rule, metrics)


def validate_destination(destination: dict[str, Any], ecommerce: Any = None) -> None:
    """Check a walkerOS destination config; raise DestinationConfigError on the first problem."""
    unknown = sorted(set(destination) - DESTINATION_KEYS)
    if unknown:
        _fail(
            f"destination.{unknown[0]}",
            destination[unknown[0]],
            f"unknown destination key; expected one of {sorted(DESTINATION_KEYS)}",
        )
    _check_no_javascript("destination", destination)
    _check_settings(destination.get("settings", {}))
    metrics: dict[str, tuple[str, str]] = {}
    _check_mapping(destination.get("mapping", {}), metrics)
    if ecommerce is not None and getattr(ecommerce, "ordered_product", False):
        # The fan-out finds orders by this exact name, so a spelling that differs from a
        # rule's name in case or spacing would silently send no line items.
        _check_metric_name("ecommerce.order_metric", ecommerce.order_metric, metrics)
        _check_metric_name("ecommerce.line_item_metric", ecommerce.line_item_metric, metrics)
    if destination.get("data") is not None:
        check_mapping_value("destination.data", destination["data"])
    if "include" in destination:
        _check_include("destination.include", destination["include"])
    consent = destination.get("consent")
    if consent is not None and not isinstance(consent, dict):
        _fail("destination.consent", consent, "expected an object such as {marketing: true}")
    policy = destination.get("policy")
    if policy is not None:
        if not isinstance(policy, dict):
            _fail("destination.policy", policy, "expected an object of event path to mapping value")
        for key, item in policy.items():
            check_mapping_value(f"destination.policy.{key}", item)
