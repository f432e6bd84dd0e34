"""Change records as Arrow batches: one row per mod, the record's fields repeated.

Beam steps carry these tables instead of one Python object per record; every source (Spanner,
JSON-lines, Avro) ends in `MODS_SCHEMA`, and decoding into typed ledger columns works on it.
"""
from __future__ import annotations

from typing import Iterable

import pyarrow as pa

from transforms.change_record import DataChangeRecord

MODS_SCHEMA = pa.schema(
    [
        ("commit_timestamp", pa.timestamp("us", tz="UTC")),
        ("commit_timestamp_nanos", pa.int32()),  # the sub-microsecond remainder, kept exact
        ("record_sequence", pa.string()),
        ("server_transaction_id", pa.string()),
        ("is_last_record_in_transaction_in_partition", pa.bool_()),
        ("table_name", pa.string()),
        ("mod_type", pa.string()),
        ("value_capture_type", pa.string()),
        ("number_of_records_in_transaction", pa.int64()),
        ("number_of_partitions_in_transaction", pa.int64()),
        ("transaction_tag", pa.string()),
        ("is_system_transaction", pa.bool_()),
        ("partition_token", pa.string()),
        ("mod_index", pa.int32()),
        ("keys_json", pa.string()),
        ("new_values_json", pa.string()),
        ("old_values_json", pa.string()),
    ]
)


def empty_mods_table() -> pa.Table:
    return MODS_SCHEMA.empty_table()


def records_to_mods_table(records: Iterable[DataChangeRecord]) -> pa.Table:
    """Flatten records into one Arrow table, one row per mod (column-wise, no dict per row)."""
    cols: dict[str, list] = {f.name: [] for f in MODS_SCHEMA}
    for r in records:
        n = len(r.mods)
        if n == 0:
            continue
        us, rem = divmod(r.commit_timestamp_ns, 1000)
        cols["commit_timestamp"].extend([us] * n)
        cols["commit_timestamp_nanos"].extend([rem] * n)
        cols["record_sequence"].extend([r.record_sequence] * n)
        cols["server_transaction_id"].extend([r.server_transaction_id] * n)
        cols["is_last_record_in_transaction_in_partition"].extend(
            [r.is_last_record_in_transaction_in_partition] * n
        )
        cols["table_name"].extend([r.table_name] * n)
        cols["mod_type"].extend([r.mod_type] * n)
        cols["value_capture_type"].extend([r.value_capture_type] * n)
        cols["number_of_records_in_transaction"].extend([r.number_of_records_in_transaction] * n)
        cols["number_of_partitions_in_transaction"].extend(
            [r.number_of_partitions_in_transaction] * n
        )
        cols["transaction_tag"].extend([r.transaction_tag] * n)
        cols["is_system_transaction"].extend([r.is_system_transaction] * n)
        cols["partition_token"].extend([r.partition_token] * n)
        cols["mod_index"].extend(range(n))
        cols["keys_json"].extend(m.keys_json for m in r.mods)
        cols["new_values_json"].extend(m.new_values_json for m in r.mods)
        cols["old_values_json"].extend(m.old_values_json for m in r.mods)
    return pa.table(cols, schema=MODS_SCHEMA)
