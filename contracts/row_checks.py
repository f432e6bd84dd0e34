"""A contract's column rules, compiled to vectorised checks on Arrow batches of rex report rows.

Each check returns, for a whole batch at once, which rows break it (pyarrow compute, no Python
per row); only the few failing rows are turned into quarantine rows. Checks read the rex
columns (`transformLogic`), before the partner's renaming and masking, so a masked name is
still checked for being present. Rule ids name the report, the rex column and the check —
`premium_bordereau.insured_name.required` — the same for every partner; the quarantine row
says which partner's contract, and the reason quotes the partner's own column name.

Uniqueness needs the whole report, not a batch: `duplicate_rows` marks every repeat of a value
after its first occurrence in ledger commit order (the original stays, the copy is held back).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from contracts.model import ColumnSpec, Contract, ReportSpec
from transforms.quarantine import QUARANTINE_SCHEMA, quarantine_id, row_json
from transforms.quarantine import value_text as _text
from transforms.report_catalog import report as report_definition

STAGE = "contract"


@dataclass(frozen=True)
class RowCheck:
    rule: str  # e.g. premium_bordereau.insured_name.required
    source: str  # rex column checked
    column: str  # the partner's column name, for reasons
    describe: str  # what the rule demands, e.g. "at least 0"
    fails: Callable[[pa.Array], pa.Array]  # column values -> True where the row breaks the rule


@dataclass(frozen=True)
class CompiledChecks:
    """The row checks of one partner × report, in the contract's column order."""

    partner: str
    contract_version: str
    report: str
    checks: tuple[RowCheck, ...]
    unique: tuple[tuple[str, str], ...]  # (rex column, partner column) that must be unique

    def failures(self, table: pa.Table) -> list[pa.Array]:
        """One boolean array per check (nulls already False), aligned with `checks`."""
        out = []
        for check in self.checks:
            mask = check.fails(table[check.source].combine_chunks())
            out.append(pc.fill_null(mask, False))
        return out


def _scalar(value, type_: pa.DataType):
    """A contract bound as an Arrow scalar of the column's type (Decimal stays exact)."""
    if pa.types.is_date(type_):
        return pa.scalar(value if isinstance(value, date) else date.fromisoformat(str(value)), type_)
    if pa.types.is_decimal(type_):
        return pa.scalar(Decimal(str(value)), pa.decimal128(38, 9)).cast(type_)
    if pa.types.is_integer(type_):
        return pa.scalar(int(Decimal(str(value))), type_)
    if pa.types.is_floating(type_):
        return pa.scalar(float(Decimal(str(value))), type_)
    return pa.scalar(value, type_)


def _is_string(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def compile_column(report: str, col: ColumnSpec, type_: pa.DataType) -> list[RowCheck]:
    """The row checks of one contract column over a rex column of Arrow type `type_`."""
    rid = f"{report}.{col.source}"
    checks: list[RowCheck] = []

    def add(check: str, describe: str, fails) -> None:
        checks.append(RowCheck(f"{rid}.{check}", col.source, col.name, describe, fails))

    if col.required:
        if _is_string(type_):
            add("required", "a value", lambda a: pc.or_kleene(pc.is_null(a), pc.equal(pc.utf8_length(a), 0)))
        else:
            add("required", "a value", pc.is_null)
    if col.allowed is not None:
        values = pa.array(list(col.allowed)).cast(type_) if not _is_string(type_) else pa.array(
            [str(v) for v in col.allowed], type_)
        shown = ", ".join(str(v) for v in col.allowed)
        add("allowed_values", f"one of {shown}", lambda a, v=values: pc.invert(pc.is_in(a, value_set=v)))
    for attr, check, op, describe in (
        ("minimum", "minimum", pc.less, "at least"),
        ("exclusive_minimum", "exclusive_minimum", pc.less_equal, "above"),
        ("maximum", "maximum", pc.greater, "at most"),
        ("exclusive_maximum", "exclusive_maximum", pc.greater_equal, "below"),
    ):
        bound = getattr(col, attr)
        if bound is not None:
            s = _scalar(bound, type_)
            add(check, f"{describe} {bound}", lambda a, s=s, op=op: op(a, s))
    if col.pattern is not None and _is_string(type_):
        add("pattern", f"matching {col.pattern}",
            lambda a, p=col.pattern: pc.invert(pc.match_substring_regex(a, pattern=p)))
    if col.min_length is not None and _is_string(type_):
        add("min_length", f"at least {col.min_length} characters",
            lambda a, n=col.min_length: pc.less(pc.utf8_length(a), n))
    if col.max_length is not None and _is_string(type_):
        add("max_length", f"at most {col.max_length} characters",
            lambda a, n=col.max_length: pc.greater(pc.utf8_length(a), n))
    return checks


def compile_row_checks(contract: Contract, spec: ReportSpec, schema: pa.Schema) -> CompiledChecks:
    """All row checks of a partner × report, against the Arrow schema of rex's report rows."""
    checks: list[RowCheck] = []
    unique = []
    for col in spec.columns:
        if col.source not in schema.names:
            continue  # a declared column rex does not produce yet: nothing to check
        checks.extend(compile_column(spec.kind, col, schema.field(col.source).type))
        if col.unique:
            unique.append((col.source, col.name))
    return CompiledChecks(contract.partner, contract.version, spec.kind, tuple(checks), tuple(unique))


@dataclass
class CheckedBatch:
    clean: pa.Table
    quarantine: pa.Table  # QUARANTINE_SCHEMA


def apply_row_checks(compiled: CompiledChecks, table: pa.Table, run_id: str | None = None) -> CheckedBatch:
    """Split a batch into the rows that meet every check and quarantine rows for the others."""
    if table.num_rows == 0 or not compiled.checks:
        return CheckedBatch(table, QUARANTINE_SCHEMA.empty_table())
    masks = compiled.failures(table)
    bad = masks[0]
    for m in masks[1:]:
        bad = pc.or_(bad, m)
    if not pc.any(bad).as_py():
        return CheckedBatch(table, QUARANTINE_SCHEMA.empty_table())
    idx = pc.indices_nonzero(bad)
    rows = table.take(idx).to_pylist()
    failing = [pc.take(m, idx).to_pylist() for m in masks]
    out = []
    for i, row in enumerate(rows):
        broken = [c for c, f in zip(compiled.checks, failing) if f[i]]
        out.append(quarantine_row(compiled, broken[0], row, also=[c.rule for c in broken[1:]]))
    return CheckedBatch(table.filter(pc.invert(bad)), rows_to_quarantine(out))


def quarantine_row(compiled: CompiledChecks, check: RowCheck, row: dict, also: list[str] = ()) -> dict:
    value = row.get(check.source)
    shown = "empty" if value in (None, "") else repr(_text(value))
    reason = (f"{compiled.partner} contract {compiled.contract_version}: {check.column!r} must be "
              f"{check.describe}, got {shown}")
    if also:
        reason += f" (also breaks {', '.join(also)})"
    raw = row_json(row)
    return {
        "stage": STAGE, "partner": compiled.partner, "report": compiled.report, "table_name": None,
        "rule": check.rule, "reason": reason, "offending_value": _text(value), "raw_record": raw,
        "source": f"contract {compiled.partner} {compiled.contract_version}",
    }


def rows_to_quarantine(rows: list[dict]) -> pa.Table:
    cols = {f.name: [] for f in QUARANTINE_SCHEMA}
    for r in rows:
        r = dict(r)
        r["quarantine_id"] = quarantine_id(r["stage"], f"{r.get('partner')}:{r['rule']}", r["raw_record"])
        for name in cols:
            cols[name].append(r.get(name))
    return pa.table(cols, schema=QUARANTINE_SCHEMA)


def duplicate_rows(table: pa.Table, column: str, order: list[str]) -> pa.Array:
    """True for every row whose `column` value already appeared earlier in `order`."""
    if table.num_rows == 0:
        return pa.array([], pa.bool_())
    from transforms import duck

    con = duck.connect()
    try:
        con.register("t", table.select(list(dict.fromkeys([column, *order]))).append_column(
            "_row", pa.array(range(table.num_rows), pa.int64())))
        order_sql = ", ".join(f'"{c}"' for c in order) + ", _row"
        dupes = con.sql(
            f'SELECT _row FROM (SELECT _row, row_number() OVER (PARTITION BY "{column}" ORDER BY {order_sql}) AS n '
            f'FROM t WHERE "{column}" IS NOT NULL) WHERE n > 1'
        ).to_arrow_table()["_row"]
    finally:
        con.close()
    return pc.is_in(pa.array(range(table.num_rows), pa.int64()), value_set=dupes)


def apply_unique_checks(compiled: CompiledChecks, table: pa.Table, order: list[str]) -> CheckedBatch:
    """Hold back repeats of values the contract says are unique (first in `order` stays)."""
    quarantine = []
    for source, column in compiled.unique:
        if source not in table.column_names:
            continue
        dup = duplicate_rows(table, source, order)
        if not pc.any(dup).as_py():
            continue
        rule = f"{compiled.report}.{source}.unique"
        check = RowCheck(rule, source, column, "unique", lambda a: a)
        for row in table.filter(dup).to_pylist():
            q = quarantine_row(compiled, check, row)
            q["reason"] = (f"{compiled.partner} contract {compiled.contract_version}: {column!r} must be unique; "
                           f"{_text(row.get(source))!r} already appears on an earlier row")
            quarantine.append(q)
        table = table.filter(pc.invert(dup))
    return CheckedBatch(table, rows_to_quarantine(quarantine) if quarantine else QUARANTINE_SCHEMA.empty_table())


def report_schema(kind: str) -> list[str]:
    """The rex columns of a report, in catalog order."""
    return report_definition(kind).names
