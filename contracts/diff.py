"""`rex contracts diff OLD NEW`: what changed between two versions of a contract, and what breaks.

Breaking means data published under OLD would not meet NEW, or a partner loading NEW as it
loaded OLD would fail: a column removed or renamed, moved, re-sourced, its type narrowed, made
required or unique, stricter allowed values, ranges, patterns or lengths; a new required
column; a report or covered treaty dropped; a different rounding, settlement currency, FX rate
date, period (frequency or cut-off), late-change policy or masking; an export format dropped;
a new or changed quality rule. Loosening (an optional column added, a value allowed, a bound
relaxed, a type widened) is listed but not breaking.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from contracts.model import ColumnSpec, Contract, ReportSpec

# logical type -> the types it may widen to without breaking a reader
_WIDENS_TO = {
    "integer": {"integer", "number", "string"},
    "number": {"number", "string"},
    "date": {"date", "string"},
    "timestamp": {"timestamp", "string"},
    "string": {"string"},
}
_PHYSICAL_WIDENS_TO = {"INT64": {"INT64", "NUMERIC", "BIGNUMERIC"}, "NUMERIC": {"NUMERIC", "BIGNUMERIC"}}


@dataclass(frozen=True)
class Change:
    where: str
    what: str
    breaking: bool

    def __str__(self) -> str:
        return f"{'BREAKING' if self.breaking else 'ok      '}  {self.where}: {self.what}"


def diff_contracts(old: Contract, new: Contract) -> list[Change]:
    changes: list[Change] = []
    add = changes.append
    for term, label in (("partner", "partnerId"), ("settlement_currency", "settlementCurrency"),
                        ("fx_rate_date", "fxRateDate"), ("rounding", "rounding"), ("frequency", "frequency"),
                        ("cut_off", "cutOff"), ("late_changes", "lateChanges")):
        a, b = getattr(old, term), getattr(new, term)
        if a != b:
            add(Change(label, f"{a!r} -> {b!r}", True))
    for term, label in (("grace_days", "gracePeriod"), ("time_of_availability", "timeOfAvailability"),
                        ("column_naming", "columnNaming"), ("status", "status")):
        a, b = getattr(old, term), getattr(new, term)
        if a != b:
            add(Change(label, f"{a!r} -> {b!r}", False))
    _sets(changes, "exportFormats", old.export_formats, new.export_formats, "format")
    _sets(changes, "coveredTreaties", old.covered_treaties, new.covered_treaties, "treaty")
    old_mask = {(m.column, m.method, m.key_env) for m in old.masking}
    new_mask = {(m.column, m.method, m.key_env) for m in new.masking}
    for m in sorted(new_mask - old_mask, key=str):
        add(Change("masking", f"{m[0]} now masked with {m[1]} (key {m[2]})", True))
    for m in sorted(old_mask - new_mask, key=str):
        add(Change("masking", f"{m[0]} no longer masked with {m[1]} (key {m[2]})", True))
    for kind in old.reports:
        if kind not in new.reports:
            add(Change(f"schema[{kind}]", "report removed", True))
    for kind, spec in new.reports.items():
        if kind not in old.reports:
            add(Change(f"schema[{kind}]", "report added", False))
        else:
            _report(changes, old.reports[kind], spec)
    breaking = any(c.breaking for c in changes)
    old_major, new_major = _major(old.version), _major(new.version)
    if breaking and old_major is not None and (new_major is None or new_major <= old_major):
        add(Change("version", f"{old.version} -> {new.version}: breaking changes need a new major version", True))
    elif old.version == new.version and changes:
        add(Change("version", f"still {new.version} although the contract changed", False))
    return changes


def _major(version: str | None) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except (TypeError, ValueError):
        return None


def _sets(changes, label, old, new, noun) -> None:
    for value in [v for v in old if v not in new]:
        changes.append(Change(label, f"{noun} {value} dropped", True))
    for value in [v for v in new if v not in old]:
        changes.append(Change(label, f"{noun} {value} added", False))


def _report(changes, old: ReportSpec, new: ReportSpec) -> None:
    where = f"schema[{new.kind}]"
    add = changes.append
    old_cols = {c.physical_name: c for c in old.columns}
    new_cols = {c.physical_name: c for c in new.columns}
    removed = [c for n, c in old_cols.items() if n not in new_cols]
    added = [c for n, c in new_cols.items() if n not in old_cols]
    for gone in removed:
        twin = next((c for c in added if c.source == gone.source), None)
        if twin is not None:
            add(Change(f"{where}.{gone.physical_name}", f"renamed to {twin.physical_name} ({twin.name!r})", True))
            added.remove(twin)
        else:
            add(Change(f"{where}.{gone.physical_name}", "column removed", True))
    new_order = [c.physical_name for c in new.columns]
    kept = set(old_cols) & set(new_cols)
    for col in added:
        # an optional column is harmless at the end; in the middle it moves every column after it
        moves = any(n in kept for n in new_order[new_order.index(col.physical_name) + 1:])
        what = "new required column" if col.required else "new optional column"
        add(Change(f"{where}.{col.physical_name}", what + (" (moves the columns after it)" if moves else ""),
                   col.required or moves))
    kept_old = [c.physical_name for c in old.columns if c.physical_name in new_cols]
    kept_new = [c.physical_name for c in new.columns if c.physical_name in old_cols]
    if kept_old != kept_new:
        add(Change(where, "columns reordered (positional readers of CSV/XLSX break)", True))
    for name, col in new_cols.items():
        if name in old_cols:
            _column(changes, f"{where}.{name}", old_cols[name], col)
    old_q = {q.id: q for q in old.quality}
    new_q = {q.id: q for q in new.quality}
    for qid in sorted(old_q.keys() - new_q.keys()):
        add(Change(f"{where}.quality[{qid}]", "quality rule removed", False))
    for qid in sorted(new_q.keys() - old_q.keys()):
        add(Change(f"{where}.quality[{qid}]", "quality rule added (stricter)", True))
    for qid in sorted(old_q.keys() & new_q.keys()):
        a, b = old_q[qid], new_q[qid]
        if (a.type, a.metric, a.arguments, a.operator, a.operand, a.query) != (b.type, b.metric, b.arguments,
                                                                              b.operator, b.operand, b.query):
            add(Change(f"{where}.quality[{qid}]", "quality rule changed", True))


def _column(changes, where: str, old: ColumnSpec, new: ColumnSpec) -> None:
    add = changes.append
    if old.name != new.name:
        add(Change(where, f"renamed in exports: {old.name!r} -> {new.name!r}", True))
    if old.source != new.source:
        add(Change(where, f"now carries {new.source} instead of {old.source}", True))
    if old.logical_type != new.logical_type:
        widened = str(new.logical_type) in _WIDENS_TO.get(str(old.logical_type), set())
        add(Change(where, f"logicalType {old.logical_type} -> {new.logical_type} "
                          f"({'widened' if widened else 'narrowed or incompatible'})", not widened))
    if old.physical_type != new.physical_type:
        widened = str(new.physical_type) in _PHYSICAL_WIDENS_TO.get(str(old.physical_type), {str(old.physical_type)})
        add(Change(where, f"physicalType {old.physical_type} -> {new.physical_type}", not widened))
    if old.required != new.required:
        add(Change(where, "now required" if new.required else "no longer required", new.required))
    if old.unique != new.unique:
        add(Change(where, "now unique" if new.unique else "no longer unique", new.unique))
    _allowed(changes, where, old.allowed, new.allowed)
    _bounds(changes, where, old, new)
    if old.pattern != new.pattern:
        if new.pattern is None:
            add(Change(where, "pattern removed", False))
        else:
            add(Change(where, f"pattern {old.pattern!r} -> {new.pattern!r}", True))
    for attr, label, stricter in (("min_length", "minLength", lambda a, b: b > a),
                                  ("max_length", "maxLength", lambda a, b: b < a)):
        a, b = getattr(old, attr), getattr(new, attr)
        if a != b:
            strict = b is not None and (a is None or stricter(a, b))
            add(Change(where, f"{label} {a} -> {b}", strict))


def _allowed(changes, where, old, new) -> None:
    if old == new:
        return
    if new is None:
        changes.append(Change(where, "allowed values lifted", False))
    elif old is None:
        changes.append(Change(where, f"values now limited to {list(new)}", True))
    else:
        dropped = [v for v in old if v not in new]
        gained = [v for v in new if v not in old]
        if dropped:
            changes.append(Change(where, f"values no longer allowed: {dropped}", True))
        if gained:
            changes.append(Change(where, f"values now allowed: {gained}", False))


def _num(value):
    if value is None:
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        pass
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return str(number) if number.is_nan() else number


def _bounds(changes, where, old: ColumnSpec, new: ColumnSpec) -> None:
    """Compare lower and upper bounds as (value, inclusive): higher lows and lower highs are stricter."""
    for side, pairs in (("lower", (("minimum", True), ("exclusive_minimum", False))),
                        ("upper", (("maximum", True), ("exclusive_maximum", False)))):
        try:
            a = _effective(old, pairs, side)
            b = _effective(new, pairs, side)
            if a == b:
                continue
            if b is None:
                changes.append(Change(where, f"{side} bound {_show(a, side)} removed", False))
            elif a is None:
                changes.append(Change(where, f"new {side} bound {_show(b, side)}", True))
            else:
                stricter = _stricter(a, b, side)
                changes.append(Change(where, f"{side} bound {_show(a, side)} -> {_show(b, side)}", stricter))
        except TypeError:  # not numbers or dates, or a number against a date: cannot tell which is stricter
            declared = [[str(getattr(c, attr)) for attr, _ in pairs] for c in (old, new)]
            if declared[0] != declared[1]:
                changes.append(Change(where, f"{side} bound changed (not comparable): "
                                             f"{_declared(old, pairs)} -> {_declared(new, pairs)}", True))


def _effective(col, pairs, side):
    found = [(_num(getattr(col, attr)), inclusive) for attr, inclusive in pairs if getattr(col, attr) is not None]
    if not found:
        return None
    # the tightest of the declared bounds
    if side == "lower":
        return max(found, key=lambda b: (b[0], not b[1]))
    return min(found, key=lambda b: (b[0], b[1]))


def _stricter(a, b, side) -> bool:
    (va, ia), (vb, ib) = a, b
    if va != vb:
        return vb > va if side == "lower" else vb < va
    return ia and not ib  # inclusive -> exclusive at the same value


def _declared(col, pairs) -> str:
    return ", ".join(f"{attr} {getattr(col, attr)}" for attr, _ in pairs if getattr(col, attr) is not None) or "none"


def _show(bound, side: str) -> str:
    value, inclusive = bound
    op = (">=" if inclusive else ">") if side == "lower" else ("<=" if inclusive else "<")
    return f"{op} {value}"
