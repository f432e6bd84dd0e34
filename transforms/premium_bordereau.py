"""Premium bordereau: one row per premium transaction × participating reinsurer (DESIGN.md §8).

Amounts stay exact DECIMAL(38,9) here (100% and share); rounding to the currency's minor
units happens once, when a report is exported. The per-batch work is one DuckDB query over
the Arrow batch and the (small) treaty and policy side tables, so no Python runs per row.
"""
from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from transforms import duck
from transforms.cession import ceded_fraction, money
from transforms.ledger_snapshot import ReadLedgerChangelog, ReadLedgerTable
from transforms.sum_insured import VERSIONS_COLUMNS, sum_insured_as_of, sum_insured_timeline
from transforms.quarantine import QUARANTINE_TAG_REPORT, quarantine_rows, row_json

COMMIT_COLUMN = "_metadata_spanner_commit_timestamp"
UNKNOWN_TREATY_RULE = "ledger.policies.treaty_exists"
ATTACHMENT_RULE = "ledger.policies.treaty_attachment"
# A risk attaches to a treaty of its line of business and currency, whose territory holds its
# country (Territories: ISO codes separated by ';', NULL = worldwide) and whose period holds its
# inception ("risks attaching"). Never NULL: a risk attaches or it does not.
def attaches(risk: str = "r", treaty: str = "t") -> str:
    """The attachment rule as SQL over a policy (or risk) alias and a treaty alias."""
    r, t = risk, treaty
    territories = rf"[x FOR x IN string_split(regexp_replace({t}.Territories, '\s', '', 'g'), ';') IF x <> '']"
    return (f"{r}.LineOfBusiness = {t}.LineOfBusiness AND {r}.Currency = {t}.Currency "
            f"AND {r}.InceptionDate >= {t}.InceptionDate AND {r}.InceptionDate < {t}.ExpiryDate "
            f"AND ({t}.Territories IS NULL OR coalesce(list_contains({territories}, {r}.CountryCode), false))")


ATTACHES = attaches()
_NO_SUM_INSURED = pa.schema([("PolicyId", pa.string()), ("event_id", pa.string()),
                             ("SumInsured", pa.decimal128(38, 9))]).empty_table()

PROPORTIONAL = ("QUOTA_SHARE", "SURPLUS")

# Sum insured per policy: the in-force TIV of its locations (building + contents + BI).
POLICY_RISKS_SQL = """
SELECT p.PolicyId, p.PolicyNumber, p.InsuredName, p.CountryCode, p.LineOfBusiness, p.TreatyId,
       p.Currency, p.InceptionDate,
       CAST(coalesce(sum(coalesce(l.BuildingTiv, 0) + coalesce(l.ContentsTiv, 0)
                         + coalesce(l.BiTiv, 0)), 0) AS DECIMAL(38,9)) AS SumInsured
FROM policies p LEFT JOIN locations l ON l.PolicyId = p.PolicyId
GROUP BY ALL
"""

# the policy's sum insured when the transaction was booked (transforms/sum_insured.py), else today's
_SUM_INSURED = "coalesce(si.SumInsured, r.SumInsured)"
_FRACTION = ceded_fraction("t.TreatyType", "t.CessionRate", _SUM_INSURED, "t.Retention", "t.Lines")

BORDEREAU_SQL = f"""
WITH ceded AS (
  SELECT pt.*, r.PolicyNumber, r.InsuredName, r.CountryCode, r.LineOfBusiness, {_SUM_INSURED} AS SumInsured,
         t.TreatyId AS TTreatyId, t.Umr, t.TreatyType, t.CommissionRate,
         {_FRACTION} AS CededFraction
  FROM premiums pt
  JOIN risks r ON r.PolicyId = pt.PolicyId
  LEFT JOIN sum_insured_then si ON si.PolicyId = pt.PolicyId AND si.event_id = pt.TransactionId
  JOIN treaties t ON t.TreatyId = r.TreatyId AND t.TreatyType IN ('QUOTA_SHARE', 'SURPLUS') AND {ATTACHES}
), ceded100 AS (
  SELECT *, {money("GrossPremium * CededFraction")} AS CededPremium100,
            {money("coalesce(TaxAmount, 0) * CededFraction")} AS CededTax100
  FROM ceded
), raw_shares AS (
  SELECT c.*, pa.ReinsurerId, pa.SharePct,
         {money("c.CededPremium100 * pa.SharePct")} AS RawSharePremium,
         {money("c.CededTax100 * pa.SharePct")} AS RawShareTax,
         sum(pa.SharePct) OVER txn AS PlacedPct,
         row_number() OVER (txn ORDER BY pa.SharePct DESC, pa.ReinsurerId) AS ShareRank
  FROM ceded100 c JOIN participations pa ON pa.TreatyId = c.TTreatyId
  WINDOW txn AS (PARTITION BY c.PolicyId, c.TransactionId, c.TTreatyId)
), shares AS (
  -- A fully placed treaty's shares must add up to its ceded amount exactly: the rounding
  -- residual of the per-share products goes to the largest share (ties: reinsurer id).
  SELECT *,
    CAST(RawSharePremium + CASE WHEN PlacedPct = 1 AND ShareRank = 1
         THEN CededPremium100 - sum(RawSharePremium) OVER txn ELSE 0 END AS DECIMAL(38,9)) AS SharePremium,
    CAST(RawShareTax + CASE WHEN PlacedPct = 1 AND ShareRank = 1
         THEN CededTax100 - sum(RawShareTax) OVER txn ELSE 0 END AS DECIMAL(38,9)) AS ShareTax
  FROM raw_shares
  WINDOW txn AS (PARTITION BY PolicyId, TransactionId, TTreatyId)
)
SELECT
  ReinsurerId AS reinsurer_id,
  TTreatyId AS treaty_id,
  Umr AS umr,
  TreatyType AS treaty_type,
  strftime(BookedDate, '%Y-%m') AS period,
  PolicyId AS policy_id,
  PolicyNumber AS policy_number,
  InsuredName AS insured_name,
  CountryCode AS risk_country,
  LineOfBusiness AS line_of_business,
  TransactionId AS transaction_id,
  TransactionType AS transaction_type,
  EffectiveDate AS effective_date,
  BookedDate AS booked_date,
  Currency AS original_currency,
  SumInsured AS sum_insured,
  CededFraction AS ceded_fraction,
  GrossPremium AS gross_premium_100,
  CAST(coalesce(TaxAmount, 0) AS DECIMAL(38,9)) AS tax_100,
  CededPremium100 AS ceded_premium_100,
  SharePct AS share_pct,
  SharePremium AS share_premium,
  CAST(coalesce(CommissionRate, 0) AS DECIMAL(38,9)) AS commission_rate,
  {money("SharePremium * coalesce(CommissionRate, 0)")} AS share_commission,
  ShareTax AS share_tax,
  CAST(SharePremium - {money("SharePremium * coalesce(CommissionRate, 0)")} - ShareTax AS DECIMAL(38,9)) AS share_net_premium,
  CAST({COMMIT_COLUMN} AS TIMESTAMPTZ) AS ledger_commit_timestamp
FROM shares
"""

# Ledger integrity: a policy naming a treaty the ledger does not hold, or one it cannot attach
# to, cannot be ceded or retained with confidence; its premiums are quarantined (and counted as
# such in the totals).
UNKNOWN_TREATY_SQL = f"""
SELECT pt.*, r.TreatyId AS PolicyTreatyId,
       CASE WHEN t.TreatyId IS NULL THEN '{UNKNOWN_TREATY_RULE}' ELSE '{ATTACHMENT_RULE}' END AS HeldRule,
       t.LineOfBusiness AS TreatyLineOfBusiness, t.Currency AS TreatyCurrency,
       t.InceptionDate AS TreatyInception, t.ExpiryDate AS TreatyExpiry,
       t.Territories AS TreatyTerritories,
       r.LineOfBusiness AS PolicyLineOfBusiness, r.Currency AS PolicyCurrency, r.InceptionDate AS PolicyInception,
       r.CountryCode AS PolicyCountry
FROM premiums pt JOIN risks r ON r.PolicyId = pt.PolicyId
LEFT JOIN treaties t ON t.TreatyId = r.TreatyId
WHERE r.TreatyId IS NOT NULL AND (t.TreatyId IS NULL OR NOT ({ATTACHES}))
"""

MONEY_COLUMNS = (
    "sum_insured", "gross_premium_100", "tax_100", "ceded_premium_100", "share_premium",
    "share_commission", "share_tax", "share_net_premium",
)
SORT_KEYS = [("period", "ascending"), ("policy_number", "ascending"), ("transaction_id", "ascending"),
             ("treaty_id", "ascending")]


def policy_risks(policies: pa.Table, locations: pa.Table) -> pa.Table:
    con = duck.connect()
    con.register("policies", policies)
    con.register("locations", locations)
    try:
        return con.sql(POLICY_RISKS_SQL).to_arrow_table()
    finally:
        con.close()


def premium_bordereau_rows(premiums: pa.Table, risks: pa.Table, treaties: pa.Table,
                           participations: pa.Table, con=None, timeline: pa.Table | None = None) -> pa.Table:
    """The bordereau rows (all reinsurers) of one batch of premium transactions. With the
    policies' sum insured timeline (`sum_insured.sum_insured_timeline`), surplus cession uses
    each transaction's sum insured as booked; without it, the policy's current one."""
    si = None
    if timeline is not None and COMMIT_COLUMN in premiums.column_names:
        events = pa.table({"PolicyId": premiums["PolicyId"], "event_id": premiums["TransactionId"],
                           "ts": premiums[COMMIT_COLUMN]})
        si = sum_insured_as_of(events, timeline, con)
    return _query(BORDEREAU_SQL, premiums, risks, treaties, participations, con, si)


def unknown_treaty_quarantine(premiums: pa.Table, risks: pa.Table, treaties: pa.Table,
                              participations: pa.Table, con=None) -> pa.Table:
    """Quarantine rows for the premiums of policies that name a treaty the ledger lacks."""
    bad = _query(UNKNOWN_TREATY_SQL, premiums, risks, treaties, participations, con)
    rows = []
    for r in bad.to_pylist():
        rule = r.pop("HeldRule")
        facts = {k: r.pop(k) for k in ATTACHMENT_FACTS}
        raw = row_json({k: v for k, v in r.items() if k != COMMIT_COLUMN})
        if rule == UNKNOWN_TREATY_RULE:
            reason = f"policy {r['PolicyId']} names treaty {r['PolicyTreatyId']}, which is not in the ledger"
        else:
            reason = f"policy {r['PolicyId']} {attachment_reason(facts, r['PolicyTreatyId'])}"
        rows.append({
            "stage": "report", "report": "premium_bordereau", "table_name": "PremiumTransactions",
            "rule": rule, "reason": reason, "offending_value": r["PolicyTreatyId"], "raw_record": raw,
            "commit_timestamp": r.get(COMMIT_COLUMN), "source": "ledger mirror",
        })
    return quarantine_rows(rows)


ATTACHMENT_FACTS = ("TreatyLineOfBusiness", "TreatyCurrency", "TreatyInception", "TreatyExpiry", "TreatyTerritories",
                    "PolicyLineOfBusiness", "PolicyCurrency", "PolicyInception", "PolicyCountry")


def attachment_reason(facts: dict, treaty_id: str) -> str:
    """Why a policy cannot attach to its treaty, for people: both sides' terms."""
    return (f"({facts['PolicyLineOfBusiness']}, {facts['PolicyCurrency']}, {facts['PolicyCountry']}, incepting "
            f"{facts['PolicyInception']}) cannot attach to treaty {treaty_id} "
            f"({facts['TreatyLineOfBusiness']}, {facts['TreatyCurrency']}, "
            f"{facts['TreatyTerritories'] or 'worldwide'}, {facts['TreatyInception']}..{facts['TreatyExpiry']})")


def _query(sql, premiums, risks, treaties, participations, con=None, sum_insured_then=None) -> pa.Table:
    own = con is None
    con = con or duck.connect()
    if COMMIT_COLUMN not in premiums.column_names:  # tables built by hand (tests) carry no commit time
        premiums = premiums.append_column(COMMIT_COLUMN, pa.nulls(premiums.num_rows, pa.timestamp("us", tz="UTC")))
    if sum_insured_then is None:
        sum_insured_then = _NO_SUM_INSURED
    tables = (("premiums", premiums), ("risks", risks), ("treaties", treaties), ("participations", participations),
              ("sum_insured_then", sum_insured_then))
    for name, table in tables:
        con.register(name, table)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        for name, _t in tables:
            con.unregister(name)
        if own:
            con.close()


def _one(batches) -> pa.Table:
    batches = list(batches)
    return pa.concat_tables(batches) if len(batches) > 1 else batches[0]


class _BordereauFn(beam.DoFn):
    def __init__(self):
        self.rows = Metrics.counter("rex", "premium_bordereau_rows")
        self.held = Metrics.counter("rex", "premiums_quarantined_unknown_treaty")

    def setup(self):
        self.con = duck.connect()
        self._risks_key = None
        self._versions_key = None

    def teardown(self):
        self.con.close()

    def process(self, premiums, policies, locations, treaties, participations, location_versions):
        key = (id(policies), id(locations))
        if key != self._risks_key:  # side inputs are the same objects for the whole run
            self._risks = policy_risks(_one(policies), _one(locations))
            self._risks_key = key
        treaties, participations = _one(treaties), _one(participations)
        if id(location_versions) != self._versions_key:  # once per run: the timeline all batches ask
            self._timeline = sum_insured_timeline(_one(location_versions), self.con)
            self._versions_key = id(location_versions)
        rows = premium_bordereau_rows(premiums, self._risks, treaties, participations, self.con, self._timeline)
        self.rows.inc(rows.num_rows)
        if rows.num_rows:
            yield rows
        held = unknown_treaty_quarantine(premiums, self._risks, treaties, participations, self.con)
        if held.num_rows:
            self.held.inc(held.num_rows)
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG_REPORT, held)


class BuildPremiumBordereau(beam.PTransform):
    """Warehouse mirror -> premium bordereau batches for every reinsurer (main output) and
    quarantined premiums that cannot be ceded (tagged `QUARANTINE_TAG_REPORT`)."""

    def __init__(self, warehouse_uri: str):
        super().__init__()
        self.warehouse_uri = warehouse_uri

    def expand(self, pbegin):
        def read(name):
            return pbegin | f"Read{name}" >> ReadLedgerTable(self.warehouse_uri, name)

        side = {n: beam.pvalue.AsList(read(n)) for n in ("Policies", "Locations", "Treaties", "Participations")}
        versions = pbegin | "ReadLocationVersions" >> ReadLedgerChangelog(
            self.warehouse_uri, "Locations", VERSIONS_COLUMNS)
        premiums = pbegin | "ReadPremiumTransactions" >> ReadLedgerTable(
            self.warehouse_uri, "PremiumTransactions", extra_columns=(COMMIT_COLUMN,))
        return premiums | "CedePremiums" >> beam.ParDo(
            _BordereauFn(), side["Policies"], side["Locations"], side["Treaties"], side["Participations"],
            beam.pvalue.AsList(versions),
        ).with_outputs(QUARANTINE_TAG_REPORT, main="rows")
