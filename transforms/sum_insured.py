"""A policy's sum insured as the ledger knew it at a moment: for stable surplus cession.

A surplus treaty cedes the fraction min(max(S − R, 0), L·R) / S of a risk with sum insured S. S
moves with endorsements; a premium booked in January must keep the fraction it had when it was
booked, or every later endorsement would rewrite closed periods. So S is taken from the
Locations changelog as of the commit of the transaction being ceded (the premium transaction,
or a claim's first movement): each location's latest version committed at or before it, not
deleted. Both the Spanner and the file sources give the same answer: commit order is the
ledger's, whatever the clock.
"""
from __future__ import annotations

import pyarrow as pa

from transforms import duck

VERSIONS_COLUMNS = ("PolicyId", "LocationId", "BuildingTiv", "ContentsTiv", "BiTiv",
                    "_metadata_spanner_commit_timestamp", "_metadata_spanner_mod_type")

SUM_INSURED_AS_OF_SQL = """
WITH versions AS (
  SELECT PolicyId, LocationId, _metadata_spanner_commit_timestamp AS ts,
         _metadata_spanner_mod_type AS mod,
         coalesce(BuildingTiv, 0) + coalesce(ContentsTiv, 0) + coalesce(BiTiv, 0) AS tiv
  FROM location_versions
), sites AS (
  SELECT DISTINCT PolicyId, LocationId FROM versions
), wanted AS (
  SELECT e.PolicyId, e.event_id, e.ts, s.LocationId
  FROM events e JOIN sites s ON s.PolicyId = e.PolicyId WHERE e.ts IS NOT NULL
), known AS (
  SELECT w.PolicyId, w.event_id, v.mod, v.tiv
  FROM wanted w ASOF JOIN versions v
    ON v.PolicyId = w.PolicyId AND v.LocationId = w.LocationId AND w.ts >= v.ts
)
SELECT PolicyId, event_id,
       CAST(coalesce(sum(tiv) FILTER (WHERE mod <> 'DELETE'), 0) AS DECIMAL(38,9)) AS SumInsured
FROM known GROUP BY ALL
"""

_EVENTS = pa.schema([("PolicyId", pa.string()), ("event_id", pa.string()),
                     ("ts", pa.timestamp("us", tz="UTC"))])
_OUT = pa.schema([("PolicyId", pa.string()), ("event_id", pa.string()), ("SumInsured", pa.decimal128(38, 9))])


def sum_insured_as_of(events: pa.Table, location_versions: pa.Table, con=None) -> pa.Table:
    """(PolicyId, event_id, SumInsured) for events (PolicyId, event_id, ts); events without a
    commit time, or before any location was known, get none (callers fall back to the current)."""
    if events.num_rows == 0 or location_versions.num_rows == 0:
        return _OUT.empty_table()
    own = con is None
    con = con or duck.connect()
    try:
        con.register("events", events.cast(_EVENTS))
        con.register("location_versions", location_versions)
        return con.sql(SUM_INSURED_AS_OF_SQL).to_arrow_table().cast(_OUT)
    finally:
        con.unregister("events")
        con.unregister("location_versions")
        if own:
            con.close()
