"""Identifiers in the format of Klaviyo's ids: 26-character ULIDs in Crockford base32."""

import base64
import random
import time

# Maps the RFC 4648 base32 alphabet onto Crockford's, digit for digit.
_TO_CROCKFORD = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)


def new_klaviyo_id() -> str:
    """Return a new ULID: a 48-bit millisecond timestamp and 80 random bits.

    Ids made in the same millisecond are not ordered, unlike monotonic ULIDs. The random
    bits come from ``random``, not ``secrets``: the ids must be unique, not unguessable.
    """
    value = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    # 20 bytes are 32 base32 digits. The first 6 digits cover 30 of the 32 zero bits above
    # the 128-bit value, so the last 26 digits are 2 zero bits and the value, as in a ULID.
    encoded = base64.b32encode(value.to_bytes(20, "big")).decode("ascii")
    return encoded[6:].translate(_TO_CROCKFORD)
