"""Bulk profile import jobs and their queued -> processing -> complete lifecycle.

A job advances one step each time a client reads it with
``GET /api/profile-bulk-import-jobs/{id}``, so tests control progress without waiting.
With ``job_steps`` N, the job is ``queued`` after the POST, ``processing`` for the first
N - 1 reads and ``complete`` from read N on. With N = 0 the POST already returns it
complete. Valid rows are written to the profile store when the job completes.
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from klaviyo_pipeline.local_klaviyo.rules import ProfileInput

QUEUED = "queued"
PROCESSING = "processing"
COMPLETE = "complete"


@dataclass
class ImportRowError:
    """One failed row of a job, as listed by the import-errors endpoint."""

    code: str
    title: str
    detail: str
    pointer: str
    original_payload: dict[str, Any] | None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_resource(self) -> dict[str, Any]:
        """Build the ``import-error`` resource object."""
        return {
            "type": "import-error",
            "id": self.id,
            "attributes": {
                "code": self.code,
                "title": self.title,
                "detail": self.detail,
                "source": {"pointer": self.pointer},
                "original_payload": self.original_payload,
            },
        }


@dataclass
class ImportRow:
    """One row of a job: either a validated profile or the error that rejected it."""

    index: int
    original_payload: dict[str, Any]
    profile: ProfileInput | None = None
    error: ImportRowError | None = None


@dataclass
class ImportJob:
    """State of one bulk profile import job."""

    id: str
    created_at: datetime
    steps: int
    rows: list[ImportRow]
    list_ids: list[str]
    total_count: int
    status: str = QUEUED
    polls: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    completed_count: int = 0
    failed_count: int = 0
    errors: list[ImportRowError] = field(default_factory=list)

    def advance(self, now: datetime) -> bool:
        """Record one read of the job and return True when this read completes it."""
        if self.status == COMPLETE:
            return False
        self.polls += 1
        if self.polls >= self.steps:
            return True
        self.status = PROCESSING
        if self.started_at is None:
            self.started_at = now
        return False

    def complete(self, now: datetime, errors: list[ImportRowError]) -> None:
        """Mark the job complete with the errors of its failed rows and drop the rows."""
        self.status = COMPLETE
        if self.started_at is None:
            self.started_at = now
        self.completed_at = now
        self.errors = errors
        self.failed_count = len(errors)
        self.completed_count = self.total_count - self.failed_count
        self.rows = []

    def attributes(self) -> dict[str, Any]:
        """Build the job's ``attributes`` as Klaviyo returns them."""
        return {
            "status": self.status,
            "created_at": _isoformat(self.created_at),
            "total_count": self.total_count,
            "completed_count": self.completed_count,
            "failed_count": self.failed_count,
            "completed_at": _isoformat(self.completed_at),
            "expires_at": None,
            "started_at": _isoformat(self.started_at),
        }

    def to_resource(self, base_url: str, fields: list[str] | None = None) -> dict[str, Any]:
        """Build the ``profile-bulk-import-job`` resource object.

        Args:
            base_url: Server base URL without a trailing slash, used in ``links``.
            fields: Attribute names requested with ``fields[profile-bulk-import-job]``,
                or None for all.
        """
        job_url = f"{base_url}/api/profile-bulk-import-jobs/{self.id}/"
        attributes = self.attributes()
        if fields is not None:
            attributes = {name: value for name, value in attributes.items() if name in fields}
        return {
            "type": "profile-bulk-import-job",
            "id": self.id,
            "attributes": attributes,
            "relationships": {
                "lists": {
                    "data": [{"type": "list", "id": list_id} for list_id in self.list_ids],
                    "links": {
                        "self": f"{job_url}relationships/lists/",
                        "related": f"{job_url}lists/",
                    },
                },
                "profiles": {
                    "links": {
                        "self": f"{job_url}relationships/profiles/",
                        "related": f"{job_url}profiles/",
                    },
                },
                "import-errors": {"links": {"related": f"{job_url}import-errors/"}},
            },
            "links": {"self": job_url},
        }


def _isoformat(moment: datetime | None) -> str | None:
    """Format like Klaviyo's timestamps: whole seconds with the UTC offset."""
    return None if moment is None else moment.replace(microsecond=0).isoformat()
