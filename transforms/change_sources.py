"""Beam sources of change records: files (JSON-lines / Avro). Each yields MODS_SCHEMA batches.

The Spanner change-stream source lives in `transforms/spanner_change_stream.py`; both end in the
same Arrow batches, so everything downstream is source-agnostic.
"""
from __future__ import annotations

from datetime import datetime

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from transforms.change_files import list_change_files, read_change_file

QUARANTINE_TAG = "quarantine"


def filter_window(mods: pa.Table, start: datetime | None, end: datetime | None) -> pa.Table:
    """Keep mods committed in [start, end] (both inclusive, like Spanner's change stream query)."""
    mask = None
    ts = mods["commit_timestamp"]
    if start is not None:
        mask = pc.greater_equal(ts, pa.scalar(start, type=ts.type))
    if end is not None:
        m = pc.less_equal(ts, pa.scalar(end, type=ts.type))
        mask = m if mask is None else pc.and_(mask, m)
    return mods if mask is None else mods.filter(mask)


class _ReadChangeFileFn(beam.DoFn):
    def __init__(self, start, end):
        self.start, self.end = start, end
        self.files = Metrics.counter("rex", "files_read")
        self.records = Metrics.counter("rex", "records_read")
        self.mods = Metrics.counter("rex", "mods_read")
        self.quarantined = Metrics.counter("rex", "records_quarantined")

    def process(self, path: str):
        batch = read_change_file(path)
        mods = filter_window(batch.mods, self.start, self.end)
        self.files.inc()
        self.records.inc(batch.records)
        self.mods.inc(mods.num_rows)
        if batch.quarantine.num_rows:
            self.quarantined.inc(batch.quarantine.num_rows)
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, batch.quarantine)
        if mods.num_rows:
            yield mods


class ReadChangeRecordFiles(beam.PTransform):
    """Change-record files under a folder -> mod batches (main) and quarantine (tagged).

    Files are listed when the pipeline is built, so an unreadable folder fails before any
    work starts; each file is one element, read whole by pyarrow, so files spread over workers.
    """

    def __init__(self, directory: str, start: datetime | None = None, end: datetime | None = None):
        super().__init__()
        self.files = list_change_files(directory)
        self.start, self.end = start, end

    def expand(self, pbegin):
        return (
            pbegin
            | "ListFiles" >> beam.Create(self.files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadFiles" >> beam.ParDo(_ReadChangeFileFn(self.start, self.end)).with_outputs(
                QUARANTINE_TAG, main="mods"
            )
        )
