"""Load and validate the pipeline config file: partitions, source, destination, normalize, sync."""

import json
import os
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from klaviyo_pipeline import settings

CONFIG_ENV_VAR = "KLAVIYO_PIPELINE_CONFIG"
EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "rees46" / "config.yaml"


class ConfigError(ValueError):
    """Invalid pipeline configuration; the message names the key path, the value and the fix."""


def _check_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError("expected an IANA timezone such as 'UTC' or 'Europe/Berlin'") from error
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartitionsConfig(_Strict):
    """Daily partitions: first day and the timezone in which a day starts."""

    start: date
    end: date | None = None
    timezone: str = "UTC"

    _tz = field_validator("timezone")(_check_timezone)


class SourceConfig(_Strict):
    """Source of a partition's rows, and the mapping of their columns to event fields.

    kind:
        ``files``: Parquet, CSV or NDJSON files matched by ``path`` (a glob that may contain
        ``{date}``, the partition day as YYYY-MM-DD, and ``{year}``, ``{month}``, ``{day}``).
        ``duckdb``: a table or query in the DuckDB database at ``database``.
        ``postgres``: a table or query on the PostgreSQL server at ``dsn``.
    select:
        SQL that returns one row per event. ``{source}`` stands for the file relation
        or the table. Columns named ``name``, ``id``, ``timestamp``, ``user.email``,
        ``data.price`` and so on become those event fields.
    columns:
        Alternative to ``select``: event field to source column, for example
        ``{"user.id": "customer_id"}``. Unlisted columns are kept under their own name.
    time_column:
        Column of the event time, in the rows after ``select`` or ``columns``.
    """

    kind: Literal["files", "duckdb", "postgres"]
    path: str | None = None
    format: Literal["parquet", "csv", "ndjson"] | None = None
    hive_partitioning: bool = False
    database: str | None = None
    dsn: str | None = None
    table: str | None = None
    select: str | None = None
    columns: dict[str, str] | None = None
    time_column: str = "timestamp"
    timezone: str | None = None
    timestamp_unit: Literal["s", "ms", "us", "ns"] = "ms"
    chunk_rows: int = Field(default=100_000, gt=0)

    _tz = field_validator("timezone")(_check_timezone)

    @model_validator(mode="after")
    def _check_kind_fields(self) -> "SourceConfig":
        if self.kind == "files" and not self.path:
            raise ValueError(
                "kind 'files' needs 'path', a file or glob such as 'exports/*.parquet'"
            )
        if self.kind == "duckdb" and not self.database:
            raise ValueError("kind 'duckdb' needs 'database', the path of a DuckDB file")
        if self.kind == "postgres" and not self.dsn:
            raise ValueError(
                "kind 'postgres' needs 'dsn', for example 'postgresql://127.0.0.1/test'"
            )
        if self.kind in ("duckdb", "postgres") and not (self.table or self.select):
            raise ValueError(f"kind '{self.kind}' needs 'table' or 'select'")
        if self.select and self.columns:
            raise ValueError("'select' and 'columns' exclude each other: use one")
        return self


class NormalizeConfig(_Strict):
    """Options for cleaning identities, values and properties before they become records."""

    default_region: str | None = "US"
    lowercase_email: bool = False
    flatten_properties: bool = False
    locale_values: bool = False
    drop_invalid_currency: bool = True
    external_id_too_long: Literal["reject", "drop"] = "reject"
    unset_profile_fields: list[str] = Field(default_factory=list)
    prefix_unique_id_with_metric: bool = False
    user_traits_to_profile: bool = False

    @field_validator("default_region")
    @classmethod
    def _check_region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"[A-Z]{2}", value):
            raise ValueError("expected a two-letter region code such as 'US' or 'DE'")
        return value


class RateLimitConfig(_Strict):
    """Requests allowed per second (burst) and per minute (steady) for one endpoint."""

    burst: int = Field(gt=0)
    steady: int = Field(gt=0)


def _default_rate_limits() -> dict[str, RateLimitConfig]:
    return {
        name: RateLimitConfig(burst=burst, steady=steady)
        for name, (burst, steady) in settings.RATE_LIMITS.items()
    }


class SyncConfig(_Strict):
    """Batch sizes, pacing, retries and state for the event and profile syncs."""

    dry_run: bool = False
    state_database: str = ".klaviyo_pipeline/state.duckdb"
    event_batch_size: int = Field(default=settings.MAX_EVENTS_PER_BULK_REQUEST, gt=0)
    profile_batch_size: int = Field(default=settings.MAX_PROFILES_PER_IMPORT_JOB, gt=0)
    max_attempts: int = Field(default=6, gt=0, le=50)
    max_in_flight: int = Field(default=2, gt=0, le=8)
    backoff_base_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    read_timeout_seconds: float = Field(default=60.0, gt=0)
    job_poll_interval_seconds: float = Field(default=1.0, gt=0)
    job_poll_timeout_seconds: float = Field(default=600.0, gt=0)
    backfill_after_days: int | None = Field(default=7, ge=0)
    full_resend: bool = False
    max_rejected_share: float = Field(default=0.05, ge=0, le=1)
    rate_limits: dict[str, RateLimitConfig] = Field(default_factory=_default_rate_limits)
    # The request bodies follow the SDK's models for its own revision; another revision
    # is for testing how a retired one fails.
    api_revision: str = Field(default=settings.API_REVISION, pattern=r"^\d{4}-\d{2}-\d{2}$")

    @field_validator("event_batch_size")
    @classmethod
    def _check_event_batch(cls, value: int) -> int:
        if value > settings.MAX_EVENTS_PER_BULK_REQUEST:
            raise ValueError(
                f"Klaviyo accepts at most {settings.MAX_EVENTS_PER_BULK_REQUEST} events "
                "per bulk request"
            )
        return value

    @field_validator("profile_batch_size")
    @classmethod
    def _check_profile_batch(cls, value: int) -> int:
        if value > settings.MAX_PROFILES_PER_IMPORT_JOB:
            raise ValueError(
                f"Klaviyo accepts at most {settings.MAX_PROFILES_PER_IMPORT_JOB} profiles "
                "per import job"
            )
        return value

    @field_validator("rate_limits")
    @classmethod
    def _merge_rate_limits(cls, value: dict[str, RateLimitConfig]) -> dict[str, RateLimitConfig]:
        unknown = sorted(set(value) - set(settings.RATE_LIMITS))
        if unknown:
            raise ValueError(
                f"unknown endpoint {unknown[0]!r}; expected one of {sorted(settings.RATE_LIMITS)}"
            )
        return {**_default_rate_limits(), **value}


class EcommerceConfig(_Strict):
    """Optional fan-out of one Ordered Product event per line item of a Placed Order."""

    ordered_product: bool = False
    order_metric: str = "Placed Order"
    line_item_metric: str = "Ordered Product"
    items_path: str = "nested"
    order_id_path: str = "data.id"
    line_price_path: str = "data.price"
    line_quantity_path: str = "data.quantity"


class PipelineConfig(_Strict):
    """The whole validated config file."""

    partitions: PartitionsConfig
    source: SourceConfig
    destination: dict[str, Any]
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    ecommerce: EcommerceConfig = Field(default_factory=EcommerceConfig)
    base_dir: str = "."


def _format_location(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location if part not in ("function-after",)]
    return ".".join(parts) if parts else "(top level)"


def _known_keys(location: tuple[Any, ...]) -> list[str]:
    """Return the keys allowed next to the unknown key at `location`."""
    model: Any = PipelineConfig
    for part in location[:-1]:
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def _format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = _format_location(item["loc"])
        value = item.get("input")
        shown = json.dumps(value, default=str)[:80] if value is not None else "missing"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = f"unknown key; expected one of {_known_keys(item['loc'])}"
        lines.append(f"{location}: {message} (got {shown})")
    return "invalid config:\n  " + "\n  ".join(lines)


KLAVIYO_PACKAGE = "@walkeros/server-destination-klaviyo"


def _klaviyo_destinations(destinations: dict[str, Any], path: str) -> list[tuple[str, Any]]:
    """Return the (path, destination) pairs that are Klaviyo destinations."""
    found = []
    for name, destination in destinations.items():
        if not isinstance(destination, dict):
            continue
        package = str(destination.get("package", ""))
        # A package may carry a version, as in "@walkeros/server-destination-klaviyo@4.4.0".
        is_klaviyo = package == KLAVIYO_PACKAGE or package.startswith(KLAVIYO_PACKAGE + "@")
        if is_klaviyo or (name == "klaviyo" and not package):
            found.append((f"{path}.{name}", destination))
    return found


def unwrap_flow_file(raw: dict[str, Any]) -> dict[str, Any]:
    """Return the destination config from a walkerOS flow file, or the config as it is.

    Accepted: `{destinations: {ID: {package, config}}}` and the versioned form
    `{version, flows: {NAME: {destinations: {...}}}}`. The destination is the one whose
    package is @walkeros/server-destination-klaviyo, or whose id is `klaviyo`.
    """
    candidates: list[tuple[str, Any]] = []
    if isinstance(raw.get("destinations"), dict):
        candidates = _klaviyo_destinations(raw["destinations"], "destination.destinations")
    elif isinstance(raw.get("flows"), dict):
        for flow_name, flow in raw["flows"].items():
            if isinstance(flow, dict) and isinstance(flow.get("destinations"), dict):
                path = f"destination.flows.{flow_name}.destinations"
                candidates.extend(_klaviyo_destinations(flow["destinations"], path))
    else:
        return raw

    if len(candidates) != 1:
        found = ", ".join(path for path, _ in candidates) or "none"
        raise ConfigError(
            f"invalid config: destination: a walkerOS flow file needs exactly one destination "
            f"with package {KLAVIYO_PACKAGE!r} (found: {found})"
        )
    path, destination = candidates[0]
    if not isinstance(destination.get("config"), dict):
        raise ConfigError(
            f"invalid config: {path}.config: missing; expected the destination config"
        )
    return destination["config"]


def _load_flow_reference(value: Any, base_dir: Path | str) -> Any:
    """Read `destination: flow.json`, a path to a walkerOS flow file or destination config."""
    if not isinstance(value, str):
        return value
    path = Path(value) if Path(value).is_absolute() else Path(base_dir) / value
    if not path.is_file():
        raise ConfigError(
            f"invalid config: destination: expected a destination config object or the path "
            f"of a walkerOS flow file; file not found: {path}"
        )
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(
            f"invalid config: destination: {path} is not valid JSON or YAML: {error}"
        ) from None


def parse_config(raw: dict[str, Any], base_dir: Path | str = ".") -> PipelineConfig:
    """Validate a config mapping and return it as a `PipelineConfig`.

    Raises:
        ConfigError: naming every invalid key path, its value and what is expected.
    """
    if not isinstance(raw, dict):
        raise ConfigError(
            f"invalid config: expected a mapping at the top level, got {type(raw).__name__}"
        )

    # Imported here because the mapping package validates rules with config errors.
    from klaviyo_pipeline.mapping.validate import validate_destination

    raw = dict(raw)
    raw["destination"] = _load_flow_reference(raw.get("destination"), base_dir)
    if isinstance(raw.get("destination"), dict):
        raw["destination"] = unwrap_flow_file(raw["destination"])
    raw.setdefault("base_dir", str(base_dir))

    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error)) from None

    validate_destination(config.destination, config.ecommerce)
    return config


def load_config(path: str | os.PathLike[str] | None = None) -> PipelineConfig:
    """Read the config file at `path`, or at $KLAVIYO_PIPELINE_CONFIG, or the bundled example."""
    explicit = path is not None
    if path is None:
        path = os.environ.get(CONFIG_ENV_VAR) or EXAMPLE_CONFIG
    path = Path(path)
    if not path.is_file():
        where = "" if explicit else f" (set {CONFIG_ENV_VAR} to a YAML or JSON file)"
        raise ConfigError(f"config file not found: {path}{where}")

    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"config file {path} is not valid YAML or JSON: {error}") from None
    return parse_config(raw, base_dir=path.parent.resolve())


def resolve_path(config: PipelineConfig, value: str) -> str:
    """Resolve a relative path in the config against the config file's folder."""
    if "://" in value or os.path.isabs(value):
        return value
    return str(Path(config.base_dir) / value)


def resolve_env(value: Any) -> Any:
    """Replace a '$NAME' string with the environment variable NAME; other values pass through."""
    if isinstance(value, str) and re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", value):
        return os.environ.get(value[1:])
    return value
