"""Klaviyo client layer: the interface the sync calls and its SDK, fake and dry-run clients.

``KlaviyoResource`` is imported on first use, so code that only needs a client does not
pay for importing Dagster.
"""

from typing import Any

from klaviyo_pipeline.klaviyo.classify import (
    SDK_INVALID,
    Classification,
    ErrorAction,
    classify_error,
)
from klaviyo_pipeline.klaviyo.client import (
    ImportErrorsPage,
    ImportJob,
    ImportRowError,
    KlaviyoClient,
    RequestStats,
    get_all_import_errors,
)
from klaviyo_pipeline.klaviyo.dry_run import DRY_RUN, DryRunKlaviyoClient
from klaviyo_pipeline.klaviyo.errors import (
    ApiErrorDetail,
    KlaviyoApiError,
    KlaviyoError,
    KlaviyoFatalError,
    KlaviyoResponseError,
    KlaviyoTransportError,
    KlaviyoValidationError,
    RateLimitHeaders,
)
from klaviyo_pipeline.klaviyo.fake import FakeKlaviyoClient
from klaviyo_pipeline.klaviyo.rate_limit import RateLimiter, shared_rate_limiter
from klaviyo_pipeline.klaviyo.sdk_client import SdkKlaviyoClient

__all__ = [
    "DRY_RUN",
    "SDK_INVALID",
    "ApiErrorDetail",
    "Classification",
    "DryRunKlaviyoClient",
    "ErrorAction",
    "FakeKlaviyoClient",
    "ImportErrorsPage",
    "ImportJob",
    "ImportRowError",
    "KlaviyoApiError",
    "KlaviyoClient",
    "KlaviyoError",
    "KlaviyoFatalError",
    "KlaviyoResource",
    "KlaviyoResponseError",
    "KlaviyoTransportError",
    "KlaviyoValidationError",
    "RateLimitHeaders",
    "RateLimiter",
    "RequestStats",
    "SdkKlaviyoClient",
    "classify_error",
    "get_all_import_errors",
    "shared_rate_limiter",
]


def __getattr__(name: str) -> Any:
    if name == "KlaviyoResource":
        from klaviyo_pipeline.klaviyo.resource import KlaviyoResource

        return KlaviyoResource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
