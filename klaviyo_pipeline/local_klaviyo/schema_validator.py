"""Compile a small subset of JSON Schema into fast Python checks.

jsonschema 4.26's Draft 2020-12 validator took about 300 ms for a 1,000-event bulk body
(one run of ``is_valid`` on a 2-core VM), which would make the server the bottleneck of a
benchmark. The request schemas of the SDK models
use only ``type``, ``enum``, ``properties``, ``required``, ``items``,
``additionalProperties``, ``anyOf`` and ``$ref``. This module compiles those keywords into
nested closures. A closure returns ``None`` for a valid value and builds the path only
when a value is invalid. Any other keyword raises ``SchemaCompileError`` at compile time,
so a schema is never checked less strictly than it reads.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class SchemaCompileError(ValueError):
    """Raised when a schema uses a keyword that this compiler does not implement."""


@dataclass
class SchemaViolation:
    """First schema violation found in a value.

    Attributes:
        message: What is wrong with the value at ``path``.
        reversed_path: Keys and indexes from the failing value up to the root. Checks append
            to it on the way out, which keeps the success path free of allocations.
    """

    message: str
    reversed_path: list[str | int] = field(default_factory=list)

    @property
    def path(self) -> list[str | int]:
        """Keys and indexes from the root down to the failing value."""
        return list(reversed(self.reversed_path))


Check = Callable[[Any], SchemaViolation | None]

_SUPPORTED_KEYWORDS = frozenset(
    {"type", "enum", "properties", "required", "items", "additionalProperties", "anyOf", "$ref"}
)
_ROOT_ONLY_KEYWORDS = frozenset({"$defs"})


def json_type_name(value: Any) -> str:
    """Return the JSON type name of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _matches_type(value: Any, type_name: str) -> bool:
    if type_name == "object":
        return type(value) is dict
    if type_name == "string":
        return type(value) is str
    if type_name == "array":
        return type(value) is list
    if type_name == "null":
        return value is None
    if type_name == "boolean":
        return type(value) is bool
    if type_name == "integer":
        return type(value) is int or (type(value) is float and value.is_integer())
    if type_name == "number":
        return type(value) is int or type(value) is float
    raise SchemaCompileError(f"unknown JSON Schema type {type_name!r}")


class _Compiler:
    """Compiler for one root schema and its ``#/$defs/...`` definitions."""

    def __init__(self, root: dict[str, Any]) -> None:
        self._definitions: dict[str, Any] = root.get("$defs", {})
        self._compiled_definitions: dict[str, Check] = {}
        self._in_progress: set[str] = set()

    def compile(self, schema: dict[str, Any] | bool, is_root: bool = False) -> Check:
        if schema is True or schema == {}:
            return _accept_anything
        if not isinstance(schema, dict):
            raise SchemaCompileError(f"unsupported schema {schema!r}")

        allowed = _SUPPORTED_KEYWORDS | _ROOT_ONLY_KEYWORDS if is_root else _SUPPORTED_KEYWORDS
        unknown = set(schema) - allowed
        if unknown:
            raise SchemaCompileError(f"unsupported JSON Schema keywords {sorted(unknown)}")

        if "$ref" in schema:
            if len(schema) > 1:
                raise SchemaCompileError("keywords next to $ref are not supported")
            return self._compile_reference(schema["$ref"])
        if "anyOf" in schema:
            if len(schema) > 1:
                raise SchemaCompileError("keywords next to anyOf are not supported")
            return self._compile_any_of(schema["anyOf"])

        checks: list[Check] = []
        has_object_keywords = bool({"properties", "required", "additionalProperties"} & set(schema))
        # An object schema checks its own type, which saves one call per object.
        checks_own_type = schema.get("type") == "object" and has_object_keywords
        if "type" in schema and not checks_own_type:
            checks.append(_compile_type(schema["type"]))
        if "enum" in schema:
            checks.append(_compile_enum(schema["enum"]))
        if has_object_keywords:
            checks.append(
                self._compile_object(schema, requires_object=schema.get("type") == "object")
            )
        if "items" in schema:
            checks.append(self._compile_items(schema["items"]))
        return _chain(checks)

    def _compile_reference(self, reference: str) -> Check:
        prefix = "#/$defs/"
        if not reference.startswith(prefix):
            raise SchemaCompileError(f"only local $defs references are supported, got {reference}")
        name = reference[len(prefix) :]
        if name not in self._definitions:
            raise SchemaCompileError(f"$ref {reference} is not defined")

        compiled = self._compiled_definitions.get(name)
        if compiled is not None:
            return compiled
        if name in self._in_progress:
            raise SchemaCompileError(f"recursive $ref {reference} is not supported")
        self._in_progress.add(name)
        compiled = self.compile(self._definitions[name])
        self._in_progress.discard(name)
        self._compiled_definitions[name] = compiled
        return compiled

    def _compile_any_of(self, branches: list[dict[str, Any]]) -> Check:
        allows_null = any(branch == {"type": "null"} for branch in branches)
        others = [self.compile(branch) for branch in branches if branch != {"type": "null"}]
        if allows_null and len(others) == 1:
            only = others[0]

            def check_nullable(value: Any) -> SchemaViolation | None:
                if value is None:
                    return None
                return only(value)

            return check_nullable

        def check_any_of(value: Any) -> SchemaViolation | None:
            if allows_null and value is None:
                return None
            for branch_check in others:
                if branch_check(value) is None:
                    return None
            return SchemaViolation(f"{json_type_name(value)} does not match any allowed schema")

        return check_any_of

    def _compile_object(self, schema: dict[str, Any], requires_object: bool) -> Check:
        property_checks = {
            name: self.compile(subschema)
            for name, subschema in schema.get("properties", {}).items()
        }
        required = tuple(schema.get("required", ()))
        additional = schema.get("additionalProperties", True)
        additional_check = None if additional is True else self.compile(additional)
        rejects_additional = additional is False

        def check_object(value: Any) -> SchemaViolation | None:
            if type(value) is not dict:
                if requires_object:
                    return SchemaViolation(f"must be an object, got {json_type_name(value)}")
                return None
            for name in required:
                if name not in value:
                    return SchemaViolation(f"'{name}' is a required property", [name])
            for name, item in value.items():
                item_check = property_checks.get(name)
                if item_check is None:
                    if rejects_additional:
                        return SchemaViolation(f"'{name}' is not an allowed property", [name])
                    if additional_check is None:
                        continue
                    item_check = additional_check
                violation = item_check(item)
                if violation is not None:
                    violation.reversed_path.append(name)
                    return violation
            return None

        return check_object

    def _compile_items(self, items_schema: dict[str, Any]) -> Check:
        item_check = self.compile(items_schema)

        def check_items(value: Any) -> SchemaViolation | None:
            if type(value) is not list:
                return None
            for index, item in enumerate(value):
                violation = item_check(item)
                if violation is not None:
                    violation.reversed_path.append(index)
                    return violation
            return None

        return check_items


def _accept_anything(value: Any) -> SchemaViolation | None:
    return None


def _chain(checks: list[Check]) -> Check:
    if not checks:
        return _accept_anything
    if len(checks) == 1:
        return checks[0]

    def check_all(value: Any) -> SchemaViolation | None:
        for check in checks:
            violation = check(value)
            if violation is not None:
                return violation
        return None

    return check_all


def _compile_type(type_spec: str | list[str]) -> Check:
    type_names = (type_spec,) if isinstance(type_spec, str) else tuple(type_spec)
    for type_name in type_names:
        _matches_type(None, type_name)  # Raises SchemaCompileError on an unknown name.
    expected = " or ".join(type_names)

    if type_names == ("object",):

        def check_dict(value: Any) -> SchemaViolation | None:
            if type(value) is dict:
                return None
            return SchemaViolation(f"must be an object, got {json_type_name(value)}")

        return check_dict

    if type_names == ("string",):

        def check_str(value: Any) -> SchemaViolation | None:
            if type(value) is str:
                return None
            return SchemaViolation(f"must be a string, got {json_type_name(value)}")

        return check_str

    def check_type(value: Any) -> SchemaViolation | None:
        for type_name in type_names:
            if _matches_type(value, type_name):
                return None
        return SchemaViolation(f"must be of type {expected}, got {json_type_name(value)}")

    return check_type


def _compile_enum(options: list[Any]) -> Check:
    allowed = tuple(options)
    allowed_types = frozenset(type(option) for option in allowed)

    def check_enum(value: Any) -> SchemaViolation | None:
        if type(value) in allowed_types and value in allowed:
            return None
        return SchemaViolation(f"must be one of {list(allowed)!r}, got {value!r}")

    return check_enum


def compile_schema(schema: dict[str, Any]) -> Check:
    """Compile a root schema into a check that returns the first violation or ``None``.

    Raises:
        SchemaCompileError: The schema uses a keyword or reference this compiler does not
            implement.
    """
    return _Compiler(schema).compile(schema, is_root=True)
