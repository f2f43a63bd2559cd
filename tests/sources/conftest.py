"""Helpers shared by the source reader tests: sample paths, table writers and readers."""

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from klaviyo_pipeline.config import SourceConfig
from klaviyo_pipeline.sources import PartitionWindow, read_partition

REPO_ROOT = Path(__file__).resolve().parents[2]
REES46_SAMPLE = REPO_ROOT / "examples" / "rees46" / "2019-Oct-sample.csv"

REES46_SELECT = """
SELECT md5(concat_ws('|', event_time, event_type, product_id, user_id, user_session)) AS id,
       event_type AS name, event_time AS timestamp, user_id AS "user.id",
       product_id AS "data.id", brand AS "data.brand", price AS "data.price"
FROM {source}
"""


def utc(*parts: int) -> datetime:
    """Build a UTC datetime from year, month, day and optional time parts."""
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def write_parquet(path: Path, columns: dict[str, pa.Array | Sequence[Any]]) -> Path:
    """Write `columns` as one Parquet file, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def read_all(
    source: SourceConfig, window: PartitionWindow, base_dir: Path | str = "."
) -> pd.DataFrame:
    """Read every chunk of a partition into one DataFrame; empty when no chunk is yielded."""
    chunks = list(read_partition(source, window, base_dir=str(base_dir)))
    if not chunks:
        return pd.DataFrame()
    return pd.concat(chunks, ignore_index=True)
