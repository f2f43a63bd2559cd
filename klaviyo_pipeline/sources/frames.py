"""Arrow record batches to pandas DataFrames of a fixed number of rows, with exact integers."""

from collections.abc import Iterable, Iterator

import pandas as pd
import pyarrow as pa

# Nullable pandas dtypes, so an integer column with NULLs stays integer instead of float64,
# and every chunk of a column gets the same dtype whether or not it has NULLs.
_NULLABLE_DTYPES: dict[pa.DataType, pd.api.extensions.ExtensionDtype] = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def _pandas_dtype(arrow_type: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    return _NULLABLE_DTYPES.get(arrow_type)


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """Convert an Arrow table to pandas with nullable integers and booleans and dict maps."""
    return table.to_pandas(types_mapper=_pandas_dtype, maps_as_pydicts="strict")


def array_to_series(array: pa.Array, name: str) -> pd.Series:
    """Convert one Arrow array to a pandas Series with the same dtypes as `table_to_frame`."""
    return pa.table({name: array}).to_pandas(types_mapper=_pandas_dtype)[name]


def rebatch(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, chunk_rows: int
) -> Iterator[pa.Table]:
    """Regroup record batches into tables of exactly `chunk_rows` rows, the last one shorter.

    At most one chunk plus one input batch is held at a time, so memory follows `chunk_rows`
    and the input batch size, not the total row count.
    """
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= chunk_rows:
            table = pa.Table.from_batches(pending, schema=schema)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending = rest.to_batches()
            pending_rows = rest.num_rows

    if pending_rows:
        yield pa.Table.from_batches(pending, schema=schema)
