"""Resolve `package.module:function` references that stand for walkerOS JavaScript functions."""

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any


class CallableError(ValueError):
    """A mapping names a callable that cannot be imported."""


@cache
def _import(reference: str) -> Callable[..., Any]:
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise CallableError(f"invalid callable {reference!r}: expected 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise CallableError(
            f"cannot import module {module_name!r} for {reference!r}: {error}"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise CallableError(f"module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise CallableError(f"{reference!r} is not callable")
    return target


def resolve_callable(reference: Any) -> Callable[..., Any]:
    """Return the function that `reference` names, or `reference` itself if it is callable."""
    if callable(reference):
        return reference
    if isinstance(reference, str):
        return _import(reference)
    raise CallableError(f"invalid callable {reference!r}: expected 'package.module:function'")
