"""Hand-written baseline: premium bordereau control totals straight from change-record files.

Independent of rex (no rex import): DuckDB and pyarrow only. It reads the JSON-lines change
records (one Gson DataChangeRecord per line: tableName, modType, commitTimestamp{seconds,nanos},
recordSequence, mods[].keysJson / newValuesJson), builds the current state of Policies,
Locations, Treaties, Participations and PremiumTransactions (per primary key, the last mod in
(commitTimestamp, recordSequence) order wins; under NEW_ROW an INSERT or UPDATE carries the
whole row, a DELETE removes it), then computes per treaty x currency, exactly, in DuckDB
DECIMAL(38,9):

* gross premium of the ceded transactions (policies under a QUOTA_SHARE or SURPLUS treaty that
  has participations);
* ceded premium at 100%: quota share  gross x CessionRate;
  surplus  gross x f, f = min(max(S - R, 0), L*R) / S, S = the policy's total TIV (building +
  contents + BI over its locations) as booked, i.e. at the premium's commit (`--sum-insured
  current`: today's), R the retention, L the lines, f = 0 when S <= 0. A policy is ceded only
  if it attaches to its treaty: same line of business and currency, country in the treaty's
  Territories (NULL = worldwide), inception within the treaty period (`--no-attachment`: any). **f is rounded half up to 9 decimal places before it multiplies the premium,
  as rex does** (transforms/cession.py), so the comparison can be exact; each product is cast
  back to DECIMAL(38,9) (DuckDB's rounding, half away from zero);
* the reinsurers' shares: each ceded x SharePct cast to DECIMAL(38,9); when a transaction's
  shares add up to 100% the rounding residual goes to the largest share (ties: reinsurer id),
  so the shares then sum to the ceded premium exactly. Also per reinsurer.

    .venv/bin/python bench/handwritten_premium.py --changes bench/out/changes1m
    .venv/bin/python bench/handwritten_premium.py --changes bench/out/changes1m \\
        --compare duckdb:///bench/out/some-warehouse.duckdb     # after `rex report --kind premium`

`--compare` checks the totals against rex's `rex_reports.premium_bordereau` (Σ gross and
ceded_premium_100 once per distinct transaction, Σ share_premium; per treaty x currency and
per treaty x currency x reinsurer), prints every difference and exits 1 if there is one.
The time printed covers reading the change files and computing the totals (not the
interpreter start-up or imports, and not the comparison).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from decimal import Decimal

import duckdb

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TABLES = ("Policies", "Locations", "Treaties", "Participations", "PremiumTransactions")

# Only what the totals need: (primary key columns, value columns), every JSON value as text.
SCHEMA = {
    "Policies": (("PolicyId",), ("TreatyId", "LineOfBusiness", "Currency", "InceptionDate", "CountryCode")),
    "Locations": (("PolicyId", "LocationId"), ("BuildingTiv", "ContentsTiv", "BiTiv")),
    "Treaties": (("TreatyId",), ("TreatyType", "LineOfBusiness", "Currency", "InceptionDate", "ExpiryDate",
                                 "CessionRate", "Retention", "Lines", "Territories")),
    "Participations": (("TreatyId", "ReinsurerId"), ("SharePct",)),
    "PremiumTransactions": (("PolicyId", "TransactionId"), ("GrossPremium", "Currency")),
}

D = "DECIMAL(38,9)"


def change_files(folder: str) -> list[str]:
    out = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.endswith((".json", ".jsonl", ".ndjson", ".txt")) and not name.startswith((".", "_")) \
                    and name != "seed-manifest.json":
                out.append(os.path.join(root, name))
    if not out:
        sys.exit(f"no change-record files under {folder}")
    return sorted(out)


def json_struct(cols) -> str:
    return "{" + ", ".join(f'"{c}": "VARCHAR"' for c in cols) + "}"


def compute(con: duckdb.DuckDBPyConnection, files: list[str], sum_insured: str = "as-booked",
            attachment: bool = True) -> dict:
    """Load the files, build current state, compute the per-share rows (table `final`);
    returns phase timings."""
    t0 = time.perf_counter()
    wanted = ", ".join(f"'{t}'" for t in TABLES)
    # One pass over every file: the mods of the five tables, with their order keys
    # (commit time in ns since the epoch, then the record sequence).
    con.execute(f"""
        CREATE TEMP TABLE mods AS
        SELECT tableName AS tbl, modType AS op,
               commitTimestamp.seconds * 1000000000 + coalesce(commitTimestamp.nanos, 0) AS ts,
               recordSequence AS seq, unnest(mods, recursive := true)
        FROM read_json(?, format = 'newline_delimited', maximum_object_size = 268435456,
                       columns = {{tableName: 'VARCHAR', modType: 'VARCHAR',
                                   commitTimestamp: 'STRUCT(seconds BIGINT, nanos BIGINT)',
                                   recordSequence: 'VARCHAR',
                                   mods: 'STRUCT(keysJson VARCHAR, newValuesJson VARCHAR)[]'}})
        WHERE tableName IN ({wanted})
    """, [files])
    t1 = time.perf_counter()
    for table, (keys, values) in SCHEMA.items():
        k = ", ".join(f'k."{c}" AS "{c}"' for c in keys)
        v = ", ".join(f'v."{c}" AS "{c}"' for c in values)
        # The last mod per key wins (a DELETE removes the row); only the winners' values are parsed.
        con.execute(f"""
            CREATE TEMP TABLE "{table}" AS
            WITH keyed AS (
              SELECT json_transform(keysJson, '{json_struct(keys)}') AS k, op, ts, seq, newValuesJson
              FROM mods WHERE tbl = '{table}'
            ), last AS (
              SELECT k, arg_max(struct_pack(op := op, ts := ts, vals := newValuesJson), (ts, seq)) AS m
              FROM keyed GROUP BY k
            ), live AS (
              SELECT k, m.ts AS ts, json_transform(m.vals, '{json_struct(values)}') AS v FROM last WHERE m.op <> 'DELETE'
            )
            SELECT {k}, {v}, ts FROM live
        """)
    if sum_insured == "as-booked":  # every version of every location: (policy, location, commit, op, TIV)
        con.execute(f"""
            CREATE TEMP TABLE location_versions AS
            SELECT k.PolicyId, k.LocationId, ts, op,
                   coalesce(CAST(v.BuildingTiv AS {D}), 0) + coalesce(CAST(v.ContentsTiv AS {D}), 0)
                   + coalesce(CAST(v.BiTiv AS {D}), 0) AS tiv
            FROM (SELECT json_transform(keysJson, '{json_struct(("PolicyId", "LocationId"))}') AS k, ts, op,
                         json_transform(newValuesJson, '{json_struct(("BuildingTiv", "ContentsTiv", "BiTiv"))}') AS v
                  FROM mods WHERE tbl = 'Locations')
        """)
    con.execute("DROP TABLE mods")
    t2 = time.perf_counter()
    if sum_insured == "as-booked":
        # S as booked: at the premium's commit, each of the policy's locations in its latest
        # version committed at or before it (not deleted); none known yet -> today's S.
        con.execute(f"""
            CREATE TEMP TABLE booked_si AS
            WITH sites AS (SELECT DISTINCT PolicyId, LocationId FROM location_versions),
            asked AS (SELECT pt.PolicyId, pt.TransactionId, pt.ts, s.LocationId
                      FROM PremiumTransactions pt JOIN sites s USING (PolicyId)),
            seen AS (SELECT a.PolicyId, a.TransactionId, v.op, v.tiv FROM asked a ASOF JOIN location_versions v
                     ON v.PolicyId = a.PolicyId AND v.LocationId = a.LocationId AND a.ts >= v.ts)
            SELECT PolicyId, TransactionId, CAST(coalesce(sum(tiv) FILTER (WHERE op <> 'DELETE'), 0) AS {D}) AS S
            FROM seen GROUP BY ALL
        """)
        s_expr = "coalesce(b.S, r.S)"
        s_join = "LEFT JOIN booked_si b ON b.PolicyId = pt.PolicyId AND b.TransactionId = pt.TransactionId"
    else:
        s_expr, s_join = "r.S", ""
    attaches = ("AND r.LineOfBusiness = t.LineOfBusiness AND r.Currency = t.Currency "
                "AND r.InceptionDate >= t.InceptionDate AND r.InceptionDate < t.ExpiryDate "
                "AND (t.Territories IS NULL OR coalesce(list_contains(string_split(replace(t.Territories, ' ', ''), ';'), "
                "r.CountryCode), false))") if attachment else ""
    con.execute(f"""
        CREATE TEMP TABLE shares AS
        WITH risk AS (
          SELECT p.PolicyId, p.TreatyId, p.LineOfBusiness, p.Currency, p.CountryCode,
                 CAST(p.InceptionDate AS DATE) AS InceptionDate,
                 coalesce(sum(coalesce(CAST(l.BuildingTiv AS {D}), 0) + coalesce(CAST(l.ContentsTiv AS {D}), 0)
                              + coalesce(CAST(l.BiTiv AS {D}), 0)), 0) AS S
          FROM Policies p LEFT JOIN Locations l ON l.PolicyId = p.PolicyId GROUP BY ALL
        ), treaty AS (
          SELECT TreatyId, TreatyType, LineOfBusiness, Currency, CAST(InceptionDate AS DATE) AS InceptionDate,
                 CAST(ExpiryDate AS DATE) AS ExpiryDate, CAST(CessionRate AS {D}) AS rate, CAST(Retention AS {D}) AS R,
                 CAST(Lines AS BIGINT) AS L, Territories
          FROM Treaties WHERE TreatyType IN ('QUOTA_SHARE', 'SURPLUS')
        ), txn AS (
          SELECT pt.PolicyId, pt.TransactionId, r.TreatyId, pt.Currency, CAST(pt.GrossPremium AS {D}) AS gross,
                 t.TreatyType, t.rate, t.R, t.L, CAST({s_expr} AS {D}) AS S
          FROM PremiumTransactions pt JOIN risk r ON r.PolicyId = pt.PolicyId {s_join}
          JOIN treaty t ON t.TreatyId = r.TreatyId {attaches}
        ), fraction AS (   -- surplus: the ceded share of the sum insured, rounded half up to 1e-9
          SELECT *, CASE TreatyType WHEN 'QUOTA_SHARE' THEN rate
                    WHEN 'SURPLUS' THEN CASE WHEN S IS NULL OR S <= 0 THEN CAST(0 AS {D}) ELSE CAST(
                      CAST((CAST(CAST(least(greatest(S - R, 0), L * R) AS {D}) * 1000000000 AS HUGEINT) * 1000000000
                            + CAST(S * 1000000000 AS HUGEINT) // 2) // CAST(S * 1000000000 AS HUGEINT) AS DECIMAL(38,0))
                      * CAST(0.000000001 AS DECIMAL(10,9)) AS {D}) END END AS f
          FROM txn
        ), ceded AS (SELECT *, CAST(gross * f AS {D}) AS ceded FROM fraction)
        SELECT c.TreatyId, c.Currency, c.PolicyId, c.TransactionId, c.gross, c.ceded, pa.ReinsurerId,
               CAST(c.ceded * CAST(pa.SharePct AS {D}) AS {D}) AS raw,
               sum(CAST(pa.SharePct AS {D})) OVER w AS placed,
               row_number() OVER (w ORDER BY CAST(pa.SharePct AS {D}) DESC, pa.ReinsurerId) AS rnk
        FROM ceded c JOIN Participations pa ON pa.TreatyId = c.TreatyId
        WINDOW w AS (PARTITION BY c.PolicyId, c.TransactionId, c.TreatyId)
    """)
    con.execute(f"""
        CREATE TEMP TABLE final AS
        SELECT *, CAST(raw + CASE WHEN placed = 1 AND rnk = 1
                                  THEN ceded - sum(raw) OVER (PARTITION BY PolicyId, TransactionId, TreatyId)
                                  ELSE 0 END AS {D}) AS share
        FROM shares
    """)
    t3 = time.perf_counter()
    return {"read_files": t1 - t0, "current_state": t2 - t1, "cession": t3 - t2}


TOTALS_SQL = """
WITH per_txn AS (
  SELECT {treaty} AS treaty_id, {ccy} AS currency, {policy}, {txn},
         any_value({gross}) AS gross, any_value({ceded}) AS ceded, sum({share}) AS shares
  FROM {rel} GROUP BY ALL
)
SELECT treaty_id, currency, sum(gross) AS gross_premium, sum(ceded) AS ceded_premium_100,
       sum(shares) AS share_premium, count(*) AS transactions
FROM per_txn GROUP BY ALL ORDER BY ALL
"""
PARTNER_SQL = ("SELECT {treaty}, {ccy}, {reinsurer}, sum({share}) FROM {rel} GROUP BY ALL ORDER BY ALL")

MINE = dict(treaty="TreatyId", ccy="Currency", policy="PolicyId", txn="TransactionId", gross="gross",
            ceded="ceded", share="share", reinsurer="ReinsurerId", rel="final")
REX = dict(treaty="treaty_id", ccy="original_currency", policy="policy_id", txn="transaction_id",
           gross="gross_premium_100", ceded="ceded_premium_100", share="share_premium", reinsurer="reinsurer_id",
           rel="rex.rex_reports.premium_bordereau")


def totals(con, names: dict) -> tuple[dict, dict]:
    per_treaty = {(r[0], r[1]): {"gross_premium": r[2], "ceded_premium_100": r[3], "share_premium": r[4],
                                 "transactions": r[5]}
                  for r in con.execute(TOTALS_SQL.format(**names)).fetchall()}
    per_partner = {(r[0], r[1], r[2]): r[3] for r in con.execute(PARTNER_SQL.format(**names)).fetchall()}
    return per_treaty, per_partner


def compare(con, warehouse_uri: str, mine: tuple[dict, dict], changes: str) -> list[str]:
    path = warehouse_uri[len("duckdb:///"):] if warehouse_uri.startswith("duckdb:///") else warehouse_uri
    if not os.path.isfile(path):
        sys.exit(f"no warehouse file {path}")
    con.execute("ATTACH ? AS rex (READ_ONLY)", [path])
    have = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'rex' "
                       "AND schema_name = 'rex_reports' AND table_name = 'premium_bordereau'").fetchall()[0][0]
    if not have:
        sys.exit(f"{path} has no rex_reports.premium_bordereau: run `rex report --kind premium` on it first")
    sources = [r[0] for r in con.execute("SELECT DISTINCT source FROM rex.rex_ops.checkpoints").fetchall()]
    expected = "files://" + os.path.abspath(changes)
    if sources and expected not in sources:
        print(f"warning: {path} was captured from {', '.join(sources)}, not {expected}", file=sys.stderr)
    theirs = totals(con, REX)
    diffs = []
    for label, a, b in (("treaty x currency", mine[0], theirs[0]), ("treaty x currency x reinsurer", mine[1], theirs[1])):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                diffs.append(f"{label} {key}: hand-written {a.get(key)} != rex {b.get(key)}")
    return diffs


def _json(v):
    return str(v) if isinstance(v, Decimal) else v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", default=os.path.join(REPO, "bench", "out", "changes1m"),
                    help="folder of JSON-lines change-record files")
    ap.add_argument("--compare", metavar="WAREHOUSE_URI",
                    help="check the totals against rex's rex_reports.premium_bordereau in this warehouse")
    ap.add_argument("--sum-insured", choices=("as-booked", "current"), default="as-booked",
                    help="surplus S: the policy's TIV as booked (at the premium's commit; rex since 91a9c80) "
                         "or its current TIV")
    ap.add_argument("--no-attachment", dest="attachment", action="store_false",
                    help="cede without checking that the policy attaches to its treaty (line of business, "
                         "currency, inception within the treaty period)")
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    ap.add_argument("--json", action="store_true", help="print one JSON object only (for bench/reports.py)")
    args = ap.parse_args()

    files = change_files(args.changes)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    started = time.perf_counter()
    phases = compute(con, files, args.sum_insured, args.attachment)
    mine = totals(con, MINE)
    seconds = time.perf_counter() - started
    phases["totals"] = seconds - sum(phases.values())
    out = {
        "seconds": round(seconds, 3),
        "phases_s": {k: round(v, 3) for k, v in phases.items()},
        "files": len(files),
        "sum_insured": args.sum_insured, "attachment_rule": args.attachment,
        "input_bytes": sum(os.path.getsize(f) for f in files),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "totals": [{"treaty_id": t, "currency": c, **{k: _json(v) for k, v in r.items()}}
                   for (t, c), r in mine[0].items()],
        "share_premium_per_reinsurer": [{"treaty_id": t, "currency": c, "reinsurer_id": p, "share_premium": str(s)}
                                        for (t, c, p), s in mine[1].items()],
    }
    diffs = None
    if args.compare:
        diffs = compare(con, args.compare, mine, args.changes)
        out["compare"] = {"warehouse": args.compare, "equal": not diffs, "differences": diffs,
                          "treaty_currency_rows": len(mine[0]), "reinsurer_rows": len(mine[1])}
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
        if diffs is not None:
            print("totals equal rex's exactly" if not diffs else f"{len(diffs)} differences from rex", file=sys.stderr)
    if diffs:
        sys.exit(1)


if __name__ == "__main__":
    main()
