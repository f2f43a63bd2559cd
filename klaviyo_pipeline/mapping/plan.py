"""Compile walkerOS mapping values into functions that evaluate a whole column at once.

Paths, static values, `map` and `set` run on columns. `fn`, `condition`, `validate`,
`loop` and `consent` need the event as a whole, so they run per row on event dicts,
with the same semantics as `get_mapping_value`.
"""

from collections.abc import Callable
from typing import Any

from klaviyo_pipeline.mapping.frame import EventFrame
from klaviyo_pipeline.mapping.values import (
    UNDEFINED,
    cast_to_property,
    evaluate_mapping,
    finalize,
    is_property,
    uses_set,
)

ColumnFunction = Callable[[EventFrame], list[Any]]

_ROW_KEYS = frozenset({"fn", "condition", "validate", "loop", "consent"})


def compile_value(mapping: Any) -> ColumnFunction:
    """Return a function that evaluates `mapping` for every row of an EventFrame.

    Its results equal `get_mapping_value` on each row's event dict.
    """
    function = _compile(mapping)
    if not uses_set(mapping):
        return function

    def evaluate(frame: EventFrame) -> list[Any]:
        return [finalize(value) for value in function(frame)]

    return evaluate


def _compile(mapping: Any) -> ColumnFunction:
    if mapping is None:
        return _undefined
    if isinstance(mapping, str):
        return _compile_key(mapping, UNDEFINED)
    if isinstance(mapping, list):
        return _compile_alternatives([_compile(item) for item in mapping])
    if not isinstance(mapping, dict) or not mapping:
        return _undefined
    if _ROW_KEYS & set(mapping):
        return _compile_row(mapping)

    static = mapping.get("value", UNDEFINED)
    if "map" in mapping:
        return _compile_map(mapping["map"])
    if "set" in mapping:
        return _compile_set([_compile(item) for item in mapping["set"]])
    if "key" in mapping:
        return _compile_key(mapping["key"], static)
    return _compile_static(static)


def _undefined(frame: EventFrame) -> list[Any]:
    return [UNDEFINED] * frame.size


_TEXT_OR_UNDEFINED = frozenset({str, type(UNDEFINED)})


def _cast_all(values: list[Any]) -> list[Any]:
    # A column of text is the usual object column, and text is always a Property.
    if set(map(type, values)) <= _TEXT_OR_UNDEFINED:
        return values
    return [value if is_property(value) else UNDEFINED for value in values]


def _compile_key(path: str, static: Any) -> ColumnFunction:
    fallback = cast_to_property(static)

    def evaluate(frame: EventFrame) -> list[Any]:
        values = frame.path(path)
        if not frame.is_scalar_column(path):
            values = _cast_all(values)
        if fallback is UNDEFINED:
            return values
        return [fallback if value is UNDEFINED else value for value in values]

    return evaluate


def _compile_static(static: Any) -> ColumnFunction:
    value = cast_to_property(static)

    def evaluate(frame: EventFrame) -> list[Any]:
        return [value] * frame.size

    return evaluate


def _compile_alternatives(functions: list[ColumnFunction]) -> ColumnFunction:
    def evaluate(frame: EventFrame) -> list[Any]:
        result = [UNDEFINED] * frame.size
        for function in functions:
            missing = [index for index, value in enumerate(result) if value is UNDEFINED]
            if not missing:
                break
            values = function(frame)
            for index in missing:
                result[index] = values[index]
        return result

    return evaluate


def _compile_map(mapping: dict[str, Any]) -> ColumnFunction:
    keys = list(mapping)
    functions = [_compile(mapping[key]) for key in keys]

    def evaluate(frame: EventFrame) -> list[Any]:
        if not keys:
            return [{} for _ in range(frame.size)]
        columns = [function(frame) for function in functions]
        return [
            {key: value for key, value in zip(keys, row, strict=True) if value is not UNDEFINED}
            for row in zip(*columns, strict=True)
        ]

    return evaluate


def _compile_set(functions: list[ColumnFunction]) -> ColumnFunction:
    def evaluate(frame: EventFrame) -> list[Any]:
        if not functions:
            return [[] for _ in range(frame.size)]
        columns = [function(frame) for function in functions]
        return [list(row) for row in zip(*columns, strict=True)]

    return evaluate


def _compile_row(mapping: dict[str, Any]) -> ColumnFunction:
    def evaluate(frame: EventFrame) -> list[Any]:
        context = frame.context
        return [evaluate_mapping(event, mapping, context) for event in frame.events]

    return evaluate
