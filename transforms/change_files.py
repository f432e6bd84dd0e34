"""Read change-record files (JSON-lines and Avro) into Arrow mod batches.

JSON-lines files are the TEXT output of Google's "Spanner change streams to Cloud Storage"
template: one Gson-serialised DataChangeRecord per line. The fast path lets DuckDB's JSON
reader parse a whole file and explode its mods in one multi-threaded query; only when a file
holds a line that does not fit do we fall back to line-by-line parsing, to quarantine exactly
the bad lines and keep the rest.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from transforms import duck
from transforms.change_batches import MODS_SCHEMA, records_to_mods_table
from transforms.errors import LedgerSourceError
from transforms.quarantine import UNDECODABLE_RECORD, empty_quarantine, quarantine_rows

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", ".txt")
NOT_CHANGE_FILES = ("seed-manifest.json",)  # written beside seeded records by `rex ledger seed --defects`
AVRO_SUFFIXES = (".avro",)

_MOD_STRUCT = pa.struct(
    [("keysJson", pa.string()), ("newValuesJson", pa.string()), ("oldValuesJson", pa.string())]
)
_GSON_SCHEMA = pa.schema(
    [
        ("partitionToken", pa.string()),
        ("commitTimestamp", pa.struct([("seconds", pa.int64()), ("nanos", pa.int64())])),
        ("serverTransactionId", pa.string()),
        ("isLastRecordInTransactionInPartition", pa.bool_()),
        ("recordSequence", pa.string()),
        ("tableName", pa.string()),
        ("mods", pa.list_(_MOD_STRUCT)),
        ("modType", pa.string()),
        ("valueCaptureType", pa.string()),
        ("numberOfRecordsInTransaction", pa.int64()),
        ("numberOfPartitionsInTransaction", pa.int64()),
        ("transactionTag", pa.string()),
        ("isSystemTransaction", pa.bool_()),
    ]
)
_REQUIRED = ("commitTimestamp", "serverTransactionId", "recordSequence", "tableName", "modType")


@dataclass
class FileBatch:
    """What one change-record file yielded: decoded mods and quarantined records."""

    mods: pa.Table
    quarantine: pa.Table
    records: int


def list_change_files(directory: str) -> list[str]:
    """The change-record files under a directory, sorted, or a one-line error."""
    if not os.path.isdir(directory):
        raise LedgerSourceError(f"change-record directory {directory} does not exist or is not a directory")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise LedgerSourceError(f"change-record directory {directory} is not readable")
    found = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if (name.endswith(JSON_SUFFIXES + AVRO_SUFFIXES) and not name.startswith((".", "_"))
                    and name not in NOT_CHANGE_FILES):
                found.append(os.path.join(root, name))
    return sorted(found)


def read_change_file(path: str) -> FileBatch:
    if path.endswith(AVRO_SUFFIXES):
        return _read_avro_file(path)
    return read_json_lines(path)


def read_json_lines(path: str) -> FileBatch:
    """Fast path: DuckDB's multi-threaded JSON reader parses the file and explodes the mods in
    one query. Any line it cannot take (bad JSON, a field of the wrong type, a missing field)
    sends the whole file down the careful path, which keeps the good lines and quarantines
    each bad one."""
    if not os.access(path, os.R_OK) or not os.path.isfile(path):
        raise LedgerSourceError(f"cannot read change-record file {path}: not a readable file")
    if os.path.getsize(path) == 0:
        return FileBatch(MODS_SCHEMA.empty_table(), empty_quarantine(), 0)
    fast = _read_with_duckdb(path)
    if fast is not None:
        return fast
    return _read_carefully(path)


def _read_carefully(path: str) -> FileBatch:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise LedgerSourceError(f"cannot read change-record file {path}: {e.strerror}") from e
    if not data.strip():
        return FileBatch(MODS_SCHEMA.empty_table(), empty_quarantine(), 0)
    try:
        table = _parse_gson_block(data)
        quarantine = empty_quarantine()
    except pa.ArrowInvalid:
        table, quarantine = _parse_line_by_line(path, data)
    table, more = _split_incomplete(path, table)
    if more.num_rows:
        quarantine = pa.concat_tables([quarantine, more])
    return FileBatch(gson_table_to_mods(table), quarantine, table.num_rows + quarantine.num_rows)


_DUCKDB_COLUMNS = {
    "partitionToken": "VARCHAR",
    "commitTimestamp": "STRUCT(seconds BIGINT, nanos BIGINT)",
    "serverTransactionId": "VARCHAR",
    "isLastRecordInTransactionInPartition": "BOOLEAN",
    "recordSequence": "VARCHAR",
    "tableName": "VARCHAR",
    "mods": "STRUCT(keysJson VARCHAR, newValuesJson VARCHAR, oldValuesJson VARCHAR)[]",
    "modType": "VARCHAR",
    "valueCaptureType": "VARCHAR",
    "numberOfRecordsInTransaction": "BIGINT",
    "numberOfPartitionsInTransaction": "BIGINT",
    "transactionTag": "VARCHAR",
    "isSystemTransaction": "BOOLEAN",
}

_FLATTEN_SQL = """
SELECT
  make_timestamp(commitTimestamp.seconds * 1000000 + coalesce(commitTimestamp.nanos, 0) // 1000)::TIMESTAMPTZ AS commit_timestamp,
  CAST(coalesce(commitTimestamp.nanos, 0) % 1000 AS INTEGER) AS commit_timestamp_nanos,
  recordSequence AS record_sequence,
  serverTransactionId AS server_transaction_id,
  coalesce(isLastRecordInTransactionInPartition, false) AS is_last_record_in_transaction_in_partition,
  tableName AS table_name,
  modType AS mod_type,
  coalesce(valueCaptureType, 'NEW_ROW') AS value_capture_type,
  coalesce(numberOfRecordsInTransaction, 1) AS number_of_records_in_transaction,
  coalesce(numberOfPartitionsInTransaction, 1) AS number_of_partitions_in_transaction,
  coalesce(transactionTag, '') AS transaction_tag,
  coalesce(isSystemTransaction, false) AS is_system_transaction,
  coalesce(partitionToken, '') AS partition_token,
  CAST(m.i - 1 AS INTEGER) AS mod_index,
  m.mod.keysJson AS keys_json,
  m.mod.newValuesJson AS new_values_json,
  m.mod.oldValuesJson AS old_values_json
FROM _records, LATERAL (SELECT unnest(mods) AS mod, generate_subscripts(mods, 1) AS i) m
"""


def _read_with_duckdb(path: str) -> FileBatch | None:
    """The whole file through DuckDB, or None when some line needs the careful path."""
    import duckdb

    con = duck.connect()
    try:
        con.execute(
            "CREATE TEMP TABLE _records AS SELECT * FROM read_json(?, format = 'newline_delimited', "
            "columns = ?, maximum_object_size = 268435456)",
            [path, _DUCKDB_COLUMNS],
        )
        required = " OR ".join(f"{_duck_field(n)} IS NULL" for n in _REQUIRED)
        records, incomplete = con.sql(
            f"SELECT count(*), count(*) FILTER (WHERE {required}) FROM _records"
        ).fetchall()[0]
        if incomplete:
            return None
        mods = con.sql(_FLATTEN_SQL).to_arrow_table().cast(MODS_SCHEMA)
        return FileBatch(mods, empty_quarantine(), records)
    except duckdb.IOException as e:
        raise LedgerSourceError(f"cannot read change-record file {path}: {_first_line(str(e))}") from e
    except duckdb.Error:
        return None  # malformed JSON or a mistyped field somewhere: take the careful path
    finally:
        con.close()


def _duck_field(name: str) -> str:
    return "commitTimestamp.seconds" if name == "commitTimestamp" else name


def _parse_gson_block(data: bytes) -> pa.Table:
    return pajson.read_json(
        io.BytesIO(data),
        read_options=pajson.ReadOptions(block_size=max(1 << 20, min(len(data) + 1, 1 << 28))),
        parse_options=pajson.ParseOptions(
            explicit_schema=_GSON_SCHEMA, unexpected_field_behavior="ignore"
        ),
    )


def _parse_line_by_line(path: str, data: bytes) -> tuple[pa.Table, pa.Table]:
    """Slow path: keep the lines pyarrow can parse, quarantine each one it cannot."""
    good: list[bytes] = []
    bad: list[dict] = []
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            _parse_gson_block(line)
            good.append(line)
        except pa.ArrowInvalid as e:
            reason = _first_line(str(e))
            try:
                json.loads(line)
            except ValueError as je:
                reason = f"not valid JSON: {je}"
            bad.append(
                {
                    "rule": UNDECODABLE_RECORD,
                    "reason": f"change record cannot be decoded ({reason})",
                    "raw_record": line.decode("utf-8", "replace"),
                    "source": f"{path}:{lineno}",
                }
            )
    table = _parse_gson_block(b"\n".join(good)) if good else _GSON_SCHEMA.empty_table()
    return table, quarantine_rows(bad)


def _split_incomplete(path: str, table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Records lacking a field every DataChangeRecord has are quarantined whole."""
    missing = None
    for name in _REQUIRED:
        m = pc.is_null(table[name])
        missing = m if missing is None else pc.or_(missing, m)
    if missing is None or not pc.any(missing).as_py():
        return table, empty_quarantine()
    bad = table.filter(missing)
    rows = []
    for rec in bad.to_pylist():
        absent = [n for n in _REQUIRED if rec.get(n) is None]
        rows.append(
            {
                "rule": UNDECODABLE_RECORD,
                "reason": f"change record lacks {', '.join(absent)}",
                "raw_record": json.dumps(rec, default=str, separators=(",", ":")),
                "table_name": rec.get("tableName"),
                "server_transaction_id": rec.get("serverTransactionId"),
                "record_sequence": rec.get("recordSequence"),
                "source": path,
            }
        )
    return table.filter(pc.invert(missing)), quarantine_rows(rows)


def gson_table_to_mods(table: pa.Table) -> pa.Table:
    """Explode Gson records (one row per record) into MODS_SCHEMA (one row per mod)."""
    if table.num_rows == 0:
        return MODS_SCHEMA.empty_table()
    mods_col = table["mods"].combine_chunks()
    mods_col = pc.fill_null(mods_col, pa.scalar([], type=mods_col.type))
    parents = pc.list_parent_indices(mods_col)
    flat = pc.list_flatten(mods_col)
    offsets = mods_col.offsets
    starts = pc.take(offsets, parents)
    mod_index = pc.subtract(pa.array(range(len(flat)), pa.int64()), starts)
    rec = table.take(parents)
    ts = rec["commitTimestamp"].combine_chunks()
    seconds = ts.field("seconds")
    nanos = pc.fill_null(ts.field("nanos"), 0)
    micros = pc.add(pc.multiply(seconds, 1_000_000), pc.divide(nanos, 1000))
    columns = {
        "commit_timestamp": micros.cast(pa.timestamp("us", tz="UTC")),
        "commit_timestamp_nanos": pc.subtract(nanos, pc.multiply(pc.divide(nanos, 1000), 1000)).cast(pa.int32()),
        "record_sequence": rec["recordSequence"],
        "server_transaction_id": rec["serverTransactionId"],
        "is_last_record_in_transaction_in_partition": pc.fill_null(rec["isLastRecordInTransactionInPartition"], False),
        "table_name": rec["tableName"],
        "mod_type": rec["modType"],
        "value_capture_type": pc.fill_null(rec["valueCaptureType"], "NEW_ROW"),
        "number_of_records_in_transaction": pc.fill_null(rec["numberOfRecordsInTransaction"], 1),
        "number_of_partitions_in_transaction": pc.fill_null(rec["numberOfPartitionsInTransaction"], 1),
        "transaction_tag": pc.fill_null(rec["transactionTag"], ""),
        "is_system_transaction": pc.fill_null(rec["isSystemTransaction"], False),
        "partition_token": pc.fill_null(rec["partitionToken"], ""),
        "mod_index": mod_index.cast(pa.int32()),
        "keys_json": flat.field("keysJson"),
        "new_values_json": flat.field("newValuesJson"),
        "old_values_json": flat.field("oldValuesJson"),
    }
    return pa.table(columns, schema=MODS_SCHEMA)


def _read_avro_file(path: str) -> FileBatch:
    from transforms.change_avro import read_avro_records  # Avro is the rarer format

    try:
        records = list(read_avro_records(path))
    except LedgerSourceError:
        raise
    except Exception as e:  # a corrupt container cannot be split into good and bad records
        raise LedgerSourceError(f"cannot read Avro change-record file {path}: {_first_line(str(e))}") from e
    return FileBatch(records_to_mods_table(records), empty_quarantine(), len(records))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
