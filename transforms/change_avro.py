"""Avro change-record files, as written by Google's "Spanner change streams to Cloud Storage" template.

With `outputFileFormat=AVRO` the template (GoogleCloudPlatform/DataflowTemplates,
`WriteDataChangeRecordsToGcsAvro`) does not write Beam's `DataChangeRecord` as is: its
`WriteDataChangeRecordsToAvro.DataChangeRecordToAvroFn` first converts each record into its own
Avro class `com.google.cloud.teleport.v2.DataChangeRecord` (schema `datachangerecord.avsc`,
embedded below as `TEMPLATE_SCHEMA`) and AvroIO writes that (deflate by default). That mapping is
lossy, and this module mirrors it exactly so our files look like the template's:

- timestamps are plain `long` microseconds (the `logicalType` sits on the field, not the type, so
  Avro ignores it); sub-microsecond nanos are truncated, as `TimeUnit.NANOSECONDS.toMicros` does;
- a column type is the `TypeCode` enum, chosen by the exact Spanner type JSON `{"code":"X"}`;
  anything else (arrays with an element type, PG-annotated types, newer codes) is
  `TYPE_CODE_UNSPECIFIED`, and reads back as `{"code":"<symbol>"}`;
- null old/new values are written as the empty string ""; reading maps "" (and null) back to None;
- `valueCaptureType` has only OLD_AND_NEW_VALUES, NEW_ROW and NEW_VALUES: anything else
  (NEW_ROW_AND_OLD_VALUES, UNKNOWN) is written as NEW_VALUES, as the template's switch does. A
  merge-by-column decoder is unaffected: a full new row is a superset of the changed columns;
- `transactionTag` and `isSystemTransaction` are not in the schema: they read back as "" / False;
- metadata timestamps are microseconds; a null `partitionScheduledAt`/`partitionRunningAt` is
  written as 0 and read back as absent; `spannerDatabaseId`, `spannerInstanceId` and
  `outputMessageMetadata` (newer schema versions) are written null and ignored on read.

Files are read with their own writer schema, so older template versions (without the last three
fields) read as well. Anything that is not a readable Avro file of template DataChangeRecords
raises `AvroChangeRecordError` naming the file.
"""
from __future__ import annotations

import json
import os
from typing import IO, Iterable, Iterator

import fastavro

from transforms.change_record import ColumnType, DataChangeRecord, Mod
from transforms.errors import LedgerSourceError

# Source: GoogleCloudPlatform/DataflowTemplates,
#   v2/googlecloud-to-googlecloud/src/main/resources/schema/avro/datachangerecord.avsc
#   (version at commit 0117dbaaf7f93ba75142234790e0f77d940231a4; the older version at
#   e7016cff9ed6776bc44efd6992abc880fd38669d is identical minus the last three fields).
# Copied verbatim, including the field-level "logicalType" (ignored by Avro) and "java-class".
TEMPLATE_SCHEMA: dict = {
    "type": "record",
    "name": "DataChangeRecord",
    "namespace": "com.google.cloud.teleport.v2",
    "fields": [
        {"name": "partitionToken", "type": "string"},
        {"name": "commitTimestamp", "type": "long", "logicalType": "timestamp-micros"},
        {"name": "serverTransactionId", "type": "string"},
        {"name": "isLastRecordInTransactionInPartition", "type": "boolean"},
        {"name": "recordSequence", "type": "string"},
        {"name": "tableName", "type": "string"},
        {
            "name": "rowType",
            "type": {
                "type": "array",
                "items": {
                    "name": "ColumnType",
                    "type": "record",
                    "fields": [
                        {"name": "name", "type": "string"},
                        {
                            "name": "Type",
                            "type": {
                                "name": "TypeCode",
                                "type": "enum",
                                "symbols": [
                                    "TYPE_CODE_UNSPECIFIED", "BOOL", "INT64", "FLOAT64",
                                    "TIMESTAMP", "DATE", "STRING", "BYTES", "ARRAY", "STRUCT",
                                    "NUMERIC", "JSON",
                                ],
                            },
                        },
                        {"name": "isPrimaryKey", "type": "boolean"},
                        {"name": "ordinalPosition", "type": "long"},
                    ],
                },
                "java-class": "java.util.List",
            },
        },
        {
            "name": "mods",
            "type": {
                "type": "array",
                "items": {
                    "name": "Mod",
                    "type": "record",
                    "fields": [
                        {"name": "keysJson", "type": "string"},
                        {"name": "oldValuesJson", "type": ["null", "string"], "default": None},
                        {"name": "newValuesJson", "type": ["null", "string"], "default": None},
                    ],
                },
                "java-class": "java.util.List",
            },
        },
        {
            "name": "modType",
            "type": {"name": "ModType", "type": "enum", "symbols": ["INSERT", "UPDATE", "DELETE"]},
        },
        {
            "name": "valueCaptureType",
            "type": {
                "name": "ValueCaptureType",
                "type": "enum",
                "symbols": ["OLD_AND_NEW_VALUES", "NEW_ROW", "NEW_VALUES"],
            },
        },
        {"name": "numberOfRecordsInTransaction", "type": "long"},
        {"name": "numberOfPartitionsInTransaction", "type": "long"},
        {
            "name": "metadata",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "ChangeStreamRecordMetadata",
                    "fields": [
                        {"name": "partitionToken", "type": "string"},
                        {"name": "recordTimestamp", "type": "long", "logicalType": "timestamp-micros"},
                        {"name": "partitionStartTimestamp", "type": "long", "logicalType": "timestamp-micros"},
                        {"name": "partitionEndTimestamp", "type": "long", "logicalType": "timestamp-micros"},
                        {"name": "partitionCreatedAt", "type": "long", "logicalType": "timestamp-micros"},
                        {"name": "partitionScheduledAt", "type": "long", "logicalType": "timestamp-micros"},
                        {"name": "partitionRunningAt", "type": "long", "logicalType": "timestamp-micros"},
                        {"name": "queryStartedAt", "type": "long", "logicalType": "timestamp-micros"},
                        {"name": "recordStreamStartedAt", "type": "long", "logicalType": "timestamp-micros"},
                        {"name": "recordStreamEndedAt", "type": "long", "logicalType": "timestamp-micros"},
                        {"name": "recordReadAt", "type": "long", "logicalType": "timestamp-micros"},
                        {"name": "totalStreamTimeMillis", "type": "long"},
                        {"name": "numberOfRecordsRead", "type": "long"},
                    ],
                },
            ],
            "default": None,
        },
        {"name": "spannerDatabaseId", "type": ["null", "string"], "default": None},
        {"name": "spannerInstanceId", "type": ["null", "string"], "default": None},
        {"name": "outputMessageMetadata", "type": ["null", "string"], "default": None},
    ],
}

_PARSED_SCHEMA = fastavro.parse_schema(TEMPLATE_SCHEMA)

_TYPE_CODES = frozenset(TEMPLATE_SCHEMA["fields"][6]["type"]["items"]["fields"][1]["type"]["symbols"])
_AVRO_MOD_TYPES = ("INSERT", "UPDATE", "DELETE")
_AVRO_CAPTURE_TYPES = ("OLD_AND_NEW_VALUES", "NEW_ROW", "NEW_VALUES")

_METADATA_TIMESTAMPS = (
    "recordTimestamp",
    "partitionStartTimestamp",
    "partitionEndTimestamp",
    "partitionCreatedAt",
    "partitionScheduledAt",
    "partitionRunningAt",
    "queryStartedAt",
    "recordStreamStartedAt",
    "recordStreamEndedAt",
    "recordReadAt",
)
# Nullable in Beam's ChangeStreamRecordMetadata; the template writes null as 0.
_NULLABLE_METADATA_TIMESTAMPS = frozenset({"partitionScheduledAt", "partitionRunningAt"})


class AvroChangeRecordError(LedgerSourceError, ValueError):
    """An Avro change-record file is corrupt, truncated, or not template DataChangeRecords."""

    def __init__(self, name: str, detail: str):
        super().__init__(f"{name}: not a readable Avro change-record file ({detail})")
        self.name = name
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# reading


def read_avro_records(path_or_fileobj: str | os.PathLike | IO[bytes]) -> Iterator[DataChangeRecord]:
    """Yield the records of one template Avro file (a local path or a binary file object)."""
    name = _name_of(path_or_fileobj)
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        try:
            fo = open(path_or_fileobj, "rb")
        except OSError as exc:
            raise AvroChangeRecordError(name, exc.strerror or str(exc)) from exc
        with fo:
            yield from _read(fo, name)
    else:
        yield from _read(path_or_fileobj, name)


def _read(fo: IO[bytes], name: str) -> Iterator[DataChangeRecord]:
    try:
        reader = fastavro.reader(fo)
    except Exception as exc:  # fastavro raises ValueError, EOFError, ... for a bad header
        raise AvroChangeRecordError(name, _describe(exc)) from exc
    _check_writer_schema(reader.writer_schema, name)
    index = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except Exception as exc:  # truncated block, bad sync marker, codec error, ...
            raise AvroChangeRecordError(name, f"record {index}: {_describe(exc)}") from exc
        try:
            record = _from_avro(row)
        except (KeyError, TypeError, ValueError) as exc:
            raise AvroChangeRecordError(name, f"record {index}: {_describe(exc)}") from exc
        index += 1
        yield record


def _check_writer_schema(schema, name: str) -> None:
    if not isinstance(schema, dict) or schema.get("type") != "record" or not str(
        schema.get("name", "")
    ).endswith("DataChangeRecord"):
        got = schema.get("name") if isinstance(schema, dict) else type(schema).__name__
        raise AvroChangeRecordError(name, f"schema is {got!r}, not a DataChangeRecord")
    fields = {f.get("name") for f in schema.get("fields", [])}
    missing = {"commitTimestamp", "serverTransactionId", "tableName", "mods", "modType"} - fields
    if missing:
        raise AvroChangeRecordError(name, f"DataChangeRecord schema lacks {sorted(missing)}")


def _from_avro(row: dict) -> DataChangeRecord:
    return DataChangeRecord(
        partition_token=row["partitionToken"],
        commit_timestamp_ns=int(row["commitTimestamp"]) * 1000,
        server_transaction_id=row["serverTransactionId"],
        is_last_record_in_transaction_in_partition=bool(row["isLastRecordInTransactionInPartition"]),
        record_sequence=row["recordSequence"],
        table_name=row["tableName"],
        row_type=[
            ColumnType(
                name=c["name"],
                type_json=json.dumps({"code": c["Type"]}, separators=(",", ":")),
                is_primary_key=bool(c["isPrimaryKey"]),
                ordinal_position=int(c["ordinalPosition"]),
            )
            for c in row["rowType"]
        ],
        mods=[
            Mod(
                keys_json=m["keysJson"],
                new_values_json=m.get("newValuesJson") or None,
                old_values_json=m.get("oldValuesJson") or None,
            )
            for m in row["mods"]
        ],
        mod_type=row["modType"],
        value_capture_type=row["valueCaptureType"],
        number_of_records_in_transaction=int(row["numberOfRecordsInTransaction"]),
        number_of_partitions_in_transaction=int(row["numberOfPartitionsInTransaction"]),
        metadata=_metadata_from_avro(row.get("metadata")),
    )


def _metadata_from_avro(m: dict | None) -> dict | None:
    """The template's metadata record in the Gson form `DataChangeRecord.metadata` holds."""
    if m is None:
        return None
    out: dict = {"partitionToken": m["partitionToken"]}
    for key in _METADATA_TIMESTAMPS:
        micros = int(m[key])
        if micros == 0 and key in _NULLABLE_METADATA_TIMESTAMPS:
            continue  # null in Java, written as 0 by the template; Gson would omit it
        seconds, rem = divmod(micros, 1_000_000)
        out[key] = {"seconds": seconds, "nanos": rem * 1000}
    out["totalStreamTimeMillis"] = int(m["totalStreamTimeMillis"])
    out["numberOfRecordsRead"] = int(m["numberOfRecordsRead"])
    return out


# ---------------------------------------------------------------------------------------------
# writing


def write_avro_records(
    records: Iterable[DataChangeRecord],
    path_or_fileobj: str | os.PathLike | IO[bytes],
    codec: str = "deflate",
) -> int:
    """Write records as one template-schema Avro file; returns how many were written."""
    count = 0

    def rows():
        nonlocal count
        for r in records:
            yield _to_avro(r)
            count += 1

    if isinstance(path_or_fileobj, (str, os.PathLike)):
        with open(path_or_fileobj, "wb") as fo:
            fastavro.writer(fo, _PARSED_SCHEMA, rows(), codec=codec)
    else:
        fastavro.writer(path_or_fileobj, _PARSED_SCHEMA, rows(), codec=codec)
    return count


def _to_avro(r: DataChangeRecord) -> dict:
    if r.mod_type not in _AVRO_MOD_TYPES:
        # The template would write DELETE here; never turn an unknown change into a delete.
        raise ValueError(f"mod type {r.mod_type!r} cannot be written to the template Avro schema")
    return {
        "partitionToken": r.partition_token,
        "commitTimestamp": _ns_to_micros(r.commit_timestamp_ns),
        "serverTransactionId": r.server_transaction_id,
        "isLastRecordInTransactionInPartition": r.is_last_record_in_transaction_in_partition,
        "recordSequence": r.record_sequence,
        "tableName": r.table_name,
        "rowType": [
            {
                "name": c.name,
                "Type": _type_code(c.type_json),
                "isPrimaryKey": c.is_primary_key,
                "ordinalPosition": c.ordinal_position,
            }
            for c in r.row_type
        ],
        "mods": [
            {
                "keysJson": m.keys_json,
                # DataChangeRecordToAvroFn writes a null old/new value as "".
                "oldValuesJson": m.old_values_json if m.old_values_json is not None else "",
                "newValuesJson": m.new_values_json if m.new_values_json is not None else "",
            }
            for m in r.mods
        ],
        "modType": r.mod_type,
        "valueCaptureType": (
            r.value_capture_type if r.value_capture_type in _AVRO_CAPTURE_TYPES else "NEW_VALUES"
        ),
        "numberOfRecordsInTransaction": r.number_of_records_in_transaction,
        "numberOfPartitionsInTransaction": r.number_of_partitions_in_transaction,
        "metadata": _metadata_to_avro(r.metadata),
        "spannerDatabaseId": None,
        "spannerInstanceId": None,
        "outputMessageMetadata": None,
    }


def _type_code(type_json: str) -> str:
    """The template's mapTypeCodeToAvro: only a bare {"code": X} with a known X maps to X."""
    try:
        t = json.loads(type_json)
    except (TypeError, ValueError):
        return "TYPE_CODE_UNSPECIFIED"
    if isinstance(t, dict) and set(t) == {"code"} and t["code"] in _TYPE_CODES:
        return t["code"]
    return "TYPE_CODE_UNSPECIFIED"


def _ns_to_micros(ns: int) -> int:
    # TimeUnit.SECONDS.toMicros(s) + TimeUnit.NANOSECONDS.toMicros(nanos): truncates the nanos.
    seconds, nanos = divmod(ns, 1_000_000_000)
    return seconds * 1_000_000 + nanos // 1000


def _gson_ts_to_micros(value, key: str) -> int:
    if value is None:
        return 0
    if isinstance(value, dict):
        return _ns_to_micros(int(value.get("seconds", 0)) * 1_000_000_000 + int(value.get("nanos", 0)))
    raise ValueError(f"metadata {key} must be a {{'seconds', 'nanos'}} object, got {value!r}")


def _metadata_to_avro(m: dict | None) -> dict | None:
    if m is None:
        return None
    out: dict = {"partitionToken": m.get("partitionToken", "")}
    for key in _METADATA_TIMESTAMPS:
        out[key] = _gson_ts_to_micros(m.get(key), key)
    out["totalStreamTimeMillis"] = int(m.get("totalStreamTimeMillis", 0))
    out["numberOfRecordsRead"] = int(m.get("numberOfRecordsRead", 0))
    return out


# ---------------------------------------------------------------------------------------------


def _name_of(path_or_fileobj) -> str:
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        return os.fspath(path_or_fileobj)
    return str(getattr(path_or_fileobj, "name", None) or "<avro stream>")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
