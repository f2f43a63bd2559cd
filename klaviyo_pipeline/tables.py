"""Partition tables: a folder of Parquet chunks that assets write and read one chunk at a time.

Assets hand each other a `PartitionTable` instead of a whole DataFrame, so a step keeps one
chunk in memory, not the partition. Columns that Arrow cannot store as they are (dicts,
lists of dicts, mixed types) are stored as pickled cells and come back as the same objects.
"""

import os
import pickle
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

_PICKLED_COLUMNS_KEY = b"klaviyo_pipeline.pickled_columns"


@dataclass(frozen=True)
class PartitionTable:
    """A written table: its folder, its chunk files in order, and its row count."""

    path: str
    parts: tuple[str, ...]
    rows: int
    attrs: dict[str, Any] = field(default_factory=dict)

    def chunks(self) -> Iterator[pd.DataFrame]:
        """Yield the table's chunks in write order."""
        for part in self.parts:
            yield read_part(Path(self.path) / part)

    def read(self) -> pd.DataFrame:
        """Return the whole table as one DataFrame; use for small tables only."""
        frames = list(self.chunks())
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def __len__(self) -> int:
        return self.rows


def _arrow_table(chunk: pd.DataFrame) -> pa.Table:
    pickled = []
    columns = {}
    for name in chunk.columns:
        series = chunk[name]
        if series.dtype == object:
            try:
                columns[name] = pa.array(series, from_pandas=True)
                if pa.types.is_struct(columns[name].type) or pa.types.is_list(columns[name].type):
                    raise pa.ArrowTypeError("nested values are pickled to keep their exact shape")
                continue
            except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
                columns[name] = pa.array(
                    [pickle.dumps(value) for value in series], type=pa.binary()
                )
                pickled.append(name)
                continue
        columns[name] = pa.Array.from_pandas(series)
    table = pa.table(columns)
    metadata = {_PICKLED_COLUMNS_KEY: ",".join(pickled).encode()}
    return table.replace_schema_metadata(metadata)


def read_part(path: Path) -> pd.DataFrame:
    """Read one chunk file back into the DataFrame that was written."""
    table = pq.read_table(path)
    metadata = table.schema.metadata or {}
    pickled = [name for name in metadata.get(_PICKLED_COLUMNS_KEY, b"").decode().split(",") if name]
    frame = table.to_pandas(types_mapper=_types_mapper)
    for name in pickled:
        frame[name] = pd.Series(
            [pickle.loads(cell) for cell in frame[name]], index=frame.index, dtype=object
        )
    return frame


def _types_mapper(arrow_type: pa.DataType) -> Any:
    # Integer columns with NULLs stay integers instead of turning into floats.
    if pa.types.is_integer(arrow_type):
        return pd.Int64Dtype()
    if pa.types.is_boolean(arrow_type):
        return pd.BooleanDtype()
    return None


class TableWriter:
    """Write a table chunk by chunk into a fresh folder, then move it into place.

    Args:
        path: Folder of the table; a finished table there is replaced on `close`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._staging = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}")
        self._staging.mkdir(parents=True)
        self._parts: list[str] = []
        self._rows = 0

    def write(self, chunk: pd.DataFrame) -> None:
        """Append one chunk; an empty chunk writes nothing."""
        if chunk.empty:
            return
        name = f"part-{len(self._parts):05d}.parquet"
        pq.write_table(_arrow_table(chunk.reset_index(drop=True)), self._staging / name)
        self._parts.append(name)
        self._rows += len(chunk)

    def close(self, attrs: dict[str, Any] | None = None) -> PartitionTable:
        """Finish the table and return its handle."""
        if self.path.exists():
            shutil.rmtree(self.path)
        self._staging.rename(self.path)
        return PartitionTable(str(self.path), tuple(self._parts), self._rows, dict(attrs or {}))

    def abort(self) -> None:
        """Remove what was written."""
        shutil.rmtree(self._staging, ignore_errors=True)


def rewrite_part(path: str | os.PathLike[str], chunk: pd.DataFrame) -> None:
    """Replace one chunk file with `chunk`, or remove it when `chunk` is empty."""
    path = Path(path)
    if chunk.empty:
        path.unlink()
        return
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    pq.write_table(_arrow_table(chunk.reset_index(drop=True)), staging)
    staging.replace(path)


def open_table(path: str | os.PathLike[str], attrs: dict[str, Any] | None = None) -> PartitionTable:
    """Return the handle of a finished table folder, counting rows from the file footers."""
    folder = Path(path)
    parts = tuple(sorted(part.name for part in folder.glob("part-*.parquet")))
    rows = sum(pq.ParquetFile(folder / part).metadata.num_rows for part in parts)
    return PartitionTable(str(folder), parts, rows, dict(attrs or {}))


def table_path(root: str | os.PathLike[str], asset: str, partition: str) -> Path:
    """Return the folder of one asset's table for one partition."""
    return Path(root) / asset / partition
