"""Publish a report: per partner, repeats held back, masking, versions, the gate, tables, files.

Every row of the report ends with exactly one disposition, recorded in the central table
`rex_reports.<report>` (never shown to a partner) so the control totals can prove nothing was
lost or doubled:

* `published` — sent to the partner (now, or unchanged in an earlier version): in its table
  `partner_<id>.<report>` and its files `<out>/<partner>/<report>/<period>/v<N>/`;
* `quarantined` — it broke a rule of the partner's contract (row in `rex_ops.quarantine`);
* `pending` — its period has not ended yet on the run's as-of date (reported once it has);
* `skipped` — outside this run's `--period` / `--partner` selection;
* `withheld` — nothing wrong with the row, but it may not be published: the partner has no
  contract for the report, the contract does not cover the treaty, or the partner's gate failed
  (then *nothing* of that partner × report is published in this run).

Versions and late changes: transforms/publications.py. A dry run decides everything (checks,
versions, gate) and writes no partner table, file, version or quarantine row.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from contracts.model import Contract
from contracts.row_checks import apply_unique_checks, compile_row_checks
from transforms.contract_checks import QUARANTINE, WITHHELD
from transforms.partner_reports import (
    apply_masking,
    missing_columns,
    to_partner_table,
    with_contract_periods,
    write_partner_exports,
)
from transforms.publications import PeriodPlan, has_ended, plan_publications, with_entry_columns
from transforms.quarantine import QUARANTINE_SCHEMA
from transforms.warehouse import open_warehouse

CENTRAL, CLEAN, REPORT_QUARANTINE = "central", "clean", "report_quarantine"


@dataclass(frozen=True)
class PublishOptions:
    out_dir: str | None
    validation_dir: str | None
    run_id: str
    period: str | None = None  # publish only this period (ad hoc)
    as_of: date | None = None  # periods ending after it are pending
    formats: tuple[str, ...] | None = None  # instead of the contract's export formats (ad hoc)
    dry_run: bool = False


@dataclass
class PartnerOutcome:
    partner: str
    report: str
    published: int = 0
    quarantined: int = 0
    withheld: int = 0
    periods: list[str] = field(default_factory=list)
    gate: object = None  # expectations.gate.GateResult
    files: list[str] = field(default_factory=list)
    versions: list[PeriodPlan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.gate is None or self.gate.success


@dataclass
class PublishResult:
    report: str
    outcomes: dict[str, PartnerOutcome]
    validation_html: str | None
    quarantined_total: int

    @property
    def gates_passed(self) -> bool:
        return all(o.ok for o in self.outcomes.values())


@dataclass(frozen=True)
class ReportLayout:
    """How one report is keyed and ordered (the parts publishing needs to know)."""

    kind: str
    key_columns: tuple[str, ...]  # identify a row of the report (with reinsurer_id)
    sort_keys: tuple[tuple[str, str], ...]  # row order of tables and files
    repeat_order: tuple[str, ...]  # which of two repeats came first
    grid_column: str | None = None  # rows built per period grid (claims: frequency) carry it


def _concat(tables: list[pa.Table], like: pa.Table) -> pa.Table:
    tables = [t for t in tables if t is not None]
    if not tables:
        return like.schema.empty_table()
    return pa.concat_tables(tables, promote_options="permissive").combine_chunks()


def _keys(table: pa.Table, layout: ReportLayout, status: str, rule) -> pa.Table:
    n = table.num_rows
    cols = {k: table[k].cast(pa.string()) for k in ("reinsurer_id", *layout.key_columns)}
    cols["publication_status"] = pa.array([status] * n, pa.string())
    cols["publication_rule"] = rule if isinstance(rule, pa.Array) else pa.array([rule] * n, pa.string())
    return pa.table(cols)


def _quarantine_keys(quarantine: pa.Table, layout: ReportLayout, con) -> pa.Table:
    """Disposition keys of contract-quarantined rows, read back from their raw records."""
    contract_rows = quarantine.filter(pc.equal(quarantine["stage"], "contract"))
    con.register("_q", contract_rows)
    cols = ", ".join(f"json_extract_string(raw_record, '$.{k}') AS \"{k}\"" for k in ("reinsurer_id", *layout.key_columns))
    return con.sql(f"SELECT {cols}, 'quarantined' AS publication_status, rule AS publication_rule FROM _q").to_arrow_table()


def _own_grid(central: pa.Table, layout: ReportLayout, contracts: dict[str, Contract]) -> pa.Table:
    """Rows built per period grid: each reinsurer's rows in its contract's grid (monthly without one)."""
    if not layout.grid_column or layout.grid_column not in central.column_names or central.num_rows == 0:
        return central
    grid, reinsurer = central[layout.grid_column], central["reinsurer_id"]
    contracted = pa.array(sorted(contracts), pa.string())
    keep = pc.and_(pc.invert(pc.is_in(reinsurer, value_set=contracted)), pc.equal(grid, "monthly"))
    for partner, contract in contracts.items():
        keep = pc.or_(keep, pc.and_(pc.equal(reinsurer, partner), pc.equal(grid, contract.frequency)))
    return central.filter(keep)


def _in_period(rows: pa.Table, period: str | None) -> tuple[pa.Table, pa.Table]:
    if period is None or "period" not in rows.column_names:
        return rows, rows.slice(0, 0)
    mask = pc.fill_null(pc.equal(rows["period"], period), False)
    return rows.filter(mask), rows.filter(pc.invert(mask))


def publish_report(warehouse_uri: str, layout: ReportLayout, contracts: dict[str, Contract], central: pa.Table,
                   clean: dict[str, list[pa.Table]], quarantine: list[pa.Table],
                   withheld: list[tuple[str, pa.Table, str, str]], options: PublishOptions) -> PublishResult:
    """Everything after the row checks, for one report and all partners (see the module doc)."""
    from expectations.gate import run_gate, write_html
    from expectations.suites import checked_in_suite_problem, compile_suite
    from transforms import duck

    report = layout.kind
    as_of = options.as_of or date.today()
    central = _own_grid(central, layout, contracts)
    quarantine = [q for q in quarantine if q.num_rows]
    dispositions: list[pa.Table] = []
    outcomes: dict[str, PartnerOutcome] = {}
    gates, to_publish = [], []
    with open_warehouse(warehouse_uri) as wh:
        latest_by_partner = {p: wh.latest_publications(p, report) for p in contracts if report in contracts[p].reports}
    for partner, contract in sorted(contracts.items()):
        spec = contract.reports.get(report)
        if spec is None:
            continue
        outcome = outcomes.setdefault(partner, PartnerOutcome(partner, report))
        rows = _concat(clean.get(partner, []), with_contract_periods(central.slice(0, 0), contract))
        rows = rows.sort_by([list(k) for k in layout.sort_keys if k[0] in rows.column_names])
        repeats = apply_unique_checks(compile_row_checks(contract, spec, rows.schema), rows, list(layout.repeat_order))
        if repeats.quarantine.num_rows:
            quarantine.append(repeats.quarantine)
        rows, other_periods = _in_period(repeats.clean, options.period)
        if other_periods.num_rows:
            dispositions.append(_keys(other_periods, layout, "skipped", f"not in period {options.period}"))
        masked = apply_masking(rows, contract)
        missing = missing_columns(spec, with_entry_columns(masked))
        if missing:
            outcome.notes.append(f"rex does not produce {', '.join(missing)} yet")
        plans, pending = plan_publications(masked, latest_by_partner.get(partner, {}), contract, report,
                                           ["reinsurer_id", *layout.key_columns], as_of, options.period)
        del pending  # its rows are those of the periods not ended yet:
        due, not_due = _due(rows, as_of)
        if not_due.num_rows:
            dispositions.append(_keys(not_due, layout, "pending", f"period not ended on {as_of}"))
        outcome.periods = [pl.period for pl in plans]
        if not plans:  # nothing new: what is due was sent before, unchanged
            dispositions.append(_keys(due, layout, "published", None))
            outcome.published = due.num_rows
            continue
        batch = pa.concat_tables([_versioned(pl) for pl in plans], promote_options="permissive")
        table = to_partner_table(batch, spec)
        label = ", ".join(f"{pl.period} v{pl.version}" for pl in plans)
        suite = compile_suite(contract, spec)
        gate = run_gate(suite, table, partner, report, label)
        stale = checked_in_suite_problem(contract, spec, suite)
        if stale:
            from expectations.gate import CheckOutcome

            gate.outcomes.insert(0, CheckOutcome(f"{report}.suite", "suite", None, False, stale))
        gates.append(gate)
        outcome.gate = gate
        if gate.success:
            to_publish.append((partner, contract, spec, plans))
            outcome.versions = plans
            outcome.published = due.num_rows
            dispositions.append(_keys(due, layout, "published", None))
        else:
            outcome.withheld += due.num_rows
            dispositions.append(_keys(due, layout, "withheld", f"{report}.gate"))
    for partner, rows, reason, status in withheld:
        rows = _own_grid(rows, layout, contracts)
        if status == "withheld":
            outcomes.setdefault(partner, PartnerOutcome(partner, report)).withheld += rows.num_rows
        dispositions.append(_keys(rows, layout, status, reason))
    all_quarantine = pa.concat_tables(quarantine) if quarantine else QUARANTINE_SCHEMA.empty_table()
    for p in pc.unique(all_quarantine["partner"]).to_pylist():
        if p is not None:
            count = pc.sum(pc.equal(all_quarantine["partner"], p)).as_py()
            outcomes.setdefault(p, PartnerOutcome(p, report)).quarantined = count
    con = duck.connect()
    try:
        dispositions.append(_quarantine_keys(all_quarantine, layout, con))
        keyed = pa.concat_tables([d.cast(dispositions[0].schema) for d in dispositions]) if dispositions else None
        central_out = _with_dispositions(central, keyed, layout, con)
    finally:
        con.close()
    html = None
    if options.validation_dir and gates:
        html = write_html(gates, os.path.join(options.validation_dir, f"{options.run_id}.{report}.html"),
                          f"rex validation · {report} · run {options.run_id}"
                          + (" (dry run)" if options.dry_run else ""))
    files: dict[str, list[str]] = {}
    if options.out_dir and not options.dry_run:  # files first: a published version is never rewritten
        for partner, contract, spec, plans in to_publish:
            if options.formats:
                contract = _with_formats(contract, options.formats)
            for plan in plans:
                files.setdefault(partner, []).extend(write_partner_exports(
                    _versioned(plan), contract, spec, options.out_dir, version=plan.version))
    with open_warehouse(warehouse_uri) as wh:
        wh.record_validations([_validation_row(options.run_id, g, contracts[g.partner].version, html) for g in gates])
        wh.replace_central_table(report, central_out)
        wh.replace_central_table(f"{report}_quarantine", all_quarantine)
        if not options.dry_run:
            wh.append_quarantine(all_quarantine, options.run_id)
            for partner, contract, spec, plans in to_publish:
                period_column = next((c.physical_name for c in spec.columns if c.source == "period"), None)
                wh.publish_versions(partner, report, contract.version, options.run_id, plans,
                                    {pl.period: to_partner_table(_versioned(pl), spec) for pl in plans},
                                    files.get(partner, []), period_column)
    for partner in files:
        outcomes[partner].files = files[partner]
    return PublishResult(report, outcomes, html, all_quarantine.num_rows)


def _versioned(plan: PeriodPlan) -> pa.Table:
    rows = plan.rows
    return rows.append_column("version", pa.array([plan.version] * rows.num_rows, pa.int64()))


def _with_formats(contract: Contract, formats: tuple[str, ...]) -> Contract:
    from dataclasses import replace

    return replace(contract, export_formats=tuple(formats))


def _due(rows: pa.Table, as_of: date) -> tuple[pa.Table, pa.Table]:
    """(rows of periods that have ended on `as_of`, rows of periods still running)."""
    if rows.num_rows == 0 or "period" not in rows.column_names:
        return rows, rows.slice(0, 0)
    running = [p for p in pc.unique(rows["period"]).to_pylist() if p is not None and not has_ended(p, as_of)]
    if not running:
        return rows, rows.slice(0, 0)
    mask = pc.is_in(rows["period"], value_set=pa.array(running, pa.string()))
    return rows.filter(pc.invert(mask)), rows.filter(mask)


def _validation_row(run_id: str, gate, contract_version: str, html: str | None) -> dict:
    return {
        "run_id": run_id, "partner": gate.partner, "report": gate.report, "periods": gate.period,
        "contract_version": contract_version, "rows": gate.rows, "success": gate.success,
        "checks": len(gate.outcomes), "failed": len(gate.failures), "summary": gate.summary(),
        "failures": [{"rule": f.rule, "check": f.check, "column": f.column, "observed": f.observed,
                      "unexpected": f.unexpected} for f in gate.failures],
        "html": html,
    }


def _with_dispositions(central: pa.Table, keyed: pa.Table | None, layout: ReportLayout, con) -> pa.Table:
    """The central rows with their disposition; a row without one is flagged `unaccounted`."""
    con.register("_central", central)
    keys = ("reinsurer_id", *layout.key_columns)
    if keyed is None or keyed.num_rows == 0:
        return con.sql("SELECT *, 'unaccounted' AS publication_status, NULL::VARCHAR AS publication_rule "
                       "FROM _central").to_arrow_table()
    con.register("_keys", keyed)
    on = " AND ".join(f'c."{k}"::VARCHAR IS NOT DISTINCT FROM k."{k}"' for k in keys)
    order = ", ".join(f'c."{k}"' for k in keys)
    return con.sql(
        f"SELECT c.*, coalesce(k.publication_status, 'unaccounted') AS publication_status, k.publication_rule "
        f"FROM _central c LEFT JOIN (SELECT DISTINCT ON ({', '.join(chr(34) + k + chr(34) for k in keys)}) * "
        f"FROM _keys) k ON {on} ORDER BY {order}"
    ).to_arrow_table()


class _PublishFn(beam.DoFn):
    def __init__(self, warehouse_uri, layout, contracts, options: PublishOptions):
        self.args = (warehouse_uri, layout, contracts)
        self.options = options
        self.published = Metrics.counter("rex", "report_rows_published")

    def process(self, keyed):
        _key, elements = keyed
        central, clean, quarantine, withheld = [], {}, [], []
        for kind, value in elements:
            if kind == CENTRAL:
                central.append(value)
            elif kind == CLEAN:
                partner, table = value
                clean.setdefault(partner, []).append(table)
            elif kind in (QUARANTINE, REPORT_QUARANTINE):
                quarantine.append(value.cast(QUARANTINE_SCHEMA))
            elif kind == WITHHELD:
                withheld.append(value)
        central_table = pa.concat_tables(central).combine_chunks()
        result = publish_report(*self.args, central_table, clean, quarantine, withheld, self.options)
        self.published.inc(sum(o.published for o in result.outcomes.values()))
        yield result


class PublishPartnerReports(beam.PTransform):
    """(central rows, clean rows per partner, contract quarantine, withheld, report quarantine)
    -> one `PublishResult`.

    Everything meets in one group under a single key (publishing decides per partner over the
    whole report). A GroupByKey moves each table once; `combiners.ToList` re-encoded the growing
    list at every merge and cost a tenth of a premium run. The report's empty table goes in too,
    so the group exists even when the report has no rows at all."""

    def __init__(self, warehouse_uri: str, layout: ReportLayout, contracts: dict[str, Contract],
                 options: PublishOptions, empty: pa.Table):
        super().__init__()
        self.fn = _PublishFn(warehouse_uri, layout, contracts, options)
        self.empty = empty

    def expand(self, inputs):
        central, clean, quarantine, withheld, report_quarantine = inputs
        tagged = (
            central | "TagCentral" >> beam.Map(lambda t: (CENTRAL, t)),
            clean | "TagClean" >> beam.Map(lambda kv: (CLEAN, kv)),
            quarantine | "TagQuarantine" >> beam.Map(lambda t: (QUARANTINE, t)),
            withheld | "TagWithheld" >> beam.Map(lambda v: (WITHHELD, v)),
            report_quarantine | "TagReportQuarantine" >> beam.Map(lambda t: (REPORT_QUARANTINE, t)),
            central.pipeline | "Empty" >> beam.Create([(CENTRAL, self.empty)]),
        )
        return (
            tagged
            | "MergeForPublishing" >> beam.Flatten()
            | "OneGroup" >> beam.Map(lambda element: (None, element))
            | "CollectReport" >> beam.GroupByKey()
            | "Publish" >> beam.ParDo(self.fn)
        )
