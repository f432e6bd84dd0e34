"""Build and publish the premium bordereau of every reinsurer from the warehouse mirror."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import apache_beam as beam
import pyarrow as pa

from pipelines.capture import CODE_VERSION, new_run_id
from pipelines.options import pipeline_options
from transforms.errors import RexError
from transforms.ledger_schema import table as ledger_table
from transforms.premium_bordereau import (
    MONEY_COLUMNS,
    SORT_KEYS,
    BuildPremiumBordereau,
    policy_risks,
    premium_bordereau_rows,
)
from transforms.report_publish import PublishPartnerReport
from transforms.warehouse import REPORTS_DATASET, open_warehouse, partner_dataset

REPORT = "premium_bordereau"


@dataclass
class ReportSummary:
    run_id: str
    rows_per_partner: dict[str, int]
    control_totals: list[dict]
    balanced: bool


def empty_bordereau() -> pa.Table:
    def empty(name):
        return ledger_table(name).arrow_schema().empty_table()

    risks = policy_risks(empty("Policies"), empty("Locations"))
    return premium_bordereau_rows(empty("PremiumTransactions"), risks, empty("Treaties"), empty("Participations"))


def run_premium_bordereau(warehouse_uri: str, out_dir: str | None, rounding: str = "half_up",
                          partners: list[str] | None = None,
                          beam_args: list[str] | None = None) -> ReportSummary:
    started = datetime.now(timezone.utc)
    with open_warehouse(warehouse_uri) as wh:
        known = [r[0] for r in wh.rows("SELECT ReinsurerId FROM rex_ledger.Reinsurers ORDER BY 1")]
    if not known:
        raise RexError("the warehouse mirror has no reinsurers yet: run `rex capture` first")
    unknown = sorted(set(partners or []) - set(known))
    if unknown:
        raise RexError(f"unknown reinsurer {', '.join(unknown)}; known: {', '.join(known)}")
    partners = sorted(partners or known)
    with beam.Pipeline(options=pipeline_options(beam_args)) as p:
        _ = (
            p
            | "BuildPremiumBordereau" >> BuildPremiumBordereau(warehouse_uri)
            | "PublishPremiumBordereau" >> PublishPartnerReport(
                warehouse_uri, REPORT, partners, out_dir, empty_bordereau(), SORT_KEYS,
                MONEY_COLUMNS, "original_currency", rounding,
            )
        )
    run_id = new_run_id("report")
    with open_warehouse(warehouse_uri) as wh:
        rows = {p: wh.rows(f"SELECT count(*) FROM {partner_dataset(p)}.{REPORT}")[0][0] for p in partners}
        totals = premium_control_totals(wh)
        balanced = all(t["balanced"] for t in totals)
        wh.record_run({
            "run_id": run_id, "command": "report premium", "status": "succeeded" if balanced else "failed",
            "started_at": started, "finished_at": datetime.now(timezone.utc),
            "code_version": CODE_VERSION, "counts": {"rows_per_partner": rows},
            "control_totals": totals,
            "message": None if balanced else "premium control totals do not reconcile",
        })
    return ReportSummary(run_id, rows, totals, balanced)


def premium_control_totals(wh) -> list[dict]:
    """Per treaty × currency: ledger gross = ceded (100%) + retained, and ceded = placed + unplaced.

    The ledger side is queried from the mirror independently of the bordereau; the ceded side
    from the bordereau rows of every partner (`rex_reports`), rows as published.
    """
    sql = f"""
    WITH pub AS (SELECT * FROM {REPORTS_DATASET}.{REPORT}),
    per_txn AS (
      SELECT treaty_id, original_currency AS currency, policy_id, transaction_id,
             any_value(ceded_premium_100) AS ceded_100, sum(share_premium) AS placed
      FROM pub GROUP BY ALL
    ),
    ceded AS (
      SELECT treaty_id, currency, sum(ceded_100) AS ceded_100, sum(placed) AS placed,
             count(*) AS transactions_published
      FROM per_txn GROUP BY ALL
    ),
    ledger AS (
      SELECT coalesce(t.TreatyId, '(not ceded)') AS treaty_id, pt.Currency AS currency,
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
           coalesce(c.ceded_100, 0) AS ceded_100,
           l.ledger_gross - coalesce(c.ceded_100, 0) AS retained,
           coalesce(c.placed, 0) AS placed,
           coalesce(c.ceded_100, 0) - coalesce(c.placed, 0) AS unplaced,
           l.transactions_ledger, l.transactions_cedable,
           coalesce(c.transactions_published, 0) AS transactions_published
    FROM ledger l LEFT JOIN ceded c ON c.treaty_id = l.treaty_id AND c.currency = l.currency
    ORDER BY 1, 2
    """
    out = []
    for r in wh.query(sql).to_pylist():
        r["balanced"] = (
            r["ledger_gross"] == r["ceded_100"] + r["retained"]
            and r["transactions_cedable"] == r["transactions_published"]
            and r["unplaced"] >= 0
        )
        out.append(r)
    return out
