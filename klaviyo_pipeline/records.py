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

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from klaviyo_pipeline import normalize, settings
from klaviyo_pipeline.config import EcommerceConfig, NormalizeConfig, PipelineConfig
from klaviyo_pipeline.jsonsafe import clean_properties, dumps
from klaviyo_pipeline.mapping.destination import CompiledDestination, RuleGroup
from klaviyo_pipeline.masking import mask_identity
from klaviyo_pipeline.outcomes import Reason, Status

EVENT_COLUMNS = (
    "record_id", "row_id", "partition", "metric", "unique_id", "email", "phone_number",
    "external_id", "profile_key", "time", "value", "value_currency", "properties",
    "profile_properties", "content_hash",
)
PROFILE_COLUMNS = (
    "record_id", "row_id", "partition", "email", "phone_number", "external_id", "profile_key",
    "attributes", "content_hash",
)
OUTCOME_COLUMNS = (
    "row_id", "record_id", "stream", "status", "reason", "detail", "metric", "unique_id", "identity",
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
    {"address1", "address2", "city", "country", "latitude", "longitude", "region", "zip", "timezone", "ip"}
)


@dataclass
class MappedPartition:
    """Records and settled outcomes of one partition, ready for the syncs."""

    events: pd.DataFrame
    profiles: pd.DataFrame
    outcomes: pd.DataFrame
    rows_read: int
    warnings: Counter[str] = field(default_factory=Counter)


@dataclass
class _Candidates:
    """Column lists gathered from every rule group before the vectorized clean-up."""

    row_id: list[int] = field(default_factory=list)
    metric: list[Any] = field(default_factory=list)
    properties: list[Any] = field(default_factory=list)
    value: list[Any] = field(default_factory=list)
    currency: list[Any] = field(default_factory=list)
    unique_id: list[Any] = field(default_factory=list)
    unique_id_required: list[bool] = field(default_factory=list)
    email: list[Any] = field(default_factory=list)
    phone: list[Any] = field(default_factory=list)
    external_id: list[Any] = field(default_factory=list)
    region: list[Any] = field(default_factory=list)
    identify: list[Any] = field(default_factory=list)
    send_event: list[bool] = field(default_factory=list)
    traits: list[Any] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)

    def extend(self, group: RuleGroup) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(group, name))


def _outcome_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS)).astype({"row_id": "int64"})


def _none_if_na(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), None)


def _identity_keys(email: pd.Series, phone: pd.Series, external_id: pd.Series) -> pd.Series:
    parts = [
        "e:" + email.fillna(""),
        "p:" + phone.fillna(""),
        "x:" + external_id.fillna(""),
    ]
    return parts[0].str.cat(parts[1:], sep="|")


def _hashes(*columns: pd.Series) -> pd.Series:
    texts = [column.astype(object).map(str) for column in columns]
    joined = texts[0].str.cat(texts[1:], sep="\x1f")
    return joined.map(lambda text: hashlib.md5(text.encode(), usedforsecurity=False).hexdigest())


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

    def settle(self, row_id: int, stream: str, status: Status, reason: str, detail: str | None = None,
               metric: Any = None, unique_id: Any = None, identity: str | None = None,
               record_id: str | None = None) -> None:
        self.outcomes.append({
            "row_id": int(row_id), "record_id": record_id or str(row_id), "stream": stream,
            "status": status.value, "reason": str(reason), "detail": detail,
            "metric": metric, "unique_id": unique_id, "identity": identity,
        })

    def build(self, events: pd.DataFrame) -> MappedPartition:
        """Map every row; return records, settled outcomes and warning counts."""
        rows_read = len(events)
        valid = self._settle_normalizer_rejects(events)
        candidates = _Candidates()
        for group in self.destination.evaluate(valid):
            for row_id, reason in group.settled:
                self.settle(row_id, "event", Status.SKIPPED if reason != Reason.INVALID_NAME else Status.REJECTED,
                            reason, metric=None)
            candidates.extend(group)

        table = self._clean(candidates, events)
        event_records = self._event_records(table)
        profile_records = self._profile_records(table)
        return MappedPartition(
            events=event_records,
            profiles=profile_records,
            outcomes=_outcome_frame(self.outcomes),
            rows_read=rows_read,
            warnings=self.warnings,
        )

    def _settle_normalizer_rejects(self, events: pd.DataFrame) -> pd.DataFrame:
        rejected = events["reject_reason"].notna() if "reject_reason" in events else pd.Series(False, index=events.index)
        for row in events.loc[rejected, ["row_id", "reject_reason", "reject_detail", "name"]].itertuples(index=False):
            self.settle(row.row_id, "event", Status.REJECTED, row.reject_reason, row.reject_detail, metric=row.name)
        return events.loc[~rejected]

    def _clean(self, c: _Candidates, events: pd.DataFrame) -> pd.DataFrame:
        """Normalize identities, values, currencies and unique ids of all candidates at once."""
        table = pd.DataFrame({
            "row_id": pd.Series(c.row_id, dtype="int64"),
            "metric": pd.Series(c.metric, dtype=object),
            "send_event": pd.Series(c.send_event, dtype=bool),
            "unique_id_required": pd.Series(c.unique_id_required, dtype=bool),
        })
        table["properties"] = pd.Series(c.properties, dtype=object)
        table["identify"] = pd.Series(c.identify, dtype=object)
        table["traits"] = pd.Series(c.traits, dtype=object)
        table["items"] = pd.Series(c.items, dtype=object)
        if table.empty:
            for column in ("email", "phone_number", "external_id", "value", "value_currency", "unique_id", "time"):
                table[column] = pd.Series(dtype=object)
            table["reason"] = pd.Series(dtype=object)
            return table

        email_in = normalize.format_ids(pd.Series(c.email, dtype=object))
        emails, email_reasons = normalize.normalize_emails(email_in, self.options.lowercase_email)
        regions: Any = pd.Series(c.region, dtype=object)
        if self.options.default_region:
            regions = regions.where(regions.notna(), self.options.default_region)
        phones, phone_reasons = normalize.normalize_phones(normalize.format_ids(pd.Series(c.phone, dtype=object)), regions)
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

        values, value_reasons = normalize.parse_values(pd.Series(c.value, dtype=object), self.options.locale_values)
        currencies, currency_reasons = normalize.normalize_currencies(
            pd.Series(c.currency, dtype=object), default=self.destination.currency
        )
        has_value = values.notna()
        currencies = currencies.where(has_value, None)
        currency_reasons = currency_reasons.where(has_value, None)
        if self.options.drop_invalid_currency:
            self.warnings["currency_dropped"] += int(currency_reasons.notna().sum())
            currency_reasons = pd.Series([None] * len(table), dtype=object)
        table["value"] = values.astype("float64")
        table["value_currency"] = _none_if_na(currencies)

        unique_ids = normalize.format_ids(pd.Series(c.unique_id, dtype=object))
        if self.destination.prefix_unique_id:
            slugs = table["metric"].map(_metric_slug)
            unique_ids = (slugs + ":" + unique_ids).where(unique_ids.notna(), None)
        table["unique_id"] = _none_if_na(unique_ids)
        table["time"] = events.set_index("row_id").loc[table["row_id"], "time"].to_numpy()

        reason = pd.Series([None] * len(table), dtype=object)
        detail = pd.Series([None] * len(table), dtype=object)
        checks = [
            (external_reasons, "external_id has more than 255 characters"),
            (value_reasons, "value is not a number"),
            (currency_reasons, "value_currency is not an ISO 4217 code"),
        ]
        for reasons, text in checks:
            hit = reasons.notna() & reason.isna()
            reason[hit] = reasons[hit]
            detail[hit] = text
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
        events = table[table["send_event"].astype(bool)].copy()
        for row in events[events["reason"].notna()].itertuples(index=False):
            status = Status.SKIPPED if row.reason == Reason.NO_IDENTIFIER else Status.REJECTED
            self.settle(row.row_id, "event", status, row.reason, row.detail, metric=row.metric,
                        unique_id=row.unique_id, identity=mask_identity(row.email, row.phone_number, row.external_id))
        for row in table[~table["send_event"].astype(bool)].itertuples(index=False):
            self.settle(row.row_id, "event", Status.SKIPPED, Reason.SILENT, "rule is silent: profile only",
                        metric=row.metric)
        events = events[events["reason"].isna()]
        events["record_id"] = events["row_id"].astype(str)
        events = self._add_line_items(events)
        events = self._check_events(events)
        return self._dedupe_events(events)

    def _check_events(self, events: pd.DataFrame) -> pd.DataFrame:
        """Reject events Klaviyo would refuse: missing ids, long names, oversized properties."""
        keep = np.ones(len(events), dtype=bool)
        texts: list[str | None] = []
        for position, row in enumerate(events[["row_id", "record_id", "metric", "unique_id", "unique_id_required",
                                               "properties", "email", "phone_number", "external_id"]].itertuples(index=False)):
            reason, detail = None, None
            if not row.unique_id:
                if row.unique_id_required:
                    reason, detail = Reason.UNIQUE_ID_MISSING, "the uniqueId mapping resolved to no value"
            elif len(row.unique_id) > settings.MAX_UNIQUE_ID_LENGTH:
                reason, detail = Reason.UNIQUE_ID_TOO_LONG, "unique_id has more than 255 characters"
            if reason is None and (not isinstance(row.metric, str) or len(row.metric) > settings.MAX_METRIC_NAME_LENGTH):
                reason, detail = Reason.METRIC_NAME_TOO_LONG, "metric name has more than 128 characters"
            text = None
            if reason is None:
                props = row.properties if isinstance(row.properties, dict) else {}
                cleaned, prop_reason, prop_detail = clean_properties(props, self.options.flatten_properties)
                if prop_reason:
                    reason, detail = prop_reason, prop_detail
                else:
                    text = dumps(cleaned)
            if reason is not None:
                keep[position] = False
                self.settle(row.row_id, "event", Status.REJECTED, reason, detail, metric=row.metric,
                            unique_id=row.unique_id, record_id=row.record_id,
                            identity=mask_identity(row.email, row.phone_number, row.external_id))
            texts.append(text)
        events = events.assign(properties=texts)[keep]
        return events

    def _dedupe_events(self, events: pd.DataFrame) -> pd.DataFrame:
        events = events.assign(
            profile_key=_identity_keys(events["email"], events["phone_number"], events["external_id"])
            if len(events) else pd.Series(dtype=object)
        )
        events["profile_properties"] = events["traits"].map(
            lambda traits: dumps(traits) if isinstance(traits, dict) and traits else None
        ) if len(events) else pd.Series(dtype=object)
        keyed = events["unique_id"].notna()
        duplicate = keyed & events.duplicated(subset=["profile_key", "metric", "unique_id"], keep="first")
        for row in events[duplicate].itertuples(index=False):
            self.settle(row.row_id, "event", Status.DEDUPLICATED, Reason.DUPLICATE_UNIQUE_ID,
                        "an earlier row of this partition has the same profile, metric and unique_id",
                        metric=row.metric, unique_id=row.unique_id, record_id=row.record_id,
                        identity=mask_identity(row.email, row.phone_number, row.external_id))
        events = events[~duplicate].copy()
        events["partition"] = self.partition
        events["content_hash"] = _hashes(
            events["metric"], events["unique_id"], events["profile_key"], events["time"], events["value"],
            events["value_currency"], events["properties"], events["profile_properties"],
        ) if len(events) else pd.Series(dtype=object)
        return events.reindex(columns=list(EVENT_COLUMNS)).reset_index(drop=True)

    def _add_line_items(self, events: pd.DataFrame) -> pd.DataFrame:
        """Add one Ordered Product event per line item of each Placed Order, when enabled."""
        if not self.ecommerce.ordered_product or events.empty:
            return events
        orders = events[events["metric"] == self.ecommerce.order_metric]
        lines: list[dict[str, Any]] = []
        for order in orders.to_dict("records"):
            items = order["items"] if isinstance(order["items"], list) else []
            for index, item in enumerate(items):
                product = item.get("data") if isinstance(item, dict) and isinstance(item.get("data"), dict) else item
                if not isinstance(product, dict):
                    continue
                lines.append(self._line_item(order, product, index))
        if not lines:
            return events
        return pd.concat([events, pd.DataFrame(lines)], ignore_index=True)

    def _line_item(self, order: dict[str, Any], product: dict[str, Any], index: int) -> dict[str, Any]:
        order_props = order["properties"] if isinstance(order["properties"], dict) else {}
        shared = {k: v for k, v in order_props.items() if k not in ("Items", "ItemNames", "Categories")}
        properties = {**shared, **product}
        price, quantity = product.get(_leaf(self.ecommerce.line_price_path)), product.get(
            _leaf(self.ecommerce.line_quantity_path), 1
        )
        line_value = float(price) * float(quantity) if _is_number(price) and _is_number(quantity) else np.nan
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

    def _profile_records(self, table: pd.DataFrame) -> pd.DataFrame:
        has_identify = table["identify"].map(lambda value: isinstance(value, dict))
        profiles = table[has_identify & table["reason"].isna()].copy()
        if profiles.empty:
            return pd.DataFrame(columns=list(PROFILE_COLUMNS))
        profiles["profile_key"] = _identity_keys(profiles["email"], profiles["phone_number"], profiles["external_id"])
        merged: dict[str, dict[str, Any]] = {}
        first_row: dict[str, int] = {}
        for row in profiles[["row_id", "profile_key", "identify"]].itertuples(index=False):
            attributes = self._profile_attributes(row.identify)
            if row.profile_key in merged:
                self.settle(row.row_id, "profile", Status.DEDUPLICATED, Reason.DUPLICATE_PROFILE,
                            "merged into the partition's upsert of the same profile", record_id=f"p{row.row_id}")
                _merge_attributes(merged[row.profile_key], attributes)
            else:
                merged[row.profile_key] = attributes
                first_row[row.profile_key] = row.row_id
        firsts = profiles.drop_duplicates("profile_key", keep="first").set_index("profile_key")
        records = pd.DataFrame({
            "profile_key": list(merged),
            "row_id": [first_row[key] for key in merged],
            "attributes": [dumps(merged[key]) for key in merged],
        })
        records["record_id"] = "p" + records["row_id"].astype(str)
        for column in ("email", "phone_number", "external_id"):
            records[column] = firsts.loc[records["profile_key"], column].to_numpy()
        records["partition"] = self.partition
        records["content_hash"] = _hashes(records["profile_key"], records["attributes"])
        return records.reindex(columns=list(PROFILE_COLUMNS)).reset_index(drop=True)

    def _profile_attributes(self, identify: dict[str, Any]) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        for source, target in PROFILE_TRAITS:
            if source in identify and identify[source] is not None:
                value = identify[source]
                if target == "location":
                    if not isinstance(value, dict):
                        continue
                    value = {k: str(v) if k == "zip" else v for k, v in value.items() if k in LOCATION_KEYS}
                attributes[target] = value
        if isinstance(identify.get("properties"), dict):
            cleaned, _, _ = clean_properties(identify["properties"], self.options.flatten_properties)
            attributes["properties"] = cleaned
        for unset in self.options.unset_profile_fields:
            attributes.setdefault(unset, None)
        return attributes


def _merge_attributes(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if key == "properties" and isinstance(target.get(key), dict) and isinstance(value, dict):
            target[key] = {**target[key], **value}
        elif value is not None or key not in target:
            target[key] = value


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
    builder = RecordBuilder(compile_destination(config), config.normalize, config.ecommerce, partition)
    return builder.build(events)
