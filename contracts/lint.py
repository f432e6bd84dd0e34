"""`rex contracts lint`: is a contract valid ODCS v3, and can rex honour it?

Two layers, each problem reported as `file:line: field.path: reason [rule]`:
1. the ODCS v3 JSON schema (shipped by PyPI's `open-data-contract-standard`), checked offline;
2. rex's own rules: every report and column exists in rex's catalog, types agree with the
   column's kind, currency codes are ISO 4217, terms take values rex knows, ranges and
   patterns make sense, quality rules name real columns — and, given the ledger, the partner
   is a reinsurer and the covered treaties exist and carry its participation.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib.resources import files

from contracts.model import (
    CUT_OFFS,
    EXPORT_FORMATS,
    FREQUENCIES,
    FX_RATE_DATES,
    LATE_CHANGES,
    MASKING_METHODS,
    ROUNDING_MODES,
    Contract,
    ContractError,
    field_path,
    load_contract,
    treaty_matches,
)
from transforms.currencies import ISO_CURRENCIES
from transforms.report_catalog import LOGICAL_TYPES, REPORTS

PHYSICAL_TYPES = {  # BigQuery types a logical type may be stored as
    "string": ("STRING",),
    "number": ("NUMERIC", "BIGNUMERIC"),
    "integer": ("INT64",),
    "date": ("DATE",),
    "timestamp": ("TIMESTAMP",),
    "boolean": ("BOOL",),
}
CURRENCY_SOURCES = ("original_currency", "currency", "LocCurrency", "AccCurrency")
_BQ_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


@dataclass(frozen=True)
class LintProblem:
    file: str
    line: int | None
    path: str
    rule: str
    reason: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.reason} [{self.rule}]"


@dataclass(frozen=True)
class LedgerFacts:
    """What lint checks partners and treaties against: the ledger mirror's reference data."""

    reinsurers: frozenset[str]
    treaties: dict[str, str]  # TreatyId -> TreatyType
    participations: frozenset[tuple[str, str]]  # (TreatyId, ReinsurerId)


def ledger_facts(warehouse_uri: str) -> LedgerFacts | None:
    """The reference data of a warehouse mirror, or None if it holds no ledger yet."""
    from transforms.warehouse import open_warehouse

    with open_warehouse(warehouse_uri) as wh:
        reinsurers = {r[0] for r in wh.rows("SELECT ReinsurerId FROM rex_ledger.Reinsurers")}
        if not reinsurers:
            return None
        treaties = dict(wh.rows("SELECT TreatyId, TreatyType FROM rex_ledger.Treaties"))
        parts = {(t, r) for t, r in wh.rows("SELECT TreatyId, ReinsurerId FROM rex_ledger.Participations")}
    return LedgerFacts(frozenset(reinsurers), treaties, frozenset(parts))


@cache
def _odcs_validator():
    import jsonschema

    schema = json.loads(files("open_data_contract_standard").joinpath("schema.json").read_text())
    return jsonschema.Draft201909Validator(schema)


def _jsonable(value):
    """YAML dates and Decimals as JSON schema sees them in a JSON document."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
    return value


class _Linter:
    def __init__(self, contract: Contract, ledger: LedgerFacts | None):
        self.c = contract
        self.ledger = ledger
        self.problems: list[LintProblem] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, path: tuple, rule: str, reason: str, severity: str = "error") -> None:
        key = (field_path(path), reason)
        if key in self._seen:
            return
        self._seen.add(key)
        self.problems.append(LintProblem(self.c.file, self.c.line(path), field_path(path), rule, reason, severity))

    # -- 1. ODCS ---------------------------------------------------------------------------
    def odcs(self) -> None:
        for error in _odcs_validator().iter_errors(_jsonable(self.c.doc)):
            self.add(tuple(error.absolute_path), "odcs_schema", f"ODCS v3: {error.message}")

    # -- 2. rex terms ------------------------------------------------------------------------
    def terms(self) -> None:
        c = self.c
        import os

        stem = os.path.splitext(os.path.basename(c.file))[0]
        if not c.partner:
            self.add(c.custom_path("partnerId"), "partner_id", "customProperties must name the partnerId")
        elif not isinstance(c.partner, str):
            self.add(c.custom_path("partnerId"), "partner_id", f"partnerId {c.partner!r} must be a string")
        else:
            if stem != c.partner:
                self.add(c.custom_path("partnerId"), "partner_id",
                         f"partnerId {c.partner!r} does not match the file name {stem}.yaml")
            if self.ledger and c.partner not in self.ledger.reinsurers:
                self.add(c.custom_path("partnerId"), "partner_id",
                         f"{c.partner} is not a reinsurer in the ledger "
                         f"(known: {', '.join(sorted(self.ledger.reinsurers))})")
        if c.version is None or not _SEMVER.match(c.version):
            self.add(("version",), "contract_version", f"version {c.version!r} is not semantic (MAJOR.MINOR.PATCH)")
        self._treaties()
        if not isinstance(c.settlement_currency, str) or c.settlement_currency not in ISO_CURRENCIES:
            self.add(c.custom_path("settlementCurrency"), "currency_code",
                     f"settlementCurrency {c.settlement_currency!r} is not an ISO 4217 currency code")
        self._choice("fxRateDate", c.fx_rate_date, FX_RATE_DATES, "fx_rate_date")
        self._choice("rounding", c.rounding, ROUNDING_MODES, "rounding_mode")
        self._choice("lateChanges", c.late_changes, LATE_CHANGES, "late_changes")
        if not c.export_formats:
            self.add(c.custom_path("exportFormats"), "export_format", "exportFormats must list at least one format")
        for i, fmt in enumerate(c.export_formats):
            if fmt not in EXPORT_FORMATS:
                self.add(c.custom_path("exportFormats") + (i,), "export_format",
                         f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
        self._sla()
        self._masking()

    def _choice(self, term: str, value, allowed, rule: str) -> None:
        if value not in allowed:
            self.add(self.c.custom_path(term), rule, f"{term} {value!r} is not one of {', '.join(allowed)}")

    def _treaties(self) -> None:
        c = self.c
        path = c.custom_path("coveredTreaties")
        if not c.covered_treaties:
            self.add(path, "covered_treaties", "coveredTreaties must list treaty ids or programmes (e.g. QS-PROP-USD-*)")
            return
        if not self.ledger:
            return
        for i, pattern in enumerate(c.covered_treaties):
            matched = [t for t in self.ledger.treaties if treaty_matches(pattern, t)]
            if not matched:
                self.add(path + (i,), "covered_treaties", f"treaty {pattern} is not in the ledger")
            elif isinstance(c.partner, str) and c.partner and not any(
                    (t, c.partner) in self.ledger.participations for t in matched):
                self.add(path + (i,), "covered_treaties",
                         f"{c.partner} has no participation in treaty {pattern}")

    def _sla(self) -> None:
        c = self.c
        if c.frequency not in FREQUENCIES:
            self.add(c.sla_path("frequency"), "sla", f"frequency {c.frequency!r} is not one of {', '.join(FREQUENCIES)}")
        if c.cut_off not in CUT_OFFS:
            self.add(c.sla_path("cutOff"), "sla", f"cutOff {c.cut_off!r} is not one of {', '.join(CUT_OFFS)}")
        grace = c.grace_days
        if isinstance(grace, bool) or not isinstance(grace, int) or grace < 0:
            self.add(c.sla_path("gracePeriod"), "sla", f"gracePeriod {grace!r} must be a whole number of days >= 0")
        if not isinstance(c.time_of_availability, str) or not _TIME.match(c.time_of_availability):
            self.add(c.sla_path("timeOfAvailability"), "sla",
                     f"timeOfAvailability {c.time_of_availability!r} must be a UTC time HH:MM")

    def _masking(self) -> None:
        c = self.c
        base = c.custom_path("masking")
        sources = {col.source for r in c.reports.values() for col in r.columns if isinstance(col.source, str)}
        raw = c.custom_value("masking")
        if raw is not None and not isinstance(raw, list):
            self.add(base, "masking", "masking must be a list of {column, method, keyEnv}")
        entries = iter(c.masking)  # the mapping entries of `raw`, in order
        for i, item in enumerate(raw if isinstance(raw, list) else []):
            if not isinstance(item, dict):
                self.add(base + (i,), "masking", f"masking entry {item!r} is not a mapping of column, method, keyEnv")
                continue
            m = next(entries)
            if m.column not in sources:
                self.add(base + (i, "column"), "masking", f"masking names {m.column}, which no report of the contract carries")
            if m.method not in MASKING_METHODS:
                self.add(base + (i, "method"), "masking", f"masking method {m.method!r} is not one of {', '.join(MASKING_METHODS)}")
            if not m.key_env or not _ENV_NAME.match(str(m.key_env)):
                self.add(base + (i, "keyEnv"), "masking", "a keyed hash needs keyEnv, the environment variable holding its key")

    # -- 3. reports and columns ------------------------------------------------------------------
    def reports(self) -> None:
        if not self.c.reports:
            self.add(("schema",), "unknown_report", "the contract declares no report")
        schema = self.c.doc.get("schema")
        declared: dict[str, int] = {}
        for i, obj in enumerate(schema if isinstance(schema, list) else []):
            if isinstance(obj, dict):  # load_contract keeps the first of a report declared twice
                kind = str(obj.get("name") or "")
                if kind in declared:
                    self.add(("schema", i, "name"), "duplicate_report",
                             f"report {kind!r} is declared twice (schema[{declared[kind]}] and schema[{i}])")
                declared.setdefault(kind, i)
        for kind, spec in self.c.reports.items():
            definition = REPORTS.get(kind)
            if definition is None:
                self.add(spec.path + ("name",), "unknown_report",
                         f"{kind!r} is not a rex report (one of {', '.join(REPORTS)})")
                continue
            names, physical = set(), set()
            for col in spec.columns:
                p = col.path
                if col.name in names:
                    self.add(p + ("name",), "duplicate_column", f"column {col.name!r} appears twice in {kind}")
                if col.physical_name in physical:
                    self.add(p + ("physicalName",), "duplicate_column",
                             f"physicalName {col.physical_name!r} appears twice in {kind}")
                names.add(col.name)
                physical.add(col.physical_name)
                if not _BQ_COLUMN.match(col.physical_name):
                    self.add(p + ("physicalName",), "physical_name",
                             f"physicalName {col.physical_name!r} is not a BigQuery column name (letters, digits, _)")
                self._column(kind, definition, col)
            for rule in spec.quality:
                self._quality(kind, spec, rule)

    def _column(self, kind, definition, col) -> None:
        p = col.path
        source = definition.column(col.source) if isinstance(col.source, str) else None
        if source is None:
            self.add(p + ("transformLogic",), "unknown_column",
                     f"transformLogic {col.source!r} is not a column of rex's {kind} "
                     f"(one of {', '.join(definition.names)})")
            return
        allowed = LOGICAL_TYPES[source.kind]
        if col.logical_type not in allowed:
            self.add(p + ("logicalType",), "type_mismatch",
                     f"{col.name}: logicalType {col.logical_type!r} cannot carry {col.source} "
                     f"({source.kind}); use {' or '.join(allowed)}")
        elif col.physical_type is not None and col.physical_type not in PHYSICAL_TYPES.get(col.logical_type, ()):
            self.add(p + ("physicalType",), "type_mismatch",
                     f"{col.name}: physicalType {col.physical_type} does not store logicalType {col.logical_type} "
                     f"(use {' or '.join(PHYSICAL_TYPES.get(col.logical_type, ('?',)))})")
        self._values(col)

    def _values(self, col) -> None:
        p, lt = col.path, col.logical_type
        if col.allowed is not None:
            for i, value in enumerate(col.allowed):
                if not _fits(lt, value):
                    self.add(p + ("enum", i, "value"), "enum_values", f"{col.name}: allowed value {value!r} is not a {lt}")
                elif col.source in CURRENCY_SOURCES and (not isinstance(value, str) or value not in ISO_CURRENCIES):
                    self.add(p + ("enum", i, "value"), "currency_code",
                             f"{col.name}: {value!r} is not an ISO 4217 currency code")
        bounds = {"minimum": col.minimum, "maximum": col.maximum, "exclusiveMinimum": col.exclusive_minimum,
                  "exclusiveMaximum": col.exclusive_maximum}
        parsed = {}
        for key, value in bounds.items():
            if value is None:
                continue
            if lt not in ("number", "integer", "date"):
                self.add(p + ("logicalTypeOptions", key), "range", f"{col.name}: a {lt} column takes no {key}")
                continue
            v = _bound(lt, value)
            if v is None:
                self.add(p + ("logicalTypeOptions", key), "range", f"{col.name}: {key} {value!r} is not a {lt}")
            else:
                parsed[key] = v
        lo = [parsed[k] for k in ("minimum", "exclusiveMinimum") if k in parsed]
        hi = [parsed[k] for k in ("maximum", "exclusiveMaximum") if k in parsed]
        if lo and hi and max(lo) > min(hi):
            self.add(p + ("logicalTypeOptions",), "range", f"{col.name}: the range is empty (minimum above maximum)")
        if col.pattern is not None and not isinstance(col.pattern, str):
            self.add(p + ("logicalTypeOptions", "pattern"), "pattern", f"{col.name}: pattern {col.pattern!r} is not a string")
        elif col.pattern is not None:
            try:
                re.compile(col.pattern)
            except re.error as e:
                self.add(p + ("logicalTypeOptions", "pattern"), "pattern", f"{col.name}: pattern does not compile ({e})")
        if (col.min_length is not None and col.max_length is not None and isinstance(col.min_length, int)
                and isinstance(col.max_length, int) and col.min_length > col.max_length):
            self.add(p + ("logicalTypeOptions",), "range", f"{col.name}: minLength is above maxLength")

    def _quality(self, kind, spec, rule) -> None:
        p = rule.path
        physical = {c.physical_name for c in spec.columns}
        if rule.type == "library":
            names = rule.arguments.get("properties") or ([rule.column] if rule.column else [])
            for name in names if isinstance(names, list) else [names]:
                if not isinstance(name, str) or name not in physical:
                    self.add(p + ("arguments", "properties"), "quality_rule",
                             f"quality rule {rule.id} names {name!r}, which is not a column of {kind}")
            if rule.metric in ("nullValues", "missingValues", "invalidValues") and not names:
                self.add(p, "quality_rule", f"quality rule {rule.id}: {rule.metric} needs a column")
            if rule.metric == "invalidValues" and not (rule.arguments.get("validValues") or rule.arguments.get("pattern")):
                self.add(p + ("arguments",), "quality_rule", f"quality rule {rule.id}: invalidValues needs validValues or pattern")
        elif rule.type == "sql":
            if not isinstance(rule.query, str) or "${table}" not in rule.query:
                self.add(p + ("query",), "quality_rule", f"quality rule {rule.id}: the query must read ${{table}}")
            elif not re.match(r"^\s*(SELECT|WITH)\b", rule.query, re.IGNORECASE):
                self.add(p + ("query",), "quality_rule", f"quality rule {rule.id}: the query must be one SELECT")
        if rule.type in ("library", "sql") and rule.operator is None:
            self.add(p, "quality_rule", f"quality rule {rule.id} has no mustBe… operator")


def _fits(logical_type, value) -> bool:
    if logical_type == "string":
        return isinstance(value, str)
    if logical_type in ("number", "integer"):
        return isinstance(value, (int, Decimal)) and not isinstance(value, bool)
    if logical_type == "date":
        return _bound("date", value) is not None
    return True


def _bound(logical_type, value):
    if logical_type == "date":
        try:
            return date.fromisoformat(value.isoformat() if isinstance(value, date) else str(value))
        except ValueError:
            return None
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return None if number.is_nan() else number


def lint_contract(contract: Contract, ledger: LedgerFacts | None = None) -> list[LintProblem]:
    """Every problem of one contract (ODCS first, then rex's rules)."""
    linter = _Linter(contract, ledger)
    linter.odcs()
    linter.terms()
    linter.reports()
    return linter.problems


def lint_paths(paths: list[str], ledger: LedgerFacts | None = None) -> list[LintProblem]:
    """Lint files; a file that cannot be read at all is one problem, not a crash."""
    problems: list[LintProblem] = []
    partners: dict[str, str] = {}
    for path in paths:
        try:
            contract = load_contract(path)
        except ContractError as e:
            problems.append(LintProblem(path, e.line, "(document)", "yaml", str(e).split(": ", 1)[-1]))
            continue
        problems.extend(lint_contract(contract, ledger))
        if isinstance(contract.partner, str) and contract.partner in partners:
            where = contract.custom_path("partnerId")
            problems.append(LintProblem(path, contract.line(where), field_path(where),
                                        "partner_id", f"{contract.partner} already has a contract in {partners[contract.partner]}"))
        elif isinstance(contract.partner, str) and contract.partner:
            partners[contract.partner] = path
    return problems
