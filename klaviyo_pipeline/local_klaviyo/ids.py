"""Identifiers in the format of Klaviyo's ids: 26-character ULIDs in Crockford base32."""

import random
import time

_CROCKFORD_BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_klaviyo_id() -> str:
    """Return a new ULID: a 48-bit millisecond timestamp and 80 random bits.

    Ids made in the same millisecond are not ordered, unlike monotonic ULIDs. The random
    bits come from ``random``, not ``secrets``: the ids must be unique, not unguessable.
    """
    value = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    characters = []
    for _ in range(26):
        characters.append(_CROCKFORD_BASE32[value & 31])
        value >>= 5
    return "".join(reversed(characters))
