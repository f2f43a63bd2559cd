"""Dry-run Klaviyo client: validates and records every body, and sends nothing.

A body is checked against the SDK's request models (the validation the SDK runs before it
sends) and against Klaviyo's documented rules in ``validation``. Invalid rows raise the
same errors as Klaviyo would return, so a dry run shows which rows a real run would
reject. The sync records every row that reaches a dry-run client as ``skipped`` with
reason ``dry_run``, keeping the would-be error code and detail.
"""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
from openapi_client.models.events_bulk_create_job import EventsBulkCreateJob
from openapi_client.models.profile_import_job_create_query import ProfileImportJobCreateQuery

from klaviyo_pipeline.klaviyo import endpoints
from klaviyo_pipeline.klaviyo.client import ImportJob
from klaviyo_pipeline.klaviyo.errors import KlaviyoValidationError
from klaviyo_pipeline.klaviyo.fake import FakeKlaviyoClient
from klaviyo_pipeline.klaviyo.sdk_client import validation_details

# Proposed addition to ``outcomes.Reason``: a dry run recorded the row instead of sending it.
DRY_RUN = "dry_run"


class DryRunKlaviyoClient(FakeKlaviyoClient):
    """Client that validates and records request bodies and never sends a request.

    Its `requests` list contains every body a real run would send. Import jobs complete on
    the first poll, with the rows that fail the documented rules as import errors.
    """

    dry_run = True

    def __init__(self) -> None:
        super().__init__(job_steps=1, errors_page_size=100)

    def __repr__(self) -> str:
        return "DryRunKlaviyoClient()"

    def send_event_bulk(self, body: bytes) -> None:
        """Validate one encoded bulk event body and record it."""
        _validate_model(EventsBulkCreateJob, body, endpoints.EVENT_BULK_CREATE)
        super().send_event_bulk(body)

    def create_profile_import_job(self, body: bytes) -> ImportJob:
        """Validate one encoded profile import body, record it and return a local job."""
        _validate_model(ProfileImportJobCreateQuery, body, endpoints.PROFILE_BULK_IMPORT)
        return super().create_profile_import_job(body)

    def _store_event(
        self, identity: str, profile: dict[str, Any], attributes: dict[str, Any]
    ) -> None:
        # A dry run keeps the request bodies only, so memory grows once per event, not twice.
        return None

    def _upsert_profile(self, attributes: dict[str, Any]) -> None:
        return None


def _validate_model(model: type[pydantic.BaseModel], body: bytes, endpoint: str) -> None:
    """Check an encoded body against the SDK's model; a body that is not JSON is left to the fake.

    The fake returns 400 for it.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    try:
        model.model_validate(document)
    except pydantic.ValidationError as error:
        raise KlaviyoValidationError(endpoint, validation_details(error, from_call=False)) from None
