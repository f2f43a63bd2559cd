"""Normalization of event names into the keys that mapping rules are looked up by."""

import numpy as np
import pandas as pd

from klaviyo_pipeline.normalize._columns import (
    Kind,
    element_kinds,
    empty_reasons,
    object_series,
    plain_column,
    unique_strings,
)
from klaviyo_pipeline.normalize.identifiers import format_ids
from klaviyo_pipeline.outcomes import Reason


def _lookup_keys(names: pd.Series) -> pd.Series:
    # NFKC folds compatibility forms (full-width letters, ligatures, no-break spaces), and
    # casefold() is Unicode's caseless matching, stronger than lower() ("ß" matches "ss").
    text = names.str.normalize("NFKC").str.replace(r"\s+", " ", regex=True).str.strip()
    return text.str.casefold()


def normalize_event_names(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Normalize event names into rule lookup keys: "  Order  Complete " -> "order complete".

    Strings are NFKC-normalized, trimmed, have each whitespace run collapsed to one space, and
    are case-folded. Numbers become strings as `format_ids` formats them (404 -> "404").

    Returns:
        (names, reasons): object Series of the key or None, and of None or `invalid_name`,
        which every None name gets: None, NaN, pd.NA, blank strings, booleans, ±inf and
        other types.
    """
    column = plain_column(values)
    if isinstance(column.dtype, pd.StringDtype):
        return _normalize_text_names(column, values.index)
    kinds = element_kinds(column)
    elements = column.to_numpy(dtype=object)
    names = np.full(len(elements), None, dtype=object)

    strings = np.flatnonzero(kinds == Kind.STRING)
    codes, originals = unique_strings(elements[strings])
    keys = _lookup_keys(originals).to_numpy(dtype=object)
    names[strings] = keys[codes]

    numbers = np.flatnonzero(np.isin(kinds, (Kind.INTEGER, Kind.FLOAT, Kind.DECIMAL)))
    names[numbers] = format_ids(pd.Series(elements[numbers], dtype=object)).to_numpy()

    names[names == ""] = None
    reasons = empty_reasons(len(elements))
    reasons[pd.isna(names)] = Reason.INVALID_NAME.value
    return object_series(names, values.index), object_series(reasons, values.index)


def _normalize_text_names(column: pd.Series, index: pd.Index) -> tuple[pd.Series, pd.Series]:
    """Normalize a column of a string dtype, each distinct name once.

    pandas factorizes the column as it is stored, without a Python str per row first.
    """
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    keys = _lookup_keys(pd.Series(np.asarray(uniques, dtype=object), dtype=object))
    # The code -1 of a missing name takes the None appended after the distinct keys.
    distinct = np.append(keys.to_numpy(dtype=object), None)
    distinct[distinct == ""] = None
    names = distinct[codes]
    reasons = np.where(pd.isna(distinct), Reason.INVALID_NAME.value, None).astype(object)[codes]
    return object_series(names, index), object_series(reasons, index)
