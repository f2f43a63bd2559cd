"""A client of the dagster-webserver GraphQL API with the calls that the end-to-end test makes."""

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from klaviyo_pipeline.definitions import JOB_NAME

LOCATION_NAME = "klaviyo_pipeline"
# The repository that Dagster makes of a code location's Definitions object.
REPOSITORY_NAME = "__repository__"
PARTITION_SET_NAME = f"{JOB_NAME}_partition_set"
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
TERMINAL_BACKFILL_STATUSES = {
    "COMPLETED",
    "COMPLETED_SUCCESS",
    "COMPLETED_FAILED",
    "FAILED",
    "CANCELED",
}
POLL_INTERVAL_SECONDS = 2.0

_REPOSITORY = {"repositoryLocationName": LOCATION_NAME, "repositoryName": REPOSITORY_NAME}

_LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""

_LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""

_REEXECUTE = """
mutation Reexecute($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""

_RUNS = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
    ... on Error { message }
  }
}
"""

_BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status partitionNames }
    ... on Error { message }
  }
}
"""

_STEP_STATS = """
query StepStats($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { stepStats { stepKey status startTime endTime } }
    ... on Error { message }
  }
}
"""

_MATERIALIZATIONS = """
query Materializations($path: [String!]!, $partitions: [String!]) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset {
      assetMaterializations(partitions: $partitions) {
        runId
        partition
        metadataEntries {
          label
          __typename
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
          ... on BoolMetadataEntry { boolValue }
          ... on JsonMetadataEntry { jsonString }
          ... on TextMetadataEntry { text }
          ... on MarkdownMetadataEntry { mdStr }
        }
      }
    }
  }
}
"""

_CONCURRENCY_LIMIT = """
query Pool($key: String!) {
  instance { concurrencyLimit(concurrencyKey: $key) { slotCount limit usingDefaultLimit } }
}
"""

_LOCATIONS = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""

_DAEMONS = """
query Daemons {
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } }
}
"""


class GraphQLError(RuntimeError):
    """A GraphQL request failed, or returned errors or an error result."""


@dataclass(frozen=True)
class Materialization:
    """One materialization of an asset partition, with its metadata as plain values."""

    run_id: str
    partition: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class StepStats:
    """Status and start and end time (Unix seconds) of one step of a run."""

    step_key: str
    status: str | None
    start_time: float | None
    end_time: float | None


class DagsterGraphQL:
    """Requests to ``/graphql`` of one dagster-webserver."""

    def __init__(self, base_url: str, timeout_seconds: float = 60.0) -> None:
        self.url = f"{base_url}/graphql"
        self.timeout_seconds = timeout_seconds

    def execute(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send one query; return its ``data``.

        Raises:
            GraphQLError: The request failed or the response contains ``errors``.
        """
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                payload = json.loads(response.read())
        except (urllib.error.URLError, TimeoutError) as error:
            raise GraphQLError(f"request to {self.url} failed: {error}") from error
        if payload.get("errors"):
            raise GraphQLError(f"{self.url} returned errors: {payload['errors']}")
        return payload["data"]

    # Launching

    def launch_partition_run(self, partition: str, run_config: Mapping[str, Any]) -> str:
        """Launch the job for one partition, as the launchpad does; return the run id."""
        params = {
            "selector": {**_REPOSITORY, "jobName": JOB_NAME},
            "runConfigData": dict(run_config),
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
        }
        result = _success(self.execute(_LAUNCH_RUN, {"params": params})["launchRun"])
        return str(result["run"]["runId"])

    def launch_backfill(self, partitions: Sequence[str], run_config: Mapping[str, Any]) -> str:
        """Launch a backfill of the job's partitions; return the backfill id."""
        params = {
            "selector": {"partitionSetName": PARTITION_SET_NAME, "repositorySelector": _REPOSITORY},
            "partitionNames": list(partitions),
            "fromFailure": False,
            "runConfigData": dict(run_config),
        }
        data = self.execute(_LAUNCH_BACKFILL, {"params": params})
        return str(_success(data["launchPartitionBackfill"])["backfillId"])

    def reexecute(self, parent_run_id: str) -> str:
        """Re-execute every step of a run, as the run page's re-execute button does."""
        params = {"parentRunId": parent_run_id, "strategy": "ALL_STEPS"}
        result = _success(self.execute(_REEXECUTE, {"params": params})["launchRunReexecution"])
        return str(result["run"]["runId"])

    # Reading

    def runs(self, run_ids: Sequence[str] = (), backfill_id: str | None = None) -> list[dict]:
        """Return the runs with these ids, or the runs of a backfill: id, status and tags."""
        run_filter: dict[str, Any] = {}
        if run_ids:
            run_filter["runIds"] = list(run_ids)
        if backfill_id:
            run_filter["tags"] = [{"key": "dagster/backfill", "value": backfill_id}]
        data = self.execute(_RUNS, {"filter": run_filter})["runsOrError"]
        return list(_success(data)["results"])

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        """Return the status and the partition names of a backfill."""
        data = self.execute(_BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        return _success(data)

    def step_stats(self, run_id: str) -> list[StepStats]:
        data = _success(self.execute(_STEP_STATS, {"runId": run_id})["runOrError"])
        return [
            StepStats(step["stepKey"], step["status"], step["startTime"], step["endTime"])
            for step in data["stepStats"]
        ]

    def materializations(
        self, asset: str, partitions: Sequence[str] | None = None
    ) -> list[Materialization]:
        """Return the materializations of an asset, newest first."""
        variables = {"path": [asset], "partitions": list(partitions) if partitions else None}
        data = _success(self.execute(_MATERIALIZATIONS, variables)["assetOrError"])
        return [
            Materialization(
                run_id=event["runId"],
                partition=event["partition"],
                metadata={
                    entry["label"]: _metadata_value(entry) for entry in event["metadataEntries"]
                },
            )
            for event in data["assetMaterializations"]
        ]

    def concurrency_limit(self, pool: str) -> dict[str, Any]:
        """Return the slot count, the limit and whether the pool uses the default limit."""
        return dict(self.execute(_CONCURRENCY_LIMIT, {"key": pool})["instance"]["concurrencyLimit"])

    # Waiting

    def wait_until_loaded(self, timeout_seconds: float, alive: Callable[[], None]) -> None:
        """Wait until the code location is loaded and every required daemon is healthy.

        Args:
            timeout_seconds: Time to wait in total.
            alive: Called before each poll; raises when a process of the stack has exited.

        Raises:
            GraphQLError: The code location failed to load.
            TimeoutError: Not ready in time; the message names what was not ready.
        """
        deadline = time.monotonic() + timeout_seconds
        state = "webserver not answering"
        while time.monotonic() < deadline:
            alive()
            try:
                state = self._readiness()
            except GraphQLError as error:
                if "failed to load" in str(error):
                    raise
                state = str(error)
            if state == "ready":
                return
            time.sleep(POLL_INTERVAL_SECONDS)
        raise TimeoutError(f"dagster not ready after {timeout_seconds:.0f} s: {state}")

    def _readiness(self) -> str:
        workspace = self.execute(_LOCATIONS)["workspaceOrError"]
        entries = _success(workspace)["locationEntries"]
        location = next((entry for entry in entries if entry["name"] == LOCATION_NAME), None)
        if location is None:
            return f"code location {LOCATION_NAME} not in the workspace"
        loaded = location["locationOrLoadError"] or {}
        if loaded.get("__typename") == "PythonError":
            raise GraphQLError(f"code location {LOCATION_NAME} failed to load: {loaded['message']}")
        if location["loadStatus"] != "LOADED" or loaded.get("__typename") != "RepositoryLocation":
            return f"code location {LOCATION_NAME} is {location['loadStatus']}"
        statuses = self.execute(_DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        unhealthy = [s["daemonType"] for s in statuses if s["required"] and not s["healthy"]]
        if unhealthy:
            return f"daemons not healthy yet: {unhealthy}"
        return "ready"

    def wait_for_runs(
        self, run_ids: Sequence[str], timeout_seconds: float, alive: Callable[[], None]
    ) -> dict[str, str]:
        """Poll until every run is in a terminal status; return the status by run id.

        Raises:
            TimeoutError: A run is not finished in time; the message lists the statuses.
        """
        deadline = time.monotonic() + timeout_seconds
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            alive()
            statuses = {run["runId"]: run["status"] for run in self.runs(run_ids)}
            if len(statuses) == len(run_ids) and set(statuses.values()) <= TERMINAL_RUN_STATUSES:
                return statuses
            time.sleep(POLL_INTERVAL_SECONDS)
        raise TimeoutError(f"runs not finished after {timeout_seconds:.0f} s: {statuses}")

    def wait_for_backfill(
        self, backfill_id: str, timeout_seconds: float, alive: Callable[[], None]
    ) -> str:
        """Poll until the backfill is in a terminal status and return it.

        Raises:
            TimeoutError: The backfill is not finished in time.
        """
        deadline = time.monotonic() + timeout_seconds
        status = "unknown"
        while time.monotonic() < deadline:
            alive()
            status = str(self.backfill(backfill_id)["status"])
            if status in TERMINAL_BACKFILL_STATUSES:
                return status
            time.sleep(POLL_INTERVAL_SECONDS)
        runs = self.runs(backfill_id=backfill_id)
        raise TimeoutError(
            f"backfill {backfill_id} is {status} after {timeout_seconds:.0f} s; runs: {runs}"
        )


def _success(result: dict[str, Any]) -> dict[str, Any]:
    """Return a union result, or raise with its message when it is an error type."""
    typename = result.get("__typename", "")
    if "message" in result or typename.endswith("Error") or typename.endswith("NotFound"):
        raise GraphQLError(f"{typename}: {result.get('message')}")
    return result


def _metadata_value(entry: dict[str, Any]) -> Any:
    for field in ("intValue", "floatValue", "boolValue", "text", "mdStr"):
        if field in entry:
            return entry[field]
    if "jsonString" in entry:
        return json.loads(entry["jsonString"])
    return entry["__typename"]
