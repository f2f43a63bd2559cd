"""JSON pointers (RFC 6901) of Klaviyo error objects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PointerTarget:
    """Record positions that an error pointer names.

    Attributes:
        positions: Positions of the records in the partition's frame.
        exact: True if every named record is invalid. False if the pointer names a group
            (such as an item with several events) that contains at least one invalid record.
    """

    positions: list[int]
    exact: bool


def parse_pointer(pointer: str | None) -> list[str] | None:
    """Split a JSON pointer into its unescaped reference tokens; None if not a pointer."""
    if not pointer or not pointer.startswith("/"):
        return None
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]
