"""Terminal states and reasons that every input row and record ends in."""

from enum import StrEnum


class Status(StrEnum):
    """Terminal state of one record in one run."""

    SENT = "sent"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    DEDUPLICATED = "deduplicated"
    FAILED = "failed"


TERMINAL_STATES: tuple[str, ...] = tuple(status.value for status in Status)


class Reason(StrEnum):
    """Machine-readable reason recorded next to a status."""

    # sent
    ACCEPTED = "accepted"
    ALREADY_SENT = "already_sent"
    # skipped
    NO_IDENTIFIER = "no_identifier"
    IGNORED = "ignored"
    SILENT = "silent"
    NO_RULE = "no_rule"
    CONSENT_DENIED = "consent_denied"
    PROFILE_UNCHANGED = "profile_unchanged"
    # deduplicated
    DUPLICATE_UNIQUE_ID = "duplicate_unique_id"
    DUPLICATE_PROFILE = "duplicate_profile_in_partition"
    # rejected before sending
    INVALID_NAME = "invalid_name"
    TIME_MISSING = "time_missing"
    TIME_INVALID = "time_invalid"
    TIME_OUT_OF_RANGE = "time_out_of_range"
    VALUE_INVALID = "value_invalid"
    CURRENCY_INVALID = "currency_invalid"
    EMAIL_INVALID = "email_invalid"
    EMAIL_TOO_LONG = "email_too_long"
    EXTERNAL_ID_TOO_LONG = "external_id_too_long"
    UNIQUE_ID_MISSING = "unique_id_missing"
    UNIQUE_ID_TOO_LONG = "unique_id_too_long"
    METRIC_NAME_TOO_LONG = "metric_name_too_long"
    PROPERTIES_TOO_MANY = "properties_too_many"
    PROPERTY_TOO_LARGE = "property_too_large"
    PROPERTIES_TOO_DEEP = "properties_too_deep"
    ARRAY_TOO_LONG = "array_too_long"
    RECORD_TOO_LARGE = "record_too_large"
    MAPPING_FAILED = "mapping_failed"
    # rejected by Klaviyo
    KLAVIYO_INVALID = "klaviyo_invalid"
    KLAVIYO_CONFLICT = "klaviyo_conflict"
    IDENTITY_CONFLICT = "identity_conflict"
    KLAVIYO_TOO_LARGE = "klaviyo_too_large"
    IMPORT_ERROR = "import_error"
    SDK_INVALID = "sdk_invalid"
    PHONE_INVALID = "phone_invalid"
    # skipped in a dry run: validated and recorded, never sent
    DRY_RUN = "dry_run"
    # failed, retried on the next run
    RETRIES_EXHAUSTED = "retries_exhausted"
    NOT_ATTEMPTED = "not_attempted"
    JOB_TIMEOUT = "job_timeout"
    JOB_CANCELLED = "job_cancelled"
