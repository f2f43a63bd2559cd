"""Klaviyo client on the official ``klaviyo-api`` SDK (25.x).

The sync is the only retry layer, so this client turns off both retry layers of the SDK:

* ``KlaviyoAPI(max_retries=1)``: the SDK's retry wrapper counts total attempts, so 1 means
  no retry. The client also calls the ``*_with_http_info`` methods, which the wrapper does
  not wrap at all, to read the status and the rate-limit headers of successful responses.
* ``urllib3.Retry(total=0)`` on the connection pool: urllib3 would otherwise retry a
  refused connection three times without backoff.

Other SDK settings that protect the data:

* Bodies go in already encoded, as bytes, never through ``Model.from_dict()``, which
  sends ``null`` for every absent field (and ``null`` clears a profile field). The SDK
  passes bytes through its serializer unchanged, and `EncodedBodyRestClient` sends them
  instead of running ``json.dumps`` on them.
* ``USE_DICTIONARY_FOR_RESPONSE_DATA`` returns 2xx bodies as dicts, so an unexpected field
  in a response cannot raise a pydantic error after Klaviyo has accepted the request.
* Every call passes ``_request_timeout=(connect, read)``. The SDK has no default timeout.
* Import-error pages are requested with the bare cursor token. The SDK's cursor parser
  keeps a stray ``=`` from ``https://`` next links and passes ``http://`` links whole.
"""

from __future__ import annotations

import functools
import http.client
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pydantic
import urllib3
from klaviyo_api import KlaviyoAPI
from openapi_client.api_arg_options import USE_DICTIONARY_FOR_RESPONSE_DATA
from openapi_client.exceptions import ApiException
from openapi_client.rest import RESTClientObject, RESTResponse

from klaviyo_pipeline import settings
from klaviyo_pipeline.klaviyo import endpoints
from klaviyo_pipeline.klaviyo.client import (
    ImportErrorsPage,
    ImportJob,
    ImportRowError,
    PacedClient,
    ResultT,
)
from klaviyo_pipeline.klaviyo.errors import (
    ApiErrorDetail,
    KlaviyoApiError,
    KlaviyoResponseError,
    KlaviyoTransportError,
    KlaviyoValidationError,
    mask_emails_in_text,
)
from klaviyo_pipeline.klaviyo.rate_limit import RateLimiter

IMPORT_ERRORS_PAGE_SIZE = 100


class SdkKlaviyoClient(PacedClient):
    """Client that sends requests through ``klaviyo_api.KlaviyoAPI``.

    Args:
        api_key: Private API key. It is passed to the SDK and never logged or shown.
        base_url: Scheme and host of the API, such as ``http://127.0.0.1:8080`` for the
            local server; None uses the SDK's default, Klaviyo's production host.
        connect_timeout_seconds: Connect timeout of every request.
        read_timeout_seconds: Read timeout of every request.
        rate_limiter: Limiter of the account, usually from ``shared_rate_limiter``.
        revision: Value of the ``revision`` header. The request bodies follow the SDK's
            models, so a revision other than the SDK's own is only for testing.
    """

    dry_run = False

    def __init__(
        self,
        api_key: str,
        base_url: str | None,
        *,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        rate_limiter: RateLimiter | None,
        revision: str = settings.API_REVISION,
    ) -> None:
        super().__init__(rate_limiter)
        self.revision = revision
        self.base_url = base_url.rstrip("/") if base_url else None
        self._timeout = (float(connect_timeout_seconds), float(read_timeout_seconds))
        self._sdk = KlaviyoAPI(
            api_key,
            max_retries=1,
            test_host=self.base_url or "",
            options={USE_DICTIONARY_FOR_RESPONSE_DATA: True},
        )
        self._sdk.configuration.retries = urllib3.Retry(total=0, redirect=0)
        # The pool reads `retries` only when it is created, so build it again.
        self._sdk.api_client.rest_client = EncodedBodyRestClient(self._sdk.configuration)
        self._sdk.api_client.default_headers["revision"] = revision
        self._events = self._sdk.Events
        self._profiles = self._sdk.Profiles

    def __repr__(self) -> str:
        return f"SdkKlaviyoClient(base_url={self.base_url!r}, revision={self.revision!r})"

    def send_event_bulk(self, body: bytes) -> None:
        """Send one encoded bulk event request; Klaviyo returns 202 with no body."""
        method = _without_model_validation(self._events.bulk_create_events_with_http_info)
        self._paced(
            endpoints.EVENT_BULK_CREATE, self._caller(endpoints.EVENT_BULK_CREATE, method, body)
        )

    def create_profile_import_job(self, body: bytes) -> ImportJob:
        """Create a profile bulk import job from an encoded body and return it.

        Raises:
            KlaviyoResponseError: The 202 response had no job id.
        """
        endpoint = endpoints.PROFILE_BULK_IMPORT
        method = _without_model_validation(self._profiles.bulk_import_profiles_with_http_info)
        data = self._paced(endpoint, self._caller(endpoint, method, body))
        return parse_import_job(data, endpoint)

    def get_profile_import_job(self, job_id: str) -> ImportJob:
        """Return the current state of a profile import job."""
        endpoint = endpoints.PROFILE_BULK_IMPORT_JOB
        method = self._profiles.get_bulk_import_profiles_job_with_http_info
        data = self._paced(endpoint, self._caller(endpoint, method, job_id))
        return parse_import_job(data, endpoint)

    def get_profile_import_errors_page(
        self, job_id: str, cursor: str | None = None
    ) -> ImportErrorsPage:
        """Return one page of up to 100 import errors of a job."""
        endpoint = endpoints.PROFILE_BULK_IMPORT_ERRORS
        method = self._profiles.get_errors_for_bulk_import_profiles_job_with_http_info
        kwargs: dict[str, Any] = {"page_size": IMPORT_ERRORS_PAGE_SIZE}
        if cursor:
            kwargs["page_cursor"] = cursor
        data = self._paced(endpoint, self._caller(endpoint, method, job_id, **kwargs))
        return parse_import_errors_page(data)

    def _caller(
        self, endpoint: str, method: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Callable[[], tuple[Any, Any]]:
        def call() -> tuple[Any, Any]:
            response = _call_sdk(endpoint, method, *args, _request_timeout=self._timeout, **kwargs)
            return response.data, response.headers

        return call


class EncodedBodyRestClient(RESTClientObject):
    """The SDK's REST client, which also sends a JSON body that is already encoded.

    The SDK's client runs ``json.dumps`` on every JSON body, which fails on bytes. A bytes
    body goes out as it is, with the headers and timeout that the SDK prepared; every other
    request takes the SDK's own path.
    """

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> RESTResponse:
        if not isinstance(body, bytes) or post_params:
            return super().request(method, url, headers, body, post_params, _request_timeout)
        timeout = None
        if isinstance(_request_timeout, tuple):
            connect, read = _request_timeout
            timeout = urllib3.Timeout(connect=connect, read=read)
        elif _request_timeout:
            timeout = urllib3.Timeout(total=_request_timeout)
        try:
            response = self.pool_manager.request(
                method.upper(),
                url,
                body=body,
                timeout=timeout,
                headers=headers or {},
                preload_content=False,
            )
        except urllib3.exceptions.SSLError as error:
            raise ApiException(status=0, reason=f"{type(error).__name__}\n{error}") from None
        return RESTResponse(response)


def _without_model_validation(method: Callable[..., ResultT]) -> Callable[..., ResultT]:
    """Return the SDK method without pydantic's validate_call around it.

    validate_call accepts only the SDK's models or dicts, not the encoded bytes that this
    client sends. Model validation would also cost about 170 ms of CPU per 1,000-event
    request (klaviyo-api 25.0.0, measured once on the benchmark machine), close to the
    400 ms per request that 150 requests per minute allow. The body is built and checked
    against Klaviyo's rules before it gets here, and Klaviyo validates it again.

    Raises:
        RuntimeError: The installed SDK wraps the method differently from klaviyo-api 25.x.
    """
    owner = getattr(method, "__self__", None)
    wrapped = getattr(type(owner), getattr(method, "__name__", ""), None)
    raw = getattr(wrapped, "raw_function", None)
    if owner is None or raw is None:
        name = getattr(method, "__name__", repr(method))
        raise RuntimeError(
            f"klaviyo-api's {name} has no raw_function; this client needs klaviyo-api 25.x"
        )
    return functools.partial(raw, owner)


def _call_sdk(endpoint: str, method: Callable[..., ResultT], *args: Any, **kwargs: Any) -> ResultT:
    """Call one SDK method and translate its exceptions into the client's error types."""
    try:
        return method(*args, **kwargs)
    except ApiException as error:
        if error.status == 0:
            # The SDK reports an SSL error as status 0 with the error text as the reason.
            raise KlaviyoTransportError("connection", endpoint, str(error.reason)) from None
        raise KlaviyoApiError.from_response(
            error.status, endpoint, error.body, error.headers
        ) from None
    except pydantic.ValidationError as error:
        raise KlaviyoValidationError(endpoint, validation_details(error)) from None
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as error:
        raise transport_error(endpoint, error) from None


def transport_error(endpoint: str, error: Exception) -> KlaviyoTransportError:
    """Describe a urllib3 or socket error as a transport error of one endpoint."""
    cause: Exception = error
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        cause = error.reason
    # urllib3 2.x derives NewConnectionError from ConnectTimeoutError, so test it first.
    if isinstance(cause, urllib3.exceptions.NewConnectionError | ConnectionError):
        kind = "connection"
    elif isinstance(cause, urllib3.exceptions.TimeoutError | TimeoutError):
        kind = "timeout"
    elif isinstance(cause, urllib3.exceptions.ProtocolError | http.client.HTTPException):
        kind = "protocol"
    else:
        kind = "connection"
    return KlaviyoTransportError(kind, endpoint, f"{type(cause).__name__}: {cause}")


def validation_details(
    error: pydantic.ValidationError, *, from_call: bool = True
) -> tuple[ApiErrorDetail, ...]:
    """Turn pydantic errors of a request body into errors with JSON pointers.

    Locations use the JSON names of the body, so they map to JSON pointers. For an error
    raised by an SDK call (`from_call`), the first item of a location is the argument's
    position or name and is dropped.
    """
    details = []
    for item in error.errors():
        path = [str(part) for part in item["loc"][1 if from_call else 0 :]]
        pointer = "/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in path)
        message = mask_emails_in_text(f"{'.'.join(path)}: {item['msg']}")
        details.append(ApiErrorDetail(code=item["type"], detail=message, pointer=pointer))
    return tuple(details)


def parse_import_job(data: Any, endpoint: str) -> ImportJob:
    """Parse a job document ``{"data": {"id", "attributes": {...}}}`` into an ImportJob.

    Raises:
        KlaviyoResponseError: The document has no job id or no status.
    """
    resource = data.get("data") if isinstance(data, dict) else None
    if not isinstance(resource, dict) or not resource.get("id"):
        raise KlaviyoResponseError(endpoint, "the response contains no job id")
    attributes = resource.get("attributes") or {}
    status = attributes.get("status")
    if not isinstance(status, str):
        raise KlaviyoResponseError(endpoint, f"job {resource['id']} has no status")
    return ImportJob(
        id=str(resource["id"]),
        status=status,
        total_count=int(attributes.get("total_count") or 0),
        completed_count=int(attributes.get("completed_count") or 0),
        failed_count=int(attributes.get("failed_count") or 0),
    )


def parse_import_errors_page(data: Any) -> ImportErrorsPage:
    """Parse one page of import errors and extract the bare cursor from ``links.next``."""
    items = data.get("data") if isinstance(data, dict) else None
    errors = []
    for item in items or []:
        attributes = item.get("attributes") or {}
        source = attributes.get("source") or {}
        payload = attributes.get("original_payload")
        errors.append(
            ImportRowError(
                code=attributes.get("code"),
                title=attributes.get("title"),
                detail=attributes.get("detail"),
                pointer=source.get("pointer"),
                original_payload=payload if isinstance(payload, dict) else None,
            )
        )
    links = data.get("links") if isinstance(data, dict) else None
    next_link = links.get("next") if isinstance(links, dict) else None
    return ImportErrorsPage(tuple(errors), cursor_from_link(next_link))


def cursor_from_link(link: str | None) -> str | None:
    """Return the ``page[cursor]`` token of a next-page URL, or None without one."""
    if not link:
        return None
    values = parse_qs(urlsplit(link).query).get("page[cursor]")
    return values[0] if values else None
