"""Beam transforms from mod batches to the warehouse's ledger mirror.

    mods ─┬─ TransactionCompleteness ───────────────────────────┐ (side input)
          └─ DecodeLedgerMods ─┬─ StageParquet ─ CollectStaged ─┴─ CommitCapture
             source quarantine ┴─ (quarantine batches staged too)

Decoded batches are staged as Parquet files and applied by one final step in one warehouse
transaction (the pattern BigQuery file loads use too), so a failed run changes nothing. The
commit holds back transactions not read whole (fewer records than the transaction declares):
their mods are quarantined, because applying half a transaction would show a state the
ledger never had, e.g. a policy bound without its premium. Reading, decoding and staging
fuse into one stage, so mod batches are never materialised between steps.
"""
from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from transforms import duck
from transforms.change_sources import QUARANTINE_TAG
from transforms.mod_decoding import ModDecoder
from transforms.quarantine import QUARANTINE_SCHEMA

_QUARANTINE_KEY = "_quarantine"

_TXN_SCHEMA = pa.schema(
    [
        ("server_transaction_id", pa.string()),
        ("commit_timestamp", pa.timestamp("us", tz="UTC")),
        ("records_seen", pa.int64()),
        ("records_expected", pa.int64()),
    ]
)


def transaction_counts(mods: pa.Table) -> pa.Table:
    """Records seen per transaction in one batch (sources never split a record across batches)."""
    if mods.num_rows == 0:
        return _TXN_SCHEMA.empty_table()
    con = duck.connect()
    try:
        con.register("mods", mods)
        return con.sql(
            "SELECT server_transaction_id, min(commit_timestamp) AS commit_timestamp, "
            "count(DISTINCT (partition_token, record_sequence)) AS records_seen, "
            "max(number_of_records_in_transaction) AS records_expected "
            "FROM mods GROUP BY server_transaction_id"
        ).to_arrow_table().cast(_TXN_SCHEMA)
    finally:
        con.close()


class _MergeTransactionCounts(beam.CombineFn):
    def create_accumulator(self):
        return []

    def add_input(self, acc, table):
        acc.append(table)
        return acc

    def merge_accumulators(self, accs):
        return [t for acc in accs for t in acc]

    def extract_output(self, acc):
        if not acc:
            return _TXN_SCHEMA.empty_table()
        merged = pa.concat_tables(acc).group_by("server_transaction_id", use_threads=False).aggregate(
            [("commit_timestamp", "min"), ("records_seen", "sum"), ("records_expected", "max")]
        )
        return pa.table(
            {
                "server_transaction_id": merged["server_transaction_id"],
                "commit_timestamp": merged["commit_timestamp_min"],
                "records_seen": merged["records_seen_sum"],
                "records_expected": merged["records_expected_max"],
            },
            schema=_TXN_SCHEMA,
        )


class TransactionCompleteness(beam.PTransform):
    """One table: every transaction read, its commit time, records seen and records expected."""

    def expand(self, mods):
        return (
            mods
            | "CountRecords" >> beam.Map(transaction_counts)
            | "MergeCounts" >> beam.CombineGlobally(_MergeTransactionCounts())
        )


class _DecodeFn(beam.DoFn):
    def __init__(self):
        self.decoded = Metrics.counter("rex", "mods_decoded")
        self.quarantined = Metrics.counter("rex", "mods_quarantined")

    def setup(self):
        self.decoder = ModDecoder()

    def teardown(self):
        self.decoder.close()

    def process(self, mods: pa.Table):
        tables, quarantine = self.decoder.decode(mods)
        for name, table in tables.items():
            self.decoded.inc(table.num_rows)
            yield (name, table)
        if quarantine.num_rows:
            self.quarantined.inc(quarantine.num_rows)
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, quarantine)


class DecodeLedgerMods(beam.PTransform):
    """Mod batches -> (table name, typed Arrow table) and quarantined mods (tagged)."""

    def expand(self, mods):
        return mods | "Decode" >> beam.ParDo(_DecodeFn()).with_outputs(QUARANTINE_TAG, main="tables")


class _StageParquetFn(beam.DoFn):
    """Write one batch as a Parquet file under the staging folder; emit (table, path)."""

    def __init__(self, staging_dir: str):
        self.staging_dir = staging_dir

    def process(self, element):
        name, table = element
        folder = os.path.join(self.staging_dir, name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{uuid.uuid4().hex}.parquet")
        pq.write_table(table, path, compression="lz4")  # read back once, soon: speed over size
        yield (name, path)


class _CommitCaptureFn(beam.DoFn):
    """Apply everything staged in one warehouse transaction and advance the checkpoint."""

    def __init__(self, warehouse_uri: str, source: str, run: dict, window_end: datetime | None,
                 previous_checkpoint: datetime | None):
        self.warehouse_uri = warehouse_uri
        self.source = source
        self.run = run
        self.window_end = window_end
        self.previous_checkpoint = previous_checkpoint
        self.applied = Metrics.counter("rex", "changes_written")

    def process(self, staged_paths: list, txns: pa.Table):
        from transforms.warehouse import open_warehouse

        staged: dict[str, list[str]] = {}
        for name, path in staged_paths:
            staged.setdefault(name, []).append(path)
        quarantine_files = staged.pop(_QUARANTINE_KEY, [])
        checkpoint = checkpoint_after(self.window_end, txns, self.previous_checkpoint)
        incomplete = txns.filter(pc.less(txns["records_seen"], txns["records_expected"]))
        run = dict(self.run, finished_at=datetime.now(timezone.utc), status="succeeded")
        with open_warehouse(self.warehouse_uri) as wh:
            result = wh.commit_capture(staged, quarantine_files, self.source, checkpoint, run, incomplete)
        self.applied.inc(sum(result.applied.values()))
        yield result


def checkpoint_after(window_end, txns: pa.Table, previous) -> datetime:
    """The last commit time fully read: the window's end when the reader guarantees it
    (Spanner), else the newest transaction read, else where we already were."""
    if window_end is not None:
        return window_end
    if txns.num_rows:
        return pc.max(txns["commit_timestamp"]).as_py()
    if previous is not None:
        return previous
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(0)


class CaptureToMirror(beam.PTransform):
    """Mod batches (+ already quarantined records) -> the warehouse mirror, in one commit."""

    def __init__(self, warehouse_uri: str, source: str, run: dict, staging_dir: str,
                 window_end: datetime | None, previous_checkpoint: datetime | None):
        super().__init__()
        self.warehouse_uri = warehouse_uri
        self.source = source
        self.run = run
        self.staging_dir = staging_dir
        self.window_end = window_end
        self.previous_checkpoint = previous_checkpoint

    def expand(self, inputs):
        mods, upstream_quarantine = inputs
        txns = mods | "TransactionCompleteness" >> TransactionCompleteness()
        decoded = mods | "DecodeLedgerMods" >> DecodeLedgerMods()
        quarantine = (
            (upstream_quarantine, decoded[QUARANTINE_TAG])
            | "AllQuarantine" >> beam.Flatten()
            | "KeyQuarantine" >> beam.Map(lambda t: (_QUARANTINE_KEY, t.cast(QUARANTINE_SCHEMA)))
        )
        staged = (
            (decoded.tables, quarantine)
            | "Merge" >> beam.Flatten()
            | "StageParquet" >> beam.ParDo(_StageParquetFn(self.staging_dir))
            | "CollectStaged" >> beam.combiners.ToList()
        )
        return staged | "CommitCapture" >> beam.ParDo(
            _CommitCaptureFn(self.warehouse_uri, self.source, self.run, self.window_end,
                             self.previous_checkpoint),
            txns=beam.pvalue.AsSingleton(txns),
        )
