"""Klaviyo's published request limits and rate limits that the local server enforces.

The values come from the Klaviyo OpenAPI spec (revision 2026-07-15, operation descriptions
and ``x-klaviyo-ratelimit``) and from Klaviyo's Events API, Profiles API and rate-limit
guides. They are kept apart from ``klaviyo_pipeline.settings`` on purpose: the server models
Klaviyo, so a sync configured with wrong limits fails against it.
"""

from dataclasses import dataclass
from typing import Final

# Klaviyo enforces 5 MB of decompressed request body on its JSON:API endpoints. The
# local server counts 5 MB as 5 * 1024 * 1024 bytes.
MAX_PAYLOAD_BYTES: Final = 5 * 1024 * 1024
# POST /api/profile-import documents 100 KB per request, and bulk import 100 KB per profile.
MAX_PROFILE_BYTES: Final = 100 * 1024
# The Events API overview caps an event's profile object at 95 KB.
MAX_EVENT_PROFILE_BYTES: Final = 95 * 1024
# Any single string in an event or profile may be at most 100 KB of UTF-8.
MAX_STRING_BYTES: Final = 100 * 1024

MAX_EVENTS_PER_BULK_REQUEST: Final = 1_000
MAX_PROFILES_PER_IMPORT_JOB: Final = 10_000

# The spec and the Events API overview allow 400 properties per event. The rate-limit
# guide's table gives 300, and the local server follows the spec.
MAX_EVENT_PROPERTIES: Final = 400
# Nested objects in event properties, counting the properties object as level 1.
# Klaviyo counts only objects, so arrays do not add a level.
MAX_NESTING_LEVELS: Final = 10
MAX_ARRAY_ITEMS: Final = 4_000
MIN_INT64: Final = -(2**63)
MAX_INT64: Final = 2**63 - 1

MIN_UNIQUE_ID_LENGTH: Final = 1
MAX_UNIQUE_ID_LENGTH: Final = 255
# The spec says the metric name "must be less than 128 characters".
MAX_METRIC_NAME_LENGTH: Final = 127
MAX_EMAIL_LENGTH: Final = 100

# Events must be after 2000-01-01 and at most one year ahead of the time the request is
# received. The Events API overview gives 2000, while the spec says 1990.
MIN_EVENT_YEAR: Final = 2000
MAX_EVENT_DAYS_AHEAD: Final = 365

IMPORT_ERRORS_DEFAULT_PAGE_SIZE: Final = 20
IMPORT_ERRORS_MAX_PAGE_SIZE: Final = 100

BURST_WINDOW_SECONDS: Final = 1.0
STEADY_WINDOW_SECONDS: Final = 60.0


@dataclass(frozen=True)
class RateLimit:
    """Burst and steady request limits of one endpoint, in requests per fixed window."""

    burst: int
    steady: int


# Keys are the route names used in ``routes.py``.
RATE_LIMITS: Final[dict[str, RateLimit]] = {
    "create_event": RateLimit(burst=350, steady=3_500),
    "bulk_create_events": RateLimit(burst=10, steady=150),
    "create_or_update_profile": RateLimit(burst=75, steady=750),
    "bulk_import_profiles": RateLimit(burst=10, steady=150),
    "get_bulk_import_profiles_job": RateLimit(burst=10, steady=150),
    "get_errors_for_bulk_import_profiles_job": RateLimit(burst=10, steady=150),
}
