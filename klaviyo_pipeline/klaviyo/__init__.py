"""Klaviyo client layer: the interface the sync calls and its SDK, fake and dry-run clients."""

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
from klaviyo_pipeline.klaviyo.resource import KlaviyoResource
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
