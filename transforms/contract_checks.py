"""Beam step: each partner's rows of a report, checked against its contract, batch by batch.

Input batches hold every reinsurer's rows. Each partner with a contract for the report takes
its own rows (by reinsurer id), relabels their periods by its contract, converts them to its
settlement currency (transforms/fx.py; a row without a rate is quarantined) and runs its
compiled row checks on the whole Arrow batch. Outputs, keyed by partner:

* main: `(partner, clean rows)`;
* `quarantine`: quarantine rows of what broke a contract rule;
* `withheld`: `(partner, rows, reason)` for rows no contract lets rex publish (the partner has
  no contract for the report, or its contract does not cover the treaty) — never dropped,
  counted in the control totals.
"""
from __future__ import annotations

from dataclasses import replace

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from contracts.model import Contract
from contracts.row_checks import apply_row_checks, compile_row_checks
from transforms.fx import settle
from transforms.ledger_schema import table as ledger_table
from transforms.partner_reports import partner_rows, with_contract_periods

QUARANTINE = "quarantine"
WITHHELD = "withheld"


class _CheckFn(beam.DoFn):
    def __init__(self, contracts: dict[str, Contract], report: str, fx_date_column: str | None,
                 fx_period_end_column: str | None, grid_column: str | None = None):
        self.contracts = {p: c for p, c in contracts.items() if report in c.reports}
        self.report = report
        self.grid_column = grid_column
        self.fx_date_column = fx_date_column
        self.fx_period_end_column = fx_period_end_column
        self.checked = Metrics.counter("rex", f"{report}_rows_checked")
        self.quarantined = Metrics.counter("rex", f"{report}_rows_quarantined")
        self.withheld = Metrics.counter("rex", f"{report}_rows_withheld")

    def setup(self):
        self._compiled = {}
        self._fx, self._fx_key = None, None

    def _checks(self, contract: Contract, schema: pa.Schema, skip: frozenset | set = frozenset()):
        key = (contract.partner, schema, frozenset(skip))
        if key not in self._compiled:
            compiled = compile_row_checks(contract, contract.reports[self.report], schema)
            self._compiled[key] = replace(compiled, checks=tuple(c for c in compiled.checks if c.rule not in skip))
        return self._compiled[key]

    def process(self, batch: pa.Table, fx_rates):
        if batch.num_rows == 0:
            return
        if self._fx is None or self._fx_key != id(fx_rates):  # a side input: the same list all run
            parts = list(fx_rates)
            self._fx = pa.concat_tables(parts) if parts else ledger_table("FxRates").arrow_schema().empty_table()
            self._fx_key = id(fx_rates)
        for partner, contract in sorted(self.contracts.items()):
            mine, uncovered = partner_rows(batch, contract)
            if uncovered.num_rows:
                self.withheld.inc(uncovered.num_rows)
                yield beam.pvalue.TaggedOutput(WITHHELD, (
                    partner, uncovered, f"treaty not covered by {partner}'s contract {contract.version}", "withheld"))
            if self.grid_column and self.grid_column in mine.column_names:
                # rows built on every period grid (claims): the partner's contract takes its own;
                # the others are not its rows (and would break its period pattern)
                mine = mine.filter(pc.fill_null(pc.equal(mine[self.grid_column], contract.frequency), False))
            if mine.num_rows == 0:
                continue
            mine = with_contract_periods(mine, contract)
            self.checked.inc(mine.num_rows)
            # the ledger's own columns first (an unknown currency is that, not a missing rate),
            # then the conversion, then the rules on the settlement columns it adds
            before = self._checks(contract, mine.schema)
            checked = apply_row_checks(before, mine)
            rejects = [checked.quarantine]
            rows = checked.clean
            if self.fx_date_column and self._fx is not None and rows.num_rows:
                rows, unrated = settle(rows, self._fx, contract, self.report, self.fx_date_column,
                                       self.fx_period_end_column)
                rejects.append(unrated)
                after = self._checks(contract, rows.schema, skip={c.rule for c in before.checks})
                settled = apply_row_checks(after, rows)
                rows = settled.clean
                rejects.append(settled.quarantine)
            for q in rejects:
                if q.num_rows:
                    self.quarantined.inc(q.num_rows)
                    yield beam.pvalue.TaggedOutput(QUARANTINE, q)
            if rows.num_rows:
                yield (partner, rows)
        others = batch.filter(pc.invert(pc.is_in(batch["reinsurer_id"], value_set=pa.array(
            sorted(self.contracts), pa.string()))))
        for partner in pc.unique(others["reinsurer_id"]).to_pylist():
            rows = others.filter(pc.equal(others["reinsurer_id"], partner))
            self.withheld.inc(rows.num_rows)
            # not an error: this reinsurer does not take the report (or is not in this run)
            yield beam.pvalue.TaggedOutput(WITHHELD, (partner, rows, f"{partner} is not sent {self.report} in this run",
                                                      "skipped"))


class CheckPartnerRows(beam.PTransform):
    """All reinsurers' report batches -> per-partner clean rows, quarantine, withheld rows.

    With `fx_date_column` (and the ledger's FxRates as `fx_rates`), rows are converted to each
    partner's settlement currency first. With `grid_column`, rows are built on several period
    grids and each partner checks only those of its contract's frequency."""

    def __init__(self, contracts: dict[str, Contract], report: str, fx_rates=None,
                 fx_date_column: str | None = None, fx_period_end_column: str | None = None,
                 grid_column: str | None = None):
        super().__init__()
        self.fn = _CheckFn(contracts, report, fx_date_column if fx_rates is not None else None,
                           fx_period_end_column, grid_column)
        self.fx_rates = fx_rates

    def expand(self, batches):
        fx = self.fx_rates
        if fx is None:
            fx = batches.pipeline | "NoFxRates" >> beam.Create([], reshuffle=False)
        return batches | "CheckContracts" >> beam.ParDo(self.fn, beam.pvalue.AsList(fx)).with_outputs(
            QUARANTINE, WITHHELD, main="clean")
