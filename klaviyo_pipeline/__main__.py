"""Command line: validate a config, or sync one partition without starting the Dagster UI.

python -m klaviyo_pipeline validate [--config PATH]
python -m klaviyo_pipeline run --partition 2019-10-01 [--config PATH] [--local-klaviyo]
"""

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from klaviyo_pipeline.config import CONFIG_ENV_VAR, ConfigError, load_config

LOCAL_API_KEY = "pk_local_example_key"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m klaviyo_pipeline", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check the config file and exit")
    validate.add_argument(
        "--config", help=f"config file (default: ${CONFIG_ENV_VAR} or the bundled example)"
    )

    run = commands.add_parser("run", help="materialize every asset of one partition")
    run.add_argument(
        "--config", help=f"config file (default: ${CONFIG_ENV_VAR} or the bundled example)"
    )
    run.add_argument("--partition", required=True, help="partition day, YYYY-MM-DD")
    run.add_argument(
        "--local-klaviyo",
        action="store_true",
        help="start the local Klaviyo server on 127.0.0.1 and sync to it instead of Klaviyo",
    )
    return parser


@contextlib.contextmanager
def _local_klaviyo(enabled: bool, output: Path) -> Iterator[object | None]:
    if not enabled:
        yield None
        return
    from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer

    with LocalKlaviyoServer(port=0) as server:
        os.environ["KLAVIYO_BASE_URL"] = server.base_url
        os.environ["KLAVIYO_API_KEY"] = LOCAL_API_KEY
        print(f"Local Klaviyo server at {server.base_url}")
        try:
            yield server
        finally:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(
                json.dumps({"events": server.events(), "profiles": server.profiles()}, indent=1)
            )
            print(f"Events and profiles stored by the local Klaviyo server: {output}")


def _run(config_path: str | None, partition: str, local: bool) -> int:
    from dagster import DagsterInstance, materialize

    from klaviyo_pipeline.config import resolve_path
    from klaviyo_pipeline.definitions import build_definitions
    from klaviyo_pipeline.partitions import daily_partitions

    config = load_config(config_path)
    output = Path(resolve_path(config, ".klaviyo_pipeline/local_klaviyo_store.json"))
    if local:
        # A new local server contains nothing yet, so the sync log of earlier local runs
        # does not apply: start from an empty one next to the server's store.
        state = Path(resolve_path(config, ".klaviyo_pipeline/local_klaviyo_state.duckdb"))
        state.unlink(missing_ok=True)
        sync = config.sync.model_copy(update={"state_database": str(state)})
        config = config.model_copy(update={"sync": sync})
    partitions = daily_partitions(config.partitions)
    if not partitions.has_partition_key(partition):
        first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
        print(
            f"invalid partition {partition!r}: expected a day YYYY-MM-DD from {first} to {last} "
            "(partitions.start and partitions.end in the config)",
            file=sys.stderr,
        )
        return 2
    with _local_klaviyo(local, output):
        definitions = build_definitions(config)
        instance = (
            DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
        )
        result = materialize(
            list(definitions.assets or []),
            partition_key=partition,
            resources=dict(definitions.resources or {}),
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
        _print_summary(result, partition)
        if result.success:
            state = resolve_path(config, config.sync.state_database)
            print(f"Sync log: {state} (DuckDB, table sync_log)")
    return 0 if result.success else 1


def _print_summary(result: object, partition: str) -> None:
    for event in result.get_asset_materialization_events():  # type: ignore[attr-defined]
        materialization = event.event_specific_data.materialization
        name = materialization.asset_key.to_user_string()
        if not name.endswith("_sync"):
            continue
        metadata = {key: value.value for key, value in materialization.metadata.items()}
        unit = "rows read" if name == "klaviyo_event_sync" else "profile records"
        print(f"\n{name} [{partition}]: {metadata.get('rows_read', 0):,} {unit}")
        print(
            "  "
            + ", ".join(
                f"{state} {metadata.get(f'rows_{state}', 0):,}"
                for state in ("sent", "rejected", "skipped", "deduplicated", "failed")
            )
        )
        for metric, counts in (metadata.get("metrics") or {}).items():
            print(
                f"  {metric}: "
                + ", ".join(f"{status} {count:,}" for status, count in counts.items())
            )
        reasons = {key: count for key, count in (metadata.get("reasons") or {}).items() if count}
        if reasons:
            print("  reasons: " + ", ".join(f"{key} {count:,}" for key, count in reasons.items()))
        for note in str(metadata.get("notes") or "").splitlines():
            print(f"  note: {note.removeprefix('- ')}")
        if metadata.get("dry_run"):
            print("  dry run: nothing was sent (no API key is set)")
    if not result.success:  # type: ignore[attr-defined]
        for event in result.all_events:  # type: ignore[attr-defined]
            if event.is_step_failure and event.step_failure_data.error is not None:
                error = event.step_failure_data.error
                cause = error.cause or error
                print(f"\n{event.step_key} failed: {cause.message.strip()}", file=sys.stderr)
        print("\nThe run failed; see the errors above.", file=sys.stderr)


def _missing_source_file(config: object) -> str | None:
    """Return an error when a file source without a date placeholder matches no file."""
    import glob

    from klaviyo_pipeline.sources.files import names_partition, resolve_location

    source = config.source  # type: ignore[attr-defined]
    if source.kind != "files" or names_partition(source.path) or "://" in source.path:
        return None
    location = resolve_location(source.path, config.base_dir)  # type: ignore[attr-defined]
    if glob.glob(location):
        return None
    return f"invalid config: source.path: no file matches {location}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "validate":
            config = load_config(args.config)
            problem = _missing_source_file(config)
            if problem:
                print(problem, file=sys.stderr)
                return 2
            print(
                f"Config is valid: source {config.source.kind}, "
                f"partitions from {config.partitions.start}"
            )
            return 0
        return _run(args.config, args.partition, args.local_klaviyo)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
