"""Benchmark: capture >= 1,000,000 change records from files into the DuckDB mirror.

Prints records/s and mods/s for the capture alone (end to end: file parse, decode, Beam,
staging and the warehouse commit) and the process's peak memory. Not a test: run it by hand,
e.g. under `/usr/bin/time -v` or `hyperfine`, and compare medians of several runs.

    .venv/bin/python bench/capture_files.py --policies 200000 --days 365
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pipelines.capture import run_capture  # noqa: E402
from transforms.change_files import list_change_files  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--policies", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--changes", default="bench/out/changes", help="reused if it already holds records")
    ap.add_argument("--keep", action="store_true", help="keep the warehouse file")
    ap.add_argument("beam_args", nargs="*", help="extra Beam pipeline options, after --")
    args = ap.parse_args()

    if not (os.path.isdir(args.changes) and list_change_files(args.changes)):
        from pipelines.seeding import seed_files

        t = time.perf_counter()
        stats = seed_files(args.seed, args.policies, args.days, args.changes)
        print(f"seeded {stats['records']:,} records / {stats['mods']:,} mods in "
              f"{time.perf_counter() - t:.1f} s -> {args.changes}")
    records, mods = _count(args.changes)
    work = tempfile.mkdtemp(prefix="rex-bench-")
    uri = "duckdb:///" + os.path.join(work, "bench.duckdb")
    t = time.perf_counter()
    summary = run_capture(args.changes, uri, beam_args=args.beam_args)
    elapsed = time.perf_counter() - t
    applied = sum(summary.result.applied.values())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "change_records": records, "mods": mods, "changes_applied": applied,
        "quarantined": summary.result.quarantined, "seconds": round(elapsed, 2),
        "records_per_s": round(records / elapsed), "mods_per_s": round(mods / elapsed),
        "peak_rss_mb": round(peak_mb),
    }, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def _count(folder: str) -> tuple[int, int]:
    """Records (lines) and mods in the change files, counted with pyarrow outside the timing."""
    from transforms.change_files import read_change_file

    records = mods = 0
    for path in list_change_files(folder):
        batch = read_change_file(path)
        records += batch.records
        mods += batch.mods.num_rows
    return records, mods


if __name__ == "__main__":
    main()
