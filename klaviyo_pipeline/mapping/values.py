"""walkerOS mapping values evaluated against one event dict: paths, value configs, casting."""

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from klaviyo_pipeline.mapping.callables import resolve_callable

logger = logging.getLogger(__name__)


class _Undefined:
    """JavaScript's `undefined`: a value that was not found, distinct from a found `None`."""

    _instance: "_Undefined | None" = None

    def __new__(cls) -> "_Undefined":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()

VALUE_CONFIG_KEYS = frozenset(
    {"condition", "consent", "fn", "key", "loop", "map", "set", "validate", "value"}
)


def is_object(value: Any) -> bool:
    """Return whether `value` is a plain object in walkerOS's sense (a dict)."""
    return isinstance(value, dict)


def is_number(value: Any) -> bool:
    """Return whether `value` is a JavaScript number: int or float, never bool."""
    plain = isinstance(value, int | float) and not isinstance(value, bool)
    return plain or _is_numpy_number(value)


def _is_numpy_number(value: Any) -> bool:
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    return kind in ("i", "u", "f") and getattr(value, "ndim", 1) == 0


def is_property(value: Any) -> bool:
    """Return whether `value` is a walkerOS Property: no None, no NaN, no dates, anywhere.

    UNDEFINED counts as valid, as JavaScript's `undefined` does. It occurs only in `set` lists.
    """
    if value is UNDEFINED or isinstance(value, bool | str):
        return True
    if is_number(value):
        return not math.isnan(float(value))
    if isinstance(value, list):
        return all(is_property(item) for item in value)
    if isinstance(value, dict):
        return all(is_property(item) for item in value.values())
    return False


def cast_to_property(value: Any) -> Any:
    """Return `value` if it is a valid Property, else UNDEFINED (walkerOS castToProperty)."""
    if value is UNDEFINED:
        return UNDEFINED
    return value if is_property(value) else UNDEFINED


def get_by_path(event: Any, path: str, default: Any = UNDEFINED) -> Any:
    """Walk a dotted path through dicts and lists (walkerOS getByPath).

    A numeric segment indexes a list and `*` maps the rest of the path over its items.
    A missing key gives `default`; a present None is returned as None.
    """
    if path == "":
        return event
    return _walk(event, path.split("."), default)


def _walk(value: Any, segments: list[str], default: Any) -> Any:
    for position, segment in enumerate(segments):
        if segment == "*" and isinstance(value, list):
            rest = segments[position + 1 :]
            return [_walk(item, rest, UNDEFINED) for item in value]
        if isinstance(value, dict):
            if segment not in value:
                return default
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit():
            index = int(segment)
            if index >= len(value):
                return default
            value = value[index]
        else:
            return default
    return value


def set_by_path(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Return a copy of `event` with `value` written at the dotted `path`."""
    result = dict(event)
    target = result
    segments = path.split(".")
    for segment in segments[:-1]:
        child = target.get(segment)
        child = dict(child) if isinstance(child, dict) else {}
        target[segment] = child
        target = child
    target[segments[-1]] = value
    return result


def granted(required: Mapping[str, Any] | None, state: Mapping[str, Any] | None) -> bool:
    """Return whether every consent in `required` is granted in `state`."""
    if not required:
        return True
    state = state or {}
    return all(state.get(name) is True for name in required)


def get_mapping_value(value: Any, mapping: Any, context: Mapping[str, Any] | None = None) -> Any:
    """Evaluate a walkerOS mapping value (string, value config or list of alternatives).

    Unresolved `set` entries come back as None, which JSON writes as null.
    """
    return finalize(evaluate_mapping(value, mapping, context))


def finalize(value: Any) -> Any:
    """Replace UNDEFINED entries that `set` left in lists with None."""
    if isinstance(value, list):
        return [None if item is UNDEFINED else finalize(item) for item in value]
    if isinstance(value, dict):
        return {key: finalize(item) for key, item in value.items()}
    return value


def uses_set(mapping: Any) -> bool:
    """Return whether a mapping contains a `set` anywhere, so its result needs `finalize`."""
    if isinstance(mapping, dict):
        return "set" in mapping or any(uses_set(item) for item in mapping.values())
    if isinstance(mapping, list):
        return any(uses_set(item) for item in mapping)
    return False


def evaluate_mapping(value: Any, mapping: Any, context: Mapping[str, Any] | None = None) -> Any:
    """Evaluate a mapping value, keeping UNDEFINED entries of `set` lists."""
    if value is UNDEFINED or mapping is None:
        return UNDEFINED
    context = context or {}
    alternatives = mapping if isinstance(mapping, list) else [mapping]
    for alternative in alternatives:
        try:
            result = _process_value(value, alternative, context)
        except Exception as error:
            logger.debug("mapping processing failed: %s", error)
            result = UNDEFINED
        if result is not UNDEFINED:
            return result
    return UNDEFINED


def _process_value(value: Any, alternative: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(alternative, str):
        alternative = {"key": alternative}
    if isinstance(alternative, list):
        return evaluate_mapping(value, alternative, context)
    if not isinstance(alternative, dict) or not alternative:
        return UNDEFINED

    condition = alternative.get("condition")
    if condition is not None and not _call(condition, value, context):
        return UNDEFINED

    static = alternative.get("value", UNDEFINED)
    consent = alternative.get("consent")
    if consent and not granted(consent, _consent_of(value, context)):
        return static

    result = static if static is not UNDEFINED else value
    if alternative.get("fn") is not None:
        result = _call_fn(alternative["fn"], value, context)
    if alternative.get("key") is not None:
        result = get_by_path(value, alternative["key"], static)

    if "loop" in alternative:
        result = _loop(value, result, alternative["loop"], context)
    elif "map" in alternative:
        result = _map(value, alternative["map"], context)
    elif "set" in alternative:
        result = [evaluate_mapping(value, item, context) for item in alternative["set"]]

    validate = alternative.get("validate")
    if validate is not None and not _call(validate, result, context):
        result = UNDEFINED

    cast = cast_to_property(result)
    if cast is UNDEFINED:
        cast = cast_to_property(static)
    return cast


def _loop(value: Any, current: Any, loop: Any, context: Mapping[str, Any]) -> Any:
    scope, item_mapping = loop
    items = [value] if scope == "this" else evaluate_mapping(value, scope, context)
    if not isinstance(items, list):
        return current
    results = (evaluate_mapping(item, item_mapping, context) for item in items)
    return [item for item in results if item is not UNDEFINED]


def _map(value: Any, mapping: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    result = {}
    for key, item_mapping in mapping.items():
        item = evaluate_mapping(value, item_mapping, context)
        if item is not UNDEFINED:
            result[key] = item
    return result


def _consent_of(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, dict) and isinstance(value.get("consent"), dict):
        return value["consent"]
    return context.get("consent")


def _call(reference: Any, value: Any, context: Mapping[str, Any]) -> Any:
    function: Callable[..., Any] = resolve_callable(reference)
    return function(value, context)


def _call_fn(reference: Any, value: Any, context: Mapping[str, Any]) -> Any:
    try:
        result = _call(reference, value, context)
    except Exception as error:
        logger.warning("mapping fn %s failed: %s", reference, type(error).__name__)
        return UNDEFINED
    return UNDEFINED if result is None else result
