"""One report run, for any report kind: build from the mirror, check per partner, publish.

    mirror ─ Build<Report> ─┬─ CheckPartnerRows (FX, contract row checks, per partner) ─┐
                            ├─ (all rows, for the central table and control totals) ─────┼─ PublishPartnerReports
                            └─ rows held back by ledger rules ───────────────────────────┘  (repeats, masking, gate,
                                                                                            versions, tables, files)
Then the report's control totals. A run whose gate failed for a partner, or whose totals do not
reconcile, is recorded as failed and `rex report` exits 1. Report runs never move the capture
checkpoint: they read the mirror as it is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Callable

import apache_beam as beam
import pyarrow as pa

from contracts.model import PARTNERS_DIR, load_partner_contracts
from pipelines.capture import CODE_VERSION, new_run_id
from pipelines.options import pipeline_options
from transforms.contract_checks import QUARANTINE, WITHHELD, CheckPartnerRows
from transforms.errors import RexError
from transforms.ledger_snapshot import ReadLedgerTable
from transforms.partner_reports import masking_key
from transforms.report_publish import PublishOptions, PublishPartnerReports, ReportLayout
from transforms.warehouse import REPORTS_DATASET, open_warehouse


@dataclass(frozen=True)
class ReportPlan:
    """How to run one report kind."""

    kind: str  # the catalog report, e.g. premium_bordereau
    layout: ReportLayout
    build: Callable  # (pipeline, warehouse_uri, as_of) -> (rows, quarantine) PCollections
    empty: Callable[[], pa.Table]
    control_totals: Callable | None  # (wh, requested partners or None) -> list[dict]
    fx_date_column: str | None = None
    fx_period_end_column: str | None = None


@dataclass
class ReportSummary:
    run_id: str
    report: str
    rows_per_partner: dict[str, int]
    control_totals: list[dict]
    balanced: bool
    quarantined_per_partner: dict[str, int] = field(default_factory=dict)
    withheld_per_partner: dict[str, int] = field(default_factory=dict)
    pending_per_partner: dict[str, int] = field(default_factory=dict)
    gates: list = field(default_factory=list)
    publications: list = field(default_factory=list)
    validation_html: str | None = None
    message: str | None = None
    dry_run: bool = False

    @property
    def succeeded(self) -> bool:
        return self.message is None


def default_validation_dir(warehouse_uri: str, out_dir: str | None) -> str:
    """Beside the run's outputs: <out>/validation, else next to the warehouse file."""
    if out_dir:
        return os.path.join(out_dir, "validation")
    if warehouse_uri.startswith("duckdb:///"):
        path = warehouse_uri[len("duckdb:///"):]
        return os.path.join(os.path.dirname(os.path.abspath(path)), "rex-validation")
    return os.path.abspath("rex-validation")


def _contracts_for(kind: str, contracts_dir: str, partners: list[str] | None, known: list[str]):
    unknown = sorted(set(partners or []) - set(known))
    if unknown:
        raise RexError(f"unknown reinsurer {', '.join(unknown)}; known: {', '.join(known)}")
    contracts = {p: c for p, c in load_partner_contracts(contracts_dir).items() if kind in c.reports}
    if partners:
        missing = sorted(set(partners) - set(contracts))
        if missing:
            raise RexError(f"{', '.join(missing)} has no contract for {kind} in {contracts_dir}")
        contracts = {p: contracts[p] for p in partners}
    for contract in contracts.values():  # fail before the pipeline, not in its last step
        for m in contract.masking:
            masking_key(m.key_env)
    return contracts


def run_report(plan: ReportPlan, warehouse_uri: str, out_dir: str | None, partners: list[str] | None = None,
               beam_args: list[str] | None = None, contracts_dir: str = PARTNERS_DIR,
               validation_dir: str | None = None, period: str | None = None, as_of: date | None = None,
               formats: tuple[str, ...] | None = None, dry_run: bool = False) -> ReportSummary:
    started = datetime.now(timezone.utc)
    run_id = new_run_id("report")
    as_of = as_of or started.date()
    with open_warehouse(warehouse_uri) as wh:
        known = [r[0] for r in wh.rows("SELECT ReinsurerId FROM rex_ledger.Reinsurers ORDER BY 1")]
    if not known:
        raise RexError("the warehouse mirror has no reinsurers yet: run `rex capture` first")
    contracts = _contracts_for(plan.kind, contracts_dir, partners, known)
    if validation_dir is None:
        validation_dir = default_validation_dir(warehouse_uri, out_dir)
    options = PublishOptions(out_dir=out_dir, validation_dir=validation_dir, run_id=run_id, period=period,
                             as_of=as_of, formats=tuple(formats) if formats else None, dry_run=dry_run)
    with beam.Pipeline(options=pipeline_options(beam_args)) as p:
        rows, held = plan.build(p, warehouse_uri, as_of)
        fx = p | "ReadFxRates" >> ReadLedgerTable(warehouse_uri, "FxRates") if plan.fx_date_column else None
        checked = rows | "CheckPartnerRows" >> CheckPartnerRows(contracts, plan.kind, fx, plan.fx_date_column,
                                                                plan.fx_period_end_column, plan.layout.grid_column)
        inputs = (rows, checked.clean, checked[QUARANTINE], checked[WITHHELD], held)
        _ = inputs | f"Publish[{plan.kind}]" >> PublishPartnerReports(
            warehouse_uri, plan.layout, contracts, options, plan.empty())
    return _finish(plan, warehouse_uri, run_id, started, contracts, partners, validation_dir, dry_run)


def _finish(plan, warehouse_uri, run_id, started, contracts, partners, validation_dir, dry_run) -> ReportSummary:
    report = plan.kind
    with open_warehouse(warehouse_uri) as wh:
        status = wh.rows(f"SELECT reinsurer_id, publication_status, count(*) FROM {REPORTS_DATASET}.{report} "
                         "GROUP BY ALL")
        totals = plan.control_totals(wh, set(contracts) if partners else None) if plan.control_totals else []
        counts: dict[str, dict[str, int]] = {}
        for partner, state, n in status:
            counts.setdefault(state, {})[partner] = n
        html = os.path.join(validation_dir, f"{run_id}.{report}.html")
        gates = wh.validations(run_id)
        publications = wh.publications(run_id)
        balanced = all(t["balanced"] for t in totals)
        failed_gates = [g for g in gates if not g["success"]]
        message = None
        if failed_gates:
            message = (f"the gate failed for {', '.join(g['partner'] for g in failed_gates)}: nothing of their "
                       f"{report} was published; see {html}")
        elif not balanced:
            bad = next(t for t in totals if not t["balanced"])
            where = " ".join(str(bad[k]) for k in ("treaty_id", "currency", "period") if bad.get(k) is not None)
            message = f"{report} control totals do not reconcile ({where}: {bad['why']})"
        wh.record_run({
            "run_id": run_id, "command": f"report {report}" + (" --dry-run" if dry_run else ""),
            "status": "failed" if message else ("dry-run" if dry_run else "succeeded"),
            "started_at": started, "finished_at": datetime.now(timezone.utc), "code_version": CODE_VERSION,
            "counts": {"rows": counts, "validation": gates, "validation_report": html,
                       "publications": publications, "contracts": {p: c.version for p, c in contracts.items()}},
            "control_totals": totals, "message": message,
        })
    published = {p: counts.get("published", {}).get(p, 0) for p in contracts}
    return ReportSummary(run_id, report, published, totals, balanced, counts.get("quarantined", {}),
                         counts.get("withheld", {}), counts.get("pending", {}), gates, publications,
                         html if os.path.exists(html) else None, message, dry_run)
