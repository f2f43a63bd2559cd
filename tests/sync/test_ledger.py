"""Tests of the sync log columns that the ledger repeats on every row of a record."""

from __future__ import annotations

import pandas as pd
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from klaviyo_pipeline.masking import mask_identity
from klaviyo_pipeline.sync.ledger import _identity_columns
from klaviyo_pipeline.sync_log import hash_key

# Few distinct values, so that rows repeat identities and keys, and "|" or "\x1f" inside a
# value would break any key that joined the columns as text.
TEXTS = st.none() | st.sampled_from(["a@example.com", "é|x", "a", "", "x\x1fy", "+15555550123"])


def record_frame(rows: list[tuple]) -> pd.DataFrame:
    columns = ["profile_key", "email", "phone_number", "external_id", "unique_id", "metric"]
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    frame["record_id"] = [str(position) for position in range(len(rows))]
    frame["row_id"] = range(len(rows))
    frame["content_hash"] = "0" * 16
    return frame


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(*[TEXTS] * 6), max_size=30))
def test_identity_columns_match_per_row(rows: list[tuple]) -> None:
    frame = record_frame(rows)
    columns = _identity_columns(frame, "event", "2024-01-01", "run")

    expected_keys = [hash_key(row[0], row[5], row[4]) for row in rows]
    expected_hashes = [hash_key(row[0]) for row in rows]
    expected_identities = [mask_identity(row[1], row[2], row[3]) for row in rows]
    assert columns["record_key"].tolist() == expected_keys
    assert columns["profile_key_hash"].tolist() == expected_hashes
    assert columns["identity"].tolist() == expected_identities
    assert len(columns) == len(rows)


def test_profile_record_key_is_profile_key_hash() -> None:
    frame = record_frame([("k1", "a@example.com", None, None, None, None)] * 2)
    columns = _identity_columns(frame, "profile", "2024-01-01", "run")

    assert columns["record_key"].tolist() == [hash_key("k1")] * 2
    assert columns["unique_id"].tolist() == [None, None]
    assert columns["identity"].tolist() == ["email=a***@example.com"] * 2
