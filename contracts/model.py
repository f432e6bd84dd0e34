"""Partner contracts as rex reads them: ODCS v3 YAML -> `Contract`.

A contract is an ODCS v3 document (schema, quality, slaProperties) plus rex's terms as ODCS
`customProperties`: partnerId, coveredTreaties, columnNaming, settlementCurrency, fxRateDate,
rounding, exportFormats, lateChanges, masking. Each schema object is one rex report; each of
its properties is one column of the partner's report: `name` is the column as exported (e.g. a
Lloyd's CRS name), `physicalName` the warehouse column, `transformLogic` the rex report column
it carries (see `transforms/report_catalog.py`).

Loading never judges: `load_contract` keeps whatever it can read, so that `lint` can report
every problem with its field path and line. Numbers are read as `Decimal` (YAML floats too), so
a range such as `minimum: 0.1` is exact.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import yaml

from transforms.errors import RexError

PARTNERS_DIR = os.path.join(os.path.dirname(__file__), "partners")

CUSTOM_TERMS = ("partnerId", "coveredTreaties", "columnNaming", "settlementCurrency", "fxRateDate",
                "rounding", "exportFormats", "lateChanges", "masking")
FX_RATE_DATES = ("booked_date", "period_end")
ROUNDING_MODES = ("half_up", "half_even")
EXPORT_FORMATS = ("csv", "parquet", "xlsx")
LATE_CHANGES = ("next_period", "restate")
FREQUENCIES = ("monthly", "quarterly")
CUT_OFFS = ("period_end",)
MASKING_METHODS = ("hmac_sha256",)


class ContractError(RexError):
    """A contract file cannot be read at all (missing, not YAML, not a mapping)."""

    line: int | None = None  # where the YAML stops parsing, if it does


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML with exact decimals: floats become Decimal, never a binary float (libyaml's parser
    where PyYAML has it: the pure-Python one took a fifth of a second per contract)."""


def _decimal(loader, node):
    text = loader.construct_scalar(node).replace("_", "")
    if text.lower() in (".inf", "+.inf", "-.inf", ".nan"):
        return Decimal(text.replace(".", "").replace("inf", "Infinity").replace("nan", "NaN"))
    return Decimal(text)


_Loader.add_constructor("tag:yaml.org,2002:float", _decimal)


def read_yaml(path: str) -> tuple[Any, dict[tuple, int]]:
    """The document and the line (1-based) of every field path in it."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ContractError(f"cannot read contract {path}: {e.strerror}") from e
    try:
        loader = _Loader(text)  # one parse: the nodes give the lines, the document is built from them
        try:
            node = loader.get_single_node()
            doc = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        error = ContractError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})")
        error.line = mark.line + 1 if mark else None
        raise error from e
    lines: dict[tuple, int] = {}
    _index_lines(node, (), lines)
    return doc, lines


def _index_lines(node, path: tuple, lines: dict) -> None:
    if node is None:
        return
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            lines[path + (k,)] = key.start_mark.line + 1
            _index_lines(value, path + (k,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, path + (i,), lines)


def field_path(path) -> str:
    """('schema', 0, 'properties', 3, 'name') -> 'schema[0].properties[3].name'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a partner report, with the checks its contract puts on it."""

    name: str  # as exported
    physical_name: str  # in the warehouse
    source: str | None  # the rex report column (transformLogic)
    logical_type: str | None
    physical_type: str | None
    required: bool
    unique: bool
    allowed: tuple | None  # enum values
    minimum: Any = None
    maximum: Any = None
    exclusive_minimum: Any = None
    exclusive_maximum: Any = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    path: tuple = ()

    @property
    def has_range(self) -> bool:
        return any(v is not None for v in (self.minimum, self.maximum, self.exclusive_minimum,
                                           self.exclusive_maximum))


@dataclass(frozen=True)
class QualitySpec:
    """An ODCS quality rule on a whole report (library metric or SQL)."""

    id: str
    type: str  # library | sql
    metric: str | None
    arguments: dict
    operator: str | None  # mustBe, mustBeGreaterThan, …
    operand: Any
    query: str | None
    description: str
    column: str | None  # physical name, for a rule declared on a property
    path: tuple = ()


@dataclass(frozen=True)
class ReportSpec:
    kind: str  # the schema object's name: a rex report kind
    physical_name: str
    columns: tuple[ColumnSpec, ...]
    quality: tuple[QualitySpec, ...]
    path: tuple = ()

    def column(self, physical_name: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.physical_name == physical_name), None)

    def by_source(self, source: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.source == source), None)


@dataclass(frozen=True)
class MaskingSpec:
    column: str  # the rex column (transformLogic) whose values are masked
    method: str
    key_env: str | None


@dataclass(frozen=True)
class Contract:
    file: str
    doc: dict
    lines: dict
    id: str | None
    partner: str | None
    version: str | None
    status: str | None
    covered_treaties: tuple[str, ...]
    column_naming: str | None
    settlement_currency: str | None
    fx_rate_date: str | None
    rounding: str | None
    export_formats: tuple[str, ...]
    late_changes: str | None
    masking: tuple[MaskingSpec, ...]
    frequency: str | None
    cut_off: str | None
    grace_days: Any
    time_of_availability: str | None
    reports: dict[str, ReportSpec] = field(default_factory=dict)

    def line(self, path: tuple) -> int | None:
        """The line of a field path, or of its nearest ancestor that exists."""
        path = tuple(path)
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path)

    def custom_path(self, term: str) -> tuple:
        return _term_path(self.doc, "customProperties", term)

    def custom_value(self, term: str):
        """A custom term's value as written (before `load_contract` kept what it could use)."""
        return _terms(self.doc.get("customProperties")).get(term)

    def sla_path(self, term: str) -> tuple:
        return _term_path(self.doc, "slaProperties", term)

    def masked(self, source: str) -> MaskingSpec | None:
        return next((m for m in self.masking if m.column == source), None)

    def covers(self, treaty_id: str) -> bool:
        return any(treaty_matches(pattern, treaty_id) for pattern in self.covered_treaties)


def treaty_matches(pattern: str, treaty_id: str) -> bool:
    """`QS-PROP-USD-*` covers every underwriting year of the programme; else an exact id."""
    if pattern.endswith("*"):
        return treaty_id.startswith(pattern[:-1])
    return treaty_id == pattern


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _terms(items) -> dict[str, Any]:
    """property -> value; a term given twice takes its last value (as `_term_path` points to)."""
    return {p.get("property"): p.get("value") for p in _list(items)
            if isinstance(p, dict) and isinstance(p.get("property"), str)}


def _term_path(doc: dict, section: str, term: str) -> tuple:
    """The field path of the value `_terms` reads for a term: its last occurrence."""
    found = (section,)
    for i, p in enumerate(_list(doc.get(section))):
        if isinstance(p, dict) and p.get("property") == term:
            found = (section, i, "value")
    return found


def _strs(value) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _opt(options: dict, key: str):
    value = options.get(key)
    if isinstance(value, date):  # YAML reads an unquoted 2026-01-01 as a date
        return value.isoformat()
    return value


def _column(prop: dict, path: tuple) -> ColumnSpec:
    options = _dict(prop.get("logicalTypeOptions"))
    enum = prop.get("enum")
    allowed = None
    if isinstance(enum, list):
        allowed = tuple(e.get("value") if isinstance(e, dict) else e for e in enum)
    name = prop.get("name")
    return ColumnSpec(
        name=str(name) if name is not None else "",
        physical_name=str(prop.get("physicalName") or name or ""),
        source=prop.get("transformLogic"),
        logical_type=prop.get("logicalType"),
        physical_type=prop.get("physicalType"),
        required=prop.get("required") is True,
        unique=prop.get("unique") is True,
        allowed=allowed,
        minimum=_opt(options, "minimum"),
        maximum=_opt(options, "maximum"),
        exclusive_minimum=_opt(options, "exclusiveMinimum"),
        exclusive_maximum=_opt(options, "exclusiveMaximum"),
        pattern=options.get("pattern"),
        min_length=options.get("minLength"),
        max_length=options.get("maxLength"),
        path=path,
    )


_OPERATORS = ("mustBe", "mustNotBe", "mustBeGreaterThan", "mustBeGreaterOrEqualTo", "mustBeLessThan",
              "mustBeLessOrEqualTo", "mustBeBetween", "mustNotBeBetween")


def _quality(rule: dict, path: tuple, column: str | None, index: int, report: str) -> QualitySpec:
    operator = next((op for op in _OPERATORS if op in rule), None)
    return QualitySpec(
        id=str(rule.get("id") or f"{report}_{column or 'table'}_quality_{index}"),
        type=str(rule.get("type") or ("library" if "metric" in rule else "text")),
        metric=rule.get("metric") or rule.get("rule"),
        arguments=_dict(rule.get("arguments")),
        operator=operator,
        operand=rule.get(operator) if operator else None,
        query=rule.get("query"),
        description=str(rule.get("description") or ""),
        column=column,
        path=path,
    )


def _report(obj: dict, path: tuple) -> ReportSpec:
    kind = str(obj.get("name") or "")
    columns, quality = [], []
    for i, prop in enumerate(_list(obj.get("properties"))):
        if not isinstance(prop, dict):
            continue
        col = _column(prop, path + ("properties", i))
        columns.append(col)
        for j, rule in enumerate(_list(prop.get("quality"))):
            if isinstance(rule, dict):
                quality.append(_quality(rule, path + ("properties", i, "quality", j), col.physical_name, j, kind))
    for j, rule in enumerate(_list(obj.get("quality"))):
        if isinstance(rule, dict):
            quality.append(_quality(rule, path + ("quality", j), None, j, kind))
    return ReportSpec(kind, str(obj.get("physicalName") or kind), tuple(columns), tuple(quality), path)


def load_contract(path: str) -> Contract:
    """Read a contract file; only a file that is not a YAML mapping is an error here."""
    doc, lines = read_yaml(path)
    if not isinstance(doc, dict):
        raise ContractError(f"{path}: a contract is a YAML mapping (an ODCS DataContract document)")
    custom = _terms(doc.get("customProperties"))
    sla = _terms(doc.get("slaProperties"))
    masking = []
    for m in _list(custom.get("masking")):
        if isinstance(m, dict):
            key_env = m.get("keyEnv")
            masking.append(MaskingSpec(str(m.get("column")), str(m.get("method")),
                                       str(key_env) if key_env is not None else None))
    reports = {}
    for i, obj in enumerate(_list(doc.get("schema"))):
        if isinstance(obj, dict):
            spec = _report(obj, ("schema", i))
            reports.setdefault(spec.kind, spec)
    version = doc.get("version")
    return Contract(
        file=path, doc=doc, lines=lines, id=doc.get("id"), partner=custom.get("partnerId"),
        version=str(version) if version is not None else None, status=doc.get("status"),
        covered_treaties=_strs(custom.get("coveredTreaties")), column_naming=custom.get("columnNaming"),
        settlement_currency=custom.get("settlementCurrency"), fx_rate_date=custom.get("fxRateDate"),
        rounding=custom.get("rounding"), export_formats=_strs(custom.get("exportFormats")),
        late_changes=custom.get("lateChanges"), masking=tuple(masking), frequency=sla.get("frequency"),
        cut_off=sla.get("cutOff"), grace_days=sla.get("gracePeriod"),
        time_of_availability=sla.get("timeOfAvailability"), reports=reports,
    )


def contract_files(directory: str = PARTNERS_DIR) -> list[str]:
    if not os.path.isdir(directory):
        raise ContractError(f"contract folder {directory} does not exist")
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith((".yaml", ".yml")))


def load_partner_contracts(directory: str = PARTNERS_DIR) -> dict[str, Contract]:
    """Every partner's contract, by partner id; contracts that fail lint are refused."""
    from contracts.lint import lint_contract

    out = {}
    for path in contract_files(directory):
        contract = load_contract(path)
        problems = [p for p in lint_contract(contract) if p.severity == "error"]
        if problems:
            raise ContractError(f"{problems[0]} (run `rex contracts lint` for all problems)")
        if contract.partner in out:
            raise ContractError(f"{path}: a second contract for {contract.partner}")
        out[contract.partner] = contract
    return out
