"""The one change-record model every source decodes into (DESIGN.md §5).

It mirrors Spanner's `DataChangeRecord`: one record holds the mods of one table in one
transaction. Its JSON form is the Gson serialisation of Beam's Java `DataChangeRecord`, which is
what Google's "Spanner change streams to Cloud Storage" template writes as TEXT output:

    {"partitionToken": "...", "commitTimestamp": {"seconds": 1764720000, "nanos": 123000},
     "serverTransactionId": "...", "isLastRecordInTransactionInPartition": true,
     "recordSequence": "00000000", "tableName": "Policies",
     "rowType": [{"name": "PolicyId", "type": {"code": "{\"code\":\"STRING\"}"},
                  "isPrimaryKey": true, "ordinalPosition": 1}, ...],
     "mods": [{"keysJson": "{\"PolicyId\":\"P1\"}", "newValuesJson": "{...}"}],
     "modType": "INSERT", "valueCaptureType": "NEW_ROW",
     "numberOfRecordsInTransaction": 3, "numberOfPartitionsInTransaction": 1,
     "transactionTag": "", "isSystemTransaction": false, "metadata": {...}}

Gson leaves out null fields, so readers must treat every optional field as possibly absent
(Spanner itself sends `{}` for the old values under NEW_ROW capture).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

MOD_TYPES = ("INSERT", "UPDATE", "DELETE")
VALUE_CAPTURE_TYPES = (
    "OLD_AND_NEW_VALUES",
    "NEW_VALUES",
    "NEW_ROW",
    "NEW_ROW_AND_OLD_VALUES",
)


@dataclass(frozen=True)
class ColumnType:
    name: str
    type_json: str  # Spanner's type JSON, e.g. '{"code":"NUMERIC"}'
    is_primary_key: bool
    ordinal_position: int


@dataclass(frozen=True)
class Mod:
    keys_json: str
    new_values_json: str | None = None
    old_values_json: str | None = None


@dataclass
class DataChangeRecord:
    partition_token: str
    commit_timestamp_ns: int  # nanoseconds since the Unix epoch, UTC
    server_transaction_id: str
    is_last_record_in_transaction_in_partition: bool
    record_sequence: str
    table_name: str
    row_type: list[ColumnType]
    mods: list[Mod]
    mod_type: str
    value_capture_type: str
    number_of_records_in_transaction: int
    number_of_partitions_in_transaction: int
    transaction_tag: str = ""
    is_system_transaction: bool = False
    metadata: dict | None = field(default=None)

    @property
    def commit_timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.commit_timestamp_ns // 1000 / 1e6, tz=timezone.utc)

    def to_gson(self) -> dict:
        """The record as Gson serialises Beam's Java DataChangeRecord (nulls left out)."""
        seconds, nanos = divmod(self.commit_timestamp_ns, 1_000_000_000)
        out = {
            "partitionToken": self.partition_token,
            "commitTimestamp": {"seconds": seconds, "nanos": nanos},
            "serverTransactionId": self.server_transaction_id,
            "isLastRecordInTransactionInPartition": self.is_last_record_in_transaction_in_partition,
            "recordSequence": self.record_sequence,
            "tableName": self.table_name,
            "rowType": [
                {
                    "name": c.name,
                    "type": {"code": c.type_json},
                    "isPrimaryKey": c.is_primary_key,
                    "ordinalPosition": c.ordinal_position,
                }
                for c in self.row_type
            ],
            "mods": [_mod_to_gson(m) for m in self.mods],
            "modType": self.mod_type,
            "valueCaptureType": self.value_capture_type,
            "numberOfRecordsInTransaction": self.number_of_records_in_transaction,
            "numberOfPartitionsInTransaction": self.number_of_partitions_in_transaction,
            "transactionTag": self.transaction_tag,
            "isSystemTransaction": self.is_system_transaction,
        }
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out

    def to_json_line(self) -> str:
        return json.dumps(self.to_gson(), separators=(",", ":"), sort_keys=False)

    @classmethod
    def from_gson(cls, d: dict) -> "DataChangeRecord":
        ts = d["commitTimestamp"]
        return cls(
            partition_token=d.get("partitionToken", ""),
            commit_timestamp_ns=int(ts.get("seconds", 0)) * 1_000_000_000 + int(ts.get("nanos", 0)),
            server_transaction_id=d["serverTransactionId"],
            is_last_record_in_transaction_in_partition=bool(
                d.get("isLastRecordInTransactionInPartition", False)
            ),
            record_sequence=d["recordSequence"],
            table_name=d["tableName"],
            row_type=[
                ColumnType(
                    name=c["name"],
                    type_json=(c.get("type") or {}).get("code", ""),
                    is_primary_key=bool(c.get("isPrimaryKey", False)),
                    ordinal_position=int(c.get("ordinalPosition", 0)),
                )
                for c in d.get("rowType", [])
            ],
            mods=[
                Mod(
                    keys_json=m.get("keysJson"),
                    new_values_json=m.get("newValuesJson"),
                    old_values_json=m.get("oldValuesJson"),
                )
                for m in d.get("mods", [])
            ],
            mod_type=d["modType"],
            value_capture_type=d.get("valueCaptureType", "NEW_ROW"),
            number_of_records_in_transaction=int(d.get("numberOfRecordsInTransaction", 1)),
            number_of_partitions_in_transaction=int(d.get("numberOfPartitionsInTransaction", 1)),
            transaction_tag=d.get("transactionTag", ""),
            is_system_transaction=bool(d.get("isSystemTransaction", False)),
            metadata=d.get("metadata"),
        )


def _mod_to_gson(m: Mod) -> dict:
    out = {"keysJson": m.keys_json}
    if m.old_values_json is not None:
        out["oldValuesJson"] = m.old_values_json
    if m.new_values_json is not None:
        out["newValuesJson"] = m.new_values_json
    return out


def timestamp_to_ns(ts: datetime) -> int:
    """A timezone-aware datetime (or Spanner DatetimeWithNanoseconds) as epoch nanoseconds."""
    nanos = getattr(ts, "nanosecond", 0)
    whole = int(ts.replace(microsecond=0).timestamp()) * 1_000_000_000
    if nanos:
        return whole + nanos
    return whole + ts.microsecond * 1000


def ns_to_rfc3339(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"
