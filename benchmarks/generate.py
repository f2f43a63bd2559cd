"""Generate REES46-shaped event exports with the distributions of the bundled sample.

The files have the 9 columns of the REES46 export (`event_time`, `event_type`,
`product_id`, `category_id`, `category_code`, `brand`, `price`, `user_id`,
`user_session`). The generator fits these distributions from
`examples/rees46/2019-Oct-sample.csv` and draws from them with numpy:

- events per session, sessions per user (every session has one user), the gaps in
  seconds between the events of a session;
- event types, separately for the first event of a session and for later events (in the
  sample every cart and purchase follows a view in the same session, of the same product);
- repeated views: the share of later views in a session that show the previous product,
  and the share of the other later views that show an earlier product of the session;
- product attributes: each catalogue product copies `category_id`, `category_code` and
  `brand` from one sample row, and its price is that row's price with a small log-normal
  jitter. Products are matched to sample rows in order of popularity, so that each sample
  row stands for the same share of generated rows, and the shares of empty brands and
  category codes and the prices per row follow the sample's.

Two properties are modelled, not fitted, because 1,000 rows cannot show them: the
catalogue size (one product per 5 rows, from 1,000 to 200,000) and the product popularity
(weight 1 / (rank + 5)). Sessions start uniformly over 2019-10-01 UTC and end on that day,
so a file is one daily partition. Gaps are at least one second, so no two rows are equal.

Parquet files store `event_time` as a UTC timestamp and empty strings as NULL. CSV files
are written as the original export: `2019-10-01 00:00:00 UTC`, prices with 2 decimals and
empty fields for NULL. Files are cached in `benchmarks/data/`, named by the generator
version, the row count and the seed.

    python -m benchmarks.generate --rows 1000000 [--format csv] [--seed N] [--describe]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CSV = REPO_ROOT / "examples" / "rees46" / "2019-Oct-sample.csv"
DATA_DIR = Path(__file__).resolve().parent / "data"

# Part of the cache key: raise it whenever a change alters the generated rows.
GENERATOR_VERSION = 1
DEFAULT_SEED = 20191001
SIZES = {"100k": 100_000, "1m": 1_000_000, "2m": 2_000_000, "10m": 10_000_000}
PARTITION_DAY = "2019-10-01"
ExportFormat = Literal["parquet", "csv"]

SECONDS_PER_DAY = 86_400
_DAY_START_MICROSECONDS = int(pd.Timestamp(PARTITION_DAY, tz="UTC").value // 1_000)
_ROWS_PER_PRODUCT = 5
_MIN_PRODUCTS = 1_000
_MAX_PRODUCTS = 200_000
_POPULARITY_OFFSET = 5.0
_PRICE_JITTER_SIGMA = 0.1
_PRODUCT_ID_RANGE = (1_000_000, 60_000_000)
# The sample's user ids lie in 474,832,046..555,449,266. Large files widen the range to at
# least four ids per session, so that distinct ids stay quick to draw.
_USER_ID_LOW = 474_000_000
_UUID_HEX_POSITIONS = [index for index in range(36) if index not in (8, 13, 18, 23)]


@dataclass(frozen=True, eq=False)
class SampleProfile:
    """Distributions fitted from a REES46 sample, as value arrays with their weights."""

    event_types: tuple[str, ...]
    first_type_weights: NDArray[np.float64]
    later_type_weights: NDArray[np.float64]
    session_lengths: NDArray[np.int64]
    session_length_weights: NDArray[np.float64]
    sessions_per_user: NDArray[np.int64]
    sessions_per_user_weights: NDArray[np.float64]
    gap_seconds: NDArray[np.int64]
    repeat_previous_share: float
    repeat_earlier_share: float
    category_ids: NDArray[np.int64]
    category_codes: list[str | None]
    brands: list[str | None]
    prices: NDArray[np.float64]
    user_id_high: int

    @classmethod
    def from_csv(cls, path: Path = SAMPLE_CSV) -> SampleProfile:
        """Fit the distributions from a REES46 CSV export with the 9 columns."""
        df = pd.read_csv(
            path,
            dtype={"category_code": "string", "brand": "string", "user_session": "string"},
        )
        df["seconds"] = (
            pd.to_datetime(df["event_time"].str.removesuffix(" UTC"), format="%Y-%m-%d %H:%M:%S")
            .astype("int64")
            .floordiv(10**9)
        )
        sessions = df.groupby("user_session", sort=False)
        df["position"] = sessions.cumcount()
        previous_product = sessions["product_id"].shift()
        later = df["position"] > 0
        later_views = later & (df["event_type"] == "view")

        event_types = tuple(df["event_type"].value_counts().index)
        first_counts = df.loc[~later, "event_type"].value_counts()
        later_counts = df.loc[later, "event_type"].value_counts()
        lengths = sessions.size().value_counts().sort_index()
        per_user = df.groupby("user_id")["user_session"].nunique().value_counts().sort_index()
        gaps = sessions["seconds"].diff().dropna().astype("int64")
        repeats_previous = (df["product_id"] == previous_product) & later_views
        others = later_views & ~repeats_previous
        seen_before = df.duplicated(["user_session", "product_id"])
        earlier_candidates = others & (df["position"] >= 2)
        return cls(
            event_types=event_types,
            first_type_weights=_weights([first_counts.get(name, 0) for name in event_types]),
            later_type_weights=_weights([later_counts.get(name, 0) for name in event_types]),
            session_lengths=lengths.index.to_numpy(dtype=np.int64),
            session_length_weights=_weights(lengths.to_numpy()),
            sessions_per_user=per_user.index.to_numpy(dtype=np.int64),
            sessions_per_user_weights=_weights(per_user.to_numpy()),
            gap_seconds=np.maximum(gaps.to_numpy(), 1),
            repeat_previous_share=_share(repeats_previous, later_views),
            repeat_earlier_share=_share(others & seen_before, earlier_candidates),
            category_ids=df["category_id"].to_numpy(dtype=np.int64),
            category_codes=_optional_texts(df["category_code"]),
            brands=_optional_texts(df["brand"]),
            prices=df["price"].to_numpy(dtype=np.float64),
            user_id_high=int(df["user_id"].max()) + 1,
        )


def _weights(counts: Any) -> NDArray[np.float64]:
    values = np.asarray(counts, dtype=np.float64)
    return values / values.sum()


def _share(hits: pd.Series, candidates: pd.Series) -> float:
    return float(hits.sum() / max(int(candidates.sum()), 1))


def _optional_texts(column: pd.Series) -> list[str | None]:
    return [None if pd.isna(value) or value == "" else str(value) for value in column]


def export_path(
    rows: int, seed: int = DEFAULT_SEED, export_format: ExportFormat = "parquet"
) -> Path:
    """Return the cache path of an export with `rows` rows drawn with `seed`."""
    return DATA_DIR / f"rees46-v{GENERATOR_VERSION}-{rows}-seed{seed}.{export_format}"


def ensure_export(
    rows: int, seed: int = DEFAULT_SEED, export_format: ExportFormat = "parquet"
) -> Path:
    """Return the path of the cached export, generating it first when it is missing."""
    path = export_path(rows, seed, export_format)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    if export_format == "parquet":
        table = generate_table(rows, seed)
        pq.write_table(table, partial, compression="zstd")
    else:
        write_csv(ensure_export(rows, seed, "parquet"), partial)
    partial.replace(path)
    return path


def generate_table(
    rows: int, seed: int = DEFAULT_SEED, profile: SampleProfile | None = None
) -> pa.Table:
    """Draw `rows` REES46-shaped events of 2019-10-01 UTC, ordered by event time."""
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    profile = profile or SampleProfile.from_csv()
    rng = np.random.default_rng(seed)

    lengths = _session_lengths(rng, profile, rows)
    session_count = len(lengths)
    session_users = _session_users(rng, profile, session_count)
    session_of_row = np.repeat(np.arange(session_count), lengths)
    session_first_row = np.cumsum(lengths) - lengths
    position = np.arange(rows) - np.repeat(session_first_row, lengths)
    later = position > 0

    seconds = _event_seconds(rng, profile, lengths, session_first_row, later)
    types = _event_types(rng, profile, later)
    catalogue = _Catalogue.draw(rng, profile, rows)
    products = _row_products(rng, profile, catalogue, position, types)

    order = np.argsort(seconds, kind="stable")
    user_ids = _unique_integers(
        rng,
        _USER_ID_LOW,
        max(profile.user_id_high, _USER_ID_LOW + 4 * len(session_users)),
        int(session_users.max()) + 1,
    )
    sessions = _uuid4_strings(rng, session_count)
    products = products[order]
    session_of_row = session_of_row[order]
    microseconds = _DAY_START_MICROSECONDS + seconds[order] * 1_000_000
    return pa.table(
        {
            "event_time": pa.array(microseconds, type=pa.timestamp("us", tz="UTC")),
            "event_type": _take_texts(list(profile.event_types), types[order]),
            "product_id": pa.array(catalogue.product_ids[products]),
            "category_id": pa.array(catalogue.category_ids[products]),
            "category_code": _take_texts(*catalogue.codes(products, "category_code")),
            "brand": _take_texts(*catalogue.codes(products, "brand")),
            "price": pa.array(catalogue.prices[products]),
            "user_id": pa.array(user_ids[session_users[session_of_row]]),
            "user_session": sessions.take(pa.array(session_of_row)),
        }
    )


def _draw_until(
    rng: np.random.Generator, values: NDArray[np.int64], weights: NDArray[np.float64], total: int
) -> NDArray[np.int64]:
    """Draw values until their sum reaches `total`; the last one is cut to hit it exactly."""
    mean = float(values @ weights)
    drawn = rng.choice(values, size=math.ceil(total / mean * 1.05) + 16, p=weights)
    while drawn.sum() < total:
        drawn = np.concatenate([drawn, rng.choice(values, size=len(drawn) // 4 + 16, p=weights)])
    sums = np.cumsum(drawn)
    count = int(np.searchsorted(sums, total)) + 1
    drawn = drawn[:count].copy()
    drawn[-1] -= int(sums[count - 1]) - total
    return drawn


def _session_lengths(
    rng: np.random.Generator, profile: SampleProfile, rows: int
) -> NDArray[np.int64]:
    return _draw_until(rng, profile.session_lengths, profile.session_length_weights, rows)


def _session_users(
    rng: np.random.Generator, profile: SampleProfile, sessions: int
) -> NDArray[np.int64]:
    """Return the user index of each session, with the users' sessions spread over the day."""
    per_user = _draw_until(
        rng, profile.sessions_per_user, profile.sessions_per_user_weights, sessions
    )
    users = np.repeat(np.arange(len(per_user)), per_user)
    return rng.permutation(users)


def _event_seconds(
    rng: np.random.Generator,
    profile: SampleProfile,
    lengths: NDArray[np.int64],
    session_first_row: NDArray[np.int64],
    later: NDArray[np.bool_],
) -> NDArray[np.int64]:
    """Return each row's second of the day: a session start plus the gaps before the row."""
    gaps = np.where(later, rng.choice(profile.gap_seconds, size=len(later)), 0)
    elapsed = np.cumsum(gaps)
    offsets = elapsed - np.repeat(elapsed[session_first_row], lengths)
    durations = offsets[session_first_row + lengths - 1]
    latest_start = np.maximum(SECONDS_PER_DAY - durations, 1)
    starts = np.floor(rng.random(len(lengths)) * latest_start).astype(np.int64)
    return np.repeat(starts, lengths) + offsets


def _event_types(
    rng: np.random.Generator, profile: SampleProfile, later: NDArray[np.bool_]
) -> NDArray[np.int64]:
    """Return an index into `profile.event_types` per row."""
    kinds = len(profile.event_types)
    first = rng.choice(kinds, size=len(later), p=profile.first_type_weights)
    following = rng.choice(kinds, size=len(later), p=profile.later_type_weights)
    return np.where(later, following, first)


@dataclass(frozen=True, eq=False)
class _Catalogue:
    """Products with ids, sample row of their attributes, price and popularity weight."""

    product_ids: NDArray[np.int64]
    sample_rows: NDArray[np.int64]
    category_ids: NDArray[np.int64]
    prices: NDArray[np.float64]
    weights: NDArray[np.float64]
    profile: SampleProfile

    @classmethod
    def draw(cls, rng: np.random.Generator, profile: SampleProfile, rows: int) -> _Catalogue:
        size = min(max(rows // _ROWS_PER_PRODUCT, _MIN_PRODUCTS), _MAX_PRODUCTS)
        popularity = 1.0 / (np.arange(size) + _POPULARITY_OFFSET)
        weights = popularity / popularity.sum()
        # Systematic sampling: the sample row at the midpoint of each product's share of
        # the cumulative weight, over the sample rows in random order.
        midpoints = np.cumsum(weights) - weights / 2
        shuffled = rng.permutation(len(profile.prices))
        sample_rows = shuffled[
            np.minimum((midpoints * len(shuffled)).astype(np.int64), len(shuffled) - 1)
        ]
        jitter = np.exp(rng.normal(0.0, _PRICE_JITTER_SIGMA, size=size))
        prices = np.maximum(np.round(profile.prices[sample_rows] * jitter, 2), 0.01)
        return cls(
            product_ids=_unique_integers(rng, *_PRODUCT_ID_RANGE, size),
            sample_rows=sample_rows,
            category_ids=profile.category_ids[sample_rows],
            prices=prices,
            weights=weights,
            profile=profile,
        )

    def codes(
        self, products: NDArray[np.int64], field: Literal["category_code", "brand"]
    ) -> tuple[list[str], NDArray[np.int64]]:
        """Return the distinct texts of `field` and each row's index into them (-1: NULL)."""
        texts = self.profile.category_codes if field == "category_code" else self.profile.brands
        dictionary = sorted({text for text in texts if text is not None})
        lookup = {text: index for index, text in enumerate(dictionary)}
        by_sample_row = np.array([lookup.get(text, -1) if text else -1 for text in texts])
        return dictionary, by_sample_row[self.sample_rows[products]]


def _row_products(
    rng: np.random.Generator,
    profile: SampleProfile,
    catalogue: _Catalogue,
    position: NDArray[np.int64],
    types: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Return a catalogue index per row: a popular product, or one the session showed before.

    Carts and purchases later in a session always repeat the previous product. Later views
    repeat the previous product, or else an earlier one, with the sample's shares. Each row
    points at the row whose product it repeats, and pointer jumping resolves the chains.
    """
    rows = len(position)
    index = np.arange(rows)
    later = position > 0
    views = types == profile.event_types.index("view")
    repeat_previous = later & (~views | (rng.random(rows) < profile.repeat_previous_share))
    repeat_earlier = (
        ~repeat_previous & (position >= 2) & (rng.random(rows) < profile.repeat_earlier_share)
    )
    earlier = index - position + np.floor(rng.random(rows) * np.maximum(position - 1, 1))
    source = np.where(repeat_previous, index - 1, index)
    source = np.where(repeat_earlier, earlier.astype(np.int64), source)
    while True:
        jumped = source[source]
        if np.array_equal(jumped, source):
            break
        source = jumped
    drawn = rng.choice(len(catalogue.weights), size=rows, p=catalogue.weights)
    return drawn[source]


def _unique_integers(
    rng: np.random.Generator, low: int, high: int, count: int
) -> NDArray[np.int64]:
    """Draw `count` distinct integers in [low, high) in random order."""
    if high - low < count:
        raise ValueError(f"cannot draw {count} distinct integers from [{low}, {high})")
    values = np.unique(rng.integers(low, high, size=count + count // 4 + 16))
    while len(values) < count:
        extra = rng.integers(low, high, size=count - len(values) + count // 4 + 16)
        values = np.unique(np.concatenate([values, extra]))
    return rng.permutation(values)[:count].astype(np.int64)


def _uuid4_strings(rng: np.random.Generator, count: int) -> pa.Array:
    """Return `count` random version-4 UUIDs as lower-case text, built without a Python loop."""
    raw = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    nibbles = np.empty((count, 32), dtype=np.uint8)
    nibbles[:, 0::2] = digits[raw >> 4]
    nibbles[:, 1::2] = digits[raw & 0x0F]
    text = np.full((count, 36), ord("-"), dtype=np.uint8)
    text[:, _UUID_HEX_POSITIONS] = nibbles
    return pa.array(text.view("S36").ravel(), type=pa.binary(36)).cast(pa.string())


def _take_texts(dictionary: list[str], indices: NDArray[np.int64]) -> pa.Array:
    """Return the texts at `indices` as a plain string column; -1 gives NULL."""
    mask = indices < 0
    encoded = pa.DictionaryArray.from_arrays(
        pa.array(np.where(mask, 0, indices).astype(np.int32), mask=mask),
        pa.array(dictionary, type=pa.string()),
    )
    return encoded.cast(pa.string())


def write_csv(parquet_path: Path, csv_path: Path) -> None:
    """Write a generated Parquet export as CSV in the original REES46 text format."""
    query = f"""
        COPY (
            SELECT strftime(event_time, '%Y-%m-%d %H:%M:%S') || ' UTC' AS event_time,
                   event_type, product_id, category_id, category_code, brand,
                   printf('%.2f', price) AS price, user_id, user_session
            FROM read_parquet({_sql_text(parquet_path)})
        ) TO {_sql_text(csv_path)} (FORMAT csv, HEADER)
    """
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute(query)


def _sql_text(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def describe(path: Path) -> dict[str, float]:
    """Return the distribution figures that the generator keeps, for an export file."""
    if path.suffix == ".csv":
        df = pd.read_csv(path, dtype={"category_code": "string", "brand": "string"})
    else:
        df = pd.read_parquet(path)
    types = df["event_type"].value_counts(normalize=True)
    views = df[df["event_type"] == "view"]
    sessions_per_user = df.groupby("user_id")["user_session"].nunique()
    users_per_session = df.groupby("user_session")["user_id"].nunique()
    return {
        "rows": float(len(df)),
        "share_view": float(types.get("view", 0.0)),
        "share_cart": float(types.get("cart", 0.0)),
        "share_purchase": float(types.get("purchase", 0.0)),
        "events_per_session": float(len(df) / df["user_session"].nunique()),
        "sessions_per_user": float(sessions_per_user.mean()),
        "max_users_per_session": float(users_per_session.max()),
        "share_empty_brand": float(df["brand"].isna().mean()),
        "share_empty_category_code": float(df["category_code"].isna().mean()),
        "price_median": float(df["price"].median()),
        "price_mean": float(df["price"].mean()),
        "price_p90": float(df["price"].quantile(0.9)),
        "share_repeated_views": float(
            views.duplicated(["user_session", "product_id"]).sum() / max(len(views), 1)
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Generate (or find in the cache) one export and print its path."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generate", description=__doc__)
    parser.add_argument("--rows", type=int, default=SIZES["100k"], help="rows (default 100000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument(
        "--describe", action="store_true", help="print its distributions next to the sample's"
    )
    arguments = parser.parse_args(argv)
    path = ensure_export(arguments.rows, arguments.seed, arguments.format)
    print(path)
    if arguments.describe:
        generated, sample = describe(path), describe(SAMPLE_CSV)
        print(f"{'figure':28} {'sample':>12} {'generated':>12}")
        for name, value in generated.items():
            print(f"{name:28} {sample[name]:12.4f} {value:12.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
