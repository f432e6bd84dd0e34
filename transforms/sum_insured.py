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
import pyarrow.compute as pc

from transforms import duck

VERSIONS_COLUMNS = ("PolicyId", "LocationId", "BuildingTiv", "ContentsTiv", "BiTiv",
                    "_metadata_spanner_commit_timestamp", "_metadata_spanner_mod_type")

# The policy's sum insured after each commit that touched its locations: every version moves
# S by its location's new TIV less the one before it (a DELETE's new TIV is 0); S after a
# commit is the running sum over the policy's versions up to and including that commit.
TIMELINE_SQL = """
WITH versions AS (
  SELECT PolicyId, LocationId, _metadata_spanner_commit_timestamp AS ts,
         CASE WHEN _metadata_spanner_mod_type = 'DELETE' THEN CAST(0 AS DECIMAL(38,9))
              ELSE CAST(coalesce(BuildingTiv, 0) + coalesce(ContentsTiv, 0) + coalesce(BiTiv, 0) AS DECIMAL(38,9))
         END AS tiv
  FROM location_versions WHERE _metadata_spanner_commit_timestamp IS NOT NULL
), moves AS (
  SELECT PolicyId, ts,
         tiv - coalesce(lag(tiv) OVER (PARTITION BY PolicyId, LocationId ORDER BY ts), 0) AS delta
  FROM versions
)
SELECT PolicyId, ts, CAST(sum(sum(delta)) OVER (PARTITION BY PolicyId ORDER BY ts) AS DECIMAL(38,9)) AS SumInsured
FROM moves GROUP BY PolicyId, ts
"""

SUM_INSURED_AS_OF_SQL = """
SELECT e.PolicyId, e.event_id, s.SumInsured
FROM events e ASOF JOIN timeline s ON s.PolicyId = e.PolicyId AND e.ts >= s.ts
"""

_EVENTS = pa.schema([("PolicyId", pa.string()), ("event_id", pa.string()),
                     ("ts", pa.timestamp("us", tz="UTC"))])
_OUT = pa.schema([("PolicyId", pa.string()), ("event_id", pa.string()), ("SumInsured", pa.decimal128(38, 9))])


def sum_insured_as_of(events: pa.Table, timeline: pa.Table, con=None) -> pa.Table:
    """(PolicyId, event_id, SumInsured) for events (PolicyId, event_id, ts), from the policies'
    `sum_insured_timeline`; events without a commit time, or before any location was known, get
    none (callers fall back to the current)."""
    if events.num_rows == 0 or timeline.num_rows == 0:
        return _OUT.empty_table()
    own = con is None
    con = con or duck.connect()
    try:
        con.register("events", events.cast(_EVENTS).filter(pc.is_valid(events["ts"])))
        con.register("timeline", timeline)
        return con.sql(SUM_INSURED_AS_OF_SQL).to_arrow_table().cast(_OUT)
    finally:
        con.unregister("events")
        con.unregister("timeline")
        if own:
            con.close()


def sum_insured_timeline(location_versions: pa.Table, con=None) -> pa.Table:
    """(PolicyId, ts, SumInsured) after every commit that changed a policy's locations, from the
    Locations changelog. Build it once per run (the changelog is a side input) and ask it per batch."""
    own = con is None
    con = con or duck.connect()
    try:
        con.register("location_versions", location_versions)
        return con.sql(TIMELINE_SQL).to_arrow_table()
    finally:
        con.unregister("location_versions")
        if own:
            con.close()
