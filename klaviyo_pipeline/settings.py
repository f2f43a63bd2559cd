"""Klaviyo API revision, endpoints and limits that the sync is built around."""

from typing import Final

# The klaviyo-api 25.x SDK sends this revision header on every request.
API_REVISION: Final = "2026-10-15"

# POST /api/event-bulk-create-jobs: at most 1,000 events and 5 MB per request.
MAX_EVENTS_PER_BULK_REQUEST: Final = 1_000
# POST /api/profile-bulk-import-jobs: at most 10,000 profiles and 5 MB per job.
MAX_PROFILES_PER_IMPORT_JOB: Final = 10_000
# Klaviyo counts 5 MB as 5 * 1024 * 1024 bytes of UTF-8 request body.
MAX_PAYLOAD_BYTES: Final = 5 * 1024 * 1024
MAX_STRING_BYTES: Final = 100 * 1024
# A UTF-8 character is at most 4 bytes, so a string this short is under the string limit.
SAFE_STRING_CHARACTERS: Final = MAX_STRING_BYTES // 4
MAX_PROFILE_BYTES: Final = 100 * 1024

MAX_PROPERTIES: Final = 400
MAX_NESTING_DEPTH: Final = 10
MAX_ARRAY_ITEMS: Final = 4_000
MAX_UNIQUE_ID_LENGTH: Final = 255
# Klaviyo's spec: a metric name "must be less than 128 characters".
MAX_METRIC_NAME_LENGTH: Final = 127
MAX_EMAIL_LENGTH: Final = 100
MAX_EXTERNAL_ID_LENGTH: Final = 255

# Event time must fall after 2000-01-01 and at most one year ahead of now.
MIN_EVENT_YEAR: Final = 2000
MAX_EVENT_DAYS_AHEAD: Final = 365

# Documented per-endpoint limits: (burst per second, steady per minute).
RATE_LIMITS: Final[dict[str, tuple[int, int]]] = {
    "event_bulk_create": (10, 150),
    "profile_bulk_import": (10, 150),
    "profile_bulk_import_job": (10, 150),
    "profile_bulk_import_errors": (10, 150),
    "create_event": (350, 3_500),
    "profile_import": (75, 750),
}
