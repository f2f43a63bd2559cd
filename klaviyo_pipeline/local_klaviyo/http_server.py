"""HTTP/1.1 transport of the local server: request parsing, checks in Klaviyo's order, faults.

Checks for an ``/api/`` request run in this order:

1. Path: a path with an empty segment (``//api/...``) or outside ``/api/`` gets 404.
   Python's ``http.server`` rewrites a leading ``//`` to ``/``, so the path is read from
   the raw request line.
2. Fault injection: a delay, a dropped connection before or after reading the body, or an
   injected status. Faults never apply to ``/_local/`` paths.
3. Body: a body needs ``Content-Length`` (411), may be at most 5 MB after gzip
   decompression (413), and ``Content-Encoding`` must be identity or gzip (415).
4. Route: 404 for an unknown ``/api/`` path and 405 for a method the path does not serve.
5. Headers: ``Authorization: Klaviyo-API-Key ...`` (401) and ``revision`` (400).
6. Rate limit: 429 with ``Retry-After``. Responses after this step carry the
   ``RateLimit-*`` headers.
7. ``Content-Type: application/vnd.api+json`` on POST (415), query parameters (400) and
   JSON syntax (400), then the endpoint's own validation and processing.
"""

import logging
import re
import socket
import sys
import threading
import time
import zlib
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import orjson

from klaviyo_pipeline.local_klaviyo.app import LocalKlaviyoApp
from klaviyo_pipeline.local_klaviyo.endpoints import ApiRequest, ApiResponse
from klaviyo_pipeline.local_klaviyo.errors import ApiError, error_document, invalid
from klaviyo_pipeline.local_klaviyo.faults import Fault
from klaviyo_pipeline.local_klaviyo.limits import MAX_PAYLOAD_BYTES
from klaviyo_pipeline.local_klaviyo.rate_limits import RateDecision
from klaviyo_pipeline.local_klaviyo.routes import Route, match_route, normalize_path

logger = logging.getLogger(__name__)

JSON_API_MEDIA_TYPE = "application/vnd.api+json"
_AUTHORIZATION_PATTERN = re.compile(r"Klaviyo-API-Key\s+\S+")
_REVISION_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}(\.[A-Za-z0-9_-]+)?")
# Bodies over the limit are read and discarded up to this size so that the client can read
# the 413. Larger bodies get the 413 and the connection is closed unread.
_MAX_DISCARD_BYTES = 8 * MAX_PAYLOAD_BYTES
_READ_CHUNK_BYTES = 1024 * 1024

_INJECTED_ERRORS: dict[int, tuple[str, str]] = {
    429: ("throttled", "Request was throttled. Expected available in {seconds} second(s)."),
    500: ("error", "A server error occurred (injected by the local Klaviyo server)."),
    502: ("bad_gateway", "Bad gateway (injected by the local Klaviyo server)."),
    503: ("service_unavailable", "Service unavailable (injected by the local Klaviyo server)."),
    504: ("gateway_timeout", "Gateway timeout (injected by the local Klaviyo server)."),
}


class _DroppedConnection(Exception):
    """Raised inside the handler to close the connection without a response."""


class LocalKlaviyoHTTPServer(ThreadingHTTPServer):
    """Threading HTTP server that serves one ``LocalKlaviyoApp`` and tracks its connections."""

    daemon_threads = True
    block_on_close = False
    # socketserver's default listen backlog of 5 drops connections when many clients
    # connect at once, and a dropped SYN costs the client a 1 s retransmit.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: LocalKlaviyoApp) -> None:
        super().__init__(address, KlaviyoRequestHandler)
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log an error that escaped a handler, instead of printing it to stderr.

        A client that disconnects mid-response, or a connection closed by ``stop()``, raises
        ``ConnectionError`` here. That is routine, so it is logged at DEBUG.
        """
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("Connection from %s closed: %s", client_address, error)
            return
        logger.exception("Error while serving a request from %s", client_address)

    def track(self, connection: socket.socket) -> None:
        """Remember an open client connection."""
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        """Forget a closed client connection."""
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut down every open client connection, so idle keep-alive clients see the stop."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("Connection was already closed during shutdown")


class KlaviyoRequestHandler(BaseHTTPRequestHandler):
    """Handler of the ``/api/`` and ``/_local/`` requests on one keep-alive connection."""

    server: LocalKlaviyoHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "LocalKlaviyo/1.0"
    # Buffer the status line, headers and body so that they leave in one send, and turn off
    # Nagle's algorithm, which would delay small responses.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        app = self.server.app
        words = self.requestline.split()
        raw_target = words[1] if len(words) >= 2 else self.path
        raw_path, _, query_string = raw_target.partition("?")
        entry: dict[str, Any] = {"method": self.command, "path": raw_path, "time": time.time()}
        is_local = raw_path.startswith("/_local/")
        try:
            if is_local:
                self._serve_local(raw_path, entry)
            else:
                self._serve_api(raw_path, query_string, entry)
        except _DroppedConnection:
            self.close_connection = True
            entry.setdefault("status", None)
            logger.debug(
                "Dropped connection for %s %s (%s)", self.command, raw_path, entry["fault"]
            )
        except Exception:
            logger.exception("Unexpected error while serving %s %s", self.command, raw_path)
            error = ApiError(status=500, code="error", detail="Internal error of the local server.")
            self._send_error(error, entry)
        finally:
            if not is_local:
                app.record_request(entry)

    def _serve_api(self, raw_path: str, query_string: str, entry: dict[str, Any]) -> None:
        app = self.server.app
        path = normalize_path(raw_path)
        if path is None or not path.startswith("/api/"):
            self._read_body_or_close()
            self._send_error(_not_found(raw_path), entry)
            return

        fault = app.faults.draw(path)
        if fault is not None:
            entry["fault"] = fault.describe()
            if fault.delay_seconds:
                time.sleep(fault.delay_seconds)
            if fault.drop == "before_body":
                raise _DroppedConnection()

        try:
            body_bytes = self._read_body()
        except ApiError as error:
            self._send_error(error, entry)
            return

        if fault is not None:
            if fault.drop == "after_body":
                raise _DroppedConnection()
            if fault.status is not None:
                self._send_error(_injected_error(fault), entry)
                return

        match = match_route(self.command, path)
        if match.route is None:
            if match.allowed_methods:
                self._send_error(_method_not_allowed(self.command, match.allowed_methods), entry)
            else:
                self._send_error(_not_found(raw_path), entry)
            return
        route = match.route
        entry["route"] = route.name

        try:
            _check_authorization(self.headers.get("Authorization"))
            _check_revision(self.headers.get("revision"))
        except ApiError as error:
            self._send_error(error, entry)
            return

        decision = app.rate_limiter.acquire(route.name) if app.rate_limiter else None
        if decision is not None and not decision.allowed:
            self._send_error(_throttled(decision.retry_after), entry)
            return
        rate_headers = _rate_limit_headers(decision)

        try:
            request = self._build_request(
                route, match.path_params, query_string, body_bytes, raw_path
            )
            response = route.handler(app.account, request)
        except ApiError as error:
            error.headers.update(rate_headers)
            self._send_error(error, entry)
            return

        entry.update(response.log)
        if fault is not None and fault.drop == "after_apply":
            entry["status"] = response.status
            raise _DroppedConnection()
        self._send_response(response, entry, rate_headers)

    def _build_request(
        self,
        route: Route,
        path_params: dict[str, str],
        query_string: str,
        body_bytes: bytes,
        raw_path: str,
    ) -> ApiRequest:
        app = self.server.app
        if self.command == "POST":
            _check_content_type(self.headers.get("Content-Type"))
        query = parse_qs(query_string, keep_blank_values=True)
        for name in query:
            if name not in route.query_parameters:
                raise invalid(
                    f"{name!r} is not a valid query parameter for this endpoint.", parameter=name
                )

        body: Any = None
        if self.command == "POST":
            if not body_bytes:
                raise invalid("The request body is missing.", pointer="/")
            try:
                body = orjson.loads(body_bytes)
            except orjson.JSONDecodeError as error:
                raise invalid(
                    f"The request body is not valid JSON: {error}.", pointer="/"
                ) from None
        return ApiRequest(
            route=route.name,
            path_params=path_params,
            query=query,
            body=body,
            body_size=len(body_bytes),
            received_at=datetime.now(UTC),
            base_url=app.base_url,
            path=raw_path,
        )

    def _read_body(self) -> bytes:
        """Read the request body and decompress gzip.

        Raises:
            ApiError: 400, 411, 413 or 415 for a body that cannot be read.
        """
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ApiError(
                status=411,
                code="length_required",
                detail=(
                    "Chunked transfer encoding is not supported. Send the body with Content-Length."
                ),
            )
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        if not length_header.strip().isdigit():
            self.close_connection = True
            raise invalid(
                f"Content-Length {length_header!r} is invalid. Send the body size in bytes."
            )
        length = int(length_header)
        if length > MAX_PAYLOAD_BYTES:
            self._discard(length)
            raise _payload_too_large(length)
        body = self.rfile.read(length)

        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "identity":
            return body
        if encoding != "gzip":
            raise ApiError(
                status=415,
                code="unsupported_media_type",
                detail=f"Content-Encoding {encoding!r} is not supported. Use gzip or none.",
            )
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            decompressed = decompressor.decompress(body, MAX_PAYLOAD_BYTES + 1)
        except zlib.error as error:
            raise invalid(f"The gzip request body is invalid: {error}.") from None
        if len(decompressed) > MAX_PAYLOAD_BYTES:
            raise _payload_too_large(len(decompressed))
        return decompressed

    def _read_body_or_close(self) -> None:
        try:
            self._read_body()
        except ApiError:
            self.close_connection = True

    def _discard(self, length: int) -> None:
        if length > _MAX_DISCARD_BYTES:
            self.close_connection = True
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, _READ_CHUNK_BYTES))
            if not chunk:
                self.close_connection = True
                return
            remaining -= len(chunk)

    def _serve_local(self, raw_path: str, entry: dict[str, Any]) -> None:
        app = self.server.app
        path = normalize_path(raw_path) or raw_path
        try:
            body_bytes = self._read_body()
        except ApiError as error:
            self._send_error(error, entry)
            return

        if self.command == "GET":
            result = app.local_get(path)
        elif self.command == "POST":
            try:
                body = orjson.loads(body_bytes) if body_bytes.strip() else None
                result = app.local_post(path, body)
            except (orjson.JSONDecodeError, ValueError) as error:
                self._send_error(invalid(f"Invalid request to {path}: {error}", pointer="/"), entry)
                return
        else:
            result = None
        if result is None:
            self._send_error(_not_found(raw_path), entry)
            return
        self._send_response(ApiResponse(status=200, body=result), entry, {})

    def _send_error(self, error: ApiError, entry: dict[str, Any]) -> None:
        # Error responses are the server's normal output, so they are logged at DEBUG, and
        # the request log (GET /_local/requests) records every one with its error code.
        entry["error_code"] = error.code
        logger.debug("%s %s -> %s", self.command, entry["path"], error)
        response = ApiResponse(status=error.status, body=error_document([error]))
        self._send_response(response, entry, error.headers)

    def _send_response(
        self, response: ApiResponse, entry: dict[str, Any], headers: dict[str, str]
    ) -> None:
        entry["status"] = response.status
        payload = b"" if response.body is None else orjson.dumps(response.body)
        self.send_response(response.status, HTTPStatus(response.status).phrase)
        if payload:
            self.send_header("Content-Type", JSON_API_MEDIA_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if payload:
            self.wfile.write(payload)


def _check_authorization(value: str | None) -> None:
    if value is None or _AUTHORIZATION_PATTERN.fullmatch(value.strip()) is None:
        raise ApiError(
            status=401,
            code="not_authenticated",
            detail=(
                "Missing or invalid private key. Send the header "
                "'Authorization: Klaviyo-API-Key <private key>'."
            ),
        )


def _check_revision(value: str | None) -> None:
    if value is None:
        raise invalid(
            "The revision header is missing. Send e.g. 'revision: 2026-10-15'.",
            parameter="revision",
        )
    if _REVISION_PATTERN.fullmatch(value.strip()) is None:
        raise invalid(
            f"The revision header {value!r} is invalid. The format is YYYY-MM-DD[.suffix].",
            parameter="revision",
        )


def _check_content_type(value: str | None) -> None:
    media_type = (value or "").split(";", 1)[0].strip().lower()
    if media_type != JSON_API_MEDIA_TYPE:
        raise ApiError(
            status=415,
            code="unsupported_media_type",
            detail=(
                f"Content-Type {value!r} is not supported. Send "
                f"'Content-Type: {JSON_API_MEDIA_TYPE}'."
            ),
        )


def _rate_limit_headers(decision: RateDecision | None) -> dict[str, str]:
    if decision is None:
        return {}
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset),
    }


def _throttled(retry_after: int | None) -> ApiError:
    """Build Klaviyo's 429 error. With ``retry_after`` None it has no ``Retry-After`` header."""
    seconds = 0 if retry_after is None else retry_after
    code, detail = _INJECTED_ERRORS[429]
    return ApiError(
        status=429,
        code=code,
        detail=detail.format(seconds=seconds),
        pointer="/data",
        headers={} if retry_after is None else {"Retry-After": str(retry_after)},
    )


def _injected_error(fault: Fault) -> ApiError:
    assert fault.status is not None
    if fault.status == 429:
        return _throttled(fault.retry_after)
    code, detail = _INJECTED_ERRORS[fault.status]
    return ApiError(status=fault.status, code=code, detail=detail)


def _not_found(raw_path: str) -> ApiError:
    return ApiError(
        status=404,
        code="not_found",
        detail=f"No endpoint matches the path {raw_path!r}.",
    )


def _method_not_allowed(method: str, allowed: tuple[str, ...]) -> ApiError:
    return ApiError(
        status=405,
        code="method_not_allowed",
        detail=f'Method "{method}" not allowed.',
        headers={"Allow": ", ".join(allowed)},
    )


def _payload_too_large(size: int) -> ApiError:
    return ApiError(
        status=413,
        code="payload_too_large",
        detail=(
            f"The request body is {size} bytes, but at most {MAX_PAYLOAD_BYTES} bytes (5 MB) "
            "are allowed."
        ),
    )
