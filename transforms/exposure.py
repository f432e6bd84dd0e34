"""Exposure as of a date (DESIGN.md §8): in-force sums insured per reinsurer × treaty × peril ×
country × zone × line of business × currency, at 100% and ceded, and each treaty's largest risks.

In force on `as_of`: a policy with InceptionDate <= as_of < ExpiryDate (a cancellation moves
ExpiryDate to the cancellation date, so a cancelled policy drops out), on a treaty that has
participations and that it attaches to (the bordereaux' rule: line of business, currency,
country in the treaty's territory, inception in its period). Business without a treaty is
retained and reported nowhere here.

Per location (a "risk" for per-risk XoL), exactly, as DECIMAL(38,9) — never a float:
* TIV = building + contents + BI (a NULL component counts 0);
* ceded to the treaty at 100%: QUOTA_SHARE TIV × CessionRate; SURPLUS TIV × the policy's surplus
  fraction (`cession.surplus_fraction` of its sum insured = the TIV of its reported in-force
  locations); XOL_PER_RISK min(max(TIV − Attachment, 0), Limit);
* a location counts once for every OED peril code it covers (`PerilsCovered`, ';'-separated),
  so rows of different perils overlap: never add TIVs across perils.

A reinsurer's share of a group is ceded × SharePct; for a fully placed treaty the shares of each
group add up to its ceded TIV exactly (the 9th-decimal residual goes to the largest share, ties
by reinsurer id — as in the premium bordereau).

Ledger defects are quarantined, never reported: a location with a negative TIV component
(`ledger.locations.tiv_not_negative`; it is left out of its policy's sum insured too) and the
locations of a policy naming a treaty the ledger lacks (`ledger.policies.treaty_exists`) or one
it cannot attach to (`ledger.policies.treaty_attachment`).

In Beam, policies are read in batches and every batch is ceded on its own against the whole
(small) locations, treaties and participations tables: a policy's locations are all in the
batch's view, so the surplus fraction is exact. The per-batch group sums are added up in one
combine (sums are associative) and only then split into shares.
"""
from __future__ import annotations

from datetime import date

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from transforms import duck
from transforms.cession import money, surplus_fraction
from transforms.ledger_schema import table as ledger_table
from transforms.ledger_snapshot import ReadLedgerTable
from transforms.premium_bordereau import (
    ATTACHMENT_FACTS,
    ATTACHMENT_RULE,
    UNKNOWN_TREATY_RULE,
    attaches,
    attachment_reason,
)
from transforms.quarantine import QUARANTINE_TAG_REPORT, empty_quarantine, quarantine_rows, row_json

TIV_NOT_NEGATIVE_RULE = "ledger.locations.tiv_not_negative"
TIV_COLUMNS = ("BuildingTiv", "ContentsTiv", "BiTiv")
BOOK_TABLES = ("Policies", "Locations", "Treaties", "Participations")

_IN_FORCE = "p.TreatyId IS NOT NULL AND p.InceptionDate <= $as_of AND $as_of < p.ExpiryDate"
_NEGATIVE = " OR ".join(f"coalesce(l.{c}, 0) < 0" for c in TIV_COLUMNS)
_PLACED = "EXISTS (SELECT 1 FROM participations pa WHERE pa.TreatyId = t.TreatyId)"
# OED peril codes of a location: whitespace dropped, empty entries skipped, ledger order kept.
_PERIL_LIST = r"[x FOR x IN string_split(regexp_replace(l.PerilsCovered, '\s', '', 'g'), ';') IF x <> '']"
_FRACTION = surplus_fraction("SumInsured", "Retention", "Lines")
_ATTACHES = f"({attaches('p', 't')})"  # the premium and claims bordereaux' rule (line, currency, country, inception)

# The in-force locations ceded to a placed treaty, one row per location with its ceded TIV.
# Every query below starts from these CTEs (`ceded` is the last).
CEDED_CTES = f"""
risks AS (
  SELECT p.PolicyId, p.PolicyNumber, p.InsuredName, p.LineOfBusiness, p.Currency,
         p.InceptionDate, p.ExpiryDate,
         t.TreatyId, t.TreatyType, t.CessionRate, t.Retention, t.Lines, t.Attachment, t."Limit" AS XolLimit,
         l.LocationId, l.CountryCode, l.Zone, l.Latitude, l.Longitude, {_PERIL_LIST} AS Perils,
         l.OccupancyCode, l.ConstructionCode,
         CAST(coalesce(l.BuildingTiv, 0) AS DECIMAL(38,9)) AS BuildingTiv,
         CAST(coalesce(l.ContentsTiv, 0) AS DECIMAL(38,9)) AS ContentsTiv,
         CAST(coalesce(l.BiTiv, 0) AS DECIMAL(38,9)) AS BiTiv
  FROM policies p
  JOIN treaties t ON t.TreatyId = p.TreatyId
  JOIN locations l ON l.PolicyId = p.PolicyId
  WHERE {_IN_FORCE} AND {_PLACED} AND NOT ({_NEGATIVE}) AND {_ATTACHES}
), tiv AS (
  SELECT *, CAST(BuildingTiv + ContentsTiv + BiTiv AS DECIMAL(38,9)) AS TotalTiv FROM risks
), insured AS (
  SELECT *, CAST(sum(TotalTiv) OVER (PARTITION BY PolicyId) AS DECIMAL(38,9)) AS SumInsured FROM tiv
), ceded AS (
  SELECT *, CAST(CASE TreatyType
      WHEN 'QUOTA_SHARE' THEN {money("TotalTiv * CessionRate")}
      WHEN 'SURPLUS' THEN {money(f"TotalTiv * ({_FRACTION})")}
      WHEN 'XOL_PER_RISK' THEN {money("least(greatest(TotalTiv - Attachment, 0), XolLimit)")}
    END AS DECIMAL(38,9)) AS CededTiv
  FROM insured
)"""

CEDED_LOCATIONS_SQL = f"WITH {CEDED_CTES} SELECT * FROM ceded ORDER BY TreatyId, PolicyId, LocationId"

_GROUP = ("TreatyId", "Peril", "CountryCode", "Zone", "LineOfBusiness", "Currency")
_GROUP_LIST = ", ".join(_GROUP)
_SUMS = ("BuildingTiv", "ContentsTiv", "BiTiv", "TotalTiv", "CededTiv")

# Group sums of one batch of policies (a location once per peril it covers).
EXPOSURE_PARTS_SQL = f"""
WITH {CEDED_CTES}, perils AS (
  SELECT DISTINCT PolicyId, LocationId, unnest(Perils) AS Peril, CountryCode, Zone, LineOfBusiness, Currency,
         TreatyId, {", ".join(_SUMS)}
  FROM ceded
)
SELECT {_GROUP_LIST}, CAST(count(*) AS BIGINT) AS LocationCount,
       {", ".join(f"CAST(sum({c}) AS DECIMAL(38,9)) AS {c}" for c in _SUMS)}
FROM perils GROUP BY {_GROUP_LIST}
"""

# Partial group sums (of several batches) added up: the same shape again.
REDUCE_PARTS_SQL = f"""
SELECT {_GROUP_LIST}, CAST(sum(LocationCount) AS BIGINT) AS LocationCount,
       {", ".join(f"CAST(sum({c}) AS DECIMAL(38,9)) AS {c}" for c in _SUMS)}
FROM parts GROUP BY {_GROUP_LIST}
"""


def _shares_sql(source: str, partition: str) -> str:
    """Participations × `source` rows with `ShareTiv`: the rounding residual of a fully placed
    treaty goes to its largest share (ties: reinsurer id), so shares add up to CededTiv exactly."""
    return f"""
raw_shares AS (
  SELECT s.*, pa.ReinsurerId, CAST(pa.SharePct AS DECIMAL(38,9)) AS SharePct,
         {money("s.CededTiv * pa.SharePct")} AS RawShare,
         sum(pa.SharePct) OVER grp AS PlacedPct,
         row_number() OVER (grp ORDER BY pa.SharePct DESC, pa.ReinsurerId) AS ShareRank
  FROM {source} s JOIN participations pa ON pa.TreatyId = s.TreatyId
  WINDOW grp AS (PARTITION BY {", ".join("s." + c for c in partition.split(", "))})
), shares AS (
  SELECT *, CAST(RawShare + CASE WHEN PlacedPct = 1 AND ShareRank = 1
                 THEN CededTiv - sum(RawShare) OVER grp ELSE 0 END AS DECIMAL(38,9)) AS ShareTiv
  FROM raw_shares
  WINDOW grp AS (PARTITION BY {partition})
)"""


EXPOSURE_SQL = f"""
WITH groups AS ({REDUCE_PARTS_SQL}), {_shares_sql("groups", _GROUP_LIST)}
SELECT
  ReinsurerId AS reinsurer_id,
  TreatyId AS treaty_id,
  CAST($as_of AS DATE) AS as_of_date,
  Peril AS peril,
  CountryCode AS country,
  Zone AS zone,
  LineOfBusiness AS line_of_business,
  Currency AS currency,
  LocationCount AS location_count,
  BuildingTiv AS building_tiv_100,
  ContentsTiv AS contents_tiv_100,
  BiTiv AS bi_tiv_100,
  TotalTiv AS total_tiv_100,
  CededTiv AS ceded_tiv_100,
  SharePct AS share_pct,
  ShareTiv AS ceded_tiv_share
FROM shares
ORDER BY reinsurer_id, treaty_id, peril, country, zone, line_of_business, currency
"""

# Top locations: each treaty's n largest ceded locations (ties: policy id, location id). A
# reinsurer's share is the same fraction of every location, so the order is the treaty's.
_TOP_COLUMNS = "TreatyId, PolicyId, LocationId, CountryCode, Zone, Currency, TotalTiv, CededTiv"
_TOP_ORDER = "PARTITION BY TreatyId ORDER BY CededTiv DESC NULLS LAST, PolicyId, LocationId"
TOP_PARTS_SQL = f"""
WITH {CEDED_CTES}
SELECT {_TOP_COLUMNS} FROM ceded QUALIFY row_number() OVER ({_TOP_ORDER}) <= $n
"""
REDUCE_TOP_SQL = f"SELECT {_TOP_COLUMNS} FROM parts QUALIFY row_number() OVER ({_TOP_ORDER}) <= $n"
TOP_LOCATIONS_SQL = f"""
WITH top AS (
  SELECT {_TOP_COLUMNS}, row_number() OVER ({_TOP_ORDER}) AS LocationRank FROM parts
  QUALIFY LocationRank <= $n
), {_shares_sql("top", "TreatyId, PolicyId, LocationId")}
SELECT
  ReinsurerId AS reinsurer_id,
  TreatyId AS treaty_id,
  CAST($as_of AS DATE) AS as_of_date,
  CAST(LocationRank AS BIGINT) AS rank,
  PolicyId AS policy_id,
  LocationId AS location_id,
  CountryCode AS country,
  Zone AS zone,
  Currency AS currency,
  TotalTiv AS total_tiv_100,
  CededTiv AS ceded_tiv_100,
  SharePct AS share_pct,
  ShareTiv AS ceded_tiv_share
FROM shares
ORDER BY reinsurer_id, treaty_id, rank
"""

# Locations of in-force policies that cannot be reported: the policy names a treaty the ledger
# lacks or cannot attach to it, or (on a placed treaty) the location carries a negative TIV component.
QUARANTINE_SQL = f"""
SELECT l.*, p.TreatyId AS PolicyTreatyId, p.Currency AS PolicyCurrency,
       CASE WHEN t.TreatyId IS NULL THEN '{UNKNOWN_TREATY_RULE}'
            WHEN NOT {_ATTACHES} THEN '{ATTACHMENT_RULE}' ELSE '{TIV_NOT_NEGATIVE_RULE}' END AS HeldRule,
       t.LineOfBusiness AS TreatyLineOfBusiness, t.Currency AS TreatyCurrency,
       t.InceptionDate AS TreatyInception, t.ExpiryDate AS TreatyExpiry, t.Territories AS TreatyTerritories,
       p.LineOfBusiness AS PolicyLineOfBusiness, p.InceptionDate AS PolicyInception, p.CountryCode AS PolicyCountry
FROM policies p
JOIN locations l ON l.PolicyId = p.PolicyId
LEFT JOIN treaties t ON t.TreatyId = p.TreatyId
WHERE {_IN_FORCE} AND (t.TreatyId IS NULL OR NOT {_ATTACHES} OR ({_PLACED} AND ({_NEGATIVE})))
ORDER BY l.PolicyId, l.LocationId
"""

MONEY_COLUMNS = ("building_tiv_100", "contents_tiv_100", "bi_tiv_100", "total_tiv_100", "ceded_tiv_100",
                 "ceded_tiv_share")
TOP_MONEY_COLUMNS = ("total_tiv_100", "ceded_tiv_100", "ceded_tiv_share")


def query(sql: str, tables: dict[str, pa.Table], params: dict | None = None, con=None) -> pa.Table:
    """One DuckDB query over Arrow tables registered under their names, with bound parameters."""
    own = con is None
    con = con or duck.connect()
    for name, table in tables.items():
        con.register(name, table)
    try:
        return con.sql(sql, params=params or None).to_arrow_table()
    finally:
        for name in tables:
            con.unregister(name)
        if own:
            con.close()


def _book(policies, locations, treaties, participations) -> dict[str, pa.Table]:
    return {"policies": policies, "locations": locations, "treaties": treaties, "participations": participations}


def ceded_locations(policies: pa.Table, locations: pa.Table, treaties: pa.Table, participations: pa.Table,
                    as_of: date, con=None) -> pa.Table:
    """The in-force locations ceded to a placed treaty on `as_of`, one row each, with their
    TIVs (TotalTiv), the policy's SumInsured and the ceded TIV at 100% (CededTiv)."""
    return query(CEDED_LOCATIONS_SQL, _book(policies, locations, treaties, participations), {"as_of": as_of}, con)


def exposure_parts(policies, locations, treaties, participations, as_of: date, con=None) -> pa.Table:
    """Group sums (no shares yet) of a batch of policies; add batches up with `reduce_exposure_parts`."""
    return query(EXPOSURE_PARTS_SQL, _book(policies, locations, treaties, participations), {"as_of": as_of}, con)


def reduce_exposure_parts(parts: pa.Table, con=None) -> pa.Table:
    return query(REDUCE_PARTS_SQL, {"parts": parts}, None, con)


def exposure_from_parts(parts: pa.Table, participations: pa.Table, as_of: date, con=None) -> pa.Table:
    """The exposure rows (every reinsurer) from the group sums of the whole book."""
    return query(EXPOSURE_SQL, {"parts": parts, "participations": participations}, {"as_of": as_of}, con)


def exposure_rows(policies: pa.Table, locations: pa.Table, treaties: pa.Table, participations: pa.Table,
                  as_of: date, con=None) -> pa.Table:
    """The exposure report (all reinsurers) in the catalog's EXPOSURE columns."""
    parts = exposure_parts(policies, locations, treaties, participations, as_of, con)
    return exposure_from_parts(parts, participations, as_of, con)


def top_location_parts(policies, locations, treaties, participations, as_of: date, n: int = 10,
                       con=None) -> pa.Table:
    return query(TOP_PARTS_SQL, _book(policies, locations, treaties, participations), {"as_of": as_of, "n": n}, con)


def reduce_top_location_parts(parts: pa.Table, n: int = 10, con=None) -> pa.Table:
    return query(REDUCE_TOP_SQL, {"parts": parts}, {"n": n}, con)


def top_locations_from_parts(parts: pa.Table, participations: pa.Table, as_of: date, n: int = 10,
                             con=None) -> pa.Table:
    return query(TOP_LOCATIONS_SQL, {"parts": parts, "participations": participations}, {"as_of": as_of, "n": n}, con)


def top_locations(policies: pa.Table, locations: pa.Table, treaties: pa.Table, participations: pa.Table,
                  as_of: date, n: int = 10, con=None) -> pa.Table:
    """Per reinsurer × treaty, the n in-force locations with the largest ceded TIV (ties by
    policy id, location id), ranked from 1, in the catalog's EXPOSURE_TOP_LOCATIONS columns."""
    parts = top_location_parts(policies, locations, treaties, participations, as_of, n, con)
    return top_locations_from_parts(parts, participations, as_of, n, con)


def exposure_quarantine(policies: pa.Table, locations: pa.Table, treaties: pa.Table, participations: pa.Table,
                        as_of: date, report: str = "exposure", con=None) -> pa.Table:
    """Quarantine rows (stage `report`) for the in-force locations left out of `report`."""
    bad = query(QUARANTINE_SQL, _book(policies, locations, treaties, participations), {"as_of": as_of}, con)
    rows = []
    for r in bad.to_pylist():
        rule = r.pop("HeldRule")
        # the attachment facts explain the reason; the raw record keeps the location and its policy's treaty/currency
        facts = {k: r[k] if k == "PolicyCurrency" else r.pop(k) for k in ATTACHMENT_FACTS}
        raw = row_json(r)
        pid, lid = r["PolicyId"], r["LocationId"]
        if rule in (ATTACHMENT_RULE, UNKNOWN_TREATY_RULE):  # the policy's treaty: none of its locations is reported
            why = (attachment_reason(facts, r["PolicyTreatyId"]) if rule == ATTACHMENT_RULE
                   else f"names treaty {r['PolicyTreatyId']}, which is not in the ledger")
            rows.append({
                "stage": "report", "report": report, "table_name": "Policies", "rule": rule,
                "reason": f"policy {pid} {why}; its location {lid} is not reported",
                "offending_value": r["PolicyTreatyId"], "raw_record": raw, "source": "ledger mirror",
            })
            continue
        negative = [(c, r[c]) for c in TIV_COLUMNS if r[c] is not None and r[c] < 0]
        rows.append({
            "stage": "report", "report": report, "table_name": "Locations", "rule": TIV_NOT_NEGATIVE_RULE,
            "reason": f"location {lid} of policy {pid} has a negative "
                      + ", ".join(f"{c} ({format(v, 'f')})" for c, v in negative)
                      + "; it is not reported nor counted in the policy's sum insured",
            "offending_value": ";".join(format(v, "f") for _c, v in negative), "raw_record": raw,
            "source": "ledger mirror",
        })
    return quarantine_rows(rows) if rows else empty_quarantine()


def empty_book() -> tuple[pa.Table, pa.Table, pa.Table, pa.Table]:
    """Empty Policies, Locations, Treaties and Participations tables in the ledger's schema."""
    return tuple(ledger_table(n).arrow_schema().empty_table() for n in BOOK_TABLES)


def empty_exposure() -> pa.Table:
    return exposure_rows(*empty_book(), date(2000, 1, 1))


def empty_top_locations() -> pa.Table:
    return top_locations(*empty_book(), date(2000, 1, 1))


# -- Beam ---------------------------------------------------------------------------------------

def one_table(batches) -> pa.Table:
    """A side input's batches as one table."""
    batches = list(batches)
    return pa.concat_tables(batches) if len(batches) > 1 else batches[0]


class PolicyBatchFn(beam.DoFn):
    """`build(policies, locations, treaties, participations, as_of, con, **kwargs)` over one batch
    of policies, against the whole side tables; the batch's quarantined locations go to the
    tagged output. Main output: one Arrow table per batch (possibly empty, for a schema)."""

    def __init__(self, build, report: str, as_of: date, rows_counter: str | None = None, **kwargs):
        self.build, self.report, self.as_of, self.kwargs = build, report, as_of, kwargs
        self.rows = Metrics.counter("rex", rows_counter or f"{report}_rows")
        self.held = Metrics.counter("rex", f"{report}_locations_quarantined")

    def setup(self):
        self.con = duck.connect()
        self._key = None

    def teardown(self):
        self.con.close()

    def process(self, policies, locations, treaties, participations):
        key = (id(locations), id(treaties), id(participations))
        if key != self._key:  # side inputs are the same objects for the whole run
            self._sides = (one_table(locations), one_table(treaties), one_table(participations))
            self._key = key
        locs, trs, parts = self._sides
        rows = self.build(policies, locs, trs, parts, self.as_of, con=self.con, **self.kwargs)
        self.rows.inc(rows.num_rows)
        yield rows
        held = exposure_quarantine(policies, locs, trs, parts, self.as_of, self.report, self.con)
        if held.num_rows:
            self.held.inc(held.num_rows)
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG_REPORT, held)


def read_book(pbegin, warehouse_uri: str, batch_rows: int):
    """Policies in batches (main input) and the other book tables as list side inputs."""
    policies = pbegin | "ReadPolicies" >> ReadLedgerTable(warehouse_uri, "Policies", batch_rows)
    sides = [beam.pvalue.AsList(pbegin | f"Read{n}" >> ReadLedgerTable(warehouse_uri, n)) for n in BOOK_TABLES[1:]]
    return policies, sides


class _CombineTables(beam.CombineFn):
    """Concatenate per-batch partial tables, reducing them to one partial of the same shape."""

    def __init__(self, reduce, empty, **kwargs):
        self.reduce, self.empty, self.kwargs = reduce, empty, kwargs

    def create_accumulator(self):
        return []

    def add_input(self, acc, table):
        acc.append(table)
        return acc

    def merge_accumulators(self, accs):
        tables = [t for acc in accs for t in acc]
        return [self.reduce(pa.concat_tables(tables), **self.kwargs)] if len(tables) > 1 else tables

    def extract_output(self, acc):
        if not acc:
            return self.empty()
        return self.reduce(pa.concat_tables(acc), **self.kwargs)


def _tag_parts(table):
    return ("parts", table)


def _tag_quarantine(table):
    return ("quarantine", table)


class _FromPartsFn(beam.DoFn):
    """The book's combined partial table -> report rows (with shares); quarantine passes through."""

    def __init__(self, finish, report: str, as_of: date, **kwargs):
        self.finish, self.report, self.as_of, self.kwargs = finish, report, as_of, kwargs
        self.rows = Metrics.counter("rex", f"{report}_rows")

    def process(self, tagged, participations):
        kind, table = tagged
        if kind == "quarantine":
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG_REPORT, table)
            return
        rows = self.finish(table, one_table(participations), self.as_of, **self.kwargs)
        self.rows.inc(rows.num_rows)
        yield rows


def _empty_exposure_parts():
    return exposure_parts(*empty_book(), date(2000, 1, 1))


def _empty_top_parts():
    return top_location_parts(*empty_book(), date(2000, 1, 1))


class _BuildFromParts(beam.PTransform):
    def __init__(self, warehouse_uri, as_of, report, parts, reduce, empty, finish, batch_rows, **kwargs):
        super().__init__()
        self.warehouse_uri, self.as_of, self.report = warehouse_uri, as_of, report
        self.parts, self.reduce, self.empty, self.finish = parts, reduce, empty, finish
        self.batch_rows, self.kwargs = batch_rows, kwargs

    def expand(self, pbegin):
        policies, (locations, treaties, participations) = read_book(pbegin, self.warehouse_uri, self.batch_rows)
        ceded = policies | "CedeLocations" >> beam.ParDo(
            PolicyBatchFn(self.parts, self.report, self.as_of, f"{self.report}_partial_rows", **self.kwargs),
            locations, treaties, participations
        ).with_outputs(QUARANTINE_TAG_REPORT, main="parts")
        combined = (ceded.parts
                    | "CombineParts" >> beam.CombineGlobally(_CombineTables(self.reduce, self.empty, **self.kwargs))
                    | "TagParts" >> beam.Map(_tag_parts))
        held = ceded[QUARANTINE_TAG_REPORT] | "TagQuarantine" >> beam.Map(_tag_quarantine)
        return ((combined, held)
                | "Gather" >> beam.Flatten()
                | "Share" >> beam.ParDo(_FromPartsFn(self.finish, self.report, self.as_of, **self.kwargs),
                                        participations).with_outputs(QUARANTINE_TAG_REPORT, main="rows"))


class BuildExposure(_BuildFromParts):
    """Warehouse mirror -> the exposure report on `as_of` for every reinsurer (main output "rows":
    one Arrow table) and the quarantined locations (tagged `QUARANTINE_TAG_REPORT`)."""

    def __init__(self, warehouse_uri: str, as_of: date, batch_rows: int = 50_000):
        super().__init__(warehouse_uri, as_of, "exposure", exposure_parts, reduce_exposure_parts,
                         _empty_exposure_parts, exposure_from_parts, batch_rows)


class BuildTopLocations(_BuildFromParts):
    """Warehouse mirror -> each reinsurer × treaty's `n` largest ceded locations on `as_of`
    (main output "rows": one Arrow table; quarantined locations tagged `QUARANTINE_TAG_REPORT`)."""

    def __init__(self, warehouse_uri: str, as_of: date, n: int = 10, batch_rows: int = 50_000):
        super().__init__(warehouse_uri, as_of, "exposure_top_locations", top_location_parts,
                         reduce_top_location_parts, _empty_top_parts, top_locations_from_parts, batch_rows, n=n)
