"""Beam step: each partner's rows of a report, checked against its contract, batch by batch.

Input batches hold every reinsurer's rows. Each partner with a contract for the report takes
its own rows (by reinsurer id), relabels their periods by its contract, and runs its compiled
row checks on the whole Arrow batch. Outputs, keyed by partner:

* main: `(partner, clean rows)`;
* `quarantine`: quarantine rows of what broke a contract rule;
* `withheld`: `(partner, rows, reason)` for rows no contract lets rex publish (the partner has
  no contract for the report, or its contract does not cover the treaty) — never dropped,
  counted in the control totals.
"""
from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from contracts.model import Contract
from contracts.row_checks import apply_row_checks, compile_row_checks
from transforms.partner_reports import partner_rows, with_contract_periods

QUARANTINE = "quarantine"
WITHHELD = "withheld"


class _CheckFn(beam.DoFn):
    def __init__(self, contracts: dict[str, Contract], report: str):
        self.contracts = {p: c for p, c in contracts.items() if report in c.reports}
        self.report = report
        self.checked = Metrics.counter("rex", f"{report}_rows_checked")
        self.quarantined = Metrics.counter("rex", f"{report}_rows_quarantined")
        self.withheld = Metrics.counter("rex", f"{report}_rows_withheld")

    def setup(self):
        self._compiled = {}

    def _checks(self, contract: Contract, schema: pa.Schema):
        key = (contract.partner, schema)
        if key not in self._compiled:
            self._compiled[key] = compile_row_checks(contract, contract.reports[self.report], schema)
        return self._compiled[key]

    def process(self, batch: pa.Table):
        if batch.num_rows == 0:
            return
        for partner, contract in sorted(self.contracts.items()):
            mine, uncovered = partner_rows(batch, contract)
            if uncovered.num_rows:
                self.withheld.inc(uncovered.num_rows)
                yield beam.pvalue.TaggedOutput(WITHHELD, (
                    partner, uncovered, f"treaty not covered by {partner}'s contract {contract.version}"))
            if mine.num_rows == 0:
                continue
            mine = with_contract_periods(mine, contract)
            checked = apply_row_checks(self._checks(contract, mine.schema), mine)
            self.checked.inc(mine.num_rows)
            if checked.quarantine.num_rows:
                self.quarantined.inc(checked.quarantine.num_rows)
                yield beam.pvalue.TaggedOutput(QUARANTINE, checked.quarantine)
            if checked.clean.num_rows:
                yield (partner, checked.clean)
        others = batch.filter(pc.invert(pc.is_in(batch["reinsurer_id"], value_set=pa.array(
            sorted(self.contracts), pa.string()))))
        for partner in pc.unique(others["reinsurer_id"]).to_pylist():
            rows = others.filter(pc.equal(others["reinsurer_id"], partner))
            self.withheld.inc(rows.num_rows)
            yield beam.pvalue.TaggedOutput(WITHHELD, (partner, rows, f"{partner} has no contract for {self.report}"))


class CheckPartnerRows(beam.PTransform):
    """All reinsurers' report batches -> per-partner clean rows, quarantine, withheld rows."""

    def __init__(self, contracts: dict[str, Contract], report: str):
        super().__init__()
        self.fn = _CheckFn(contracts, report)

    def expand(self, batches):
        return batches | "CheckContracts" >> beam.ParDo(self.fn).with_outputs(QUARANTINE, WITHHELD, main="clean")
