"""Route table of the served Klaviyo endpoints and path matching."""

import re
from collections.abc import Callable
from dataclasses import dataclass

from klaviyo_pipeline.local_klaviyo import endpoints
from klaviyo_pipeline.local_klaviyo.account import Account
from klaviyo_pipeline.local_klaviyo.endpoints import ApiRequest, ApiResponse

Handler = Callable[[Account, ApiRequest], ApiResponse]


@dataclass(frozen=True)
class Route:
    """One endpoint: its SDK operation name, method, path pattern and query parameters.

    Attributes:
        name: SDK operation id, also the key of the endpoint's rate limit.
        method: HTTP method.
        pattern: Regular expression for the whole path, without a trailing slash.
        handler: Function that serves the endpoint.
        query_parameters: Query parameters the endpoint accepts. Others get 400.
    """

    name: str
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    query_parameters: frozenset[str] = frozenset()


_JOB_ID = r"(?P<job_id>[^/]+)"

ROUTES: tuple[Route, ...] = (
    Route("create_event", "POST", re.compile(r"/api/events"), endpoints.create_event),
    Route(
        "bulk_create_events",
        "POST",
        re.compile(r"/api/event-bulk-create-jobs"),
        endpoints.bulk_create_events,
    ),
    Route(
        "create_or_update_profile",
        "POST",
        re.compile(r"/api/profile-import"),
        endpoints.create_or_update_profile,
        frozenset({"fields[profile]", "additional-fields[profile]"}),
    ),
    Route(
        "bulk_import_profiles",
        "POST",
        re.compile(r"/api/profile-bulk-import-jobs"),
        endpoints.bulk_import_profiles,
        frozenset({"fields[profile-bulk-import-job]"}),
    ),
    Route(
        "get_bulk_import_profiles_job",
        "GET",
        re.compile(rf"/api/profile-bulk-import-jobs/{_JOB_ID}"),
        endpoints.get_bulk_import_profiles_job,
        frozenset({"fields[profile-bulk-import-job]", "fields[list]", "include"}),
    ),
    Route(
        "get_errors_for_bulk_import_profiles_job",
        "GET",
        re.compile(rf"/api/profile-bulk-import-jobs/{_JOB_ID}/import-errors"),
        endpoints.get_errors_for_bulk_import_profiles_job,
        frozenset({"fields[import-error]", "page[cursor]", "page[size]"}),
    ),
)


@dataclass(frozen=True)
class RouteMatch:
    """Result of matching a path against the route table.

    Attributes:
        route: The matching route, or None.
        path_params: Values captured from the path.
        allowed_methods: Methods that the path supports, set when only the method differs.
    """

    route: Route | None
    path_params: dict[str, str]
    allowed_methods: tuple[str, ...] = ()


def normalize_path(path: str) -> str | None:
    """Strip one trailing slash, or return None for a path with an empty segment (``//``).

    Klaviyo's older revisions documented paths with a trailing slash, so both forms match.
    An empty segment, as in ``//api/events`` from a base URL with a trailing slash, does
    not match any route.
    """
    if path.endswith("/") and path != "/":
        path = path[:-1]
    if "//" in path:
        return None
    return path


def match_route(method: str, path: str) -> RouteMatch:
    """Find the route for a normalized path and method."""
    allowed: list[str] = []
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            return RouteMatch(route=route, path_params=found.groupdict())
        allowed.append(route.method)
    return RouteMatch(route=None, path_params={}, allowed_methods=tuple(allowed))
