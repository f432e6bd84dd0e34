"""`rex contracts test` and `rex contracts compile`: a contract's checks outside a publishing run.

`test` re-checks what a partner can see now: its tables `partner_<id>.<report>` in the
warehouse, optionally one period, against its current contract — the row checks (mapped back
from the partner's column names to rex's), uniqueness, and the gate (GX suite and SQL rules). A
contract tightened since the data was published shows up here before the next run does.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc

from contracts.model import PARTNERS_DIR, Contract, load_partner_contracts
from transforms.errors import RexError
from transforms.warehouse import open_warehouse, partner_dataset


@dataclass
class ReportCheck:
    report: str
    periods: list[str]
    rows: int
    row_failures: dict[str, int] = field(default_factory=dict)  # rule -> rows breaking it
    gate: object = None  # expectations.gate.GateResult
    note: str | None = None

    @property
    def success(self) -> bool:
        return not self.row_failures and (self.gate is None or self.gate.success) and self.note is None


def compile_contracts(contracts_dir: str = PARTNERS_DIR) -> list[str]:
    """Write every partner × report suite under expectations/suites/; returns the paths."""
    from expectations.suites import write_suites

    return write_suites(load_partner_contracts(contracts_dir))


def _table_exists(wh, dataset: str, table: str) -> bool:
    return wh.rows("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                   [dataset, table])[0][0] > 0


def _as_rex_columns(table: pa.Table, contract: Contract, report: str) -> pa.Table:
    spec = contract.reports[report]
    cols = {c.source: table[c.physical_name] for c in spec.columns if c.physical_name in table.column_names}
    return pa.table(cols)


def check_partner(warehouse_uri: str, partner: str, period: str | None = None,
                 contracts_dir: str = PARTNERS_DIR, validation_html: str | None = None) -> list[ReportCheck]:
    from contracts.row_checks import apply_unique_checks, compile_row_checks
    from expectations.gate import run_gate, write_html
    from expectations.suites import compile_suite

    contracts = load_partner_contracts(contracts_dir)
    if partner not in contracts:
        raise RexError(f"{partner} has no contract in {contracts_dir} (contracts: {', '.join(sorted(contracts))})")
    contract = contracts[partner]
    dataset = partner_dataset(partner)
    results, gates = [], []
    with open_warehouse(warehouse_uri) as wh:
        for report, spec in sorted(contract.reports.items()):
            if not _table_exists(wh, dataset, report):
                continue
            period_col = next((c.physical_name for c in spec.columns if c.source == "period"), None)
            table = wh.query(f'SELECT * FROM {dataset}."{report}"')
            if period and period_col and period_col in table.column_names:
                table = table.filter(pc.equal(table[period_col], period))
            periods = sorted({p for p in table[period_col].to_pylist() if p}) if period_col in table.column_names else []
            result = ReportCheck(report, periods, table.num_rows)
            rex_rows = _as_rex_columns(table, contract, report)
            compiled = compile_row_checks(contract, spec, rex_rows.schema)
            # masked columns hold pseudonyms: only presence is checked on them
            masked = {m.column for m in contract.masking}
            compiled = replace(compiled, checks=tuple(
                c for c in compiled.checks if c.source not in masked or c.rule.endswith(".required")))
            for check, mask in zip(compiled.checks, compiled.failures(rex_rows)):
                n = pc.sum(mask).as_py() or 0
                if n:
                    result.row_failures[check.rule] = n
            order = [c for c in ("ledger_commit_timestamp", "booked_date", "policy_id", "transaction_id")
                     if c in rex_rows.column_names]
            repeats = apply_unique_checks(compiled, rex_rows, order or [rex_rows.column_names[0]])
            for rule, n in _count_rules(repeats.quarantine).items():
                result.row_failures[rule] = result.row_failures.get(rule, 0) + n
            label = period or (f"{periods[0]}..{periods[-1]}" if len(periods) > 1 else (periods[0] if periods else "-"))
            result.gate = run_gate(compile_suite(contract, spec), table, partner, report, label)
            gates.append(result.gate)
            results.append(result)
    if not results:
        raise RexError(f"the warehouse holds no published report of {partner} yet (run `rex report`)")
    if period and not any(r.rows for r in results):
        raise RexError(f"{partner} has no published rows for period {period}")
    if validation_html:
        write_html(gates, validation_html, f"rex contracts test · {partner}" + (f" · {period}" if period else ""))
    return results


def _count_rules(quarantine: pa.Table) -> dict[str, int]:
    out: dict[str, int] = {}
    for rule in quarantine["rule"].to_pylist():
        out[rule] = out.get(rule, 0) + 1
    return out
