"""Build the ordered, window-filtered query of one partition for either SQL engine."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from klaviyo_pipeline.config import SourceConfig
from klaviyo_pipeline.sources.query import (
    build_order_by,
    build_rename_projection,
    build_row_query,
    check_row_columns,
    describe_origin,
    row_column,
    wrap_row_query,
)
from klaviyo_pipeline.sources.timefilter import (
    Dialect,
    WindowFilter,
    build_window_filter,
    classify_time_column,
)
from klaviyo_pipeline.sources.window import PartitionWindow


@dataclass(frozen=True)
class Column:
    """A result column: its name and the engine's name of its type."""

    name: str
    type_name: str


@dataclass(frozen=True)
class QueryPlan:
    """The partition's queries and the values bound to their parameters."""

    select: str
    count: str
    params: dict[str, Any]
    columns: list[Column]
    window_filter: WindowFilter


Describe = Callable[[str], list[Column]]


def plan_partition_query(
    source: SourceConfig,
    window: PartitionWindow,
    relation: str,
    dialect: Dialect,
    describe: Describe,
    select_item: Callable[[Column], str],
    sort_key: Callable[[str], str],
) -> QueryPlan:
    """Plan the queries that read and count the rows of `window` from `relation`.

    `describe` returns the columns of a query without running it. `select_item` returns the
    select-list entry of a column (a cast where the engine's type would lose digits), and
    `sort_key` the expression that a tie-breaking column sorts on.

    Raises:
        ConfigError: if a mapped or the time column is missing or the time column has no
            usable type.
    """
    projection = "*"
    if source.columns:
        base_columns = describe(f"SELECT * FROM {relation}")
        projection = build_rename_projection(source, [column.name for column in base_columns])

    row_query = build_row_query(source, relation, projection)
    columns = describe(row_query)
    names = [column.name for column in columns]
    check_row_columns(source, names)

    time_type = next(column.type_name for column in columns if column.name == source.time_column)
    kind = classify_time_column(source, time_type, dialect, describe_origin(source))
    window_filter = build_window_filter(
        kind, row_column(source.time_column), window, source, dialect
    )

    select_list = ", ".join(select_item(column) for column in columns)
    filtered = wrap_row_query(row_query, select_list, window_filter.predicate)
    order_by = build_order_by(names, source.time_column, sort_key)
    return QueryPlan(
        select=f"{filtered}\n{order_by}",
        count=wrap_row_query(row_query, "count(*)", window_filter.predicate),
        params=window_filter.params,
        columns=columns,
        window_filter=window_filter,
    )
