"""`rex report --kind premium`: every contracted partner's premium bordereau from the mirror.

The run itself is pipelines/report_run.py; this module says how the premium bordereau is built
and keyed, and how its control totals tie it to the ledger: per treaty × currency × period,
exactly, at full precision.
"""
from __future__ import annotations

from datetime import date

from contracts.model import PARTNERS_DIR
from pipelines.report_run import ReportPlan, ReportSummary, run_report
from transforms.ledger_schema import table as ledger_table
from transforms.premium_bordereau import (
    SORT_KEYS,
    BuildPremiumBordereau,
    policy_risks,
    premium_bordereau_rows,
)
from transforms.quarantine import QUARANTINE_TAG_REPORT
from transforms.report_publish import ReportLayout
from transforms.warehouse import REPORTS_DATASET

REPORT = "premium_bordereau"
LAYOUT = ReportLayout(
    kind=REPORT,
    key_columns=("treaty_id", "policy_id", "transaction_id"),
    sort_keys=tuple(SORT_KEYS),
    repeat_order=("ledger_commit_timestamp", "booked_date", "policy_id", "transaction_id"),
)


def empty_bordereau():
    def empty(name):
        return ledger_table(name).arrow_schema().empty_table()

    risks = policy_risks(empty("Policies"), empty("Locations"))
    return premium_bordereau_rows(empty("PremiumTransactions"), risks, empty("Treaties"), empty("Participations"))


def _build(p, warehouse_uri: str, as_of: date):
    built = p | "BuildPremiumBordereau" >> BuildPremiumBordereau(warehouse_uri)
    return built.rows, built[QUARANTINE_TAG_REPORT]


def plan() -> ReportPlan:
    return ReportPlan(REPORT, LAYOUT, _build, empty_bordereau, premium_control_totals, fx_date_column="booked_date")


def run_premium_bordereau(warehouse_uri: str, out_dir: str | None, partners: list[str] | None = None,
                          beam_args: list[str] | None = None, contracts_dir: str = PARTNERS_DIR,
                          validation_dir: str | None = None, **options) -> ReportSummary:
    return run_report(plan(), warehouse_uri, out_dir, partners, beam_args, contracts_dir, validation_dir, **options)


def premium_control_totals(wh, requested: set[str] | None = None) -> list[dict]:
    """Per treaty × currency × period (booked month), exact: the ledger's gross premium =
    ceded (100%) + retained + quarantined, and the partners' shares (ceded per partner) =
    published + quarantined (+ pending or skipped, which this run does not report; + withheld,
    which fails the run).

    The ledger side is read from the mirror, independently of the bordereau; the ceded side from
    the central bordereau rows with their dispositions; quarantined premiums (ledger rules) from
    this run's report quarantine. `requested`: a run for some partners only leaves the others'
    rows `skipped`, outside the checks."""
    skipped = "" if requested is None else (
        " OR reinsurer_id NOT IN (" + ", ".join("'" + p.replace("'", "''") + "'" for p in sorted(requested)) + ")")
    pub = (f"SELECT *, CASE WHEN FALSE{skipped} THEN 'skipped' ELSE publication_status END AS disposition "
           f"FROM {REPORTS_DATASET}.{REPORT}")
    sql = f"""
    WITH pub AS ({pub}),
    per_txn AS (
      SELECT treaty_id, original_currency AS currency, strftime(booked_date, '%Y-%m') AS period,
             policy_id, transaction_id,
             any_value(gross_premium_100) AS gross_100, any_value(ceded_premium_100) AS ceded_100,
             sum(share_premium) AS placed,
             coalesce(sum(share_premium) FILTER (WHERE disposition = 'published'), 0) AS published,
             coalesce(sum(share_premium) FILTER (WHERE disposition = 'quarantined'), 0) AS quarantined,
             coalesce(sum(share_premium) FILTER (WHERE disposition = 'withheld'), 0) AS withheld,
             coalesce(sum(share_premium) FILTER (WHERE disposition IN ('pending', 'skipped')), 0) AS not_due,
             count(*) FILTER (WHERE disposition = 'unaccounted') AS unaccounted
      FROM pub GROUP BY ALL
    ),
    ceded AS (
      SELECT treaty_id, currency, period, sum(gross_100) AS bordereau_gross, sum(ceded_100) AS ceded_100,
             sum(placed) AS placed, sum(published) AS published, sum(quarantined) AS quarantined,
             sum(withheld) AS withheld, sum(not_due) AS not_due, sum(unaccounted) AS unaccounted,
             count(*) AS transactions_published
      FROM per_txn GROUP BY ALL
    ),
    held AS (
      SELECT json_extract_string(raw_record, '$.PolicyTreatyId') AS treaty_id,
             json_extract_string(raw_record, '$.Currency') AS currency,
             strftime(CAST(json_extract_string(raw_record, '$.BookedDate') AS DATE), '%Y-%m') AS period,
             sum(CAST(json_extract_string(raw_record, '$.GrossPremium') AS DECIMAL(38,9))) AS quarantined_gross,
             count(*) AS transactions_quarantined
      FROM {REPORTS_DATASET}.{REPORT}_quarantine WHERE stage = 'report' GROUP BY ALL
    ),
    ledger AS (
      SELECT coalesce(p.TreatyId, '(not ceded)') AS treaty_id, pt.Currency AS currency,
             strftime(pt.BookedDate, '%Y-%m') AS period,
             sum(pt.GrossPremium) AS ledger_gross, count(*) AS transactions_ledger,
             count(*) FILTER (WHERE t.TreatyType IN ('QUOTA_SHARE','SURPLUS')
                              AND EXISTS (SELECT 1 FROM rex_ledger.Participations pa
                                          WHERE pa.TreatyId = t.TreatyId)) AS transactions_cedable
      FROM rex_ledger.PremiumTransactions pt
      LEFT JOIN rex_ledger.Policies p ON p.PolicyId = pt.PolicyId
      LEFT JOIN rex_ledger.Treaties t ON t.TreatyId = p.TreatyId
      GROUP BY ALL
    )
    SELECT l.treaty_id, l.currency, l.period, l.ledger_gross,
           coalesce(c.bordereau_gross, 0) AS bordereau_gross,
           coalesce(h.quarantined_gross, 0) AS ledger_quarantined,
           coalesce(c.ceded_100, 0) AS ceded_100,
           l.ledger_gross - coalesce(c.ceded_100, 0) - coalesce(h.quarantined_gross, 0) AS retained,
           coalesce(c.placed, 0) AS placed,
           coalesce(c.ceded_100, 0) - coalesce(c.placed, 0) AS unplaced,
           coalesce(c.published, 0) AS published, coalesce(c.quarantined, 0) AS quarantined,
           coalesce(c.withheld, 0) AS withheld, coalesce(c.not_due, 0) AS not_due,
           coalesce(c.unaccounted, 0) AS unaccounted,
           l.transactions_ledger, l.transactions_cedable,
           coalesce(c.transactions_published, 0) AS transactions_published,
           coalesce(h.transactions_quarantined, 0) AS transactions_quarantined
    FROM ledger l
    LEFT JOIN ceded c ON c.treaty_id = l.treaty_id AND c.currency = l.currency AND c.period = l.period
    LEFT JOIN held h ON h.treaty_id = l.treaty_id AND h.currency = l.currency AND h.period = l.period
    ORDER BY 1, 2, 3
    """
    per_partner: dict[tuple, dict] = {}
    for treaty, ccy, period, partner, share in wh.rows(
            f"SELECT treaty_id, original_currency, strftime(booked_date, '%Y-%m'), reinsurer_id, sum(share_premium) "
            f"FROM {REPORTS_DATASET}.{REPORT} GROUP BY ALL ORDER BY ALL"):
        per_partner.setdefault((treaty, ccy, period), {})[partner] = share
    out = []
    for r in wh.query(sql).to_pylist():
        r["ceded_per_partner"] = per_partner.get((r["treaty_id"], r["currency"], r["period"]), {})
        r["why"] = "; ".join(premium_problems(r)) or None
        r["balanced"] = r["why"] is None
        out.append(r)
    return out


def premium_problems(r: dict) -> list[str]:
    """What does not tie out in one control-total row (empty: it reconciles exactly)."""
    cedable = r["transactions_cedable"] > 0
    problems = []
    if cedable and r["ledger_gross"] != r["bordereau_gross"] + r["ledger_quarantined"]:
        problems.append(f"ledger gross {r['ledger_gross']} != bordereau gross {r['bordereau_gross']} "
                        f"+ quarantined {r['ledger_quarantined']} (difference "
                        f"{r['ledger_gross'] - r['bordereau_gross'] - r['ledger_quarantined']})")
    if not cedable and r["bordereau_gross"] != 0:
        problems.append(f"bordereau holds {r['bordereau_gross']} of a treaty that cedes no premium")
    held = r["transactions_quarantined"] if cedable else 0
    if r["transactions_cedable"] != r["transactions_published"] + held:
        problems.append(f"{r['transactions_published']} of {r['transactions_cedable']} cedable transactions "
                        f"in the bordereau ({held} quarantined)")
    accounted = r["published"] + r["quarantined"] + r["withheld"] + r["not_due"]
    if r["placed"] != accounted or r["unaccounted"]:
        problems.append(f"shares {r['placed']} != published + quarantined + withheld + not due {accounted}"
                        + (f"; {r['unaccounted']} rows unaccounted" if r["unaccounted"] else ""))
    if r["withheld"] != 0:
        problems.append(f"{r['withheld']} of the partners' shares withheld (no contract, not covered, or gate failed)")
    ceded, placed = r["ceded_100"], r["placed"]
    if abs(placed) > abs(ceded) or placed * ceded < 0:  # a month of return premium nets negative
        problems.append(f"shares {placed} exceed the ceded premium {ceded}")
    return problems
