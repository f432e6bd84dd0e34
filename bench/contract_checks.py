"""Benchmark: contract row checks on Arrow batches, and the Great Expectations gate on 1M rows.

Builds a premium bordereau from a seeded book, replicates its rows to the size asked for (ids
made unique), then times, for one partner's contract (default alpine-re, 39 row checks):

* the vectorised row checks over batches of `--batch` rows (rows/s, median of `--repeat` runs);
* the gate (its GX suite + SQL rules) on the whole table, once GX is imported (seconds, median),
  and GX's one-off import and context set-up, printed apart.

Not a test: run it by hand, e.g. under `/usr/bin/time -v`, and compare medians of several runs.

    .venv/bin/python bench/contract_checks.py --rows 1000000
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402


def bordereau(rows: int, partner: str) -> pa.Table:
    from pipelines.capture import run_capture
    from pipelines.premium_report import run_premium_bordereau
    from pipelines.seeding import seed_files
    from transforms.warehouse import open_warehouse

    work = tempfile.mkdtemp(prefix="rex-bench-contracts-")
    seed_files(7, 2000, 365, os.path.join(work, "changes"))
    uri = "duckdb:///" + os.path.join(work, "wh.duckdb")
    run_capture(os.path.join(work, "changes"), uri)
    os.environ.setdefault("REX_MASKING_KEY_CORAL_RE", "bench-key")
    run_premium_bordereau(uri, None, partners=[partner], validation_dir=work)
    with open_warehouse(uri) as wh:
        base = wh.query("SELECT * EXCLUDE (publication_status, publication_rule) FROM rex_reports.premium_bordereau "
                        "WHERE reinsurer_id = ?", [partner])
    copies = -(-rows // base.num_rows)
    parts = []
    for k in range(copies):  # unique transaction ids, so the uniqueness checks have work to do
        t = base.set_column(base.schema.get_field_index("transaction_id"), "transaction_id",
                            pc.binary_join_element_wise(base["transaction_id"], pa.scalar(f"{k:05d}"), "-"))
        parts.append(t)
    return pa.concat_tables(parts).slice(0, rows).combine_chunks()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--partner", default="alpine-re")
    args = ap.parse_args()

    from contracts.model import load_partner_contracts
    from contracts.row_checks import apply_row_checks, compile_row_checks
    from transforms.partner_reports import apply_masking, to_partner_table, with_contract_periods

    contract = load_partner_contracts()[args.partner]
    spec = contract.reports["premium_bordereau"]
    table = with_contract_periods(bordereau(args.rows, args.partner), contract)
    compiled = compile_row_checks(contract, spec, table.schema)
    batches = [pa.Table.from_batches([b]) for b in table.to_batches(max_chunksize=args.batch)]

    check_times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        clean = sum(apply_row_checks(compiled, b).clean.num_rows for b in batches)
        check_times.append(time.perf_counter() - t)
    assert clean == table.num_rows, "the bench rows are clean; a check failed"

    t = time.perf_counter()
    from expectations.gate import _context, run_gate
    from expectations.suites import compile_suite

    _context()
    gx_setup = time.perf_counter() - t
    suite = compile_suite(contract, spec)
    partner_table = to_partner_table(apply_masking(table, contract), spec)
    gate_times = []
    for _ in range(max(1, args.repeat // 2)):
        t = time.perf_counter()
        result = run_gate(suite, partner_table, contract.partner, spec.kind, "bench")
        gate_times.append(time.perf_counter() - t)
    median_check = statistics.median(check_times)
    print(json.dumps({
        "partner": args.partner, "rows": table.num_rows, "batch_rows": args.batch,
        "row_checks": len(compiled.checks),
        "row_checks_seconds_median": round(median_check, 3),
        "row_checks_rows_per_s": round(table.num_rows / median_check),
        "gate_expectations": len(suite["expectations"]), "gate_sql_rules": len(suite["meta"]["rex_sql_checks"]),
        "gate_seconds_median": round(statistics.median(gate_times), 3),
        "gate_passed": result.success, "gx_import_and_context_seconds": round(gx_setup, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }, indent=2))


if __name__ == "__main__":
    main()
