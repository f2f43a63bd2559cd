"""Map normalized events into Klaviyo event records, profile records and row outcomes.

Event records (one row per Klaviyo event): `record_id`, `row_id`, `partition`, `metric`,
`unique_id`, `email`, `phone_number`, `external_id`, `profile_key`, `time`, `value`
(NaN when absent), `value_currency`, `properties` (JSON text), `profile_properties`
(JSON text or None), `content_hash`.

Profile records (one row per profile upsert): `record_id`, `row_id`, `partition`, `email`,
`phone_number`, `external_id`, `profile_key`, `attributes` (JSON text), `content_hash`.

Outcomes (rows settled before any request): `row_id`, `record_id`, `stream`, `status`,
`reason`, `detail`, `metric`, `unique_id`, `identity` (masked).

Every input row ends either as the event record with `record_id == str(row_id)` or as an
`event` stream outcome, never both and never neither.
"""

import itertools
import math
import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.extensions import ExtensionDtype

# NOTE: an internal pandas function, which `hash_pandas_object` combines column hashes with.
from pandas.core.util.hashing import combine_hash_arrays

from klaviyo_pipeline import arrow_json, normalize, settings
from klaviyo_pipeline.config import EcommerceConfig, NormalizeConfig, PipelineConfig
from klaviyo_pipeline.jsonsafe import clean_properties, dumps
from klaviyo_pipeline.mapping.destination import CompiledDestination, RuleGroup
from klaviyo_pipeline.masking import mask_identity
from klaviyo_pipeline.normalize._columns import all_strings, text_lengths
from klaviyo_pipeline.outcomes import Reason, Status

EVENT_COLUMNS = (
    "record_id",
    "row_id",
    "partition",
    "metric",
    "unique_id",
    "email",
    "phone_number",
    "external_id",
    "profile_key",
    "time",
    "value",
    "value_currency",
    "properties",
    "profile_properties",
    "content_hash",
)
PROFILE_COLUMNS = (
    "record_id",
    "row_id",
    "partition",
    "email",
    "phone_number",
    "external_id",
    "profile_key",
    "attributes",
    "content_hash",
)
OUTCOME_COLUMNS = (
    "row_id",
    "record_id",
    "stream",
    "status",
    "reason",
    "detail",
    "metric",
    "unique_id",
    "identity",
)

PROFILE_TRAITS = (
    ("firstName", "first_name"),
    ("lastName", "last_name"),
    ("organization", "organization"),
    ("title", "title"),
    ("image", "image"),
    ("location", "location"),
)
LOCATION_KEYS = frozenset(
    {
        "address1",
        "address2",
        "city",
        "country",
        "latitude",
        "longitude",
        "region",
        "zip",
        "timezone",
        "ip",
    }
)
# Profile attributes that Klaviyo's profile import accepts at the top level. Unset names outside
# these and LOCATION_KEYS are custom properties.
TOP_LEVEL_ATTRIBUTES = frozenset(
    {
        "email",
        "phone_number",
        "external_id",
        "first_name",
        "last_name",
        "organization",
        "title",
        "image",
        "locale",
        "location",
        "properties",
    }
)
# Custom property names that look like marketing consent. A profile upsert never changes consent
# in Klaviyo (subscriptions do), so rows with these keys get a `consent_unchanged` warning.
# NOTE: a heuristic list of common names; other spellings pass without the warning.
CONSENT_PROPERTY_KEYS = frozenset(
    {
        "accepts_marketing",
        "accepts_email_marketing",
        "accepts_sms_marketing",
        "consent",
        "email_consent",
        "sms_consent",
        "marketing_consent",
        "email_marketing_consent",
        "sms_marketing_consent",
        "subscribed",
        "subscriptions",
        "opt_in",
        "optin",
        "email_opt_in",
        "sms_opt_in",
    }
)
# Warning counters for the notes that `clean_properties` returns, by the note's first words.
PROPERTY_NOTES = (
    ("dropped reserved $ keys", "reserved_property_dropped"),
    ("left out NaN or infinite numbers", "non_finite_property_dropped"),
    ("kept the first of colliding flattened keys", "flattened_key_collision"),
)
# Line item keys that name a product and its categories, as Klaviyo's and walkerOS's ecommerce
# events spell them.
NAME_KEYS = ("ProductName", "name", "Name")
CATEGORY_KEYS = ("Categories", "categories", "Category", "category")
SETTLED_DETAILS = {
    Reason.INVALID_NAME.value: "event name has no entity and action separated by a space",
    Reason.IGNORED.value: "the mapping rule sets ignore",
    Reason.CONSENT_DENIED.value: "the event lacks a consent that the destination requires",
}


@dataclass
class MappedPartition:
    """Records and settled outcomes of one partition, ready for the syncs.

    `warnings` counts records that lost or lack a value: `phone_dropped`, `email_dropped`,
    `external_id_dropped`, `currency_dropped`, `currency_missing` (a value without a
    currency), `value_missing` (a mapped value that resolved to nothing, NaN or ±inf),
    `profile_field_dropped`, `reserved_property_dropped`, `non_finite_property_dropped`,
    `flattened_key_collision` and `property_adjusted` (other property notes).
    `consent_unchanged` counts profiles with consent-like properties, which a profile upsert
    stores as plain properties without changing consent.
    """

    events: pd.DataFrame
    profiles: pd.DataFrame
    outcomes: pd.DataFrame
    rows_read: int
    warnings: Counter[str] = field(default_factory=Counter)


class _Candidates(RuleGroup):
    """Column lists gathered from every rule group before the vectorized clean-up."""

    def extend(self, group: RuleGroup) -> None:
        for name in self.__dataclass_fields__:
            if name != "settled":
                getattr(self, name).extend(getattr(group, name))


def _outcome_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS)).astype({"row_id": "int64"})


def _none_if_na(series: pd.Series) -> pd.Series:
    """Return the values as objects with None for every missing value."""
    if series.dtype == object and all_strings(series.to_numpy()):
        return series
    missing = series.isna().to_numpy()
    values = series.to_numpy(dtype=object, copy=True)
    values[missing] = None
    return pd.Series(values, index=series.index, dtype=object)


def _identity_keys(email: pd.Series, phone: pd.Series, external_id: pd.Series) -> pd.Series:
    """Return "e:<email>|p:<phone>|x:<external_id>" per row, with "" for a missing identifier."""
    labelled = (("e:", email), ("p:", phone), ("x:", external_id))
    try:
        texts = [_arrow_text(column) for _, column in labelled]
    except (pa.ArrowException, UnicodeEncodeError):
        # Arrow strings are UTF-8, so texts with a lone surrogate take the pandas path.
        texts = [label + column.fillna("") for label, column in labelled]
        return texts[0].str.cat(texts[1:], sep="|")
    # An identifier that no row has is a constant part of every key. Constant parts are
    # inserted into the texts, which Arrow does faster than a join with a scalar.
    keys: pa.Array | str = ""
    for position, ((label, _), text) in enumerate(zip(labelled, texts, strict=True)):
        prefix = label if position == 0 else "|" + label
        if text.null_count == len(text):
            if isinstance(keys, str):
                keys += prefix
            else:
                keys = arrow_json.insert(keys, arrow_json.END, prefix)
        elif isinstance(keys, str):
            keys = arrow_json.insert(text.fill_null(""), 0, keys + prefix)
        else:
            labelled_text = arrow_json.insert(text.fill_null(""), 0, prefix)
            keys = pc.binary_join_element_wise(keys, labelled_text, "")
    if isinstance(keys, str):
        return pd.Series([keys] * len(email), index=email.index, dtype=object)
    return pd.Series(keys.to_numpy(zero_copy_only=False), index=email.index, dtype=object)


def _arrow_text(column: pd.Series) -> pa.Array:
    """Return a column of str or None as an Arrow string array."""
    return pa.array(column.to_numpy(dtype=object), type=pa.string(), from_pandas=True)


def _only_strings(column: pd.Series) -> bool:
    return column.dtype == object and all_strings(column.to_numpy())


def _has_missing(column: pd.Series) -> bool:
    if _only_strings(column):
        return False
    return bool(column.hasnans)


def _hash_input(column: pd.Series) -> Any:
    """Return the values that `hash_pandas_object` hashes for a column."""
    if isinstance(column.dtype, ExtensionDtype):
        return column.array
    return column.to_numpy()


def _hashes(*columns: pd.Series, repeated: tuple[int, ...] = ()) -> pd.Series:
    """Return a 16-hex-digit hash per row of the columns, stable across runs and processes.

    The values are those of `pd.util.hash_pandas_object` of the columns as one frame
    (SipHash with a fixed key, combined over the columns). That function factorizes every
    column first, which only pays off for repeated values and costs most of the time on
    columns of distinct texts. A column without missing values hashes to the same values
    without it, so only columns with missing values are factorized here.
    The columns at the `repeated` positions have few distinct values, such as metric names.
    Those that hold only strings are factorized too, which hashes each distinct value once.
    Other columns are not, because factorize counts 1, 1.0 and True as one value.
    NOTE: if a pandas release changed that hash, the next run would count every event as
    changed in its notes (nothing is sent twice) and upsert every profile once more.
    """
    hashed = combine_hash_arrays(
        (
            pd.util.hash_array(
                _hash_input(column),
                categorize=(position in repeated and _only_strings(column)) or _has_missing(column),
            )
            for position, column in enumerate(columns)
        ),
        len(columns),
    )
    # The hex digits of all hashes in one buffer, cut into texts of 16 by Arrow offsets.
    digits = hashed.astype(">u8").tobytes().hex().encode("ascii")
    offsets = np.arange(len(hashed) + 1, dtype=np.int64) * 16
    texts = pa.LargeStringArray.from_buffers(
        len(hashed), pa.py_buffer(offsets.tobytes()), pa.py_buffer(digits)
    )
    return pd.Series(texts.to_numpy(zero_copy_only=False), index=columns[0].index, dtype=object)


_PLAIN_TYPES = frozenset({str, int, bool, float})


def properties_json(props: Any, flatten: bool) -> tuple[str | None, str | None, str | None]:
    """Return (JSON text, reason, detail) of event properties within Klaviyo's limits.

    Flat properties of plain scalars, the usual case, are serialized directly; anything
    else goes through `clean_properties`. A reason means the record is rejected. Without a
    reason, a detail contains the notes of `clean_properties` to count as warnings.
    """
    if type(props) is str:
        # The rule mapping wrote these plain properties as JSON text already.
        return props, None, None
    if not isinstance(props, dict):
        props = {}
    text = _plain_json(props)
    if text is not None:
        return text, None, None
    cleaned, reason, detail = clean_properties(props, flatten)
    if reason is not None:
        return None, reason, detail
    return dumps(cleaned), None, detail


def _plain_json(props: dict[str, Any]) -> str | None:
    """Serialize flat properties of plain scalars, or return None for `clean_properties`.

    The checks run on the text, which may send a plain dict to `clean_properties` but never
    lets another one through. orjson writes NaN and ±inf as ``null``, and a value of None
    is ``null`` too. A ``"$`` key and a string over the limit are found the same way.
    orjson raises on keys that are not strings and on integers beyond 64 bits.
    """
    if len(props) > settings.MAX_PROPERTIES or not set(map(type, props.values())) <= _PLAIN_TYPES:
        return None
    try:
        text = orjson.dumps(props)
    except orjson.JSONEncodeError:
        return None
    # Bytes are at least characters, so a text this short has no string over the limit.
    if len(text) > settings.SAFE_STRING_CHARACTERS or b"null" in text or b'"$' in text:
        return None
    return text.decode()


class RecordBuilder:
    """Build the records of one partition from its normalized events."""

    def __init__(
        self,
        destination: CompiledDestination,
        normalize_config: NormalizeConfig,
        ecommerce: EcommerceConfig,
        partition: str,
    ) -> None:
        self.destination = destination
        self.options = normalize_config
        self.ecommerce = ecommerce
        self.partition = partition
        self.outcomes: list[dict[str, Any]] = []
        self.warnings: Counter[str] = Counter()
        # Profiles merge across chunks: attributes, first row and identifiers per identity.
        self._profiles: dict[str, dict[str, Any]] = {}
        self._profile_rows: dict[str, int] = {}
        self._profile_identifiers: dict[str, tuple[Any, Any, Any]] = {}

    def settle(
        self,
        row_id: int,
        stream: str,
        status: Status,
        reason: str,
        detail: str | None = None,
        metric: Any = None,
        unique_id: Any = None,
        identity: str | None = None,
        record_id: str | None = None,
    ) -> None:
        self.outcomes.append(
            {
                "row_id": int(row_id),
                "record_id": record_id or str(row_id),
                "stream": stream,
                "status": status.value,
                "reason": str(reason),
                "detail": detail,
                "metric": metric,
                "unique_id": unique_id,
                "identity": identity,
            }
        )

    def build(self, events: pd.DataFrame) -> MappedPartition:
        """Map one chunk of rows; return its event records, settled outcomes and warnings.

        Profiles merge across chunks, so they come from `finish_profiles` after the last
        chunk; the returned `profiles` frame is empty.
        """
        rows_read = len(events)
        valid = self._settle_normalizer_rejects(events)
        names: dict[int, Any] = {}
        candidates = _Candidates()
        for group in self.destination.evaluate(valid):
            if group.settled and not names:
                names = dict(zip(valid["row_id"], valid["name"], strict=True))
            for row_id, reason in group.settled:
                status = Status.SKIPPED if reason != Reason.INVALID_NAME else Status.REJECTED
                self.settle(
                    row_id,
                    "event",
                    status,
                    reason,
                    SETTLED_DETAILS.get(str(reason)),
                    metric=names.get(row_id),
                )
            candidates.extend(group)

        table = self._clean(candidates, events)
        event_records = self._event_records(table)
        self._collect_profiles(table)
        outcomes = _outcome_frame(self.outcomes)
        self.outcomes = []
        warnings = self.warnings
        self.warnings = Counter()
        return MappedPartition(
            events=event_records,
            profiles=pd.DataFrame(columns=list(PROFILE_COLUMNS)),
            outcomes=outcomes,
            rows_read=rows_read,
            warnings=warnings,
        )

    def _settle_normalizer_rejects(self, events: pd.DataFrame) -> pd.DataFrame:
        rejected = (
            events["reject_reason"].notna()
            if "reject_reason" in events
            else pd.Series(False, index=events.index)
        )
        if not rejected.any():
            return events
        for row in events.loc[
            rejected, ["row_id", "reject_reason", "reject_detail", "name"]
        ].itertuples(index=False):
            self.settle(
                row.row_id,
                "event",
                Status.REJECTED,
                row.reject_reason,
                row.reject_detail,
                metric=row.name,
            )
        return events.loc[~rejected]

    def _clean(self, c: _Candidates, events: pd.DataFrame) -> pd.DataFrame:
        """Normalize identities, values, currencies and unique ids of all candidates at once."""
        table = pd.DataFrame(
            {
                "row_id": pd.Series(c.row_id, dtype="int64"),
                "metric": pd.Series(c.metric, dtype=object),
                "send_event": pd.Series(c.send_event, dtype=bool),
                "unique_id_required": pd.Series(c.unique_id_required, dtype=bool),
            }
        )
        table["properties"] = pd.Series(c.properties, dtype=object)
        table["identify"] = pd.Series(c.identify, dtype=object)
        table["traits"] = pd.Series(c.traits, dtype=object)
        table["items"] = pd.Series(c.items, dtype=object)
        if table.empty:
            for column in (
                "email",
                "phone_number",
                "external_id",
                "value",
                "value_currency",
                "unique_id",
                "time",
            ):
                table[column] = pd.Series(dtype=object)
            table["reason"] = pd.Series(dtype=object)
            return table

        email_in = normalize.format_ids(pd.Series(c.email, dtype=object))
        emails, email_reasons = normalize.normalize_emails(email_in, self.options.lowercase_email)
        regions: Any = pd.Series(c.region, dtype=object)
        # An identity test, because a cell may hold an array, which == None compares per item.
        no_region = all(map(operator.is_, c.region, itertools.repeat(None)))
        if self.options.default_region and no_region:
            region = self.options.default_region
            regions = pd.Series(np.full(len(c.region), region, dtype=object), dtype=object)
        elif self.options.default_region:
            regions = regions.where(regions.notna(), self.options.default_region)
        phones, phone_reasons = normalize.normalize_phones(
            normalize.format_ids(pd.Series(c.phone, dtype=object)), regions
        )
        external_ids = normalize.format_ids(pd.Series(c.external_id, dtype=object))
        external_reasons = normalize.check_external_ids(external_ids)
        if self.options.external_id_too_long == "drop":
            self.warnings["external_id_dropped"] += int(external_reasons.notna().sum())
            external_ids = external_ids.where(external_reasons.isna(), None)
            external_reasons = pd.Series([None] * len(table), dtype=object)

        self.warnings["phone_dropped"] += int(phone_reasons.notna().sum())
        emails_dropped = email_reasons.notna()
        table["email"] = _none_if_na(emails)
        table["phone_number"] = _none_if_na(phones)
        table["external_id"] = _none_if_na(external_ids)
        has_identifier = table[["email", "phone_number", "external_id"]].notna().any(axis=1)
        self.warnings["email_dropped"] += int((emails_dropped & has_identifier).sum())

        values, value_reasons = normalize.parse_values(
            pd.Series(c.value, dtype=object), self.options.locale_values
        )
        currencies, currency_reasons = normalize.normalize_currencies(
            pd.Series(c.currency, dtype=object), default=self.destination.currency
        )
        has_value = values.notna()
        currencies = currencies.where(has_value, None)
        currency_reasons = currency_reasons.where(has_value, None)
        # A mapped value that resolves to nothing (NULL, NaN, ±inf) is left out of the event.
        value_expected = pd.Series(c.value_mapped, dtype=bool) & table["send_event"]
        self.warnings["value_missing"] += int(
            (value_expected & ~has_value & value_reasons.isna()).sum()
        )
        self.warnings["currency_missing"] += int(
            (has_value & currencies.isna() & currency_reasons.isna()).sum()
        )
        if self.options.drop_invalid_currency:
            self.warnings["currency_dropped"] += int(currency_reasons.notna().sum())
            currency_reasons = pd.Series([None] * len(table), dtype=object)
        table["value"] = values.astype("float64")
        table["value_currency"] = _none_if_na(currencies)

        unique_ids = normalize.format_ids(pd.Series(c.unique_id, dtype=object))
        if self.destination.prefix_unique_id:
            prefixed = [
                None if unique_id is None else f"{_metric_slug(metric)}:{unique_id}"
                for metric, unique_id in zip(table["metric"], unique_ids, strict=True)
            ]
            unique_ids = pd.Series(prefixed, index=unique_ids.index, dtype=object)
        table["unique_id"] = _none_if_na(unique_ids)
        # Every candidate row comes from `events`, so each row_id is found.
        positions = pd.Index(events["row_id"]).get_indexer(table["row_id"])
        # An object column, because pandas would convert texts to its Arrow-backed str dtype.
        table["time"] = pd.Series(events["time"].to_numpy()[positions], dtype=object)

        reason = pd.Series([None] * len(table), dtype=object)
        detail = pd.Series([None] * len(table), dtype=object)
        checks = [
            (external_reasons, "external_id has more than 255 characters"),
            (value_reasons, "value is not a number"),
            (currency_reasons, "value_currency is not an ISO 4217 code"),
        ]
        for reasons, text in checks:
            hit = reasons.notna() & reason.isna()
            if hit.any():
                reason[hit] = reasons[hit]
                detail[hit] = text
        bad_value = (value_reasons.notna() & (detail == "value is not a number")).to_numpy()
        if bad_value.any():
            raw_values = pd.Series(c.value, dtype=object)[bad_value]
            hint = "" if self.options.locale_values else "; normalize.locale_values reads 1.299,00"
            detail[bad_value] = [
                f"value {str(raw)[:40]!r} is not a number{hint}" for raw in raw_values
            ]
        no_identifier = ~has_identifier & reason.isna()
        email_only_bad = no_identifier & emails_dropped
        reason[email_only_bad] = email_reasons[email_only_bad]
        detail[email_only_bad] = "email is invalid and the row has no other identifier"
        reason[no_identifier & ~emails_dropped] = Reason.NO_IDENTIFIER.value
        detail[no_identifier & ~emails_dropped] = "no email, phone_number or external_id resolved"
        table["reason"] = reason
        table["detail"] = detail
        return table

    def _event_records(self, table: pd.DataFrame) -> pd.DataFrame:
        # Filters copy every column, so they run only when they remove a row.
        send_event = table["send_event"].astype(bool)
        all_send = bool(send_event.all())
        events = table.copy(deep=False) if all_send else table[send_event]
        unsendable = events["reason"].notna()
        any_unsendable = bool(unsendable.any())
        unsendable_rows = events[unsendable] if any_unsendable else events.iloc[:0]
        for row in unsendable_rows.itertuples(index=False):
            status = _unsendable_status(row.reason)
            self.settle(
                row.row_id,
                "event",
                status,
                row.reason,
                row.detail,
                metric=row.metric,
                unique_id=row.unique_id,
                identity=mask_identity(row.email, row.phone_number, row.external_id),
            )
        silent_rows = table.iloc[:0] if all_send else table[~send_event]
        for row in silent_rows.itertuples(index=False):
            if row.reason is None:
                self.settle(
                    row.row_id,
                    "event",
                    Status.SKIPPED,
                    Reason.SILENT,
                    "rule is silent: profile only",
                    metric=row.metric,
                )
            else:
                # The row's only output is its profile, so the row ends with the profile's reason.
                self.settle(
                    row.row_id,
                    "event",
                    _unsendable_status(row.reason),
                    row.reason,
                    row.detail,
                    metric=row.metric,
                    identity=mask_identity(row.email, row.phone_number, row.external_id),
                )
        if any_unsendable:
            events = events[~unsendable]
        events["record_id"] = events["row_id"].astype(str)
        events = self._add_line_items(events)
        events = self._check_events(events)
        return self._dedupe_events(events)

    def _check_events(self, events: pd.DataFrame) -> pd.DataFrame:
        """Reject events Klaviyo would refuse: missing ids, long names, oversized properties."""
        reason = pd.Series(None, index=events.index, dtype=object)
        detail = pd.Series(None, index=events.index, dtype=object)
        unique_ids = events["unique_id"]
        metric_lengths = text_lengths(events["metric"])
        checks = [
            (
                unique_ids.isna() & events["unique_id_required"].astype(bool),
                Reason.UNIQUE_ID_MISSING,
                "the uniqueId mapping resolved to no value",
            ),
            (
                text_lengths(unique_ids) > settings.MAX_UNIQUE_ID_LENGTH,
                Reason.UNIQUE_ID_TOO_LONG,
                "unique_id has more than 255 characters",
            ),
            (
                metric_lengths < 0,
                Reason.METRIC_NAME_TOO_LONG,
                "the event has no metric name",
            ),
            (
                metric_lengths > settings.MAX_METRIC_NAME_LENGTH,
                Reason.METRIC_NAME_TOO_LONG,
                f"metric name has more than {settings.MAX_METRIC_NAME_LENGTH} characters",
            ),
        ]
        for hit, code, text in checks:
            hit = np.asarray(hit, dtype=bool) & reason.isna().to_numpy()
            if hit.any():
                reason[hit] = code.value
                detail[hit] = text

        # The rule mapping writes plain properties as JSON text already, so only the other
        # properties of rows that are not rejected yet are serialized here.
        column = events["properties"]
        if column.dtype != object or not all_strings(column.to_numpy()):
            events = self._serialize_properties(events, reason, detail)

        rejected = reason.notna()
        if not rejected.any():
            return events
        for row, row_reason, row_detail in zip(
            events[rejected].itertuples(index=False),
            reason[rejected],
            detail[rejected],
            strict=True,
        ):
            self.settle(
                row.row_id,
                "event",
                Status.REJECTED,
                row_reason,
                row_detail,
                metric=row.metric,
                unique_id=row.unique_id,
                record_id=row.record_id,
                identity=mask_identity(row.email, row.phone_number, row.external_id),
            )
        return events[~rejected.to_numpy()]

    def _serialize_properties(
        self, events: pd.DataFrame, reason: pd.Series, detail: pd.Series
    ) -> pd.DataFrame:
        """Serialize the properties that are not JSON text yet, rejecting those that fail.

        Rows that another check rejected keep their properties as they are.
        """
        flatten = self.options.flatten_properties
        values = events["properties"].tolist()
        texts: list[Any] = list(values)
        settled = reason.isna().to_numpy()
        pending = [
            position
            for position, props in enumerate(values)
            if type(props) is not str and settled[position]
        ]
        for position in pending:
            text, prop_reason, prop_detail = properties_json(values[position], flatten)
            texts[position] = text
            if prop_reason is not None:
                reason.iloc[position] = prop_reason
                detail.iloc[position] = prop_detail
            elif prop_detail:
                self._count_property_notes(prop_detail)
        return events.assign(properties=pd.Series(texts, index=events.index, dtype=object))

    def _count_property_notes(self, notes: str | None) -> None:
        """Count the notes of `clean_properties` (dropped `$` keys, NaN or ±inf, collisions)."""
        for note in notes.split("; ") if notes else ():
            name = next(
                (key for prefix, key in PROPERTY_NOTES if note.startswith(prefix)),
                "property_adjusted",
            )
            self.warnings[name] += 1

    def _profile_properties(self, traits: Any) -> str | None:
        """Return an event's custom profile properties as JSON text, or None without any."""
        if not isinstance(traits, dict) or not traits:
            return None
        cleaned, _, notes = clean_properties(traits, self.options.flatten_properties)
        self._count_property_notes(notes)
        self._count_consent_keys(cleaned)
        return dumps(cleaned) if cleaned else None

    def _count_consent_keys(self, properties: dict[str, Any]) -> None:
        if any(str(key).casefold() in CONSENT_PROPERTY_KEYS for key in properties):
            self.warnings["consent_unchanged"] += 1

    def _dedupe_events(self, events: pd.DataFrame) -> pd.DataFrame:
        events = events.assign(
            profile_key=_identity_keys(
                events["email"], events["phone_number"], events["external_id"]
            )
            if len(events)
            else pd.Series(dtype=object)
        )
        traits = events["traits"].tolist()
        events["profile_properties"] = pd.Series(
            [None] * len(traits)
            if traits.count(None) == len(traits)
            else [None if value is None else self._profile_properties(value) for value in traits],
            index=events.index,
            dtype=object,
        )
        keyed = events["unique_id"].notna()
        # Only rows that share a unique_id can repeat (profile, metric, unique_id), so the
        # three columns are compared for those rows only.
        shared = (keyed & events["unique_id"].duplicated(keep=False)).to_numpy()
        duplicate = pd.Series(False, index=events.index)
        if shared.any():
            # Rule groups follow each other, so two rules with the same metric can put a
            # later row first. The earliest row wins, so the candidates go in row order.
            candidates = events[shared].sort_values("row_id", kind="stable")
            repeated = candidates.duplicated(
                subset=["profile_key", "metric", "unique_id"], keep="first"
            )
            duplicate[repeated.index[repeated.to_numpy()]] = True
        for row in events[duplicate].itertuples(index=False):
            self.settle(
                row.row_id,
                "event",
                Status.DEDUPLICATED,
                Reason.DUPLICATE_UNIQUE_ID,
                "an earlier row of this partition has the same profile, metric and unique_id",
                metric=row.metric,
                unique_id=row.unique_id,
                record_id=row.record_id,
                identity=mask_identity(row.email, row.phone_number, row.external_id),
            )
        if duplicate.any():
            events = events[~duplicate]
        events["partition"] = self.partition
        events["content_hash"] = (
            _hashes(
                events["metric"],
                events["unique_id"],
                events["profile_key"],
                events["time"],
                events["value"],
                events["value_currency"],
                events["properties"],
                events["profile_properties"],
                repeated=(0,),
            )
            if len(events)
            else pd.Series(dtype=object)
        )
        return events.reindex(columns=list(EVENT_COLUMNS)).reset_index(drop=True)

    def _add_line_items(self, events: pd.DataFrame) -> pd.DataFrame:
        """Add one Ordered Product event per line item of each Placed Order, when enabled."""
        if not self.ecommerce.ordered_product or events.empty:
            return events
        is_order = (events["metric"] == self.ecommerce.order_metric).to_numpy()
        properties = [
            orjson.loads(props) if type(props) is str and order else props
            for props, order in zip(events["properties"].tolist(), is_order, strict=True)
        ]
        events = events.assign(properties=properties)
        orders = events[is_order]
        lines: list[dict[str, Any]] = []
        for position, order in zip(
            np.flatnonzero(is_order), orders.to_dict("records"), strict=True
        ):
            items = order["items"] if isinstance(order["items"], list) else []
            products: list[dict[str, Any]] = []
            for index, item in enumerate(items):
                product = (
                    item.get("data")
                    if isinstance(item, dict) and isinstance(item.get("data"), dict)
                    else item
                )
                if not isinstance(product, dict):
                    continue
                products.append(product)
                lines.append(self._line_item(order, product, index))
            if products:
                properties[position] = _with_order_summary(order["properties"], products)
        if not lines:
            return events
        events = events.assign(properties=properties)
        return pd.concat([events, pd.DataFrame(lines)], ignore_index=True)

    def _line_item(
        self, order: dict[str, Any], product: dict[str, Any], index: int
    ) -> dict[str, Any]:
        order_props = order["properties"] if isinstance(order["properties"], dict) else {}
        shared = {
            k: v for k, v in order_props.items() if k not in ("Items", "ItemNames", "Categories")
        }
        properties = {**shared, **product}
        price, quantity = (
            product.get(_leaf(self.ecommerce.line_price_path)),
            product.get(_leaf(self.ecommerce.line_quantity_path), 1),
        )
        line_value = (
            float(price) * float(quantity) if _is_number(price) and _is_number(quantity) else np.nan
        )
        line_value = line_value if math.isfinite(line_value) else np.nan
        base_id = order["unique_id"]
        if self.destination.prefix_unique_id and isinstance(base_id, str):
            base_id = base_id.split(":", 1)[-1]
            unique_id = f"{_metric_slug(self.ecommerce.line_item_metric)}:{base_id}:{index}"
        else:
            unique_id = f"{base_id}:{index}" if base_id else None
        return {
            **order,
            "record_id": f"{order['row_id']}:{index}",
            "metric": self.ecommerce.line_item_metric,
            "properties": properties,
            "value": line_value,
            "unique_id": unique_id,
        }

    def _collect_profiles(self, table: pd.DataFrame) -> None:
        """Merge this chunk's identify results into one upsert per identity."""
        identify = table["identify"].tolist()
        if identify.count(None) == len(identify):
            return
        has_identify = pd.Series(
            np.fromiter((isinstance(value, dict) for value in identify), bool, len(identify)),
            index=table.index,
        )
        if not has_identify.any():
            return
        for row in table[has_identify & table["reason"].notna()].itertuples(index=False):
            self.settle(
                row.row_id,
                "profile",
                _unsendable_status(row.reason),
                row.reason,
                row.detail,
                record_id=f"p{row.row_id}",
                identity=mask_identity(row.email, row.phone_number, row.external_id),
            )
        profiles = table[has_identify & table["reason"].isna()]
        if profiles.empty:
            return
        profiles["profile_key"] = _identity_keys(
            profiles["email"], profiles["phone_number"], profiles["external_id"]
        )
        merged = self._profiles
        columns = ["row_id", "profile_key", "identify", "email", "phone_number", "external_id"]
        for row in profiles[columns].itertuples(index=False):
            attributes = self._profile_attributes(row.identify)
            if row.profile_key in merged:
                self.settle(
                    row.row_id,
                    "profile",
                    Status.DEDUPLICATED,
                    Reason.DUPLICATE_PROFILE,
                    "merged into the partition's upsert of the same profile",
                    record_id=f"p{row.row_id}",
                )
                _merge_attributes(merged[row.profile_key], attributes)
            else:
                merged[row.profile_key] = attributes
                self._profile_rows[row.profile_key] = row.row_id
                self._profile_identifiers[row.profile_key] = (
                    row.email,
                    row.phone_number,
                    row.external_id,
                )

    def finish_profiles(self) -> pd.DataFrame:
        """Return the profile records merged over every chunk built so far."""
        # NOTE: merged profiles stay in memory until the last chunk, so a partition with
        # millions of distinct profiles needs memory for all of them.
        merged = self._profiles
        if not merged:
            return pd.DataFrame(columns=list(PROFILE_COLUMNS))
        keys = list(merged)
        identifiers = [self._profile_identifiers[key] for key in keys]
        records = pd.DataFrame(
            {
                "profile_key": keys,
                "row_id": pd.Series([self._profile_rows[key] for key in keys], dtype="int64"),
                "attributes": [dumps(self._with_unsets(merged[key])) for key in keys],
                "email": pd.Series([ids[0] for ids in identifiers], dtype=object),
                "phone_number": pd.Series([ids[1] for ids in identifiers], dtype=object),
                "external_id": pd.Series([ids[2] for ids in identifiers], dtype=object),
            }
        )
        records["record_id"] = "p" + records["row_id"].astype(str)
        records["partition"] = self.partition
        records["content_hash"] = _hashes(records["profile_key"], records["attributes"])
        return records.reindex(columns=list(PROFILE_COLUMNS)).reset_index(drop=True)

    def _profile_attributes(self, identify: dict[str, Any]) -> dict[str, Any]:
        """Build profile attributes of the types Klaviyo accepts; empty objects are left out."""
        attributes: dict[str, Any] = {}
        for source, target in PROFILE_TRAITS:
            value = identify.get(source)
            if value is None:
                continue
            converted = _location(value) if target == "location" else _profile_text(value)
            if converted is None:
                self.warnings["profile_field_dropped"] += 1
            elif converted != {}:
                attributes[target] = converted
        if isinstance(identify.get("properties"), dict):
            cleaned, _, notes = clean_properties(
                identify["properties"], self.options.flatten_properties
            )
            self._count_property_notes(notes)
            self._count_consent_keys(cleaned)
            if cleaned:
                attributes["properties"] = cleaned
        return attributes

    def _with_unsets(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """Add `null` for each configured unset field that no row of the partition set.

        Top-level attribute names stay top-level. Location keys (`zip` or `location.zip`) go
        into `location`, and any other name (`plan` or `properties.plan`) is a custom property.
        """
        for name in self.options.unset_profile_fields:
            if name in TOP_LEVEL_ATTRIBUTES:
                attributes.setdefault(name, None)
                continue
            if name.startswith("location.") or name in LOCATION_KEYS:
                section, key = "location", name.removeprefix("location.")
            else:
                section, key = "properties", name.removeprefix("properties.")
            target = attributes.setdefault(section, {})
            if isinstance(target, dict):
                target.setdefault(key, None)
        return attributes


def _unsendable_status(reason: Any) -> Status:
    return Status.SKIPPED if reason == Reason.NO_IDENTIFIER else Status.REJECTED


def _profile_text(value: Any) -> str | None:
    """Return a profile string attribute: text as it is, numbers as walkerOS formats ids.

    Booleans, objects, lists and NaN or ±inf have no string form that Klaviyo would read as
    intended, so they give None.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating) and math.isfinite(value):
        return normalize.format_js_number(float(value))
    return None


def _location(value: Any) -> dict[str, Any] | None:
    """Return the known location keys of a mapped location: latitude and longitude as numbers
    or text, the others as text. Values of other types are left out."""
    if not isinstance(value, dict):
        return None
    location: dict[str, Any] = {}
    for key, item in value.items():
        if key not in LOCATION_KEYS:
            continue
        if key in ("latitude", "longitude") and _is_number(item) and math.isfinite(item):
            location[key] = float(item)
            continue
        text = _profile_text(item)
        if text is not None:
            location[key] = text
    return location


def _merge_attributes(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if (
            key in ("properties", "location")
            and isinstance(target.get(key), dict)
            and isinstance(value, dict)
        ):
            target[key] = {**target[key], **value}
        elif value is not None or key not in target:
            target[key] = value


def _with_order_summary(properties: Any, products: list[dict[str, Any]]) -> dict[str, Any]:
    """Add Klaviyo's Placed Order keys `Items`, `ItemNames` and `Categories` from the line
    items, where the mapping did not set them."""
    summary = dict(properties) if isinstance(properties, dict) else {}
    summary.setdefault("Items", products)
    names = [name for name in (_first_text(product, NAME_KEYS) for product in products) if name]
    if names:
        summary.setdefault("ItemNames", names)
    categories: list[str] = []
    for product in products:
        for category in _texts(_first_value(product, CATEGORY_KEYS)):
            if category not in categories:
                categories.append(category)
    if categories:
        summary.setdefault("Categories", categories)
    return summary


def _first_value(product: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((product[key] for key in keys if product.get(key) is not None), None)


def _first_text(product: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    value = _first_value(product, keys)
    return value if isinstance(value, str) else None


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _metric_slug(metric: Any) -> str:
    return "_".join(str(metric).casefold().split())


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def compile_destination(config: PipelineConfig) -> CompiledDestination:
    """Compile the config's destination with the normalize and ecommerce options that shape it."""
    return CompiledDestination(
        config.destination,
        prefix_unique_id=config.normalize.prefix_unique_id_with_metric,
        user_traits_to_profile=config.normalize.user_traits_to_profile,
        line_items_path=config.ecommerce.items_path if config.ecommerce.ordered_product else None,
    )


def build_records(events: pd.DataFrame, config: PipelineConfig, partition: str) -> MappedPartition:
    """Map one partition's normalized events into records and settled outcomes."""
    builder = RecordBuilder(
        compile_destination(config), config.normalize, config.ecommerce, partition
    )
    mapped = builder.build(events)
    mapped.profiles = builder.finish_profiles()
    mapped.outcomes = pd.concat(
        [mapped.outcomes, _outcome_frame(builder.outcomes)], ignore_index=True
    )
    return mapped
