"""Arrow record batches to pandas DataFrames of a fixed number of rows, with exact integers."""

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
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


JsonDecoder = Callable[[Any], Any]


def _json_decoder(column_type: Any) -> JsonDecoder | None:
    """Return a function that parses the JSON-typed parts of a value of `column_type`.

    DuckDB types a field JSON when its values mix types across rows (a number in one
    row and a string in another), and hands such values over as JSON text.
    """
    if str(column_type) == "JSON":
        return _parse_json
    if column_type.id == "list":
        item = _json_decoder(column_type.children[0][1])
        if item is None:
            return None
        return lambda value: value if value is None else [item(element) for element in value]
    if column_type.id == "struct":
        fields = {name: _json_decoder(child) for name, child in column_type.children}
        fields = {name: decoder for name, decoder in fields.items() if decoder is not None}
        if not fields:
            return None

        def decode(value: Any) -> Any:
            if not isinstance(value, dict):
                return value
            return {
                key: fields[key](item) if key in fields else item for key, item in value.items()
            }

        return decode
    return None


def _parse_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return orjson.loads(value)


def json_decoders(names: list[str], types: list[Any]) -> dict[str, JsonDecoder]:
    """Return a decoder per column whose DuckDB type contains JSON."""
    decoders = {
        name: _json_decoder(column_type) for name, column_type in zip(names, types, strict=True)
    }
    return {name: decoder for name, decoder in decoders.items() if decoder is not None}


def decode_json_columns(frame: pd.DataFrame, decoders: dict[str, JsonDecoder]) -> pd.DataFrame:
    """Parse the JSON text of JSON-typed columns into Python values."""
    for name, decoder in decoders.items():
        if name in frame.columns:
            frame[name] = pd.Series(
                [decoder(value) for value in frame[name].astype(object)],
                index=frame.index,
                dtype=object,
            )
    return frame
