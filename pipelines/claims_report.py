"""`rex report --kind claims`: every contracted partner's claims bordereau from the mirror.

Claims rows are built on both period grids (monthly and quarterly) through the period holding
the run's as-of date; each partner takes its contract's grid. Control totals, per treaty ×
currency × grid × period, tie the bordereau to the ledger exactly:

* payments: the ledger's claim payments booked in the period (claims of policies under the
  treaty) = the bordereau's paid in the period (each claim once) + payments quarantined by
  ledger rules; ceded paid = placed + unplaced, and placed = published + quarantined (+ pending
  or skipped);
* incurred: the bordereau's incurred = paid to date + outstanding on every claim, and the
  partners' shares of the ceded incurred = published + quarantined (+ pending or skipped).
"""
from __future__ import annotations

from datetime import date

from contracts.model import PARTNERS_DIR
from pipelines.report_run import ReportPlan, ReportSummary, run_report
from transforms.claims_bordereau import (
    SORT_KEYS,
    BuildClaimsBordereau,
    empty_claims_bordereau,
    period_grid,
)
from transforms.quarantine import QUARANTINE_TAG_REPORT
from transforms.report_publish import ReportLayout
from transforms.warehouse import REPORTS_DATASET, open_warehouse

REPORT = "claims_bordereau"
LAYOUT = ReportLayout(
    kind=REPORT,
    key_columns=("treaty_id", "claim_id", "period"),
    sort_keys=tuple(SORT_KEYS),
    repeat_order=("period", "claim_id"),
    grid_column="frequency",
)


def claim_grids(warehouse_uri: str, as_of: date) -> list:
    """Monthly and quarterly periods from the first claim movement through the as-of date."""
    with open_warehouse(warehouse_uri) as wh:
        first = wh.rows("SELECT min(BookedDate) FROM rex_ledger.ClaimTransactions")[0][0]
    if first is None or first > as_of:
        return []
    return period_grid(first, as_of, "monthly") + period_grid(first, as_of, "quarterly")


def _build(p, warehouse_uri: str, as_of: date):
    built = p | "BuildClaimsBordereau" >> BuildClaimsBordereau(warehouse_uri, claim_grids(warehouse_uri, as_of))
    return built.rows, built[QUARANTINE_TAG_REPORT]


def plan() -> ReportPlan:
    return ReportPlan(REPORT, LAYOUT, _build, empty_claims_bordereau, claims_control_totals,
                      fx_date_column="last_booked_date", fx_period_end_column="period_end")


def run_claims_bordereau(warehouse_uri: str, out_dir: str | None, partners: list[str] | None = None,
                         beam_args: list[str] | None = None, contracts_dir: str = PARTNERS_DIR,
                         validation_dir: str | None = None, **options) -> ReportSummary:
    return run_report(plan(), warehouse_uri, out_dir, partners, beam_args, contracts_dir, validation_dir, **options)


def claims_control_totals(wh, requested: set[str] | None = None) -> list[dict]:
    skipped = "" if requested is None else (
        " OR reinsurer_id NOT IN (" + ", ".join("'" + p.replace("'", "''") + "'" for p in sorted(requested)) + ")")
    sql = f"""
    WITH pub AS (
      SELECT *, CASE WHEN FALSE{skipped} THEN 'skipped' ELSE publication_status END AS disposition
      FROM {REPORTS_DATASET}.{REPORT}
    ),
    per_claim AS (
      SELECT treaty_id, original_currency AS currency, frequency, period, period_start, period_end, claim_id,
             any_value(paid_this_period_100) AS paid_100, any_value(incurred_100) AS incurred_100,
             bool_and(incurred_100 = paid_to_date_100 + outstanding_reserve_100) AS incurred_ties,
             any_value(ceded_paid_this_period_100) AS ceded_paid, any_value(ceded_incurred_100) AS ceded_incurred,
             sum(paid_this_period_share) AS placed_paid, sum(incurred_share) AS placed_incurred,
             coalesce(sum(incurred_share) FILTER (WHERE disposition = 'published'), 0) AS published,
             coalesce(sum(incurred_share) FILTER (WHERE disposition = 'quarantined'), 0) AS quarantined,
             coalesce(sum(incurred_share) FILTER (WHERE disposition = 'withheld'), 0) AS withheld,
             coalesce(sum(incurred_share) FILTER (WHERE disposition IN ('pending', 'skipped')), 0) AS not_due,
             count(*) FILTER (WHERE disposition = 'unaccounted') AS unaccounted
      FROM pub GROUP BY ALL
    ),
    bordereau AS (
      SELECT treaty_id, currency, frequency, period, any_value(period_start) AS period_start,
             any_value(period_end) AS period_end,
             sum(paid_100) AS bordereau_paid, sum(incurred_100) AS bordereau_incurred,
             bool_and(incurred_ties) AS incurred_ties, sum(ceded_paid) AS ceded_paid,
             sum(ceded_incurred) AS ceded_incurred, sum(placed_paid) AS placed_paid,
             sum(placed_incurred) AS placed_incurred, sum(published) AS published,
             sum(quarantined) AS quarantined, sum(withheld) AS withheld, sum(not_due) AS not_due,
             sum(unaccounted) AS unaccounted, count(*) AS claims
      FROM per_claim GROUP BY ALL
    ),
    ledger AS (
      SELECT b.treaty_id, b.currency, b.frequency, b.period,
             coalesce(sum(ct.PaidAmount), 0) AS ledger_paid
      FROM bordereau b
      LEFT JOIN rex_ledger.Policies p ON p.TreatyId = b.treaty_id
      LEFT JOIN rex_ledger.Claims c ON c.PolicyId = p.PolicyId
      LEFT JOIN rex_ledger.ClaimTransactions ct ON ct.ClaimId = c.ClaimId AND ct.Currency = b.currency
           AND ct.BookedDate BETWEEN b.period_start AND b.period_end
      GROUP BY ALL
    )
    SELECT b.*, l.ledger_paid FROM bordereau b JOIN ledger l USING (treaty_id, currency, frequency, period)
    ORDER BY treaty_id, currency, frequency, period
    """
    out = []
    for r in wh.query(sql).to_pylist():
        problems = []
        if r["ledger_paid"] != r["bordereau_paid"]:
            problems.append(f"ledger paid {r['ledger_paid']} != bordereau paid {r['bordereau_paid']} "
                            f"(difference {r['ledger_paid'] - r['bordereau_paid']})")
        if not r["incurred_ties"]:
            problems.append("incurred != paid to date + outstanding on some claim")
        accounted = r["published"] + r["quarantined"] + r["withheld"] + r["not_due"]
        if r["placed_incurred"] != accounted or r["unaccounted"]:
            problems.append(f"incurred shares {r['placed_incurred']} != published + quarantined + withheld "
                            f"+ not due {accounted}")
        if r["withheld"] != 0:
            problems.append(f"{r['withheld']} of the partners' incurred shares withheld")
        ceded, placed = r["ceded_incurred"], r["placed_incurred"]
        if abs(placed) > abs(ceded) or placed * ceded < 0:
            problems.append(f"incurred shares {placed} exceed the ceded incurred {ceded}")
        r["retained_paid"] = r["bordereau_paid"] - r["ceded_paid"]
        r["unplaced_incurred"] = r["ceded_incurred"] - r["placed_incurred"]
        r["why"] = "; ".join(problems) or None
        r["balanced"] = not problems
        out.append(r)
    return out
