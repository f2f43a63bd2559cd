"""State of the one Klaviyo account that a local server models: profiles, events and jobs.

Every method takes the account lock, so request threads see each request applied whole.
"""

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from klaviyo_pipeline.local_klaviyo.errors import TITLES, ApiError, invalid
from klaviyo_pipeline.local_klaviyo.events import DedupeKey, EventStore, dedupe_key
from klaviyo_pipeline.local_klaviyo.ids import new_klaviyo_id
from klaviyo_pipeline.local_klaviyo.jobs import COMPLETE, ImportJob, ImportRow, ImportRowError
from klaviyo_pipeline.local_klaviyo.profiles import (
    ProfileConflictError,
    ProfileNotFoundError,
    ProfileStore,
    StoredProfile,
)
from klaviyo_pipeline.local_klaviyo.rules import EventInput, ProfileInput

EventGroup = tuple[ProfileInput, list[EventInput]]


@dataclass
class ProfileWrite:
    """Profile after a profile-import request, copied while the lock was held."""

    profile_id: str
    attributes: dict[str, Any]
    created: bool


@dataclass
class IngestResult:
    """Counts of one events request."""

    received: int
    stored: int
    duplicates: int


def conflict_error(error: ProfileConflictError) -> ApiError:
    """Build Klaviyo's 409 ``duplicate_profile`` error for a profile conflict."""
    return ApiError(
        status=409,
        code="duplicate_profile",
        detail="A profile already exists with one of these identifiers.",
        pointer="/data/attributes",
        meta={"duplicate_profile_id": error.duplicate_profile_id},
    )


def profile_not_found_error(error: ProfileNotFoundError, pointer: str) -> ApiError:
    """Build the 400 error for a request that names a profile id the account does not contain."""
    return invalid(f"Profile {error.profile_id!r} does not exist.", pointer=pointer + "/id")


class Account:
    """Profiles, events and bulk import jobs of one account."""

    def __init__(self, job_steps: int) -> None:
        """Create an empty account.

        Args:
            job_steps: Number of job reads after which a bulk import job is complete.
        """
        if job_steps < 0:
            raise ValueError(f"job_steps must not be negative, got {job_steps}")
        self._job_steps = job_steps
        self._lock = threading.Lock()
        self._profiles = ProfileStore()
        self._events = EventStore()
        self._jobs: dict[str, ImportJob] = {}

    def reset(self) -> None:
        """Delete all profiles, events and jobs."""
        with self._lock:
            self._profiles = ProfileStore()
            self._events = EventStore()
            self._jobs = {}

    def event_records(self) -> list[dict[str, Any]]:
        """Return the stored events in arrival order."""
        with self._lock:
            return self._events.records()

    def profile_records(self) -> list[dict[str, Any]]:
        """Return the stored profiles in creation order."""
        with self._lock:
            return self._profiles.records()

    def ingest_events(
        self,
        groups: list[EventGroup],
        received_at: datetime,
        endpoint: str,
        reject_repeated_keys: bool,
    ) -> IngestResult:
        """Create or update each group's profile and store its events, de-duplicated.

        The whole request is checked before anything is written, so a rejected request
        changes nothing.

        Args:
            groups: Profiles with their events, in request order.
            received_at: Time the request was received.
            endpoint: Route name recorded with each event.
            reject_repeated_keys: Reject the request when two of its events share a
                de-duplication key, as Klaviyo's bulk endpoint does.

        Raises:
            ApiError: 400 for an unknown profile id or a repeated key in the request.
        """
        with self._lock:
            identities = self._request_identities(groups)
            if reject_repeated_keys:
                _check_repeated_keys(groups, identities)

            stored = 0
            received = 0
            for profile_input, events in groups:
                result = self._profiles.upsert(profile_input, received_at, on_conflict="keep_first")
                profile = result.profile
                for event in events:
                    received += 1
                    key = dedupe_key(profile.id, event)
                    if self._events.add(event, profile.id, key, received_at, endpoint):
                        stored += 1
                        _record_event_date(profile, event)
            return IngestResult(received=received, stored=stored, duplicates=received - stored)

    def upsert_profile(self, profile_input: ProfileInput, now: datetime) -> ProfileWrite:
        """Create or update one profile, as ``POST /api/profile-import`` does.

        Raises:
            ApiError: 409 ``duplicate_profile`` when the identifiers match two profiles,
                400 for an unknown profile id.
        """
        with self._lock:
            try:
                result = self._profiles.upsert(profile_input, now, on_conflict="raise")
            except ProfileConflictError as error:
                raise conflict_error(error) from None
            except ProfileNotFoundError as error:
                raise profile_not_found_error(error, profile_input.pointer) from None
            return ProfileWrite(
                profile_id=result.profile.id,
                attributes=result.profile.to_attributes(),
                created=result.created,
            )

    def create_job(
        self,
        rows: list[ImportRow],
        list_ids: list[str],
        now: datetime,
        base_url: str,
        fields: list[str] | None,
    ) -> dict[str, Any]:
        """Create a bulk import job and return its resource object.

        With ``job_steps`` 0 the job completes at once. ``base_url`` and ``fields`` are
        passed to ``ImportJob.to_resource``, which runs under the lock.
        """
        with self._lock:
            job = ImportJob(
                id=new_klaviyo_id(),
                created_at=now,
                steps=self._job_steps,
                rows=rows,
                list_ids=list_ids,
                total_count=len(rows),
            )
            self._jobs[job.id] = job
            if self._job_steps == 0:
                self._complete_job(job, now)
            return job.to_resource(base_url, fields)

    def read_job(
        self, job_id: str, now: datetime, base_url: str, fields: list[str] | None
    ) -> tuple[dict[str, Any], list[str]] | None:
        """Advance a job one step and return its resource object and list ids.

        Returns None if the job does not exist.
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.advance(now):
                self._complete_job(job, now)
            return job.to_resource(base_url, fields), list(job.list_ids)

    def job_errors(self, job_id: str) -> list[ImportRowError] | None:
        """Return the import errors of a job (empty until it completes), or None."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            return list(job.errors) if job.status == COMPLETE else []

    def _complete_job(self, job: ImportJob, now: datetime) -> None:
        errors: list[ImportRowError] = []
        for row in job.rows:
            if row.error is not None:
                errors.append(row.error)
                continue
            assert row.profile is not None
            try:
                result = self._profiles.upsert(row.profile, now, on_conflict="raise")
            except ProfileConflictError as error:
                errors.append(
                    ImportRowError(
                        code="duplicate_profile",
                        title=TITLES["duplicate_profile"],
                        detail=(
                            f"{error.field_name} belongs to another profile "
                            f"({error.duplicate_profile_id})."
                        ),
                        pointer=row.profile.pointer + "/attributes/" + error.field_name,
                        original_payload=row.original_payload,
                    )
                )
                continue
            except ProfileNotFoundError as error:
                errors.append(
                    ImportRowError(
                        code="invalid",
                        title="Invalid input",
                        detail=f"Profile {error.profile_id!r} does not exist.",
                        pointer=row.profile.pointer + "/id",
                        original_payload=row.original_payload,
                    )
                )
                continue
            self._profiles.add_to_lists(result.profile, job.list_ids)
        job.complete(now, errors)

    def _request_identities(self, groups: list[EventGroup]) -> list[str]:
        """Return the profile identity of each group without writing anything.

        Existing profiles are identified by their id. Profiles that the request creates get
        a provisional identity shared by groups with a common identifier.
        """
        identities: list[str] = []
        provisional: dict[tuple[str, str], str] = {}
        for index, (profile_input, _) in enumerate(groups):
            try:
                profile_id = self._profiles.find(profile_input)
            except ProfileNotFoundError as error:
                raise profile_not_found_error(error, profile_input.pointer) from None
            if profile_id is None:
                identifiers = [
                    (name, value.lower() if name == "email" else value)
                    for name, value in profile_input.identifiers().items()
                ]
                profile_id = next(
                    (provisional[item] for item in identifiers if item in provisional),
                    f"new-{index}",
                )
                for item in identifiers:
                    provisional.setdefault(item, profile_id)
            identities.append(profile_id)
        return identities


def _check_repeated_keys(groups: list[EventGroup], identities: list[str]) -> None:
    first_pointers: dict[DedupeKey, str] = {}
    for (_, events), identity in zip(groups, identities, strict=True):
        for event in events:
            key = dedupe_key(identity, event)
            first_pointer = first_pointers.get(key)
            if first_pointer is None:
                first_pointers[key] = event.pointer
                continue
            member = "unique_id" if event.unique_id is not None else "time"
            raise invalid(
                f"Event repeats the profile, metric and {member} of the event at "
                f"{first_pointer}, so no events were processed.",
                pointer=f"{event.pointer}/attributes/{member}",
            )


def _record_event_date(profile: StoredProfile, event: EventInput) -> None:
    event_date = event.time.isoformat()
    if profile.last_event_date is None or event_date > profile.last_event_date:
        profile.last_event_date = event_date
