"""Counts, notes and previews that the assets attach to their materializations."""

from collections import Counter
from typing import Any

import pandas as pd

from klaviyo_pipeline.masking import mask_email, mask_phone
from klaviyo_pipeline.outcomes import TERMINAL_STATES

PREVIEW_ROWS = 10


def status_counts(statuses: pd.Series) -> dict[str, int]:
    """Count each terminal state, listing every state even when its count is zero."""
    counts = Counter(statuses.tolist())
    return {state: int(counts.get(state, 0)) for state in TERMINAL_STATES}


def metric_counts(outcomes: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Count terminal states per metric, for outcomes that have a metric."""
    known = outcomes[outcomes["metric"].notna()]
    table: dict[str, dict[str, int]] = {}
    for (metric, status), count in known.groupby(["metric", "status"]).size().items():
        table.setdefault(str(metric), {})[str(status)] = int(count)
    return dict(sorted(table.items()))


def reason_counts(outcomes: pd.DataFrame) -> dict[str, int]:
    """Count `status: reason` pairs, such as `sent: already_sent` or `skipped: no_identifier`."""
    pairs = outcomes["status"].astype(str) + ": " + outcomes["reason"].astype(str)
    return {key: int(value) for key, value in pairs.value_counts().sort_index().items()}


def _mask_cell(column: str, value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if column == "email":
        return mask_email(str(value))
    if column == "phone_number":
        return mask_phone(str(value))
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def preview_markdown(records: pd.DataFrame, columns: list[str], rows: int = PREVIEW_ROWS) -> str:
    """Render the first rows as a markdown table with emails and phones masked."""
    shown = [column for column in columns if column in records.columns]
    if records.empty or not shown:
        return "_no rows_"
    head = records.head(rows)
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in head[shown].itertuples(index=False):
        cells = [
            str(_mask_cell(column, value)).replace("|", "\\|")
            for column, value in zip(shown, row, strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
