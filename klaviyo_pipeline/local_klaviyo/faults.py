"""Fault injection for ``/api/`` requests: error statuses, slow responses, dropped connections.

A fault plan is the JSON object accepted by ``POST /_local/faults`` and
``LocalKlaviyoServer.set_faults``::

    {"fraction": 0.2, "status": 503}            # about 20 % of requests get 503
    {"next": 3, "status": 429}                  # the next 3 requests get 429, Retry-After: 1
    {"next": 1, "status": 429, "retry_after": null}   # 429 without a Retry-After header
    {"next": 1, "delay_seconds": 2}             # delay the next response by 2 s
    {"next": 1, "drop": "before_body"}          # close the socket before reading the body
    {"next": 1, "drop": "after_body"}           # read the body, close, apply nothing
    {"next": 1, "drop": "after_apply"}          # apply the request, then close unanswered

Keys: exactly one of ``fraction`` (0 to 1, drawn from ``random.Random(seed)``) or ``next``
(a count). At least one of ``status`` (429, 500, 502, 503 or 504), ``delay_seconds``
(real seconds, not scaled) and ``drop``, where ``status`` and ``drop`` exclude each other.
``retry_after`` (whole seconds, default 1, ``null`` for no header) applies to 429 only.
``seed`` (default 0) makes a fraction reproducible for requests that arrive in the same
order. ``paths`` (optional list of path prefixes such as ``/api/events``) limits the
faults to matching paths. An empty object clears the plan.
"""

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

INJECTABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
DROP_MODES = ("before_body", "after_body", "after_apply")
_KNOWN_KEYS = frozenset(
    {"fraction", "next", "status", "retry_after", "delay_seconds", "drop", "seed", "paths"}
)
_MISSING = object()


@dataclass(frozen=True)
class FaultPlan:
    """Validated fault plan. The module docstring describes each field."""

    fraction: float | None = None
    next: int | None = None
    status: int | None = None
    retry_after: int | None = 1
    delay_seconds: float = 0.0
    drop: str | None = None
    seed: int = 0
    paths: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the plan as the JSON object that ``parse_fault_plan`` accepts.

        Keys that are unset or do not apply are left out, except that a 429 plan always
        has ``retry_after``, because null there means "no header".
        """
        plan = {key: value for key, value in asdict(self).items() if value is not None}
        if not self.delay_seconds:
            del plan["delay_seconds"]
        plan.pop("retry_after", None)
        if self.status == 429:
            plan["retry_after"] = self.retry_after
        if self.paths is not None:
            plan["paths"] = list(self.paths)
        return plan


@dataclass(frozen=True)
class Fault:
    """Fault chosen for one request."""

    status: int | None
    retry_after: int | None
    delay_seconds: float
    drop: str | None

    def describe(self) -> str:
        """Return a short label for the request log, such as ``status_503``."""
        parts = []
        if self.delay_seconds:
            parts.append(f"delay_{self.delay_seconds:g}s")
        if self.status is not None:
            parts.append(f"status_{self.status}")
        if self.drop is not None:
            parts.append(f"drop_{self.drop}")
        return "+".join(parts)


def _number(plan: Mapping[str, Any], key: str) -> float | None:
    value = plan.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)


def _integer(plan: Mapping[str, Any], key: str, minimum: int) -> int | None:
    value = plan.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer of at least {minimum}, got {value!r}")
    return value


def parse_fault_plan(plan: Mapping[str, Any] | None) -> FaultPlan | None:
    """Validate a fault plan object and return it, or None for an empty plan.

    Raises:
        ValueError: A key is unknown or a value is invalid. The message names it.
    """
    if not plan:
        return None
    unknown = set(plan) - _KNOWN_KEYS
    if unknown:
        raise ValueError(f"unknown fault keys {sorted(unknown)}, known keys: {sorted(_KNOWN_KEYS)}")

    fraction = _number(plan, "fraction")
    next_count = _integer(plan, "next", minimum=1)
    if (fraction is None) == (next_count is None):
        raise ValueError("set exactly one of 'fraction' and 'next'")
    if fraction is not None and not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")

    status = _integer(plan, "status", minimum=100)
    if status is not None and status not in INJECTABLE_STATUSES:
        raise ValueError(f"status must be one of {sorted(INJECTABLE_STATUSES)}, got {status}")
    drop = plan.get("drop")
    if drop is not None and drop not in DROP_MODES:
        raise ValueError(f"drop must be one of {list(DROP_MODES)}, got {drop!r}")
    delay_seconds = _number(plan, "delay_seconds") or 0.0
    if delay_seconds < 0:
        raise ValueError(f"delay_seconds must not be negative, got {delay_seconds}")
    if status is None and drop is None and not delay_seconds:
        raise ValueError("set at least one of 'status', 'delay_seconds' and 'drop'")
    if status is not None and drop is not None:
        raise ValueError("'status' and 'drop' cannot be combined")

    retry_after_value = plan.get("retry_after", _MISSING)
    if retry_after_value is not _MISSING and status != 429:
        raise ValueError("retry_after applies only to status 429")
    retry_after = 1 if retry_after_value is _MISSING else _integer(plan, "retry_after", 0)

    paths = plan.get("paths")
    if paths is not None:
        if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
            raise ValueError(f"paths must be a list of strings, got {paths!r}")
        paths = tuple(paths)

    return FaultPlan(
        fraction=fraction,
        next=next_count,
        status=status,
        retry_after=retry_after,
        delay_seconds=delay_seconds,
        drop=drop,
        seed=_integer(plan, "seed", minimum=0) or 0,
        paths=paths,
    )


class FaultInjector:
    """Thread-safe chooser of the fault, if any, for each ``/api/`` request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan: FaultPlan | None = None
        self._remaining = 0
        self._random = random.Random(0)

    def configure(self, plan: FaultPlan | None) -> None:
        """Replace the current plan, or clear it with None."""
        with self._lock:
            self._plan = plan
            self._remaining = 0
            self._random = random.Random(0)
            if plan is not None:
                self._remaining = plan.next or 0
                self._random = random.Random(plan.seed)

    def describe(self) -> dict[str, Any]:
        """Return the current plan and how many ``next`` faults are left."""
        with self._lock:
            if self._plan is None:
                return {}
            description = self._plan.to_json()
            if self._plan.next is not None:
                description["remaining"] = self._remaining
            return description

    def draw(self, path: str) -> Fault | None:
        """Decide the fault for one request to ``path``, consuming a ``next`` count."""
        with self._lock:
            plan = self._plan
            if plan is None:
                return None
            if plan.paths is not None and not any(path.startswith(p) for p in plan.paths):
                return None
            if plan.next is not None:
                if self._remaining <= 0:
                    return None
                self._remaining -= 1
            elif self._random.random() >= (plan.fraction or 0.0):
                return None
            return Fault(
                status=plan.status,
                retry_after=plan.retry_after if plan.status == 429 else None,
                delay_seconds=plan.delay_seconds,
                drop=plan.drop,
            )
