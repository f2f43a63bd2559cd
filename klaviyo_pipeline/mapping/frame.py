"""Columns of a normalized events DataFrame seen as walkerOS event paths.

Columns carry dotted event paths as names (`user.email`, `data.price`, `nested`). A path
resolves to one Python value per row, with UNDEFINED where the row has no value, so the
mapping plan can work a column at a time. NULL cells are UNDEFINED: they are omitted
before mapping instead of poisoning the object that contains them.
"""

import decimal
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from klaviyo_pipeline.mapping.values import UNDEFINED, _walk

# Columns the normalizer adds for its own use; they are not event fields.
INTERNAL_COLUMNS = frozenset({"row_id", "name_key", "time", "partition"})


def column_values(series: pd.Series) -> list[Any]:
    """Return a column as Python values with UNDEFINED for NULL, NaN and NA cells."""
    if series.dtype == object:
        values = series.tolist()
        # pd.isna finds every value below and more (NaT, Decimal NaN), so without any hit
        # the values are all defined. It raises on a signaling Decimal NaN.
        try:
            if not pd.isna(series.to_numpy()).any():
                return values
        except decimal.InvalidOperation:
            pass
        return [
            UNDEFINED
            if value is None or value is pd.NA or (isinstance(value, float) and value != value)
            else value
            for value in values
        ]
    missing = series.isna().to_numpy()
    values = series.tolist()
    if not missing.any():
        return values
    return [UNDEFINED if flag else value for value, flag in zip(values, missing, strict=True)]


class EventFrame:
    """A slice of normalized events whose paths resolve to per-row value lists."""

    def __init__(self, df: pd.DataFrame, context: dict[str, Any] | None = None) -> None:
        self.df = df
        self.size = len(df)
        self.context = context or {}
        self._columns = [column for column in df.columns if column not in INTERNAL_COLUMNS]
        self._column_set = set(self._columns)
        self._cache: dict[str, list[Any]] = {}

    def is_scalar_column(self, path: str) -> bool:
        """Return whether `path` is a column whose cells can only be scalars (not objects)."""
        return path in self._column_set and self.df[path].dtype != object

    def path(self, path: str) -> list[Any]:
        """Return the values at a dotted event path, one per row."""
        cached = self._cache.get(path)
        if cached is None:
            cached = self._resolve(path)
            self._cache[path] = cached
        return cached

    def _resolve(self, path: str) -> list[Any]:
        if path == "":
            return self.events
        if path == "timestamp" and "timestamp" in self._column_set:
            return self._epoch_ms()
        if path in self._column_set:
            return column_values(self.df[path])

        segments = path.split(".")
        for cut in range(len(segments) - 1, 0, -1):
            prefix = ".".join(segments[:cut])
            if prefix in self._column_set:
                rest = segments[cut:]
                return [
                    UNDEFINED if value is UNDEFINED else _walk(value, rest, UNDEFINED)
                    for value in self.path(prefix)
                ]

        children = [column for column in self._columns if column.startswith(path + ".")]
        if children:
            return self._assemble(path, children)
        return [UNDEFINED] * self.size

    def _epoch_ms(self) -> list[Any]:
        times = self.df["timestamp"]
        if not pd.api.types.is_datetime64_any_dtype(times):
            return column_values(times)
        millis = times.dt.tz_convert("UTC").astype("datetime64[ms, UTC]").astype("int64")
        return column_values(millis.where(times.notna()))

    def _assemble(self, path: str, children: list[str]) -> list[Any]:
        """Build one dict per row from the columns below `path`, omitting UNDEFINED leaves."""
        cut = len(path) + 1 if path else 0
        direct = [column for column in children if "." not in column[cut:]]
        deeper = sorted(
            {column[cut:].split(".", 1)[0] for column in children} - {c[cut:] for c in direct}
        )
        keys = [column[cut:] for column in direct]
        value_lists = [self.path(column) for column in direct]
        for key in deeper:
            child_path = f"{path}.{key}" if path else key
            keys.append(key)
            value_lists.append(self.path(child_path))

        rows: list[Any] = []
        for row_values in (
            zip(*value_lists, strict=True) if value_lists else [() for _ in range(self.size)]
        ):
            rows.append({k: v for k, v in zip(keys, row_values, strict=True) if v is not UNDEFINED})
        return rows

    @cached_property
    def events(self) -> list[dict[str, Any]]:
        """Return each row as a nested walkerOS event dict, for the per-row parts of a mapping."""
        events = self._assemble("", self._columns)
        names = self.path("name") if "name" in self._column_set else [UNDEFINED] * self.size
        for event, name in zip(events, names, strict=True):
            if isinstance(name, str) and " " in name and "entity" not in event:
                entity, _, action = name.partition(" ")
                event["entity"] = entity
                event["action"] = action.split(" ")[0]
            event.setdefault("nested", [])
        return events

    def take(self, positions: np.ndarray) -> "EventFrame":
        """Return a frame of the rows at `positions`."""
        return EventFrame(self.df.iloc[positions], self.context)
