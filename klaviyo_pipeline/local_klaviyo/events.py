"""In-memory event store with Klaviyo's de-duplication key.

Klaviyo keeps only the first event per (profile, metric, unique_id). Without a unique_id it
uses the event time truncated to the second in its place, which allows one such event per
profile and metric per second. Later duplicates are accepted with 202 and discarded.

The store is not thread-safe, so ``Account`` holds a lock around every call.
"""

from datetime import datetime
from typing import Any

from klaviyo_pipeline.local_klaviyo.ids import new_klaviyo_id
from klaviyo_pipeline.local_klaviyo.rules import EventInput

DedupeKey = tuple[str, str, str, str]


def dedupe_key(profile_identity: str, event: EventInput) -> DedupeKey:
    """Return the key under which Klaviyo de-duplicates ``event``.

    Args:
        profile_identity: Id of the profile the event belongs to.
        event: The validated event, with its time truncated to the second.
    """
    if event.unique_id is not None:
        return (profile_identity, event.metric, "unique_id", event.unique_id)
    return (profile_identity, event.metric, "time", event.time.isoformat())


class EventStore:
    """Stored events in arrival order, plus the set of de-duplication keys seen."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._keys: set[DedupeKey] = set()

    def __len__(self) -> int:
        return len(self._events)

    def contains(self, key: DedupeKey) -> bool:
        """Return whether an event with this key is already stored."""
        return key in self._keys

    def add(
        self,
        event: EventInput,
        profile_id: str,
        key: DedupeKey,
        received_at: datetime,
        endpoint: str,
    ) -> bool:
        """Store the event unless its key is already taken, and return whether it was stored."""
        if key in self._keys:
            return False
        self._keys.add(key)
        attributes = event.profile.attributes
        self._events.append(
            {
                "id": new_klaviyo_id(),
                "metric": event.metric,
                "profile": {
                    "email": attributes.get("email"),
                    "phone_number": attributes.get("phone_number"),
                    "external_id": attributes.get("external_id"),
                },
                "profile_id": profile_id,
                "properties": event.properties,
                "time": event.time.isoformat(),
                "value": event.value,
                "value_currency": event.value_currency,
                "unique_id": event.unique_id,
                "backfill": event.backfill,
                "received_at": received_at.isoformat(),
                "endpoint": endpoint,
            }
        )
        return True

    def records(self) -> list[dict[str, Any]]:
        """Return the stored event records, which callers must not modify."""
        return list(self._events)
