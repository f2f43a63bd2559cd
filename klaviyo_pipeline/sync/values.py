"""Missing-value tests for record cells, which may hold None, NaN, pandas.NA or NaT."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def is_missing(value: Any) -> bool:
    """Return True for None, float NaN (numpy's too), pandas.NA and pandas.NaT."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def optional_text(value: Any) -> str | None:
    """Return the cell as text, or None if it is missing."""
    return None if is_missing(value) else str(value)
