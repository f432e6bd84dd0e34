"""`rex capture`: read the ledger's change records over a window into the warehouse mirror."""
from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import apache_beam as beam

from pipelines.options import pipeline_options
from transforms.change_sources import QUARANTINE_TAG, ReadChangeRecordFiles
from transforms.errors import LedgerSourceError, RexError
from transforms.ledger_mirror import CaptureToMirror
from transforms.warehouse import open_warehouse
from transforms.warehouse_duckdb import CaptureResult

CODE_VERSION = "proveniq-rex 0.1.0"


@dataclass
class CaptureSummary:
    run_id: str
    source: str
    window_start: datetime | None
    window_end: datetime | None
    checkpoint: datetime | None
    result: CaptureResult


def new_run_id(command: str) -> str:
    return f"{command}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def source_id(ledger: str) -> str:
    """A stable name for the checkpoint of a ledger source."""
    if ledger.startswith("spanner://") or ledger.startswith("projects/"):
        from transforms.spanner_ledger import DatabasePath

        return f"spanner://{DatabasePath.parse(ledger)}"
    return "files://" + os.path.abspath(ledger)


def run_capture(
    ledger: str,
    warehouse_uri: str,
    start: datetime | None = None,
    end: datetime | None = None,
    beam_args: list[str] | None = None,
) -> CaptureSummary:
    """Capture [start, end] (start defaults to the checkpoint) and commit it to the mirror."""
    source = source_id(ledger)
    with open_warehouse(warehouse_uri) as wh:
        previous = wh.read_checkpoint(source)
    if start is None:
        start = previous
    is_spanner = source.startswith("spanner://")
    if is_spanner:
        database = _open_spanner(ledger)  # fail fast, before the pipeline starts
        if end is None:
            end = _spanner_now(database)
        if start is None:
            raise LedgerSourceError(
                "no checkpoint yet for this Spanner ledger: give --start (within the change stream's retention)"
            )
    if start is not None and end is not None and start > end:
        raise RexError(f"window start {start.isoformat()} is after its end {end.isoformat()}")
    run_id = new_run_id("capture")
    run = {
        "run_id": run_id,
        "command": "capture",
        "started_at": datetime.now(timezone.utc),
        "source": source,
        "window_start": start,
        "window_end": end,
        "checkpoint_before": previous,
        "code_version": f"{CODE_VERSION} python {platform.python_version()}",
    }
    staging = tempfile.mkdtemp(prefix="rex-staging-")
    try:
        with beam.Pipeline(options=pipeline_options(beam_args)) as p:
            if is_spanner:
                mods, quarantine = _spanner_source(p, ledger, start, end)
            else:
                read = p | "ReadChangeRecordFiles" >> ReadChangeRecordFiles(ledger, start, end)
                mods, quarantine = read.mods, read[QUARANTINE_TAG]
            _ = (mods, quarantine) | "CaptureToMirror" >> CaptureToMirror(
                warehouse_uri, source, run, staging, window_end=end, previous_checkpoint=previous
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with open_warehouse(warehouse_uri) as wh:
        rows = wh.rows(
            "SELECT counts::VARCHAR, checkpoint_after FROM rex_ops.runs WHERE run_id = ?", [run_id]
        )
    if not rows:
        raise RexError("capture pipeline finished without committing; nothing was changed")
    counts = json.loads(rows[0][0])
    result = CaptureResult(
        read=counts["mods_decoded"],
        applied=counts["changes_applied"],
        duplicates=counts["duplicates_skipped"],
        quarantined=counts["quarantined"],
        quarantined_new=counts["quarantined_new"],
    )
    return CaptureSummary(run_id, source, start, end, rows[0][1], result)


def _open_spanner(ledger: str):
    from transforms.spanner_ledger import DatabasePath, open_ledger_database

    return open_ledger_database(DatabasePath.parse(ledger))


def _spanner_now(database) -> datetime:
    """Spanner's own clock, not ours: the emulator's commit timestamps run ahead of the wall
    clock, so a window ending at our `now` could miss commits already made."""
    from transforms.spanner_ledger import database_now

    return database_now(database)


def _spanner_source(p, ledger: str, start, end):
    from transforms.spanner_change_stream import ReadSpannerChangeStream
    from transforms.spanner_ledger import DatabasePath

    mods = p | "ReadSpannerChangeStream" >> ReadSpannerChangeStream(str(DatabasePath.parse(ledger)), start, end)
    quarantine = p | "NoSourceQuarantine" >> beam.Create([], reshuffle=False)
    return mods, quarantine
