"""Claims bordereau: one row per claim × participating reinsurer × period (DESIGN.md §8).

A claim's position at a period end comes from its ClaimTransactions booked up to that end:
`PaidAmount` is what was paid in a transaction (a RECOVERY is a negative payment) and
`ReserveAmount` the outstanding reserve after it, so paid to date = Σ PaidAmount, outstanding =
the reserve of the last transaction (by BookedDate, then TransactionId) and incurred = paid to
date + outstanding. A period reports a claim that moved in it or still carries a reserve at its
end. Status at the period end follows the last CLOSE / REOPEN booked by then (OPEN before any).

Cession, at 100% of the treaty, for every treaty type the same way: the ceded *incurred* and the
ceded *paid to date* are computed from the claim's amounts, the ceded outstanding is their
difference and the ceded paid in the period is the ceded paid to date less the ceded paid to
date before the period started (the end of the previous period of the grid). So ceded incurred =
ceded paid + ceded outstanding and the periods' ceded payments add up to the ceded paid to date,
exactly, even where a proportional product rounds at the 9th decimal.

* QUOTA_SHARE / SURPLUS: ceded = amount × fraction (`transforms.cession.ceded_fraction`);
* XOL_PER_RISK (a claim is one risk): ceded = min(max(amount − Attachment, 0), Limit), applied
  to incurred and to paid to date; `xol_recovery_100` is the ceded incurred (0 for proportional).

Shares follow the same pattern: share of ceded incurred and of ceded paid to date (before and at
the end of the period), each rounded to DECIMAL(38,9); on a fully placed treaty the rounding
residual goes to the largest share (ties: reinsurer id), as in the premium bordereau, so the
shares of every amount add up to the ceded amount exactly. Outstanding and paid-this-period
shares are differences of those. A partially placed treaty keeps the unplaced part with the cedent.

Batching. A claim's transactions must be seen together (paid to date, last reserve). The Beam
transform keys both Claims and ClaimTransactions batches by a bucket of the ClaimId (DuckDB's
`hash(ClaimId) % buckets`, computed in one query per batch) and co-groups them, so every bucket
holds all the transactions of its claims and their Claims rows; neither table has to fit in one
worker. Each bucket is then ONE DuckDB query against the small side tables (policies, locations,
treaties, participations) and the period grid; no Python runs per row. Money stays
DECIMAL(38,9) / decimal128(38, 9) throughout, never a float; DuckDB's `/` on decimals (DOUBLE)
is never used.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from transforms import duck
from transforms.cession import ceded_fraction, money
from transforms.ledger_schema import MONEY_TYPE, table as ledger_table
from transforms.ledger_snapshot import ReadLedgerChangelog, ReadLedgerTable
from transforms.premium_bordereau import ATTACHES, ATTACHMENT_RULE, policy_risks
from transforms.sum_insured import VERSIONS_COLUMNS, sum_insured_as_of, sum_insured_timeline
from transforms.quarantine import QUARANTINE_TAG_REPORT, empty_quarantine, quarantine_rows, row_json
from transforms.report_catalog import CLAIMS_BORDEREAU, PUBLICATION_COLUMNS, SETTLEMENT_COLUMNS

COMMIT_COLUMN = "_metadata_spanner_commit_timestamp"
_NO_SUM_INSURED = pa.schema([("PolicyId", pa.string()), ("event_id", pa.string()),
                             ("SumInsured", pa.decimal128(38, 9))]).empty_table()
REPORT = "claims_bordereau"
FREQUENCIES = ("monthly", "quarterly")
DEFAULT_BUCKETS = 32

_SETTLEMENT = {c.name for c in SETTLEMENT_COLUMNS} | {c.name for c in PUBLICATION_COLUMNS}
# The central rows: every catalog column but the settlement and publication ones (added later).
COLUMNS = tuple(c for c in CLAIMS_BORDEREAU.columns
                if c.name not in _SETTLEMENT and not c.name.startswith("settlement_"))
_ARROW_KINDS = {"string": pa.string(), "date": pa.date32(), "money": MONEY_TYPE, "decimal": MONEY_TYPE}
CLAIMS_BORDEREAU_SCHEMA = pa.schema([pa.field(c.name, _ARROW_KINDS[c.kind]) for c in COLUMNS])
MONEY_COLUMNS = tuple(c.name for c in COLUMNS if c.kind == "money")
SORT_KEYS = [("frequency", "ascending"), ("period", "ascending"), ("claim_id", "ascending"),
             ("treaty_id", "ascending"), ("reinsurer_id", "ascending")]

TREATY_EXISTS_RULE = "ledger.policies.treaty_exists"
POLICY_EXISTS_RULE = "ledger.claims.policy_exists"
CLAIM_EXISTS_RULE = "ledger.claim_transactions.claim_exists"


# -- periods ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClaimPeriod:
    frequency: str  # monthly | quarterly
    label: str  # 2026-03 | 2026-Q1
    start: date
    end: date  # inclusive


PERIODS_SCHEMA = pa.schema([("Frequency", pa.string()), ("Period", pa.string()),
                            ("PeriodStart", pa.date32()), ("PeriodEnd", pa.date32())])


def period_grid(first: date, last: date, frequency: str) -> list[ClaimPeriod]:
    """The whole months (`2026-03`) or quarters (`2026-Q1`) covering first..last."""
    if frequency not in FREQUENCIES:
        raise ValueError(f"unknown claims period frequency {frequency!r}; use one of {', '.join(FREQUENCIES)}")
    step = 1 if frequency == "monthly" else 3
    year, month = first.year, first.month - (first.month - 1) % step
    grid = []
    while date(year, month, 1) <= last:
        end_year, end_month = year, month + step - 1
        end = date(end_year, end_month, calendar.monthrange(end_year, end_month)[1])
        label = f"{year}-{month:02d}" if step == 1 else f"{year}-Q{(month - 1) // 3 + 1}"
        grid.append(ClaimPeriod(frequency, label, date(year, month, 1), end))
        year, month = (year + 1, month + step - 12) if month + step > 12 else (year, month + step)
    return grid


def claim_periods(claim_txns: pa.Table, through: date, frequencies=FREQUENCIES) -> list[ClaimPeriod]:
    """The period grids (one per frequency) from the month of the earliest BookedDate through
    the period holding `through` (whole periods: its end may lie after `through`)."""
    earliest = pc.min(claim_txns["BookedDate"]).as_py() if claim_txns.num_rows else None
    if earliest is None:
        return []
    return [p for f in frequencies for p in period_grid(earliest, through, f)]


def periods_table(periods) -> pa.Table:
    periods = list(periods)
    return pa.table({
        "Frequency": [p.frequency for p in periods], "Period": [p.label for p in periods],
        "PeriodStart": [p.start for p in periods], "PeriodEnd": [p.end for p in periods],
    }, schema=PERIODS_SCHEMA)


# -- SQL --------------------------------------------------------------------------------------

_LAST = "(t.BookedDate, t.TransactionId)"  # a claim's transactions in booking order
# the policy's sum insured when the claim was first booked (transforms/sum_insured.py), else today's
_FRACTION = ceded_fraction("t.TreatyType", "t.CessionRate", "coalesce(si.SumInsured, r.SumInsured)",
                           "t.Retention", "t.Lines")


def _ceded(amount: str) -> str:
    """`amount` ceded to the claim's treaty at 100%: by the fraction, or through the XoL layer."""
    layer = money(f"least(greatest({amount} - coalesce(Attachment, 0), 0), LayerLimit)")  # NULL limit: unlimited
    return f"CASE WHEN TreatyType = 'XOL_PER_RISK' THEN {layer} ELSE {money(f'{amount} * CededFraction')} END"


def _share(ceded: str) -> str:
    """The reinsurer's share of a ceded amount; on a fully placed treaty the largest share takes
    the rounding residual so the shares add up to `ceded` exactly."""
    raw = money(f"{ceded} * SharePct")
    return money(f"{raw} + CASE WHEN PlacedPct = 1 AND ShareRank = 1 "
                 f"THEN {ceded} - sum({raw}) OVER claim_period ELSE 0 END")


BORDEREAU_SQL = f"""
WITH txns AS (
  -- every movement of a claim, amounts exact (a missing amount counts as zero)
  SELECT ClaimId, TransactionId, TransactionType, BookedDate, Currency,
         {money("coalesce(PaidAmount, 0)")} AS Paid, {money("coalesce(ReserveAmount, 0)")} AS Reserve
  FROM claim_txns
), position_at_period_end AS (
  -- each claim at the end of every period by which it had a transaction booked
  SELECT t.ClaimId, p.Frequency, p.Period, p.PeriodStart, p.PeriodEnd,
         count(*) FILTER (WHERE t.BookedDate >= p.PeriodStart) AS Movements,
         {money("coalesce(sum(t.Paid) FILTER (WHERE t.BookedDate >= p.PeriodStart), 0)")} AS PaidThisPeriod,
         {money("coalesce(sum(t.Paid) FILTER (WHERE t.BookedDate < p.PeriodStart), 0)")} AS PaidBefore,
         {money("sum(t.Paid)")} AS PaidToDate,
         arg_max(t.Reserve, {_LAST}) AS Outstanding,
         arg_max(t.Currency, {_LAST}) AS Currency,
         coalesce(arg_max(CASE t.TransactionType WHEN 'CLOSE' THEN 'CLOSED' ELSE 'REOPENED' END, {_LAST})
                  FILTER (WHERE t.TransactionType IN ('CLOSE', 'REOPEN')), 'OPEN') AS ClaimStatus,
         max(t.BookedDate) AS LastBookedDate
  FROM txns t JOIN periods p ON t.BookedDate <= p.PeriodEnd
  GROUP BY t.ClaimId, p.Frequency, p.Period, p.PeriodStart, p.PeriodEnd
), reported AS (
  -- a period reports the claims that moved in it or still carry a reserve at its end
  SELECT *, {money("PaidToDate + Outstanding")} AS Incurred
  FROM position_at_period_end WHERE Movements > 0 OR Outstanding <> 0
), under_treaty AS (
  -- the claim's policy and the treaty covering it (claims of policies without one are retained)
  SELECT rp.*, c.PolicyId, c.LocationId, c.LossDate, c.ReportedDate, c.Peril, c.CatEventCode,
         r.PolicyNumber, r.InsuredName, r.CountryCode, r.LineOfBusiness,
         t.TreatyId, t.Umr, t.TreatyType, t.Attachment, t."Limit" AS LayerLimit, {_FRACTION} AS CededFraction
  FROM reported rp
  JOIN claims c ON c.ClaimId = rp.ClaimId
  JOIN risks r ON r.PolicyId = c.PolicyId
  LEFT JOIN sum_insured_then si ON si.PolicyId = c.PolicyId AND si.event_id = c.ClaimId
  JOIN treaties t ON t.TreatyId = r.TreatyId AND t.TreatyType IN ('QUOTA_SHARE', 'SURPLUS', 'XOL_PER_RISK')
       AND {ATTACHES}
), ceded AS (
  -- 100% of the treaty; outstanding and paid-in-period are differences, so they tie out exactly
  SELECT *, {_ceded("Incurred")} AS CededIncurred, {_ceded("PaidToDate")} AS CededPaidToDate,
         {_ceded("PaidBefore")} AS CededPaidBefore
  FROM under_treaty
), placed AS (
  -- one row per participating reinsurer, ranked for the rounding residual
  SELECT c.*, pa.ReinsurerId, pa.SharePct,
         sum(pa.SharePct) OVER claim_period AS PlacedPct,
         row_number() OVER (claim_period ORDER BY pa.SharePct DESC, pa.ReinsurerId) AS ShareRank
  FROM ceded c JOIN participations pa ON pa.TreatyId = c.TreatyId
  WINDOW claim_period AS (PARTITION BY c.ClaimId, c.Frequency, c.Period, c.TreatyId)
), shares AS (
  SELECT *, {_share("CededIncurred")} AS ShareIncurred, {_share("CededPaidToDate")} AS SharePaidToDate,
         {_share("CededPaidBefore")} AS SharePaidBefore
  FROM placed
  WINDOW claim_period AS (PARTITION BY ClaimId, Frequency, Period, TreatyId)
)
SELECT
  ReinsurerId AS reinsurer_id,
  TreatyId AS treaty_id,
  Umr AS umr,
  TreatyType AS treaty_type,
  Frequency AS frequency,
  Period AS period,
  PeriodStart AS period_start,
  PeriodEnd AS period_end,
  ClaimId AS claim_id,
  PolicyId AS policy_id,
  PolicyNumber AS policy_number,
  InsuredName AS insured_name,
  CountryCode AS risk_country,
  LineOfBusiness AS line_of_business,
  LocationId AS location_id,
  LossDate AS loss_date,
  ReportedDate AS reported_date,
  Peril AS peril,
  CatEventCode AS cat_event_code,
  ClaimStatus AS claim_status,
  Currency AS original_currency,
  LastBookedDate AS last_booked_date,
  PaidThisPeriod AS paid_this_period_100,
  PaidToDate AS paid_to_date_100,
  Outstanding AS outstanding_reserve_100,
  Incurred AS incurred_100,
  CededFraction AS ceded_fraction,
  {money("CededPaidToDate - CededPaidBefore")} AS ceded_paid_this_period_100,
  CededPaidToDate AS ceded_paid_to_date_100,
  {money("CededIncurred - CededPaidToDate")} AS ceded_outstanding_100,
  CededIncurred AS ceded_incurred_100,
  {money("CASE WHEN TreatyType = 'XOL_PER_RISK' THEN CededIncurred ELSE 0 END")} AS xol_recovery_100,
  SharePct AS share_pct,
  {money("SharePaidToDate - SharePaidBefore")} AS paid_this_period_share,
  SharePaidToDate AS paid_to_date_share,
  {money("ShareIncurred - SharePaidToDate")} AS outstanding_share,
  ShareIncurred AS incurred_share
FROM shares
ORDER BY frequency, period, claim_id, treaty_id, reinsurer_id
"""

# Ledger integrity: a claim whose policy is missing, or names a treaty the ledger lacks, cannot be
# ceded or retained with confidence; each of its transactions is quarantined instead.
QUARANTINE_SQL = f"""
SELECT ct.*, c.PolicyId, r.TreatyId AS PolicyTreatyId,
       CASE WHEN c.ClaimId IS NULL THEN '{CLAIM_EXISTS_RULE}'
            WHEN r.PolicyId IS NULL THEN '{POLICY_EXISTS_RULE}'
            WHEN t.TreatyId IS NULL THEN '{TREATY_EXISTS_RULE}'
            ELSE '{ATTACHMENT_RULE}' END AS QuarantineRule
FROM claim_txns ct
LEFT JOIN claims c ON c.ClaimId = ct.ClaimId
LEFT JOIN policies r ON r.PolicyId = c.PolicyId
LEFT JOIN treaties t ON t.TreatyId = r.TreatyId
WHERE c.ClaimId IS NULL OR r.PolicyId IS NULL
   OR (r.TreatyId IS NOT NULL AND (t.TreatyId IS NULL OR NOT ({ATTACHES})))
ORDER BY ct.ClaimId, ct.TransactionId
"""


# -- pure functions -----------------------------------------------------------------------------

def claims_bordereau_rows(claims: pa.Table, claim_txns: pa.Table, policies: pa.Table, risks: pa.Table,
                          treaties: pa.Table, participations: pa.Table, periods, con=None,
                          timeline: pa.Table | None = None) -> pa.Table:
    """The claims bordereau rows (all reinsurers, every period of `periods`) of a set of claims
    and ALL their transactions; `risks` is `premium_bordereau.policy_risks(policies, locations)`.
    `policies` is not needed for the rows (risks carries them); it keeps the signature in step
    with `claims_bordereau_quarantine`. With the policies' sum insured timeline
    (`sum_insured.sum_insured_timeline`), surplus cession uses the claim's sum insured as booked."""
    del policies
    si = _NO_SUM_INSURED
    if timeline is not None and COMMIT_COLUMN in claim_txns.column_names and claims.num_rows:
        first = _query("SELECT c.PolicyId, c.ClaimId AS event_id, min(t.\"%s\") AS ts FROM claims c "
                       "JOIN claim_txns t ON t.ClaimId = c.ClaimId GROUP BY ALL" % COMMIT_COLUMN,
                       {"claims": claims, "claim_txns": claim_txns}, con)
        si = sum_insured_as_of(first, timeline, con)
    tables = {"claims": claims, "claim_txns": claim_txns, "risks": risks, "treaties": treaties,
              "participations": participations, "periods": periods_table(periods), "sum_insured_then": si}
    return _query(BORDEREAU_SQL, tables, con).cast(CLAIMS_BORDEREAU_SCHEMA)


def claims_bordereau_quarantine(claims: pa.Table, claim_txns: pa.Table, policies: pa.Table,
                                treaties: pa.Table, con=None) -> pa.Table:
    """Quarantine rows, one per claim transaction, of claims that cannot be ceded: their policy
    is not in the ledger, or names a treaty that is not (or the claim itself is missing)."""
    if COMMIT_COLUMN not in claim_txns.column_names:  # tables built by hand carry no commit time
        claim_txns = claim_txns.append_column(
            COMMIT_COLUMN, pa.nulls(claim_txns.num_rows, pa.timestamp("us", tz="UTC")))
    tables = {"claims": claims, "claim_txns": claim_txns, "policies": policies, "treaties": treaties}
    bad = _query(QUARANTINE_SQL, tables, con)
    if not bad.num_rows:
        return empty_quarantine()
    rows = []
    for r in bad.to_pylist():  # rare rejects only
        rule = r.pop("QuarantineRule")
        raw = row_json({k: v for k, v in r.items() if k != COMMIT_COLUMN})
        if rule == TREATY_EXISTS_RULE:
            reason = (f"claim {r['ClaimId']}: policy {r['PolicyId']} names treaty {r['PolicyTreatyId']}, "
                      "which is not in the ledger")
            offending = r["PolicyTreatyId"]
        elif rule == ATTACHMENT_RULE:
            reason = (f"claim {r['ClaimId']}: policy {r['PolicyId']} cannot attach to treaty {r['PolicyTreatyId']} "
                      "(line of business, currency, country or inception outside the treaty)")
            offending = r["PolicyTreatyId"]
        elif rule == POLICY_EXISTS_RULE:
            reason = f"claim {r['ClaimId']} names policy {r['PolicyId']}, which is not in the ledger"
            offending = r["PolicyId"]
        else:
            reason = (f"claim transaction {r['TransactionId']} belongs to claim {r['ClaimId']}, "
                      "which is not in the ledger")
            offending = r["ClaimId"]
        rows.append({"stage": "report", "report": REPORT, "table_name": "ClaimTransactions", "rule": rule,
                     "reason": reason, "offending_value": offending, "raw_record": raw,
                     "commit_timestamp": r.get(COMMIT_COLUMN), "source": "ledger mirror"})
    return quarantine_rows(rows)


def empty_claims_bordereau() -> pa.Table:
    return CLAIMS_BORDEREAU_SCHEMA.empty_table()


def _query(sql: str, tables: dict[str, pa.Table], con=None) -> pa.Table:
    own = con is None
    con = con or duck.connect()
    for name, t in tables.items():
        con.register(name, t)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        for name in tables:
            con.unregister(name)
        if own:
            con.close()


def _one(batches, empty: str | None = None) -> pa.Table:
    batches = list(batches)
    if not batches:
        return ledger_table(empty).arrow_schema().empty_table()
    return pa.concat_tables(batches) if len(batches) > 1 else batches[0]


# -- Beam ---------------------------------------------------------------------------------------

_BUCKET = "_claim_bucket"


class _KeyByClaimBucketFn(beam.DoFn):
    """(bucket, rows) for an Arrow batch keyed by ClaimId: a claim's rows always share a bucket."""

    def __init__(self, buckets: int):
        self.buckets = buckets

    def setup(self):
        self.con = duck.connect()

    def teardown(self):
        self.con.close()

    def process(self, batch: pa.Table):
        if not batch.num_rows:
            return
        keyed = _query(f"SELECT *, CAST(hash(ClaimId) % {int(self.buckets)} AS INTEGER) AS {_BUCKET} FROM batch",
                       {"batch": batch}, self.con)
        column = keyed[_BUCKET]
        for bucket in pc.unique(column).to_pylist():
            yield bucket, keyed.filter(pc.equal(column, bucket)).drop_columns([_BUCKET])


class _ClaimsBordereauFn(beam.DoFn):
    def __init__(self, periods):
        self.periods = list(periods)
        self.rows = Metrics.counter("rex", "claims_bordereau_rows")
        self.held = Metrics.counter("rex", "claim_transactions_quarantined")

    def setup(self):
        self.con = duck.connect()
        self._risks_key = None
        self._versions_key = None

    def teardown(self):
        self.con.close()

    def process(self, element, policies, locations, treaties, participations, location_versions):
        _bucket, grouped = element
        txns = list(grouped["txns"])
        if not txns:  # claims without transactions report nothing
            return
        txns, claims = _one(txns), _one(grouped["claims"], "Claims")
        key = (id(policies), id(locations))
        if key != self._risks_key:  # side inputs are the same objects for the whole run
            self._policies = _one(policies, "Policies")
            self._risks = policy_risks(self._policies, _one(locations, "Locations"))
            self._risks_key = key
        treaties, participations = _one(treaties, "Treaties"), _one(participations, "Participations")
        if id(location_versions) != self._versions_key:  # once per run: the timeline all batches ask
            parts = list(location_versions)
            self._timeline = sum_insured_timeline(pa.concat_tables(parts), self.con) if parts else None
            self._versions_key = id(location_versions)
        rows = claims_bordereau_rows(claims, txns, self._policies, self._risks, treaties, participations,
                                     self.periods, self.con, self._timeline)
        self.rows.inc(rows.num_rows)
        if rows.num_rows:
            yield rows
        held = claims_bordereau_quarantine(claims, txns, self._policies, treaties, self.con)
        if held.num_rows:
            self.held.inc(held.num_rows)
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG_REPORT, held)


class BuildClaimsBordereau(beam.PTransform):
    """Warehouse mirror -> claims bordereau batches for every reinsurer and period of `periods`
    (main output "rows") and the quarantined claim transactions that cannot be ceded (tagged
    `QUARANTINE_TAG_REPORT`)."""

    def __init__(self, warehouse_uri: str, periods, buckets: int = DEFAULT_BUCKETS):
        super().__init__()
        self.warehouse_uri, self.periods, self.buckets = warehouse_uri, list(periods), buckets

    def expand(self, pbegin):
        def read(name, **kw):
            return pbegin | f"Read{name}" >> ReadLedgerTable(self.warehouse_uri, name, **kw)

        side = {n: beam.pvalue.AsList(read(n)) for n in ("Policies", "Locations", "Treaties", "Participations")}
        claims = read("Claims") | "KeyClaimsByBucket" >> beam.ParDo(_KeyByClaimBucketFn(self.buckets))
        txns = (read("ClaimTransactions", extra_columns=(COMMIT_COLUMN,))
                | "KeyClaimTransactionsByBucket" >> beam.ParDo(_KeyByClaimBucketFn(self.buckets)))
        grouped = {"claims": claims, "txns": txns} | "GroupClaimsWithTransactions" >> beam.CoGroupByKey()
        versions = pbegin | "ReadLocationVersions" >> ReadLedgerChangelog(
            self.warehouse_uri, "Locations", VERSIONS_COLUMNS)
        return grouped | "CedeClaims" >> beam.ParDo(
            _ClaimsBordereauFn(self.periods), side["Policies"], side["Locations"], side["Treaties"],
            side["Participations"], beam.pvalue.AsList(versions),
        ).with_outputs(QUARANTINE_TAG_REPORT, main="rows")
