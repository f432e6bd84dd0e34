"""Versions of what a partner was sent, and late changes to closed periods.

Every partner × report × period is published as numbered versions (`v1`, `v2`, …) and a version,
once published, is never altered: its files stay byte-identical and its rows stay in
`rex_reports.published_<report>` (rex's column names, as sent, masked). A run compares what a
period should hold now with its latest version:

* unchanged -> nothing is published (re-running is safe); a new contract version re-issues the
  periods still open (closed ones keep the terms they were sent under);
* the period is still open (its end plus the contract's grace days is not yet past) -> a new
  version of it;
* the period is closed -> the contract's `lateChanges`:
  - `restate`: a new version of the closed period;
  - `next_period`: adjustment rows in the next open period, flagged `entry_type = ADJUSTMENT`
    with `adjusts_period` naming the closed period, carrying the difference between what the
    period holds now and what was sent for it (its last version plus earlier adjustments). A row
    new to the period is adjusted in whole; a row gone from it is reversed.

Adjustments published in a period stay part of that period's content in its later versions.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from contracts.model import Contract
from transforms import duck
from transforms.report_catalog import report as report_definition

ORIGINAL, ADJUSTMENT = "ORIGINAL", "ADJUSTMENT"


def point_in_time(label: str) -> bool:
    """An as-of date label (exposure, OED: `2026-03-31`) rather than a reporting period."""
    return label.count("-") == 2


def period_bounds(label: str) -> tuple[date, date]:
    """`2026-03` or `2026-Q1` -> (first day, last day); an as-of date is its own bounds."""
    if point_in_time(label):
        day = date.fromisoformat(label)
        return day, day
    year, rest = label.split("-")
    year = int(year)
    if rest.startswith("Q"):
        first_month = (int(rest[1:]) - 1) * 3 + 1
        last_month = first_month + 2
    else:
        first_month = last_month = int(rest)
    return date(year, first_month, 1), date(year, last_month, calendar.monthrange(year, last_month)[1])


def next_period(label: str) -> str:
    year, rest = label.split("-")
    year = int(year)
    if rest.startswith("Q"):
        q = int(rest[1:]) + 1
        return f"{year + 1}-Q1" if q > 4 else f"{year}-Q{q}"
    m = int(rest) + 1
    return f"{year + 1}-01" if m > 12 else f"{year}-{m:02d}"


def period_of(day: date, frequency: str) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}" if frequency == "quarterly" else f"{day.year}-{day.month:02d}"


def closes_on(label: str, contract: Contract) -> date:
    """The last day changes still go into the period itself: its end plus the grace days."""
    return period_bounds(label)[1] + timedelta(days=int(contract.grace_days or 0))


def is_closed(label: str, contract: Contract, as_of: date) -> bool:
    """Past its grace days. A point-in-time snapshot never closes: it is revised, not adjusted."""
    return not point_in_time(label) and as_of > closes_on(label, contract)


def has_ended(label: str, as_of: date) -> bool:
    """A period is reported once it has ended (SLA: cut-off at period end)."""
    return period_bounds(label)[1] <= as_of


def first_open_period(after: str, contract: Contract, as_of: date) -> str:
    label = next_period(after)
    while is_closed(label, contract, as_of):
        label = next_period(label)
    return label


@dataclass(frozen=True)
class Published:
    """The latest version of a period, as the warehouse remembers it."""

    period: str
    version: int
    content_hash: str
    rows: pa.Table  # rex columns plus entry_type / adjusts_period, as sent
    contract_version: str | None = None


def content_hash(rows: pa.Table, columns: list[str]) -> str:
    """An order-independent fingerprint of a period's rows (DuckDB's hash of each row, xor-ed)."""
    if rows.num_rows == 0:
        return "empty"
    con = duck.connect()
    try:
        con.register("t", rows.select(columns))
        cols = ", ".join(f'"{c}"' for c in columns)
        n, h = con.execute(f"SELECT count(*), bit_xor(hash({cols})) FROM t").fetchall()[0]
        return f"{n}:{h:016x}"
    finally:
        con.close()


def money_columns(kind: str, rows: pa.Table) -> list[str]:
    return [c.name for c in report_definition(kind).columns if c.kind == "money" and c.name in rows.column_names]


def with_entry_columns(rows: pa.Table, entry_type: str = ORIGINAL, adjusts: str | None = None) -> pa.Table:
    if "entry_type" in rows.column_names:
        return rows
    n = rows.num_rows
    return rows.append_column("entry_type", pa.array([entry_type] * n, pa.string())).append_column(
        "adjusts_period", pa.array([adjusts] * n, pa.string()))


def adjustments(current: pa.Table, sent: pa.Table, keys: list[str], money: list[str], target: str,
                closed: str) -> pa.Table:
    """Rows adjusting what was sent for `closed` to what it holds now, booked in `target`.

    `current` and `sent` hold the closed period's rows (sent: its last version's originals plus
    every adjustment published for it since), in rex columns. Keys identify a row."""
    con = duck.connect()
    try:
        con.register("cur", current)
        con.register("sent_rows", sent)
        k = ", ".join(f'"{c}"' for c in keys)
        sums = ", ".join(f'sum("{m}") AS "{m}"' for m in money)
        con.execute(f"CREATE TEMP TABLE was AS SELECT {k}, {sums} FROM sent_rows GROUP BY ALL")
        con.execute(f"CREATE TEMP TABLE now_ AS SELECT {k}, {sums} FROM cur GROUP BY ALL")
        on = " AND ".join(f'n."{c}" IS NOT DISTINCT FROM w."{c}"' for c in keys)
        delta = ", ".join(f'CAST(coalesce(n."{m}", 0) - coalesce(w."{m}", 0) AS DECIMAL(38,9)) AS "{m}"' for m in money)
        changed = " OR ".join(f'coalesce(n."{m}", 0) <> coalesce(w."{m}", 0)' for m in money)
        pick = ", ".join(f'coalesce(n."{c}", w."{c}") AS "{c}"' for c in keys)
        con.execute(f"""CREATE TEMP TABLE d AS SELECT {pick}, {delta}
                        FROM now_ n FULL OUTER JOIN was w ON {on} WHERE {changed}""")
        if con.execute("SELECT count(*) FROM d").fetchall()[0][0] == 0:
            return current.schema.empty_table()
        # the descriptive columns of the row as it is now (or as sent, for a reversed row)
        others = [c for c in current.column_names if c not in keys and c not in money
                  and c not in ("entry_type", "adjusts_period", "period")]
        base = ", ".join(f'coalesce(c."{o}", s."{o}") AS "{o}"' for o in others)
        join_c = " AND ".join(f'c."{x}" IS NOT DISTINCT FROM d."{x}"' for x in keys)
        join_s = " AND ".join(f's."{x}" IS NOT DISTINCT FROM d."{x}"' for x in keys)
        out = con.sql(f"""
            SELECT d.*, {base}, '{target}' AS period, '{ADJUSTMENT}' AS entry_type, '{closed}' AS adjusts_period
            FROM d
            LEFT JOIN (SELECT DISTINCT ON ({k}) * FROM cur) c ON {join_c}
            LEFT JOIN (SELECT DISTINCT ON ({k}) * FROM sent_rows WHERE entry_type = '{ORIGINAL}') s ON {join_s}
        """).to_arrow_table()
    finally:
        con.close()
    return out.select(current.column_names).cast(current.schema)


@dataclass
class PeriodPlan:
    period: str
    rows: pa.Table  # what the period's new version holds (rex columns + entry columns)
    version: int
    kind: str  # initial | revision | restatement | adjustments
    closed: bool


def plan_publications(current: pa.Table, latest: dict[str, Published], contract: Contract, kind: str,
                      keys: list[str], as_of: date, only_period: str | None = None
                      ) -> tuple[list[PeriodPlan], pa.Table]:
    """Which periods get a new version, with what rows; and the rows not due yet (pending).

    `current`: the partner's rows as they should be now (rex columns, masked, with `period`).
    `latest`: the latest published version of each period."""
    current = with_entry_columns(current)
    money = money_columns(kind, current)
    periods = sorted(set(pc.unique(current["period"]).to_pylist()) | set(latest))
    by_period = {p: current.filter(pc.equal(current["period"], p)) for p in periods}
    carried = {p: _adjustment_rows(latest[p].rows) for p in latest}  # adjustments stay in their period
    new_adjustments: dict[str, list[pa.Table]] = {}
    plans, pending = [], []
    for p in periods:
        rows = by_period[p]
        last = latest.get(p)
        if not has_ended(p, as_of):
            continue  # handled below, with any adjustments it received
        if last is not None and is_closed(p, contract, as_of) and contract.late_changes == "next_period":
            sent = _sent_for(p, latest)
            delta = adjustments(rows, sent, keys, money, first_open_period(p, contract, as_of), p)
            if delta.num_rows:
                target = first_open_period(p, contract, as_of)
                new_adjustments.setdefault(target, []).append(delta)
            continue
        content = _concat([rows, carried.get(p)], current)
        plans.append((p, content, last))
    for target, parts in new_adjustments.items():  # open periods that received adjustments
        if target not in [p for p, _c, _l in plans]:
            plans.append((target, by_period.get(target, current.slice(0, 0)), latest.get(target)))
    out = []
    for p, content, last in sorted(plans, key=lambda x: x[0]):
        content = _concat([content, *(new_adjustments.get(p, []))], current)
        if not has_ended(p, as_of):
            pending.append(content)
            continue
        if only_period and p != only_period:
            continue
        cols = [c for c in content.column_names]
        closed = is_closed(p, contract, as_of)
        same_terms = last is not None and (closed or last.contract_version == contract.version)
        if same_terms and content_hash(content, cols) == last.content_hash:
            continue  # a new contract version re-issues the periods still open, in its layout
        if last is None:
            plan_kind = "initial"
        elif closed:
            plan_kind = "restatement"
        elif new_adjustments.get(p):
            plan_kind = "adjustments"
        else:
            plan_kind = "revision"
        out.append(PeriodPlan(p, content, (last.version + 1) if last else 1, plan_kind, closed))
    for p in periods:
        if not has_ended(p, as_of) and p not in new_adjustments:
            pending.append(by_period[p])
    return out, _concat(pending, current)


def _adjustment_rows(rows: pa.Table) -> pa.Table:
    return rows.filter(pc.equal(rows["entry_type"], ADJUSTMENT))


def _sent_for(period: str, latest: dict[str, Published]) -> pa.Table:
    """What the partner holds for a period: its originals, plus adjustments sent for it anywhere."""
    parts = [latest[period].rows.filter(pc.equal(latest[period].rows["entry_type"], ORIGINAL))]
    for pub in latest.values():
        adj = pub.rows.filter(pc.fill_null(pc.equal(pub.rows["adjusts_period"], period), False))
        if adj.num_rows:
            parts.append(adj)
    return pa.concat_tables(parts, promote_options="permissive")


def _concat(tables, like: pa.Table) -> pa.Table:
    tables = [t for t in tables if t is not None and t.num_rows]
    if not tables:
        return like.slice(0, 0)
    return pa.concat_tables([t.select(like.column_names).cast(like.schema) for t in tables]).combine_chunks()
