"""`rex demo`: the whole path on this machine, from a seeded ledger to every partner report.

With the Cloud Spanner emulator installed, the book is written into it as real transactions
and read back through the real change stream; otherwise it goes through change-record files.
Both give byte-identical bordereau files for the same seed (reports use business dates only).
"""
from __future__ import annotations

import os
import shutil
from datetime import date, timedelta

from pipelines.capture import run_capture
from pipelines.console import console, print_capture_summary, print_report_summary, print_seed_stats, status
from pipelines.claims_report import run_claims_bordereau
from pipelines.exposure_report import run_snapshot_reports
from pipelines.premium_report import run_premium_bordereau
from pipelines.seeding import seed_files, seed_spanner
from transforms.errors import RexError

DEMO_DATABASE = "projects/rex-demo/instances/rex-demo/databases/ledger"
# Contracts that pseudonymise names need a key; the demo brings a fixed one so that its files
# are the same on every run. Real runs take theirs from the environment (a secret manager).
DEMO_MASKING_KEYS = {"REX_MASKING_KEY_CORAL_RE": "rex-demo-masking-key-not-secret"}


def run_demo(out: str, seed: int, policies: int, days: int, files_only: bool = False) -> None:
    from pipelines.spanner_emulator import SpannerEmulator, find_emulator_binary
    from transforms.spanner_ledger import create_ledger_database, database_now

    out = os.path.abspath(out)
    _reset(out)
    warehouse = "duckdb:///" + os.path.join(out, "rex.duckdb")
    exports = os.path.join(out, "exports")
    binary = None if files_only else find_emulator_binary()
    if binary:
        console.print(f"[bold]Ledger:[/] Cloud Spanner emulator ({binary}), real change stream")
        with SpannerEmulator(binary) as emulator:
            os.environ["SPANNER_EMULATOR_HOST"] = emulator.host_port
            try:
                database = create_ledger_database(DEMO_DATABASE, emulator.host_port)
                start = database_now(database)  # the stream exists from here on
                with status("Seeding the ledger in Spanner…"):
                    stats = seed_spanner(seed, policies, days, DEMO_DATABASE, emulator.host_port)
                print_seed_stats(stats, f"{DEMO_DATABASE} @ {emulator.host_port}")
                with status("Capturing the change stream…"):
                    summary = run_capture("spanner://" + DEMO_DATABASE, warehouse, start)
            finally:
                os.environ.pop("SPANNER_EMULATOR_HOST", None)
    else:
        reason = "--files-only" if files_only else "the Cloud Spanner emulator is not installed"
        console.print(f"[bold]Ledger:[/] change-record files ({reason})")
        changes = os.path.join(out, "changes")
        with status("Seeding the ledger as change-record files…"):
            stats = seed_files(seed, policies, days, changes)
        print_seed_stats(stats, changes)
        with status("Capturing the change records…"):
            summary = run_capture(changes, warehouse)
    print_capture_summary(summary)
    for env, key in DEMO_MASKING_KEYS.items():
        if not os.environ.get(env):
            os.environ[env] = key
            console.print(f"[bold]Masking:[/] {env} unset, using the demo's fixed key (never in production)")
    as_of = date(2026, 1, 1) + timedelta(days=days - 1)  # the book's last business day
    summaries = []
    with status("Building premium bordereaux…"):
        summaries.append(run_premium_bordereau(warehouse, exports, as_of=as_of))
    with status("Building claims bordereaux…"):
        summaries.append(run_claims_bordereau(warehouse, exports, as_of=as_of))
    for kind in ("exposure", "oed"):
        with status(f"Building {kind} reports…"):
            summaries += run_snapshot_reports(kind, warehouse, exports, as_of=as_of)
    for report in summaries:
        print_report_summary(report)
    console.print(f"As of:     {as_of} (the book's last day)\nWarehouse: {warehouse}\n"
                  f"Exports:   {exports}/<partner>/<report>/<period or as-of date>/v<N>/")
    failed = [r for r in summaries if r.message]
    if failed:
        raise RexError(failed[0].message)


def _reset(out: str) -> None:
    """The demo owns its folder: start from nothing so a re-run gives the same result."""
    for name in ("rex.duckdb", "rex.duckdb.wal", "changes", "exports"):
        path = os.path.join(out, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    os.makedirs(out, exist_ok=True)
