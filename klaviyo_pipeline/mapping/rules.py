"""Rule lookup by `entity action` with `*` wildcards, as walkerOS's getMappingEvent does."""

from collections.abc import Mapping
from typing import Any

from klaviyo_pipeline.mapping.callables import resolve_callable

Rule = dict[str, Any]


def fold_key(key: str) -> str:
    """Return the lookup form of an entity or action key: trimmed and case-folded."""
    return key.strip().casefold()


def fold_mapping(mapping: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Return the mapping with entity and action keys in lookup form."""
    folded: dict[str, dict[str, Any]] = {}
    for entity, actions in (mapping or {}).items():
        target = folded.setdefault(fold_key(entity), {})
        for action, rules in actions.items():
            target[fold_key(action)] = rules
    return folded


def split_name(name_key: str | None) -> tuple[str, str] | None:
    """Split a normalized event name into entity and action, or None when it has no two parts."""
    if not name_key:
        return None
    parts = name_key.split(" ")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


def candidates(folded: Mapping[str, Mapping[str, Any]], name_key: str | None) -> list[Any]:
    """Return the rule candidates to try in order: the specific match, then the `* *` catch-all.

    The specific match is `entity action`, else `entity *` when the entity key exists,
    else `* action`, else `* *`. walkerOS never tries `entity *` after a failed condition.
    """
    parts = split_name(name_key)
    if parts is None:
        return []
    entity, action = parts
    entity_rules = folded.get(entity, folded.get("*"))
    found = []
    if entity_rules is not None:
        specific = entity_rules.get(action, entity_rules.get("*"))
        if specific is not None:
            found.append(specific)
    catch_all = folded.get("*", {}).get("*")
    if catch_all is not None:
        found.append(catch_all)
    return found


def has_conditions(candidate_list: list[Any]) -> bool:
    """Return whether choosing among the candidates needs a per-event condition."""
    return any(
        isinstance(rule, dict) and rule.get("condition") is not None
        for candidate in candidate_list
        for rule in (candidate if isinstance(candidate, list) else [candidate])
    )


def choose(
    candidate_list: list[Any], event: Any = None, context: Mapping[str, Any] | None = None
) -> Rule | None:
    """Return the first rule whose condition is absent or true for `event`."""
    for candidate in candidate_list:
        for rule in candidate if isinstance(candidate, list) else [candidate]:
            if not isinstance(rule, dict):
                continue
            condition = rule.get("condition")
            if condition is None or resolve_callable(condition)(event, context or {}):
                return rule
    return None
