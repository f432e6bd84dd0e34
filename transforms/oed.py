"""OED v3 location and account files of the ceded in-force risks (DESIGN.md §8).

For every reinsurer, the risks in force on `as_of` (the exposure report's rule: InceptionDate <=
as_of < ExpiryDate, on a treaty with participations, quarantined locations left out) as Open
Exposure Data records, the fields named and valued as OED's own spec says (checked with PyPI's
`ods-tools`, OED's validator, whose spec JSON ships in the package):

* location, one row per reinsurer × location: PortNumber (the treaty), AccNumber (the policy id),
  LocNumber, CountryCode, Latitude, Longitude, LocPerilsCovered (the ledger's ';'-separated OED
  peril codes), OccupancyCode, ConstructionCode, BuildingTIV, OtherTIV (always 0: the ledger has
  no other-structures value), ContentsTIV, BITIV (TIVs at 100%; a NULL component is 0, as in the
  exposure report), LocCurrency, GeogScheme1/GeogName1 (rex's accumulation zone, under the
  user-defined scheme `XZONE`: OED reserves schemes starting with X for user schemes, and rex's
  zones are not CRESTA's own), OEDVersion;
* account, one row per reinsurer × policy with a reported location: PortNumber, AccNumber,
  AccName (the insured), AccCurrency, PolNumber (the policy number), PolPerilsCovered (the
  union of its locations' perils, sorted), PolInceptionDate, PolExpiryDate, LOB, OEDVersion.

OEDVersion says which OED the file follows: 3.4.1, the latest OED v3 spec ods-tools ships, so a
reader validates the file against v3 (the files also pass the package's current default spec).
Central rows lead with `reinsurer_id`, `treaty_id` and `as_of_date` (partners' rows are filtered
by them); `write_oed_csv` drops those and writes exactly the OED fields.
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
from datetime import date
from decimal import Decimal

import apache_beam as beam
import pyarrow as pa

from transforms.exposure import CEDED_CTES, PolicyBatchFn, empty_book, query, read_book
from transforms.quarantine import QUARANTINE_TAG_REPORT

OED_VERSION = "3.4.1"
GEOG_SCHEME = "XZONE"  # user-defined OED geography scheme (OED: user schemes start with 'X')
CENTRAL_COLUMNS = ("reinsurer_id", "treaty_id", "as_of_date")
LOCATION_KEYS = ("PortNumber", "AccNumber", "LocNumber")
ACCOUNT_KEYS = ("PortNumber", "AccNumber", "PolNumber")

OED_LOCATION_SQL = f"""
WITH {CEDED_CTES}
SELECT
  pa.ReinsurerId AS reinsurer_id,
  c.TreatyId AS treaty_id,
  CAST($as_of AS DATE) AS as_of_date,
  c.TreatyId AS PortNumber,
  c.PolicyId AS AccNumber,
  c.LocationId AS LocNumber,
  c.CountryCode AS CountryCode,
  CAST(c.Latitude AS DECIMAL(38,9)) AS Latitude,
  CAST(c.Longitude AS DECIMAL(38,9)) AS Longitude,
  array_to_string(c.Perils, ';') AS LocPerilsCovered,
  c.OccupancyCode AS OccupancyCode,
  c.ConstructionCode AS ConstructionCode,
  c.BuildingTiv AS BuildingTIV,
  CAST(0 AS DECIMAL(38,9)) AS OtherTIV,
  c.ContentsTiv AS ContentsTIV,
  c.BiTiv AS BITIV,
  c.Currency AS LocCurrency,
  CASE WHEN c.Zone IS NOT NULL THEN CAST($geog_scheme AS VARCHAR) END AS GeogScheme1,
  c.Zone AS GeogName1,
  CAST($oed_version AS VARCHAR) AS OEDVersion
FROM ceded c JOIN participations pa ON pa.TreatyId = c.TreatyId
ORDER BY reinsurer_id, PortNumber, AccNumber, LocNumber
"""

OED_ACCOUNT_SQL = f"""
WITH {CEDED_CTES}, perils AS (
  SELECT PolicyId, unnest(Perils) AS Peril FROM ceded
), policy_perils AS (
  SELECT PolicyId, string_agg(DISTINCT Peril, ';' ORDER BY Peril) AS Perils FROM perils GROUP BY PolicyId
), accounts AS (
  SELECT DISTINCT TreatyId, PolicyId, PolicyNumber, InsuredName, Currency, LineOfBusiness, InceptionDate, ExpiryDate
  FROM ceded
)
SELECT
  pa.ReinsurerId AS reinsurer_id,
  a.TreatyId AS treaty_id,
  CAST($as_of AS DATE) AS as_of_date,
  a.TreatyId AS PortNumber,
  a.PolicyId AS AccNumber,
  a.InsuredName AS AccName,
  a.Currency AS AccCurrency,
  a.PolicyNumber AS PolNumber,
  pp.Perils AS PolPerilsCovered,
  a.InceptionDate AS PolInceptionDate,
  a.ExpiryDate AS PolExpiryDate,
  a.LineOfBusiness AS LOB,
  CAST($oed_version AS VARCHAR) AS OEDVersion
FROM accounts a
LEFT JOIN policy_perils pp ON pp.PolicyId = a.PolicyId
JOIN participations pa ON pa.TreatyId = a.TreatyId
ORDER BY reinsurer_id, PortNumber, AccNumber, PolNumber
"""


def _params(sql: str, as_of: date) -> dict:
    """The bound parameters `sql` uses (DuckDB rejects extra ones)."""
    values = {"as_of": as_of, "geog_scheme": GEOG_SCHEME, "oed_version": OED_VERSION}
    return {k: v for k, v in values.items() if f"${k}" in sql}


def _book(policies, locations, treaties, participations) -> dict[str, pa.Table]:
    return {"policies": policies, "locations": locations, "treaties": treaties, "participations": participations}


def oed_location_rows(policies: pa.Table, locations: pa.Table, treaties: pa.Table, participations: pa.Table,
                      as_of: date, con=None) -> pa.Table:
    """OED location records of every reinsurer's ceded in-force risks (catalog: OED_LOCATION)."""
    book = _book(policies, locations, treaties, participations)
    return query(OED_LOCATION_SQL, book, _params(OED_LOCATION_SQL, as_of), con)


def oed_account_rows(policies: pa.Table, locations: pa.Table, treaties: pa.Table, participations: pa.Table,
                     as_of: date, con=None) -> pa.Table:
    """OED account records (one per ceded in-force policy with a reported location; catalog: OED_ACCOUNT)."""
    book = _book(policies, locations, treaties, participations)
    return query(OED_ACCOUNT_SQL, book, _params(OED_ACCOUNT_SQL, as_of), con)


def empty_oed_locations() -> pa.Table:
    return oed_location_rows(*empty_book(), date(2000, 1, 1))


def empty_oed_accounts() -> pa.Table:
    return oed_account_rows(*empty_book(), date(2000, 1, 1))


def oed_text(value) -> str:
    """A value as OED CSV text: exact decimals in plain notation without trailing zeros (no
    exponent, no float artefacts), dates YYYY-MM-DD, empty for NULL."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = format(value, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if isinstance(value, float):
        raise TypeError("OED files carry exact values; convert floats to decimals first")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def oed_csv_bytes(table: pa.Table) -> bytes:
    """The OED CSV of a table: its OED columns only (the central ones dropped), rows ordered by
    the OED identifiers present, UTF-8, ',' separated, '\\n' line ends, quoted only where needed."""
    columns = [c for c in table.column_names if c not in CENTRAL_COLUMNS]
    keys = [k for k in (*LOCATION_KEYS, "PolNumber") if k in columns]
    keys = list(dict.fromkeys(keys))
    if keys and table.num_rows:
        table = table.sort_by([(k, "ascending") for k in keys])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    data = [table[c].to_pylist() for c in columns]
    for i in range(table.num_rows):
        writer.writerow([oed_text(col[i]) for col in data])
    return out.getvalue().encode("utf-8")


def write_oed_csv(table: pa.Table, path: str) -> str:
    """Write an OED CSV (see `oed_csv_bytes`) to a temporary name beside `path`, then rename it."""
    data = oed_csv_bytes(table)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# -- Beam ---------------------------------------------------------------------------------------

class _BuildOed(beam.PTransform):
    def __init__(self, warehouse_uri: str, as_of: date, build, report: str, batch_rows: int):
        super().__init__()
        self.warehouse_uri, self.as_of, self.build, self.report = warehouse_uri, as_of, build, report
        self.batch_rows = batch_rows

    def expand(self, pbegin):
        policies, (locations, treaties, participations) = read_book(pbegin, self.warehouse_uri, self.batch_rows)
        return policies | "BuildRecords" >> beam.ParDo(
            PolicyBatchFn(self.build, self.report, self.as_of), locations, treaties, participations
        ).with_outputs(QUARANTINE_TAG_REPORT, main="rows")


class BuildOedLocations(_BuildOed):
    """Warehouse mirror -> OED location records on `as_of` for every reinsurer (main output
    "rows", one Arrow table per batch of policies) and quarantined locations (tagged
    `QUARANTINE_TAG_REPORT`)."""

    def __init__(self, warehouse_uri: str, as_of: date, batch_rows: int = 50_000):
        super().__init__(warehouse_uri, as_of, oed_location_rows, "oed_location", batch_rows)


class BuildOedAccounts(_BuildOed):
    """Warehouse mirror -> OED account records on `as_of` for every reinsurer (main output
    "rows", one Arrow table per batch of policies) and quarantined locations (tagged
    `QUARANTINE_TAG_REPORT`)."""

    def __init__(self, warehouse_uri: str, as_of: date, batch_rows: int = 50_000):
        super().__init__(warehouse_uri, as_of, oed_account_rows, "oed_account", batch_rows)
