"""`rex report --kind premium`: every contracted partner's premium bordereau from the mirror.

    mirror ─ BuildPremiumBordereau ─┬─ CheckPartnerRows (contract row checks, per partner) ─┐
                                    ├─ (all rows, for the central table and control totals) ─┼─ PublishPartnerReports
                                    └─ quarantined premiums (ledger integrity) ──────────────┘   (repeats, masking,
                                                                                                   gate, tables, files)
Then the control totals: per treaty × currency the ledger's gross premium must equal what the
bordereau ceded plus what was retained plus what was quarantined, and every partner's share
must be published or quarantined — exactly, at full precision. A run that does not reconcile,
or whose gate failed for a partner, is recorded as failed and the command exits 1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone

import apache_beam as beam
import pyarrow as pa

from contracts.model import PARTNERS_DIR, load_partner_contracts
from pipelines.capture import CODE_VERSION, new_run_id
from pipelines.options import pipeline_options
from transforms.contract_checks import QUARANTINE, WITHHELD, CheckPartnerRows
from transforms.errors import RexError
from transforms.partner_reports import masking_key
from transforms.ledger_schema import table as ledger_table
from transforms.ledger_snapshot import ReadLedgerTable
from transforms.premium_bordereau import (
    SORT_KEYS,
    BuildPremiumBordereau,
    policy_risks,
    premium_bordereau_rows,
)
from transforms.quarantine import QUARANTINE_TAG_REPORT
from transforms.report_publish import PublishPartnerReports, ReportLayout
from transforms.warehouse import REPORTS_DATASET, open_warehouse

REPORT = "premium_bordereau"
LAYOUT = ReportLayout(
    kind=REPORT,
    key_columns=("treaty_id", "policy_id", "transaction_id"),
    sort_keys=tuple(SORT_KEYS),
    repeat_order=("ledger_commit_timestamp", "booked_date", "policy_id", "transaction_id"),
)


@dataclass
class ReportSummary:
    run_id: str
    rows_per_partner: dict[str, int]
    control_totals: list[dict]
    balanced: bool
    quarantined_per_partner: dict[str, int] = field(default_factory=dict)
    withheld_per_partner: dict[str, int] = field(default_factory=dict)
    gates: list = field(default_factory=list)
    validation_html: str | None = None
    message: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.message is None


def empty_bordereau() -> pa.Table:
    def empty(name):
        return ledger_table(name).arrow_schema().empty_table()

    risks = policy_risks(empty("Policies"), empty("Locations"))
    return premium_bordereau_rows(empty("PremiumTransactions"), risks, empty("Treaties"), empty("Participations"))


def run_premium_bordereau(warehouse_uri: str, out_dir: str | None, partners: list[str] | None = None,
                          beam_args: list[str] | None = None, contracts_dir: str = PARTNERS_DIR,
                          validation_dir: str | None = None) -> ReportSummary:
    started = datetime.now(timezone.utc)
    run_id = new_run_id("report")
    with open_warehouse(warehouse_uri) as wh:
        known = [r[0] for r in wh.rows("SELECT ReinsurerId FROM rex_ledger.Reinsurers ORDER BY 1")]
    if not known:
        raise RexError("the warehouse mirror has no reinsurers yet: run `rex capture` first")
    unknown = sorted(set(partners or []) - set(known))
    if unknown:
        raise RexError(f"unknown reinsurer {', '.join(unknown)}; known: {', '.join(known)}")
    contracts = {p: c for p, c in load_partner_contracts(contracts_dir).items() if REPORT in c.reports}
    if partners:
        missing = sorted(set(partners) - set(contracts))
        if missing:
            raise RexError(f"{', '.join(missing)} has no contract for {REPORT} in {contracts_dir}")
        contracts = {p: contracts[p] for p in partners}
    for contract in contracts.values():  # fail before the pipeline, not in its last step
        for m in contract.masking:
            masking_key(m.key_env)
    if validation_dir is None:
        validation_dir = default_validation_dir(warehouse_uri, out_dir)
    with beam.Pipeline(options=pipeline_options(beam_args)) as p:
        built = p | "BuildPremiumBordereau" >> BuildPremiumBordereau(warehouse_uri)
        fx = p | "ReadFxRates" >> ReadLedgerTable(warehouse_uri, "FxRates")
        checked = built.rows | "CheckPartnerRows" >> CheckPartnerRows(contracts, REPORT, fx, "booked_date")
        inputs = (built.rows, checked.clean, checked[QUARANTINE], checked[WITHHELD], built[QUARANTINE_TAG_REPORT])
        _ = inputs | "PublishPremiumBordereau" >> PublishPartnerReports(
            warehouse_uri, LAYOUT, contracts, out_dir, validation_dir, run_id, empty_bordereau())
    return _finish(warehouse_uri, run_id, started, contracts, partners, validation_dir)


def default_validation_dir(warehouse_uri: str, out_dir: str | None) -> str:
    """Beside the run's outputs: <out>/validation, else next to the warehouse file."""
    if out_dir:
        return os.path.join(out_dir, "validation")
    if warehouse_uri.startswith("duckdb:///"):
        path = warehouse_uri[len("duckdb:///"):]
        return os.path.join(os.path.dirname(os.path.abspath(path)), "rex-validation")
    return os.path.abspath("rex-validation")


def _finish(warehouse_uri, run_id, started, contracts, partners, validation_dir) -> ReportSummary:
    with open_warehouse(warehouse_uri) as wh:
        status = wh.rows(f"SELECT reinsurer_id, publication_status, count(*) FROM {REPORTS_DATASET}.{REPORT} GROUP BY ALL")
        totals = premium_control_totals(wh, requested=set(contracts) if partners else None)
        counts: dict[str, dict[str, int]] = {}
        for partner, state, n in status:
            counts.setdefault(state, {})[partner] = n
        html = os.path.join(validation_dir, f"{run_id}.{REPORT}.html")
        gates = wh.validations(run_id)
        balanced = all(t["balanced"] for t in totals)
        failed_gates = [g for g in gates if not g["success"]]
        message = None
        if failed_gates:
            message = (f"the gate failed for {', '.join(g['partner'] for g in failed_gates)}: nothing of their "
                       f"{REPORT} was published; see {html}")
        elif not balanced:
            bad = next(t for t in totals if not t["balanced"])
            message = f"premium control totals do not reconcile ({bad['treaty_id']} {bad['currency']}: {bad['why']})"
        wh.record_run({
            "run_id": run_id, "command": "report premium", "status": "failed" if message else "succeeded",
            "started_at": started, "finished_at": datetime.now(timezone.utc), "code_version": CODE_VERSION,
            "counts": {"rows": counts, "validation": gates, "validation_report": html,
                       "contracts": {p: c.version for p, c in contracts.items()}},
            "control_totals": totals, "message": message,
        })
    published = {p: counts.get("published", {}).get(p, 0) for p in contracts}
    return ReportSummary(run_id, published, totals, balanced, counts.get("quarantined", {}),
                         counts.get("withheld", {}), gates, html if os.path.exists(html) else None, message)


def premium_control_totals(wh, requested: set[str] | None = None) -> list[dict]:
    """Per treaty × currency, exact: the ledger's gross premium = ceded (100%) + retained +
    quarantined, and the partners' shares = published + quarantined (+ withheld, which fails).

    The ledger side is read from the mirror, independently of the bordereau; the ceded side from
    the central bordereau rows with their dispositions; quarantined premiums (ledger rules) from
    this run's report quarantine. `requested`: a run for some partners only leaves the others'
    rows `skipped`, outside the checks."""
    skipped = "" if requested is None else (
        " OR reinsurer_id NOT IN (" + ", ".join("'" + p.replace("'", "''") + "'" for p in sorted(requested)) + ")")
    sql = f"""
    WITH pub AS (
      SELECT *, CASE WHEN FALSE{skipped} THEN 'skipped' ELSE publication_status END AS disposition
      FROM {REPORTS_DATASET}.{REPORT}
    ),
    per_txn AS (
      SELECT treaty_id, original_currency AS currency, policy_id, transaction_id,
             any_value(gross_premium_100) AS gross_100, any_value(ceded_premium_100) AS ceded_100,
             sum(share_premium) AS placed,
             coalesce(sum(share_premium) FILTER (WHERE disposition = 'published'), 0) AS published,
             coalesce(sum(share_premium) FILTER (WHERE disposition = 'quarantined'), 0) AS quarantined,
             coalesce(sum(share_premium) FILTER (WHERE disposition = 'withheld'), 0) AS withheld,
             coalesce(sum(share_premium) FILTER (WHERE disposition = 'skipped'), 0) AS skipped,
             count(*) FILTER (WHERE disposition = 'unaccounted') AS unaccounted
      FROM pub GROUP BY ALL
    ),
    ceded AS (
      SELECT treaty_id, currency, sum(gross_100) AS bordereau_gross, sum(ceded_100) AS ceded_100,
             sum(placed) AS placed, sum(published) AS published, sum(quarantined) AS quarantined,
             sum(withheld) AS withheld, sum(skipped) AS skipped, sum(unaccounted) AS unaccounted,
             count(*) AS transactions_published
      FROM per_txn GROUP BY ALL
    ),
    held AS (
      SELECT json_extract_string(raw_record, '$.PolicyTreatyId') AS treaty_id,
             json_extract_string(raw_record, '$.Currency') AS currency,
             sum(CAST(json_extract_string(raw_record, '$.GrossPremium') AS DECIMAL(38,9))) AS quarantined_gross,
             count(*) AS transactions_quarantined
      FROM {REPORTS_DATASET}.{REPORT}_quarantine WHERE stage = 'report' GROUP BY ALL
    ),
    ledger AS (
      SELECT coalesce(p.TreatyId, '(not ceded)') AS treaty_id, pt.Currency AS currency,
             sum(pt.GrossPremium) AS ledger_gross, count(*) AS transactions_ledger,
             count(*) FILTER (WHERE t.TreatyType IN ('QUOTA_SHARE','SURPLUS')
                              AND EXISTS (SELECT 1 FROM rex_ledger.Participations pa
                                          WHERE pa.TreatyId = t.TreatyId)) AS transactions_cedable
      FROM rex_ledger.PremiumTransactions pt
      LEFT JOIN rex_ledger.Policies p ON p.PolicyId = pt.PolicyId
      LEFT JOIN rex_ledger.Treaties t ON t.TreatyId = p.TreatyId
      GROUP BY ALL
    )
    SELECT l.treaty_id, l.currency, l.ledger_gross,
           coalesce(c.bordereau_gross, 0) AS bordereau_gross,
           coalesce(h.quarantined_gross, 0) AS ledger_quarantined,
           coalesce(c.ceded_100, 0) AS ceded_100,
           l.ledger_gross - coalesce(c.ceded_100, 0) - coalesce(h.quarantined_gross, 0) AS retained,
           coalesce(c.placed, 0) AS placed,
           coalesce(c.ceded_100, 0) - coalesce(c.placed, 0) AS unplaced,
           coalesce(c.published, 0) AS published, coalesce(c.quarantined, 0) AS quarantined,
           coalesce(c.withheld, 0) AS withheld, coalesce(c.skipped, 0) AS skipped,
           coalesce(c.unaccounted, 0) AS unaccounted,
           l.transactions_ledger, l.transactions_cedable,
           coalesce(c.transactions_published, 0) AS transactions_published,
           coalesce(h.transactions_quarantined, 0) AS transactions_quarantined
    FROM ledger l
    LEFT JOIN ceded c ON c.treaty_id = l.treaty_id AND c.currency = l.currency
    LEFT JOIN held h ON h.treaty_id = l.treaty_id AND h.currency = l.currency
    ORDER BY 1, 2
    """
    out = []
    for r in wh.query(sql).to_pylist():
        cedable = r["transactions_cedable"] > 0
        problems = []
        if cedable and r["ledger_gross"] != r["bordereau_gross"] + r["ledger_quarantined"]:
            problems.append(f"ledger gross {r['ledger_gross']} != bordereau gross {r['bordereau_gross']} "
                            f"+ quarantined {r['ledger_quarantined']}")
        if not cedable and r["bordereau_gross"] != 0:
            problems.append(f"bordereau holds {r['bordereau_gross']} of a treaty that cedes no premium")
        if r["transactions_cedable"] != r["transactions_published"]:
            problems.append(f"{r['transactions_published']} of {r['transactions_cedable']} cedable transactions "
                            "in the bordereau")
        accounted = r["published"] + r["quarantined"] + r["withheld"] + r["skipped"]
        if r["placed"] != accounted or r["unaccounted"]:
            problems.append(f"shares {r['placed']} != published + quarantined + withheld {accounted}"
                            + (f"; {r['unaccounted']} rows unaccounted" if r["unaccounted"] else ""))
        if r["withheld"] != 0:
            problems.append(f"{r['withheld']} of the partners' shares withheld (no contract, not covered, or gate failed)")
        if r["unplaced"] < 0:
            problems.append(f"shares exceed the ceded premium by {-r['unplaced']}")
        r["balanced"] = not problems
        r["why"] = "; ".join(problems) or None
        out.append(r)
    return out
