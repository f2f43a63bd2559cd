"""In-memory profile store with Klaviyo's identifier matching and update semantics.

Matching, as the local server models it:

* ``id``, ``email`` (case-insensitive) and ``phone_number`` identify a profile. When they
  point at two different profiles, the request conflicts (``duplicate_profile``).
* ``external_id``, ``anonymous_id`` and ``_kx`` only look a profile up when no ``id``,
  email or phone number matched. Klaviyo documents that external_id "is not involved in
  profile merging, so its use can lead to duplicate profiles". A looked-up profile is used
  only if its email and phone number do not contradict the request, so a request with a
  new email and a known external_id creates a second profile with the same external_id.

Updates: a key set to ``null`` clears the field, a missing key keeps it. ``location`` and
``properties`` are merged key by key in the same way, and ``null`` for the whole object
clears it.

The store is not thread-safe, so ``Account`` holds a lock around every call.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from klaviyo_pipeline.local_klaviyo.ids import new_klaviyo_id
from klaviyo_pipeline.local_klaviyo.rules import IDENTIFIER_FIELDS, ProfileInput

# Attributes of a profile other than location and properties, in Klaviyo's response order.
SCALAR_FIELDS: tuple[str, ...] = (
    "email",
    "phone_number",
    "external_id",
    "anonymous_id",
    "_kx",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
)
LOCATION_FIELDS: tuple[str, ...] = (
    "address1",
    "address2",
    "city",
    "country",
    "latitude",
    "longitude",
    "region",
    "zip",
    "timezone",
    "ip",
)
_LOOKUP_FIELDS: tuple[str, ...] = ("external_id", "anonymous_id", "_kx")


class ProfileConflictError(Exception):
    """Identifiers of one request point at two different profiles.

    Attributes:
        profile_id: The profile the request would update.
        duplicate_profile_id: The other profile that already has one of the identifiers.
        field_name: The identifier that belongs to the other profile.
    """

    def __init__(self, profile_id: str, duplicate_profile_id: str, field_name: str) -> None:
        super().__init__(
            f"{field_name} belongs to profile {duplicate_profile_id}, not {profile_id}"
        )
        self.profile_id = profile_id
        self.duplicate_profile_id = duplicate_profile_id
        self.field_name = field_name


class ProfileNotFoundError(Exception):
    """The request names a profile ``id`` that the store does not contain."""

    def __init__(self, profile_id: str) -> None:
        super().__init__(f"profile {profile_id} does not exist")
        self.profile_id = profile_id


@dataclass
class StoredProfile:
    """One profile in the store."""

    id: str
    created: str
    updated: str
    fields: dict[str, Any] = field(default_factory=dict)
    location: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    list_ids: list[str] = field(default_factory=list)
    last_event_date: str | None = None

    def to_record(self) -> dict[str, Any]:
        """Build the inspection record returned by ``/_local/profiles``."""
        record: dict[str, Any] = {"id": self.id}
        for name in SCALAR_FIELDS:
            record[name] = self.fields.get(name)
        record["location"] = dict(self.location)
        record["properties"] = dict(self.properties)
        record["list_ids"] = list(self.list_ids)
        record["created"] = self.created
        record["updated"] = self.updated
        record["last_event_date"] = self.last_event_date
        return record

    def to_attributes(self) -> dict[str, Any]:
        """Build the ``attributes`` of the profile resource in an API response."""
        attributes: dict[str, Any] = {
            name: self.fields.get(name)
            for name in SCALAR_FIELDS
            if name not in ("anonymous_id", "_kx")
        }
        attributes["created"] = self.created
        attributes["updated"] = self.updated
        attributes["last_event_date"] = self.last_event_date
        attributes["location"] = {name: self.location.get(name) for name in LOCATION_FIELDS}
        attributes["properties"] = dict(self.properties)
        return attributes


@dataclass
class UpsertResult:
    """Outcome of writing one profile input to the store."""

    profile: StoredProfile
    created: bool
    skipped_identifiers: list[str] = field(default_factory=list)


class ProfileStore:
    """Profiles indexed by email, phone number and the look-up identifiers."""

    def __init__(self) -> None:
        self._profiles: dict[str, StoredProfile] = {}
        self._by_email: dict[str, str] = {}
        self._by_phone: dict[str, str] = {}
        # (field, value) -> profile ids, oldest first. Look-up ids can repeat (see above).
        self._by_lookup: dict[tuple[str, str], list[str]] = {}

    def __len__(self) -> int:
        return len(self._profiles)

    def get(self, profile_id: str) -> StoredProfile | None:
        """Return the profile with this id, or None."""
        return self._profiles.get(profile_id)

    def records(self) -> list[dict[str, Any]]:
        """Return inspection records of all profiles in creation order."""
        return [profile.to_record() for profile in self._profiles.values()]

    def find(self, profile_input: ProfileInput) -> str | None:
        """Return the id of the profile this input would update, without raising on conflicts.

        Raises:
            ProfileNotFoundError: The input names an ``id`` that does not exist.
        """
        matches = self._merge_matches(profile_input)
        if matches:
            return matches[0][1]
        return self._lookup(profile_input)

    def upsert(
        self, profile_input: ProfileInput, now: datetime, on_conflict: str = "raise"
    ) -> UpsertResult:
        """Create or update the profile that the input identifies.

        Args:
            profile_input: Validated profile of a request.
            now: Time of the write, stored as ``created``/``updated``.
            on_conflict: ``"raise"`` raises ``ProfileConflictError`` when the identifiers
                match two profiles. ``"keep_first"`` updates the profile matched first
                (by id, then email, then phone number) and leaves the conflicting
                identifier on the other profile. Events use this.

        Raises:
            ProfileConflictError: Identifiers match two profiles and on_conflict is "raise".
            ProfileNotFoundError: The input names an ``id`` that does not exist.
        """
        matches = self._merge_matches(profile_input)
        skipped: list[str] = []
        distinct_ids = list(dict.fromkeys(profile_id for _, profile_id in matches))
        if len(distinct_ids) > 1:
            target_id = distinct_ids[0]
            field_name = next(name for name, pid in matches if pid != target_id)
            if on_conflict == "raise":
                raise ProfileConflictError(target_id, distinct_ids[1], field_name)
            skipped = [name for name, pid in matches if pid != target_id]
        elif distinct_ids:
            target_id = distinct_ids[0]
        else:
            target_id = self._lookup(profile_input)

        timestamp = now.replace(microsecond=0).isoformat()
        created = target_id is None
        if target_id is None:
            profile = StoredProfile(id=new_klaviyo_id(), created=timestamp, updated=timestamp)
            self._profiles[profile.id] = profile
        else:
            profile = self._profiles[target_id]
            profile.updated = timestamp

        self._apply(profile, profile_input, skipped)
        return UpsertResult(profile=profile, created=created, skipped_identifiers=skipped)

    def add_to_lists(self, profile: StoredProfile, list_ids: list[str]) -> None:
        """Record list memberships of a profile."""
        for list_id in list_ids:
            if list_id not in profile.list_ids:
                profile.list_ids.append(list_id)

    def _merge_matches(self, profile_input: ProfileInput) -> list[tuple[str, str]]:
        """Return (identifier, profile id) pairs for id, email and phone, in priority order."""
        matches: list[tuple[str, str]] = []
        if profile_input.profile_id:
            if profile_input.profile_id not in self._profiles:
                raise ProfileNotFoundError(profile_input.profile_id)
            matches.append(("id", profile_input.profile_id))
        email = profile_input.attributes.get("email")
        if email:
            profile_id = self._by_email.get(email.lower())
            if profile_id is not None:
                matches.append(("email", profile_id))
        phone_number = profile_input.attributes.get("phone_number")
        if phone_number:
            profile_id = self._by_phone.get(phone_number)
            if profile_id is not None:
                matches.append(("phone_number", profile_id))
        return matches

    def _lookup(self, profile_input: ProfileInput) -> str | None:
        email = profile_input.attributes.get("email")
        phone_number = profile_input.attributes.get("phone_number")
        for name in _LOOKUP_FIELDS:
            value = profile_input.attributes.get(name)
            if not value:
                continue
            for profile_id in self._by_lookup.get((name, value), ()):
                candidate = self._profiles[profile_id].fields
                stored_email = candidate.get("email")
                stored_phone = candidate.get("phone_number")
                if email and stored_email and stored_email.lower() != email.lower():
                    continue
                if phone_number and stored_phone and stored_phone != phone_number:
                    continue
                return profile_id
        return None

    def _apply(
        self, profile: StoredProfile, profile_input: ProfileInput, skipped: list[str]
    ) -> None:
        for name, value in profile_input.attributes.items():
            if name in skipped:
                continue
            if name == "location":
                profile.location = _merge_object(profile.location, value)
            elif name == "properties":
                profile.properties = _merge_object(profile.properties, value)
            elif name in SCALAR_FIELDS:
                self._set_field(profile, name, value)
        if profile_input.patch_properties:
            _patch_properties(profile.properties, profile_input.patch_properties)

    def _set_field(self, profile: StoredProfile, name: str, value: Any) -> None:
        old_value = profile.fields.get(name)
        if old_value == value:
            return
        if old_value is not None and name in IDENTIFIER_FIELDS:
            self._unindex(profile.id, name, old_value)
        if value is None:
            profile.fields.pop(name, None)
            return
        profile.fields[name] = value
        if name in IDENTIFIER_FIELDS:
            self._index(profile.id, name, value)

    def _index(self, profile_id: str, name: str, value: str) -> None:
        if name == "email":
            self._by_email[value.lower()] = profile_id
        elif name == "phone_number":
            self._by_phone[value] = profile_id
        else:
            self._by_lookup.setdefault((name, value), []).append(profile_id)

    def _unindex(self, profile_id: str, name: str, value: str) -> None:
        if name == "email":
            if self._by_email.get(value.lower()) == profile_id:
                del self._by_email[value.lower()]
        elif name == "phone_number":
            if self._by_phone.get(value) == profile_id:
                del self._by_phone[value]
        else:
            owners = self._by_lookup.get((name, value), [])
            if profile_id in owners:
                owners.remove(profile_id)


def _merge_object(current: dict[str, Any], update: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``current``: null values remove keys, null clears all."""
    if update is None:
        return {}
    merged = dict(current)
    for key, value in update.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _patch_properties(properties: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply ``meta.patch_properties``: append to, remove from or unset list properties."""
    for key, value in (patch.get("append") or {}).items():
        existing = properties.get(key)
        items = [] if existing is None else _as_list(existing)
        items.extend(_as_list(value))
        properties[key] = items
    for key, value in (patch.get("unappend") or {}).items():
        if key in properties:
            removed = _as_list(value)
            properties[key] = [item for item in _as_list(properties[key]) if item not in removed]
    unset = patch.get("unset")
    if unset is not None:
        for key in _as_list(unset):
            properties.pop(key, None)
