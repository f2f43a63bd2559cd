"""Klaviyo endpoints that the sync calls: rate-limit keys, HTTP routes and required scopes.

The keys match ``klaviyo_pipeline.settings.RATE_LIMITS`` and ``SyncConfig.rate_limits``.
Scopes are the ones the Klaviyo OpenAPI spec (revision 2026-07-15) lists per operation.
"""

from typing import Final

EVENT_BULK_CREATE: Final = "event_bulk_create"
PROFILE_BULK_IMPORT: Final = "profile_bulk_import"
PROFILE_BULK_IMPORT_JOB: Final = "profile_bulk_import_job"
PROFILE_BULK_IMPORT_ERRORS: Final = "profile_bulk_import_errors"

ROUTES: Final[dict[str, str]] = {
    EVENT_BULK_CREATE: "POST /api/event-bulk-create-jobs",
    PROFILE_BULK_IMPORT: "POST /api/profile-bulk-import-jobs",
    PROFILE_BULK_IMPORT_JOB: "GET /api/profile-bulk-import-jobs/{job_id}",
    PROFILE_BULK_IMPORT_ERRORS: "GET /api/profile-bulk-import-jobs/{job_id}/import-errors",
}

SCOPES: Final[dict[str, str]] = {
    EVENT_BULK_CREATE: "events:write",
    PROFILE_BULK_IMPORT: "lists:write profiles:write",
    PROFILE_BULK_IMPORT_JOB: "lists:read profiles:read",
    PROFILE_BULK_IMPORT_ERRORS: "profiles:read",
}
