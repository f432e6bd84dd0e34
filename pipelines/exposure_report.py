"""`rex report --kind exposure` and `--kind oed`: in-force risks on an as-of date, per partner.

Exposure (with its top locations) and the OED location and account files are snapshots, not
period reports: each is published for its as-of date (the folder `<partner>/<report>/<date>/`),
and a later change to the same as-of date is a new version of it. Control totals: the partners'
shares of the ceded TIV (exposure) are published + quarantined (+ withheld, which fails).
"""
from __future__ import annotations

from datetime import date

import apache_beam as beam
import pyarrow as pa

from contracts.model import PARTNERS_DIR
from pipelines.report_run import ReportPlan, ReportSummary, run_report
from transforms.exposure import BuildExposure, BuildTopLocations, empty_exposure, empty_top_locations
from transforms.oed import BuildOedAccounts, BuildOedLocations, empty_oed_accounts, empty_oed_locations
from transforms.quarantine import QUARANTINE_TAG_REPORT
from transforms.report_publish import ReportLayout
from transforms.warehouse import REPORTS_DATASET


def _with_period(table: pa.Table, as_of: date) -> pa.Table:
    """The snapshot's publication label: its as-of date."""
    return table.append_column("period", pa.array([as_of.isoformat()] * table.num_rows, pa.string()))


def _plan(kind: str, build_cls, empty, keys, sort, totals=None, **build_kw) -> ReportPlan:
    def build(p, warehouse_uri: str, as_of: date):
        built = p | f"Build[{kind}]" >> build_cls(warehouse_uri, as_of, **build_kw)
        rows = built.rows | f"Label[{kind}]" >> beam.Map(_with_period, as_of)
        return rows, built[QUARANTINE_TAG_REPORT]

    def empty_rows():
        return _with_period(empty(), date(2000, 1, 1)).slice(0, 0)

    layout = ReportLayout(kind=kind, key_columns=keys, sort_keys=tuple((c, "ascending") for c in sort),
                          repeat_order=tuple(keys))
    return ReportPlan(kind, layout, build, empty_rows, totals)


def exposure_control_totals(wh, requested: set[str] | None = None) -> list[dict]:
    skipped = "" if requested is None else (
        " OR reinsurer_id NOT IN (" + ", ".join("'" + p.replace("'", "''") + "'" for p in sorted(requested)) + ")")
    rows = wh.query(f"""
        WITH pub AS (SELECT *, CASE WHEN FALSE{skipped} THEN 'skipped' ELSE publication_status END AS disposition
                     FROM {REPORTS_DATASET}.exposure)
        SELECT treaty_id, currency, any_value(period) AS period, sum(ceded_tiv_share) AS placed,
               coalesce(sum(ceded_tiv_share) FILTER (WHERE disposition = 'published'), 0) AS published,
               coalesce(sum(ceded_tiv_share) FILTER (WHERE disposition = 'quarantined'), 0) AS quarantined,
               coalesce(sum(ceded_tiv_share) FILTER (WHERE disposition = 'withheld'), 0) AS withheld,
               coalesce(sum(ceded_tiv_share) FILTER (WHERE disposition IN ('pending', 'skipped')), 0) AS not_due,
               count(*) FILTER (WHERE disposition = 'unaccounted') AS unaccounted
        FROM pub GROUP BY ALL ORDER BY ALL""").to_pylist()
    for r in rows:
        problems = []
        if r["placed"] != r["published"] + r["quarantined"] + r["withheld"] + r["not_due"] or r["unaccounted"]:
            problems.append("ceded TIV shares are not all published or quarantined")
        if r["withheld"]:
            problems.append(f"{r['withheld']} of the ceded TIV shares withheld")
        r["why"] = "; ".join(problems) or None
        r["balanced"] = not problems
    return rows


EXPOSURE_KEYS = ("treaty_id", "peril", "country", "zone", "line_of_business", "currency")
PLANS = {
    "exposure": lambda: _plan("exposure", BuildExposure, empty_exposure, EXPOSURE_KEYS,
                              ("treaty_id", *EXPOSURE_KEYS[1:]), exposure_control_totals),
    "exposure_top_locations": lambda: _plan("exposure_top_locations", BuildTopLocations, empty_top_locations,
                                            ("treaty_id", "rank"), ("treaty_id", "rank")),
    "oed_location": lambda: _plan("oed_location", BuildOedLocations, empty_oed_locations,
                                  ("treaty_id", "AccNumber", "LocNumber"), ("treaty_id", "AccNumber", "LocNumber")),
    "oed_account": lambda: _plan("oed_account", BuildOedAccounts, empty_oed_accounts,
                                 ("treaty_id", "AccNumber"), ("treaty_id", "AccNumber")),
}
KINDS = {"exposure": ("exposure", "exposure_top_locations"), "oed": ("oed_location", "oed_account")}


def run_snapshot_reports(kind: str, warehouse_uri: str, out_dir: str | None, partners: list[str] | None = None,
                         beam_args: list[str] | None = None, contracts_dir: str = PARTNERS_DIR,
                         **options) -> list[ReportSummary]:
    """Every report of a snapshot kind (exposure: the report and its top locations; oed: the
    location and account files) for the partners whose contracts take it."""
    from contracts.model import load_partner_contracts

    contracts = load_partner_contracts(contracts_dir)
    out = []
    for report in KINDS[kind]:
        takers = [p for p, c in contracts.items() if report in c.reports and (not partners or p in partners)]
        if not takers:
            continue
        out.append(run_report(PLANS[report](), warehouse_uri, out_dir, takers, beam_args, contracts_dir, **options))
    return out
