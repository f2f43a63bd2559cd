"""A walkerOS Klaviyo destination config compiled once and applied to frames of events."""

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from klaviyo_pipeline.mapping import rules as rule_lookup
from klaviyo_pipeline.mapping.frame import EventFrame
from klaviyo_pipeline.mapping.plain import encode_plain_map, plain_map_pairs
from klaviyo_pipeline.mapping.plan import ColumnFunction, compile_value
from klaviyo_pipeline.mapping.values import UNDEFINED, is_object
from klaviyo_pipeline.outcomes import Reason

# walkerOS's User fields; any other `user.*` key is a custom trait.
STANDARD_USER_KEYS = frozenset(
    {
        "id",
        "device",
        "session",
        "hash",
        "address",
        "email",
        "phone",
        "userAgent",
        "browser",
        "browserVersion",
        "deviceType",
        "language",
        "country",
        "region",
        "city",
        "zip",
        "timezone",
        "os",
        "osVersion",
        "screenSize",
        "ip",
        "internal",
    }
)
EVENT_SECTION_KEYS = ("entity", "action", "id", "timestamp", "name", "trigger", "timing")


@dataclass
class RuleGroup:
    """Mapped values of the rows that share one rule, as parallel lists."""

    row_id: list[int] = field(default_factory=list)
    metric: list[Any] = field(default_factory=list)
    properties: list[Any] = field(default_factory=list)
    value: list[Any] = field(default_factory=list)
    value_mapped: list[bool] = field(default_factory=list)
    currency: list[Any] = field(default_factory=list)
    unique_id: list[Any] = field(default_factory=list)
    unique_id_required: list[bool] = field(default_factory=list)
    email: list[Any] = field(default_factory=list)
    phone: list[Any] = field(default_factory=list)
    external_id: list[Any] = field(default_factory=list)
    region: list[Any] = field(default_factory=list)
    identify: list[Any] = field(default_factory=list)
    send_event: list[bool] = field(default_factory=list)
    traits: list[Any] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    settled: list[tuple[int, str]] = field(default_factory=list)


def _none(values: list[Any]) -> list[Any]:
    return [None if value is UNDEFINED else value for value in values]


def _identifier_setting(settings: dict[str, Any], key: str, default: str | None) -> Any:
    value = settings.get(key)
    if value is None:
        return default
    return None if value == "" else value


class CompiledDestination:
    """The destination's settings and rules with every mapping value compiled once.

    With `encode_plain_properties`, a rule whose properties are a plain `map` of columns
    gives each row's properties as JSON text instead of a dict (see `mapping.plain`).
    """

    def __init__(
        self,
        destination: dict[str, Any],
        *,
        prefix_unique_id: bool = False,
        user_traits_to_profile: bool = False,
        line_items_path: str | None = None,
        encode_plain_properties: bool = True,
    ) -> None:
        settings = destination.get("settings") or {}
        self.currency: str | None = settings.get("currency") or None
        self.prefix_unique_id = prefix_unique_id
        self.user_traits_to_profile = user_traits_to_profile
        self.line_items_path = line_items_path
        self.encode_plain_properties = encode_plain_properties
        self.consent: dict[str, Any] = destination.get("consent") or {}
        self.include: list[str] | None = destination.get("include")
        self.folded = rule_lookup.fold_mapping(destination.get("mapping"))

        self._email = self._compile(_identifier_setting(settings, "email", "user.email"))
        self._external_id = self._compile(_identifier_setting(settings, "externalId", "user.id"))
        self._phone = self._compile(_identifier_setting(settings, "phoneNumber", None))
        self._identify = settings.get("identify")
        self._unique_id = settings.get("uniqueId") if settings.get("uniqueId") is not None else "id"
        self._data = self._compile(destination.get("data"))
        self._policy = {
            path: self._compile(value) for path, value in (destination.get("policy") or {}).items()
        }
        self._compiled: dict[int, ColumnFunction] = {}

    def _compile(self, mapping: Any) -> ColumnFunction | None:
        return None if mapping is None else compile_value(mapping)

    def _cached(self, mapping: Any) -> ColumnFunction:
        key = id(mapping)
        if key not in self._compiled:
            self._compiled[key] = compile_value(mapping)
        return self._compiled[key]

    def evaluate(self, events: pd.DataFrame) -> Iterator[RuleGroup]:
        """Yield one RuleGroup per rule among `events` (normalized events, rejects removed)."""
        if events.empty:
            return
        events = _apply_policy(events, self._policy)
        names = events["name_key"]
        denied = self._consent_denied(events)

        chosen_rules: list[dict[str, Any] | None] = []
        rule_index: dict[int, int] = {}
        settled = RuleGroup()
        row_ids = events["row_id"].to_numpy()

        assigned = np.full(len(events), -1, dtype=np.int64)
        for name, positions in _positions_by_value(names):
            if rule_lookup.split_name(name) is None:
                settled.settled.extend(
                    (int(row_ids[p]), Reason.INVALID_NAME.value) for p in positions.tolist()
                )
                assigned[positions] = -2
                continue
            options = rule_lookup.candidates(self.folded, name)
            if rule_lookup.has_conditions(options):
                frame = EventFrame(events.iloc[positions])
                picks = [rule_lookup.choose(options, event) for event in frame.events]
            else:
                picks = [rule_lookup.choose(options)]
            indexes = []
            for rule in picks:
                key = id(rule)
                if key not in rule_index:
                    rule_index[key] = len(chosen_rules)
                    chosen_rules.append(rule)
                indexes.append(rule_index[key])
            assigned[positions] = indexes if len(indexes) > 1 else indexes[0]

        for position in np.flatnonzero(denied & (assigned >= 0)):
            settled.settled.append((int(row_ids[position]), Reason.CONSENT_DENIED.value))
            assigned[position] = -2
        yield settled

        for index, rule in enumerate(chosen_rules):
            positions = np.flatnonzero(assigned == index)
            if len(positions) == 0:
                continue
            subset = events.iloc[positions]
            if rule is not None and rule.get("ignore"):
                yield RuleGroup(settled=[(int(r), Reason.IGNORED.value) for r in subset["row_id"]])
                continue
            yield self._map_group(subset, rule)

    def _consent_denied(self, events: pd.DataFrame) -> np.ndarray:
        denied = np.zeros(len(events), dtype=bool)
        for name in self.consent:
            column = f"consent.{name}"
            if column not in events.columns:
                denied |= True
                continue
            denied |= ~events[column].fillna(False).astype(bool).to_numpy()
        return denied

    def _map_group(self, events: pd.DataFrame, rule: dict[str, Any] | None) -> RuleGroup:
        rule = rule or {}
        rule_settings = rule.get("settings") or {}
        if rule.get("policy"):
            policy = {path: self._cached(value) for path, value in rule["policy"].items()}
            events = _apply_policy(events, policy)
        if rule.get("name"):
            events = events.assign(name=rule["name"])
        frame = EventFrame(events)
        size = frame.size
        group = RuleGroup(row_id=events["row_id"].tolist())

        metric = rule.get("name")
        # NOTE: without a rule name the metric is the event name as written, with whitespace
        # collapsed, so names that differ only in case become separate Klaviyo metrics.
        group.metric = [metric] * size if metric else _none(frame.path("name"))
        group.properties = self._properties(frame, rule)
        group.send_event = [not (rule.get("silent") is True or rule.get("skip") is True)] * size

        value_mapping = rule_settings.get("value")
        group.value = (
            _none(self._cached(value_mapping)(frame))
            if value_mapping is not None
            else [None] * size
        )
        group.value_mapped = [value_mapping is not None] * size
        currency_mapping = rule_settings.get("currency")
        if isinstance(currency_mapping, str) and re.fullmatch(r"[A-Z]{3}", currency_mapping):
            # A bare ISO code such as "EUR" is the currency itself, not a path.
            currency_mapping = {"value": currency_mapping}
        group.currency = (
            _none(self._cached(currency_mapping)(frame))
            if currency_mapping is not None
            else [None] * size
        )

        unique_mapping = rule_settings.get("uniqueId", self._unique_id)
        group.unique_id = _none(self._cached(unique_mapping)(frame))
        group.unique_id_required = [unique_mapping != "id"] * size

        group.email = _none(self._email(frame)) if self._email else [None] * size
        group.external_id = _none(self._external_id(frame)) if self._external_id else [None] * size
        group.phone = _none(self._phone(frame)) if self._phone else [None] * size
        group.region = _none(frame.path("user.country"))

        # walkerOS: rule.settings.identify ?? settings.identify
        identify = rule_settings.get("identify")
        if identify is None:
            identify = self._identify
        group.identify = (
            _none(self._cached(identify)(frame)) if identify is not None else [None] * size
        )
        group.traits = self._traits(frame)
        group.items = (
            _none(frame.path(self.line_items_path)) if self.line_items_path else [None] * size
        )
        return group

    def _properties(self, frame: EventFrame, rule: dict[str, Any]) -> list[Any]:
        """Return each row's properties: a dict, or JSON text for a plain `map` rule."""
        plain = self._plain_properties(frame, rule)
        if plain is not None:
            return plain
        data = self._data(frame) if self._data else [UNDEFINED] * frame.size
        if rule.get("data") is not None:
            rule_data = self._cached(rule["data"])(frame)
            data = [_merge_data(base, own) for base, own in zip(data, rule_data, strict=True)]
        include = rule.get("include", self.include)
        if include:
            included = _include_sections(frame, include)
            data = [_with_included(extra, own) for extra, own in zip(included, data, strict=True)]
        remove = rule.get("remove")
        properties = []
        for item in data:
            item = dict(item) if is_object(item) else {}
            for path in remove or ():
                _delete_path(item, path)
            properties.append(item)
        return properties

    def _plain_properties(self, frame: EventFrame, rule: dict[str, Any]) -> list[Any] | None:
        """Encode the properties column-wise when the rule's data is its only source."""
        if not self.encode_plain_properties or self._data is not None:
            return None
        if rule.get("include", self.include) or rule.get("remove"):
            return None
        pairs = plain_map_pairs(rule.get("data"))
        return None if pairs is None else encode_plain_map(frame, pairs)

    def _traits(self, frame: EventFrame) -> list[Any]:
        if not self.user_traits_to_profile:
            return [None] * frame.size
        users = frame.path("user")
        return [
            {k: v for k, v in user.items() if k not in STANDARD_USER_KEYS} or None
            if isinstance(user, dict)
            else None
            for user in users
        ]


def _positions_by_value(values: pd.Series) -> list[tuple[Any, np.ndarray]]:
    """Return each distinct value with its positions, in order of first appearance.

    Missing values (None, NaN) form one group with the value None.
    """
    codes, uniques = pd.factorize(values.astype(object))
    distinct = [*uniques.tolist(), None]
    codes = np.where(codes < 0, len(uniques), codes)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(distinct) + 1))
    present, first = np.unique(codes, return_index=True)
    return [
        (distinct[code], order[bounds[code] : bounds[code + 1]])
        for code in present[np.argsort(first)].tolist()
    ]


def _with_included(included: dict[str, Any], data: Any) -> Any:
    """Add include sections under mapped data; mapped keys win, as in walkerOS."""
    if is_object(data):
        return {**included, **data}
    if data is UNDEFINED:
        return included
    return data


def _merge_data(base: Any, own: Any) -> Any:
    """Merge config-level and rule-level data as walkerOS's assign with merge does."""
    if not (is_object(base) and is_object(own)):
        return own
    merged = dict(base)
    for key, value in own.items():
        if isinstance(value, list) and isinstance(merged.get(key), list):
            union = list(merged[key])
            union.extend(item for item in value if item not in union)
            merged[key] = union
        else:
            merged[key] = value
    return merged


def _flatten(prefix: str, value: dict[str, Any], out: dict[str, Any]) -> None:
    for key, item in value.items():
        name = f"{prefix}_{key}"
        if isinstance(item, dict):
            _flatten(name, item, out)
        else:
            out[name] = item


def _include_sections(frame: EventFrame, sections: list[str]) -> list[dict[str, Any]]:
    names = (
        ["data", "globals", "context", "user", "source", "event"] if "all" in sections else sections
    )
    rows: list[dict[str, Any]] = [{} for _ in range(frame.size)]
    for section in names:
        if section == "event":
            for key in EVENT_SECTION_KEYS:
                for row, value in zip(rows, frame.path(key), strict=True):
                    if value is not UNDEFINED:
                        row[f"event_{key}"] = value
            continue
        for row, value in zip(rows, frame.path(section), strict=True):
            if not isinstance(value, dict):
                continue
            if section == "context":
                value = {k: v[0] if isinstance(v, list) and v else v for k, v in value.items()}
            _flatten(section, value, row)
    return rows


def _delete_path(target: dict[str, Any], path: str) -> None:
    segments = path.split(".")
    for segment in segments[:-1]:
        target = target.get(segment)
        if not isinstance(target, dict):
            return
    target.pop(segments[-1], None)


def _apply_policy(events: pd.DataFrame, policy: dict[str, ColumnFunction]) -> pd.DataFrame:
    """Write each policy value at its path; all values are computed on the events before policy."""
    if not policy:
        return events
    frame = EventFrame(events)
    computed = {path: function(frame) for path, function in policy.items()}
    updates = {
        path: pd.Series(_none(values), index=events.index, dtype=object)
        for path, values in computed.items()
    }
    return events.assign(**updates)
