"""SQL text shared by the DuckDB and PostgreSQL readers: quoting, renames, wrapping and order."""

from collections import Counter
from collections.abc import Callable, Sequence

from klaviyo_pipeline.config import ConfigError, SourceConfig

SOURCE_PLACEHOLDER = "{source}"


class SourceError(RuntimeError):
    """Reading a partition failed; the message names the config key that the failure points to."""


def quote_identifier(name: str) -> str:
    """Quote `name` as an SQL identifier, so dots, spaces and quotes stay part of the name."""
    return '"' + name.replace('"', '""') + '"'


def quote_qualified_name(name: str) -> str:
    """Quote a dotted table name such as ``analytics.events`` part by part."""
    return ".".join(quote_identifier(part) for part in name.split("."))


def config_key(source: SourceConfig) -> str:
    """Return the config key that defines the rows, for error messages."""
    if source.select:
        return "source.select"
    if source.kind == "files":
        return "source.path"
    return "source.table"


def describe_origin(source: SourceConfig) -> str:
    """Describe where the rows come from, for error messages."""
    if source.select:
        return "the rows of source.select"
    if source.kind == "files":
        return f"the files of source.path {source.path!r}"
    return f"table {source.table!r}"


def build_row_query(source: SourceConfig, relation: str, projection: str = "*") -> str:
    """Return the query of the source's rows before the window filter.

    `relation` replaces ``{source}`` in `source.select`. Without a select, the query reads
    `projection` (the renames of `source.columns`, or every column) from `relation`.

    Raises:
        ConfigError: if a files source has a select without ``{source}``.
    """
    if not source.select:
        return f"SELECT {projection} FROM {relation}"

    text = _strip_statement_end(source.select)
    if SOURCE_PLACEHOLDER not in text and source.kind == "files":
        raise ConfigError(
            "source.select: missing {source}; write FROM {source} where the files are read"
        )
    return text.replace(SOURCE_PLACEHOLDER, relation)


def _strip_statement_end(text: str) -> str:
    """Remove trailing semicolons and whole-line "--" comments, so the query nests in a FROM."""
    while True:
        text = text.strip()
        lines = text.splitlines()
        if text.endswith(";"):
            text = text[:-1]
        elif len(lines) > 1 and lines[-1].lstrip().startswith("--"):
            text = "\n".join(lines[:-1])
        else:
            return text


def build_rename_projection(source: SourceConfig, source_columns: Sequence[str]) -> str:
    """Return the select list that renames columns as `source.columns` maps them.

    A source column mapped to several event fields appears once per field. Unlisted columns keep
    their own name.

    Raises:
        ConfigError: if a mapped column does not exist or two output columns share a name.
    """
    mapping = source.columns or {}
    available = set(source_columns)
    for field, column in mapping.items():
        if column not in available:
            raise ConfigError(
                f"source.columns.{field}: column {column!r} not found in {describe_origin(source)}"
                f"; available columns: {', '.join(source_columns)}"
            )

    fields_by_column: dict[str, list[str]] = {}
    for field, column in mapping.items():
        fields_by_column.setdefault(column, []).append(field)

    items: list[str] = []
    output_names: list[str] = []
    for column in source_columns:
        for field in fields_by_column.get(column, [column]):
            quoted = quote_identifier(column)
            items.append(quoted if field == column else f"{quoted} AS {quote_identifier(field)}")
            output_names.append(field)

    _check_unique(output_names, "source.columns", "the renamed rows")
    return ", ".join(items)


def check_row_columns(source: SourceConfig, names: Sequence[str]) -> None:
    """Check that the row columns have unique names and include the time column.

    Raises:
        ConfigError: naming the duplicate or the missing time column and the available columns.
    """
    _check_unique(names, config_key(source), describe_origin(source))
    if source.time_column not in names:
        raise ConfigError(
            f"source.time_column: column {source.time_column!r} not found in "
            f"{describe_origin(source)}; available columns: {', '.join(names)}"
        )


def _check_unique(names: Sequence[str], key: str, origin: str) -> None:
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ConfigError(
            f"{key}: column {duplicates[0]!r} appears more than once in {origin}; "
            "give each column its own name"
        )


ROWS_ALIAS = "source_rows"


def wrap_row_query(row_query: str, select_list: str, predicate: str) -> str:
    """Select `select_list` from the rows of `row_query` that satisfy `predicate`."""
    # The line breaks keep a trailing "--" comment in the row query from hiding the parenthesis.
    return f"SELECT {select_list} FROM (\n{row_query}\n) AS {ROWS_ALIAS} WHERE {predicate}"


def build_order_by(names: Sequence[str], time_column: str, sort_key: Callable[[str], str]) -> str:
    """Order by the time column, then by every other column, so re-runs give the same chunks.

    The keys are the columns of the row query, not of the select list, so a column that the
    select list casts still sorts by its source type. `sort_key` turns a column reference into
    the expression sorted on, for engines where some column types cannot be compared.
    """
    keys = [row_column(time_column)]
    keys += [sort_key(row_column(name)) for name in names if name != time_column]
    return "ORDER BY " + ", ".join(keys)


def row_column(name: str) -> str:
    """Return the reference to column `name` of the wrapped row query."""
    return f"{ROWS_ALIAS}.{quote_identifier(name)}"
