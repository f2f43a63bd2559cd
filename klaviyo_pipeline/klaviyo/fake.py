"""In-memory Klaviyo client with Klaviyo's semantics, for unit tests.

Semantics modelled:

* A bulk event request is all or nothing: any invalid event or profile gives a 400 whose
  error pointers name the items, and nothing is stored.
* Events are de-duplicated across requests by (profile, metric, unique_id), and the first
  one stored wins, while later duplicates are still accepted with 202.
* Profiles are resolved by email, then phone number, then external_id, then id.
* A profile import job stores its valid profiles and reports each invalid one as an import
  error with a pointer and the original payload. It completes after ``job_steps`` polls.
* Bodies over 5 MB give a 413.

Failures are injected with `fail_next`. Every request body is recorded, including the
ones that failed.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from klaviyo_pipeline import settings
from klaviyo_pipeline.klaviyo import endpoints, validation
from klaviyo_pipeline.klaviyo.client import (
    ImportErrorsPage,
    ImportJob,
    ImportRowError,
    PacedClient,
)
from klaviyo_pipeline.klaviyo.errors import (
    ApiErrorDetail,
    KlaviyoApiError,
    KlaviyoResponseError,
    KlaviyoTransportError,
    RateLimitHeaders,
)
from klaviyo_pipeline.klaviyo.rate_limit import RateLimiter


@dataclass
class Failure:
    """One injected failure.

    Attributes:
        status: HTTP status of the error response, if not a transport failure.
        code: Klaviyo error code of the error object.
        detail: Detail of the error object.
        pointer: Pointer of the error object.
        retry_after: Value of the ``Retry-After`` header in seconds.
        transport: ``timeout``, ``connection`` or ``protocol`` to fail without a response.
        after_processing: Process the request first, then fail, as a gateway timeout
            after Klaviyo accepted the request does.
        no_job_id: Return 202 without a job id when a job is created.
        endpoint: Only requests to this endpoint consume the failure; None matches all.
    """

    status: int | None = 503
    code: str | None = None
    detail: str = "injected failure"
    pointer: str | None = None
    retry_after: float | None = None
    transport: str | None = None
    after_processing: bool = False
    no_job_id: bool = False
    endpoint: str | None = None


@dataclass
class RecordedRequest:
    """One request that reached the fake, with a copy of its body or path arguments."""

    endpoint: str
    body: dict[str, Any] | None
    arguments: dict[str, Any] = field(default_factory=dict)
    outcome: str = "ok"


@dataclass
class _Job:
    id: str
    profiles: list[dict[str, Any]]
    errors: list[ImportRowError]
    polls_left: int
    status: str = "queued"


class FakeKlaviyoClient(PacedClient):
    """In-memory Klaviyo with the semantics the sync relies on.

    Args:
        job_steps: Polls of a job before it reports ``complete``.
        errors_page_size: Import errors per page, small by default to exercise paging.
        rate_limiter: Optional limiter, to test pacing with an injected clock.
        report_all_errors: Report every invalid item of a bulk event request; False
            reports only the first, as some Klaviyo validators do.
    """

    dry_run = False
    revision = settings.API_REVISION

    def __init__(
        self,
        *,
        job_steps: int = 1,
        errors_page_size: int = 2,
        rate_limiter: RateLimiter | None = None,
        report_all_errors: bool = True,
    ) -> None:
        super().__init__(rate_limiter)
        self.job_steps = job_steps
        self.errors_page_size = errors_page_size
        self.report_all_errors = report_all_errors
        self.requests: list[RecordedRequest] = []
        self.events: list[dict[str, Any]] = []
        self.profiles: dict[str, dict[str, Any]] = {}
        self.duplicates_dropped = 0
        self._event_keys: set[tuple[str, str, str]] = set()
        self._jobs: dict[str, _Job] = {}
        self._failures: deque[Failure] = deque()
        self._lock = threading.RLock()

    def fail_next(self, count: int = 1, status: int | None = 503, **options: Any) -> None:
        """Fail the next `count` matching requests (see `Failure`)."""
        with self._lock:
            for _ in range(count):
                self._failures.append(Failure(status=status, **options))

    def clear_failures(self) -> None:
        """Drop the failures not yet consumed."""
        with self._lock:
            self._failures.clear()

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        """Return the recorded requests to one endpoint."""
        return [request for request in self.requests if request.endpoint == endpoint]

    def send_event_bulk(self, body: bytes) -> None:
        """Store the events of one encoded bulk request, or raise Klaviyo's error for it.

        The recorded request contains the parsed body. A body that is not JSON is recorded
        as None and gets a 400, as from Klaviyo.
        """
        endpoint = endpoints.EVENT_BULK_CREATE
        self._paced(endpoint, lambda: (self._handle(endpoint, body, {}, self._store_events), {}))

    def create_profile_import_job(self, body: bytes) -> ImportJob:
        """Create a job for the profiles of one encoded import body."""
        endpoint = endpoints.PROFILE_BULK_IMPORT
        return self._paced(
            endpoint, lambda: (self._handle(endpoint, body, {}, self._create_job), {})
        )

    def get_profile_import_job(self, job_id: str) -> ImportJob:
        """Advance the job by one poll and return its state."""
        endpoint = endpoints.PROFILE_BULK_IMPORT_JOB
        arguments = {"job_id": job_id}
        return self._paced(
            endpoint, lambda: (self._handle(endpoint, None, arguments, self._poll), {})
        )

    def get_profile_import_errors_page(
        self, job_id: str, cursor: str | None = None
    ) -> ImportErrorsPage:
        """Return one page of a job's import errors."""
        endpoint = endpoints.PROFILE_BULK_IMPORT_ERRORS
        arguments = {"job_id": job_id, "cursor": cursor}
        return self._paced(
            endpoint, lambda: (self._handle(endpoint, None, arguments, self._errors_page), {})
        )

    def _handle(self, endpoint: str, body: Any, arguments: dict[str, Any], handler: Any) -> Any:
        with self._lock:
            recorded = RecordedRequest(endpoint, _document(body), dict(arguments))
            self.requests.append(recorded)
            failure = self._take_failure(endpoint)
            if failure is not None and not failure.after_processing:
                recorded.outcome = "failed"
                raise self._failure_error(endpoint, failure)
            try:
                result = handler(body, **arguments)
            except KlaviyoApiError as error:
                recorded.outcome = f"http {error.status}"
                raise
            if failure is not None:
                recorded.outcome = "processed, then failed"
                raise self._failure_error(endpoint, failure)
            return result

    def _take_failure(self, endpoint: str) -> Failure | None:
        for index, failure in enumerate(self._failures):
            if failure.endpoint in (None, endpoint):
                del self._failures[index]
                return failure
        return None

    @staticmethod
    def _failure_error(endpoint: str, failure: Failure) -> Exception:
        if failure.transport:
            return KlaviyoTransportError(failure.transport, endpoint, failure.detail)
        if failure.no_job_id:
            return KlaviyoResponseError(endpoint, "the response contains no job id")
        status = failure.status or 503
        detail = ApiErrorDetail(
            code=failure.code or ("throttled" if status == 429 else "error"),
            title="Injected.",
            detail=failure.detail,
            pointer=failure.pointer,
            status=status,
        )
        headers = RateLimitHeaders(retry_after_seconds=failure.retry_after)
        return KlaviyoApiError(status, endpoint, (detail,), headers)

    def _store_events(self, encoded: bytes) -> None:
        endpoint = endpoints.EVENT_BULK_CREATE
        body = _parse_body(encoded, endpoint)
        errors = validation.check_event_bulk_body(body)
        if errors:
            raise KlaviyoApiError(
                400, endpoint, tuple(errors if self.report_all_errors else errors[:1])
            )
        for item in validation.event_bulk_items(body) or []:
            profile = item["attributes"]["profile"]["data"]["attributes"]
            identity = validation.profile_identity(profile)
            for event in validation.item_events(item):
                self._store_event(identity, profile, event["attributes"])

    def _store_event(
        self, identity: str, profile: dict[str, Any], attributes: dict[str, Any]
    ) -> None:
        metric = attributes["metric"]["data"]["attributes"]["name"]
        unique_id = str(attributes.get("unique_id") or attributes.get("time"))
        key = (identity, metric, unique_id)
        if key in self._event_keys:
            self.duplicates_dropped += 1
            return
        self._event_keys.add(key)
        self.events.append(
            {
                "identity": identity,
                "metric": metric,
                "unique_id": unique_id,
                "profile": copy.deepcopy(profile),
                "attributes": copy.deepcopy(attributes),
            }
        )

    def _create_job(self, encoded: bytes) -> ImportJob:
        endpoint = endpoints.PROFILE_BULK_IMPORT
        body = _parse_body(encoded, endpoint)
        request_errors, per_profile = validation.check_profile_import_body(body)
        if request_errors:
            raise KlaviyoApiError(400, endpoint, tuple(request_errors))
        profiles = validation.profile_import_items(body) or []
        valid, errors = [], []
        for index, profile in enumerate(profiles):
            attributes = profile.get("attributes") or {}
            if index not in per_profile:
                valid.append(copy.deepcopy(attributes))
                continue
            for detail in per_profile[index]:
                errors.append(
                    ImportRowError(
                        detail.code,
                        detail.title,
                        detail.detail,
                        detail.pointer,
                        copy.deepcopy(attributes),
                    )
                )
        job = _Job(uuid.uuid4().hex, valid, errors, polls_left=self.job_steps)
        self._jobs[job.id] = job
        return self._job_state(job, total=len(profiles))

    def _poll(self, body: None, job_id: str) -> ImportJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise _error(404, endpoints.PROFILE_BULK_IMPORT_JOB, "not_found", f"no job {job_id}")
        job.polls_left -= 1
        if job.status != "complete":
            job.status = "complete" if job.polls_left <= 0 else "processing"
            if job.status == "complete":
                for attributes in job.profiles:
                    self._upsert_profile(attributes)
        return self._job_state(job, total=len(job.profiles) + len({e.pointer for e in job.errors}))

    def _upsert_profile(self, attributes: dict[str, Any]) -> None:
        identity = validation.profile_identity(attributes)
        stored = self.profiles.setdefault(identity, {})
        for key, value in attributes.items():
            if key == "properties" and isinstance(value, dict):
                stored.setdefault("properties", {}).update(value)
            else:
                stored[key] = value

    def _job_state(self, job: _Job, total: int) -> ImportJob:
        complete = job.status == "complete"
        failed = len({error.pointer for error in job.errors}) if complete else 0
        return ImportJob(
            id=job.id,
            status=job.status,
            total_count=total,
            completed_count=total - failed if complete else 0,
            failed_count=failed,
        )

    def _errors_page(self, body: None, job_id: str, cursor: str | None) -> ImportErrorsPage:
        job = self._jobs.get(job_id)
        if job is None:
            raise _error(404, endpoints.PROFILE_BULK_IMPORT_ERRORS, "not_found", f"no job {job_id}")
        start = int(cursor) if cursor else 0
        end = start + self.errors_page_size
        next_cursor = str(end) if end < len(job.errors) else None
        return ImportErrorsPage(tuple(job.errors[start:end]), next_cursor)


def _error(
    status: int, endpoint: str, code: str, detail: str, pointer: str | None = None
) -> KlaviyoApiError:
    error = ApiErrorDetail(code=code, title=code, detail=detail, pointer=pointer, status=status)
    return KlaviyoApiError(status, endpoint, (error,))


def _parse_body(encoded: bytes, endpoint: str) -> Any:
    """Parse an encoded body, or raise the 413 or 400 that Klaviyo returns for it."""
    if len(encoded) > settings.MAX_PAYLOAD_BYTES:
        raise _error(413, endpoint, "payload_too_large", "the body exceeds 5 MB", "/data")
    try:
        return orjson.loads(encoded)
    except orjson.JSONDecodeError as error:
        detail = f"the body is not valid JSON: {error}"
        raise _error(400, endpoint, "invalid", detail, "/") from None


def _document(body: Any) -> Any:
    """Return a copy of a request body to record; encoded bytes are parsed, or None."""
    if isinstance(body, bytes):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
    return copy.deepcopy(body)
