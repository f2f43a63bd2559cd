"""Vectorized normalization of warehouse values into what Klaviyo accepts, with reasons.

Every function that takes a pd.Series returns Series on the same index. A reasons Series
contains a reason string (an `outcomes.Reason` value, or `PHONE_INVALID`) where a value cannot
be sent, and None where the value is fine or simply missing.
"""

from klaviyo_pipeline.normalize.errors import NormalizationConfigError
from klaviyo_pipeline.normalize.identifiers import (
    PHONE_INVALID,
    check_external_ids,
    format_ids,
    format_js_number,
    normalize_emails,
    normalize_phones,
)
from klaviyo_pipeline.normalize.names import normalize_event_names
from klaviyo_pipeline.normalize.times import (
    EVENT_TIME_FORMAT,
    check_time_range,
    format_times,
    parse_timestamps,
)
from klaviyo_pipeline.normalize.values import normalize_currencies, parse_values

__all__ = [
    "EVENT_TIME_FORMAT",
    "PHONE_INVALID",
    "NormalizationConfigError",
    "check_external_ids",
    "check_time_range",
    "format_ids",
    "format_js_number",
    "format_times",
    "normalize_currencies",
    "normalize_emails",
    "normalize_event_names",
    "normalize_phones",
    "parse_timestamps",
    "parse_values",
]
