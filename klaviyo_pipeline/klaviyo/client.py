"""The interface that the sync calls, its result types and the rate-limited request wrapper.

Every method of a client makes at most one HTTP request and never retries: the sync is the
only retry layer. Request bodies are plain dicts in the JSON:API shape that Klaviyo expects.

There is no separate preflight request. The sync sends its first batch alone, and a 401,
403 or 410 on it stops the run before a second request goes out. A scoped no-op does not
exist for ``events:write``, and ``GET /api/accounts`` needs the ``accounts:read`` scope,
which a key limited to the sync's scopes lacks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from klaviyo_pipeline.klaviyo.errors import (
    KlaviyoApiError,
    KlaviyoValidationError,
    RateLimitHeaders,
)
from klaviyo_pipeline.klaviyo.rate_limit import RateLimiter

ResultT = TypeVar("ResultT")

JOB_STATUSES = ("queued", "processing", "complete", "cancelled")
FINISHED_JOB_STATUSES = ("complete", "cancelled")


@dataclass(frozen=True)
class ImportJob:
    """State of one profile bulk import job.

    Attributes:
        id: Klaviyo's job id.
        status: ``queued``, ``processing``, ``complete`` or ``cancelled``.
        total_count: Profiles in the job.
        completed_count: Profiles processed so far.
        failed_count: Profiles that failed; their errors are in the job's import errors.
    """

    id: str
    status: str
    total_count: int = 0
    completed_count: int = 0
    failed_count: int = 0

    @property
    def finished(self) -> bool:
        """True once Klaviyo will not change the job any more."""
        return self.status in FINISHED_JOB_STATUSES


@dataclass(frozen=True)
class ImportRowError:
    """One import error of a profile bulk import job.

    Attributes:
        code: Klaviyo's error code.
        title: Short title of the code.
        detail: Description of what failed.
        pointer: JSON pointer into the job's request body, such as
            ``/data/attributes/profiles/data/3/attributes/email``.
        original_payload: The profile attributes as Klaviyo received them, if sent back.
    """

    code: str | None
    title: str | None
    detail: str | None
    pointer: str | None
    original_payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class ImportErrorsPage:
    """One page of a job's import errors and the bare cursor of the next page."""

    errors: tuple[ImportRowError, ...]
    next_cursor: str | None


@dataclass
class RequestStats:
    """Requests, 429 responses and rate-limit waits of one client, safe to share by threads."""

    requests: int = 0
    throttles: int = 0
    wait_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, requests: int = 0, throttles: int = 0, wait_seconds: float = 0.0) -> None:
        """Add to the totals."""
        with self._lock:
            self.requests += requests
            self.throttles += throttles
            self.wait_seconds += wait_seconds

    def snapshot(self) -> tuple[int, int, float]:
        """Return (requests, throttles, wait_seconds)."""
        with self._lock:
            return self.requests, self.throttles, self.wait_seconds


@runtime_checkable
class KlaviyoClient(Protocol):
    """The calls that the event and profile syncs make.

    Attributes:
        dry_run: True when nothing is sent; the sync then records rows as skipped.
        revision: The API revision sent with each request.
        stats: Request totals. A sync reports the difference between its start and end,
            so a client shared by concurrent syncs mixes their numbers.
    """

    dry_run: bool
    revision: str
    stats: RequestStats

    def send_event_bulk(self, body: bytes) -> None:
        """Send one ``POST /api/event-bulk-create-jobs`` body, JSON in UTF-8, as it is.

        Klaviyo returns 202.
        """
        ...

    def create_profile_import_job(self, body: bytes) -> ImportJob:
        """Send one ``POST /api/profile-bulk-import-jobs`` body, JSON in UTF-8, as it is.

        Returns the new job.
        """
        ...

    def get_profile_import_job(self, job_id: str) -> ImportJob:
        """Return the current state of a profile import job."""
        ...

    def get_profile_import_errors_page(
        self, job_id: str, cursor: str | None = None
    ) -> ImportErrorsPage:
        """Return one page of a job's import errors, starting at a bare cursor token."""
        ...

    def get_profile_import_errors(self, job_id: str) -> list[ImportRowError]:
        """Return every import error of a job, following the cursor pages."""
        ...


def get_all_import_errors(
    client: KlaviyoClient, job_id: str, max_pages: int = 10_000
) -> list[ImportRowError]:
    """Fetch every import error of a job by following the cursor pages.

    Raises:
        KlaviyoError: From the page request that failed; the caller retries from page one.
    """
    errors: list[ImportRowError] = []
    cursor: str | None = None
    for _ in range(max_pages):
        page = client.get_profile_import_errors_page(job_id, cursor)
        errors.extend(page.errors)
        if not page.next_cursor or page.next_cursor == cursor:
            return errors
        cursor = page.next_cursor
    raise RuntimeError(f"import errors of job {job_id} have more than {max_pages} pages")


class PacedClient:
    """Base of the clients that send requests: rate limiting and request totals.

    Args:
        rate_limiter: The limiter of the account; None sends without waiting.
    """

    def __init__(self, rate_limiter: RateLimiter | None) -> None:
        self.rate_limiter = rate_limiter
        self.stats = RequestStats()

    def get_profile_import_errors(self, job_id: str) -> list[ImportRowError]:
        """Return every import error of a job, following the cursor pages.

        The sync pages itself instead, so that it retries a failed page alone.
        """
        return get_all_import_errors(self, job_id)

    def _paced(self, endpoint: str, request: Callable[[], tuple[ResultT, Any]]) -> ResultT:
        """Wait for the limiter, run `request` and feed its response headers to the limiter.

        Args:
            endpoint: Rate-limit key of the endpoint.
            request: Sends the request and returns (result, response headers).
        """
        waited = self.rate_limiter.acquire(endpoint) if self.rate_limiter else 0.0
        self.stats.add(wait_seconds=waited)
        try:
            result, headers = request()
        except KlaviyoValidationError:
            # The SDK rejected the body before sending it, so no request went out.
            raise
        except KlaviyoApiError as error:
            throttled = error.status == 429
            self.stats.add(requests=1, throttles=int(throttled))
            if self.rate_limiter:
                self.rate_limiter.observe(endpoint, error.rate_limit, throttled=throttled)
            raise
        except Exception:
            self.stats.add(requests=1)
            raise
        self.stats.add(requests=1)
        if self.rate_limiter:
            self.rate_limiter.observe(endpoint, RateLimitHeaders.from_headers(headers))
        return result
