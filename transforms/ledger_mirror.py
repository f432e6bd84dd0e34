"""Beam transforms from mod batches to the warehouse's ledger mirror.

    mods ─┬─ TransactionCompleteness ─────────────────────────────┐ (side input)
          └─ DecodeLedgerMods ─┬─ StageTables ─────┬─ CollectStaged ┴─ CommitCapture
             source quarantine ┴─ StageQuarantine ─┘

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
from dataclasses import dataclass
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

# The records of transactions a batch holds only in part; a transaction read whole within one
# batch (nearly all of them: sources never split a record, and files hold whole transactions)
# is settled there and never leaves it. (So a transaction read whole in one batch and again
# in part in another counts as read whole; the partial copies of one split transaction are
# pooled, distinct records only. Re-delivered files repeat whole files, which both cover.)
_PARTIAL_SCHEMA = pa.schema(
    [
        ("server_transaction_id", pa.string()),
        ("partition_token", pa.string()),
        ("record_sequence", pa.string()),
        ("records_expected", pa.int64()),
    ]
)

_INCOMPLETE_SCHEMA = pa.schema(
    [
        ("server_transaction_id", pa.string()),
        ("records_seen", pa.int64()),
        ("records_expected", pa.int64()),
    ]
)


@dataclass
class Completeness:
    """What the commit needs to know of the transactions read: the newest commit time, and
    the records of transactions not read whole in any one batch."""

    newest_commit: datetime | None
    partial: pa.Table  # _PARTIAL_SCHEMA, distinct records

    def incomplete(self) -> pa.Table:
        """Transactions with fewer distinct records read than they declare."""
        if self.partial.num_rows == 0:
            return _INCOMPLETE_SCHEMA.empty_table()
        con = duck.connect()
        try:
            con.register("partial", self.partial)
            return con.sql(
                "SELECT server_transaction_id, count(DISTINCT (partition_token, record_sequence)) AS records_seen, "
                "max(records_expected) AS records_expected FROM partial GROUP BY ALL "
                "HAVING count(DISTINCT (partition_token, record_sequence)) < max(records_expected)"
            ).to_arrow_table().cast(_INCOMPLETE_SCHEMA)
        finally:
            con.close()


def transaction_completeness(mods: pa.Table) -> Completeness:
    """One batch's newest commit and the records of the transactions it holds only in part."""
    if mods.num_rows == 0:
        return Completeness(None, _PARTIAL_SCHEMA.empty_table())
    con = duck.connect()
    try:
        con.register("mods", mods)
        partial = con.sql(
            "WITH records AS (SELECT DISTINCT server_transaction_id, partition_token, record_sequence, "
            "number_of_records_in_transaction AS records_expected FROM mods), "
            "short AS (SELECT server_transaction_id FROM records GROUP BY ALL "
            "HAVING count(DISTINCT (partition_token, record_sequence)) < max(records_expected)) "
            "SELECT r.* FROM records r SEMI JOIN short USING (server_transaction_id)"
        ).to_arrow_table().cast(_PARTIAL_SCHEMA)
    finally:
        con.close()
    return Completeness(pc.max(mods["commit_timestamp"]).as_py(), partial)


class _MergeCompleteness(beam.CombineFn):
    def create_accumulator(self):
        return Completeness(None, _PARTIAL_SCHEMA.empty_table())

    def add_input(self, acc, batch):
        return self.merge_accumulators([acc, batch])

    def merge_accumulators(self, accs):
        accs = list(accs)
        newest = max((a.newest_commit for a in accs if a.newest_commit is not None), default=None)
        partial = [a.partial for a in accs if a.partial.num_rows]
        return Completeness(newest, pa.concat_tables(partial) if partial else _PARTIAL_SCHEMA.empty_table())

    def extract_output(self, acc):
        return acc


class TransactionCompleteness(beam.PTransform):
    """One `Completeness` for the whole read: small whatever the read's size."""

    def expand(self, mods):
        return (
            mods
            | "CheckBatches" >> beam.Map(transaction_completeness)
            | "MergeBatches" >> beam.CombineGlobally(_MergeCompleteness())
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

    def process(self, staged_paths: list, txns: Completeness):
        from transforms.warehouse import open_warehouse

        staged: dict[str, list[str]] = {}
        for name, path in staged_paths:
            staged.setdefault(name, []).append(path)
        quarantine_files = staged.pop(_QUARANTINE_KEY, [])
        checkpoint = checkpoint_after(self.window_end, txns, self.previous_checkpoint)
        incomplete = txns.incomplete()
        run = dict(self.run, finished_at=datetime.now(timezone.utc), status="succeeded")
        with open_warehouse(self.warehouse_uri) as wh:
            result = wh.commit_capture(staged, quarantine_files, self.source, checkpoint, run, incomplete)
        self.applied.inc(sum(result.applied.values()))
        yield result


def checkpoint_after(window_end, txns: Completeness, previous) -> datetime:
    """The last commit time fully read: the window's end when the reader guarantees it
    (Spanner), else the newest transaction read, else where we already were."""
    if window_end is not None:
        return window_end
    if txns.newest_commit is not None:
        return txns.newest_commit
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
        # Stage before merging: a Flatten ends a fused stage, and only the (table, path) pairs
        # should cross it, not the Arrow tables (pickling those was a third of the run).
        staged = (
            (
                decoded.tables | "StageTables" >> beam.ParDo(_StageParquetFn(self.staging_dir)),
                quarantine | "StageQuarantine" >> beam.ParDo(_StageParquetFn(self.staging_dir)),
            )
            | "MergeStaged" >> beam.Flatten()
            | "CollectStaged" >> beam.combiners.ToList()
        )
        return staged | "CommitCapture" >> beam.ParDo(
            _CommitCaptureFn(self.warehouse_uri, self.source, self.run, self.window_end,
                             self.previous_checkpoint),
            txns=beam.pvalue.AsSingleton(txns),
        )
