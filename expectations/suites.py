"""Great Expectations suites compiled from partner contracts, one per partner × report.

The suites are checked in under `expectations/suites/` (reviewable JSON, `rex contracts
compile` rewrites them, a test fails when one is stale) and run by the gate on the partner's
table as it will be published: physical column names, masked values. Every expectation's
`meta.rule` names the contract rule it enforces. The contract's SQL quality rules (and its
duplicateValues rules over several columns) are not GX expectations on a pandas batch; they
travel in the suite's `meta.rex_sql_checks` and the gate runs them in DuckDB on the exact data.
"""
from __future__ import annotations

import json
import os
from datetime import date
from decimal import Decimal

from contracts.model import Contract, ReportSpec
from transforms.partner_reports import MASK_PATTERN

SUITES_DIR = os.path.join(os.path.dirname(__file__), "suites")


def suite_name(partner: str, report: str) -> str:
    return f"{partner}.{report}"


def suite_path(partner: str, report: str, directory: str = SUITES_DIR) -> str:
    return os.path.join(directory, f"{suite_name(partner, report)}.json")


def _json_number(value):
    """Bounds as JSON numbers (int when whole), dates as ISO text."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (Decimal, int)) and not isinstance(value, bool):
        d = Decimal(str(value))
        return int(d) if d == d.to_integral_value() else float(d)
    return value


def _expectation(type_: str, rule: str, **kwargs) -> dict:
    return {"type": type_, "kwargs": kwargs, "meta": {"rule": rule}}


def compile_suite(contract: Contract, spec: ReportSpec) -> dict:
    """The suite of one partner × report, deterministic (same contract, same JSON)."""
    kind = spec.kind
    exps = [_expectation("expect_table_columns_to_match_ordered_list", f"{kind}.columns",
                         column_list=[c.physical_name for c in spec.columns])]
    for col in spec.columns:
        rule = f"{kind}.{col.source}"
        name = col.physical_name
        masked = contract.masked(col.source) is not None
        if col.required:
            exps.append(_expectation("expect_column_values_to_not_be_null", f"{rule}.required", column=name))
        if masked:  # values are pseudonyms now: check their form, not the original's rules
            exps.append(_expectation("expect_column_values_to_match_regex", f"{rule}.masked", column=name,
                                     regex=MASK_PATTERN))
            continue
        if col.required and col.logical_type == "string" and not (col.min_length or 0) >= 1:
            exps.append(_expectation("expect_column_value_lengths_to_be_between", f"{rule}.required", column=name,
                                     min_value=1))  # present and not empty (a minLength >= 1 says so already)
        if col.allowed is not None:
            exps.append(_expectation("expect_column_values_to_be_in_set", f"{rule}.allowed_values", column=name,
                                     value_set=[_json_number(v) for v in col.allowed]))
        bounds = {}
        if col.minimum is not None or col.exclusive_minimum is not None:
            strict = col.minimum is None
            bounds.update(min_value=_json_number(col.exclusive_minimum if strict else col.minimum), strict_min=strict)
        if col.maximum is not None or col.exclusive_maximum is not None:
            strict = col.maximum is None
            bounds.update(max_value=_json_number(col.exclusive_maximum if strict else col.maximum), strict_max=strict)
        if bounds:
            exps.append(_expectation("expect_column_values_to_be_between", f"{rule}.range", column=name, **bounds))
        if col.pattern is not None:
            exps.append(_expectation("expect_column_values_to_match_regex", f"{rule}.pattern", column=name,
                                     regex=col.pattern))
        if col.min_length is not None or col.max_length is not None:
            lengths = {k: v for k, v in (("min_value", col.min_length), ("max_value", col.max_length)) if v is not None}
            exps.append(_expectation("expect_column_value_lengths_to_be_between", f"{rule}.length", column=name,
                                     **lengths))
        if col.unique:
            exps.append(_expectation("expect_column_values_to_be_unique", f"{rule}.unique", column=name))
    sql = []
    for q in spec.quality:
        exps.extend(_library(kind, q))
        if q.type == "sql":
            sql.append({"id": q.id, "query": q.query, "operator": q.operator, "operand": _json_number(q.operand),
                        "description": q.description})
        elif _compound_duplicates(q):
            # hashing several columns in pandas is a third of the gate on a million rows; DuckDB
            # counts the same thing exactly in milliseconds
            cols = ", ".join('"' + c.replace('"', '""') + '"' for c in q.arguments["properties"])
            sql.append({"id": q.id, "query": f"SELECT count(*) - count(DISTINCT ({cols})) FROM ${{table}}",
                        "operator": q.operator, "operand": _json_number(q.operand),
                        "description": q.description or f"no two rows share ({cols})"})
    return {
        "name": suite_name(contract.partner, kind),
        "expectations": exps,
        "meta": {
            "generated_by": "rex contracts compile",
            "contract_id": contract.id,
            "contract_version": contract.version,
            "partner": contract.partner,
            "report": kind,
            "rex_sql_checks": sql,
        },
    }


def _library(kind: str, q) -> list[dict]:
    """ODCS library metrics as expectations (SQL rules are run by the gate itself)."""
    if q.type != "library":
        return []
    rule = f"{kind}.quality.{q.id}"
    columns = q.arguments.get("properties") or ([q.column] if q.column else [])
    if q.metric == "rowCount":
        bounds = _operator_bounds(q.operator, q.operand)
        return [_expectation("expect_table_row_count_to_be_between", rule, **bounds)] if bounds is not None else []
    if q.metric == "duplicateValues" and len(columns) == 1 and q.operator == "mustBe" and _json_number(q.operand) == 0:
        return [_expectation("expect_column_values_to_be_unique", rule, column=columns[0])]
    if q.metric in ("nullValues", "missingValues") and q.operator == "mustBe" and _json_number(q.operand) == 0:
        return [_expectation("expect_column_values_to_not_be_null", rule, column=c) for c in columns]
    if q.metric == "invalidValues" and q.operator == "mustBe" and _json_number(q.operand) == 0:
        if q.arguments.get("validValues"):
            return [_expectation("expect_column_values_to_be_in_set", rule, column=c,
                                 value_set=list(q.arguments["validValues"])) for c in columns]
        if q.arguments.get("pattern"):
            return [_expectation("expect_column_values_to_match_regex", rule, column=c,
                                 regex=q.arguments["pattern"]) for c in columns]
    return []


def _compound_duplicates(q) -> bool:
    """A duplicateValues rule over several columns (the gate counts those in DuckDB)."""
    columns = q.arguments.get("properties")
    return q.type == "library" and q.metric == "duplicateValues" and isinstance(columns, list) and len(columns) > 1


def _operator_bounds(operator, operand) -> dict | None:
    v = _json_number(operand)
    return {
        "mustBe": {"min_value": v, "max_value": v},
        "mustBeGreaterThan": {"min_value": v, "strict_min": True},
        "mustBeGreaterOrEqualTo": {"min_value": v},
        "mustBeLessThan": {"max_value": v, "strict_max": True},
        "mustBeLessOrEqualTo": {"max_value": v},
        "mustBeBetween": {"min_value": v[0], "max_value": v[1]} if isinstance(v, list) else None,
    }.get(operator)


def suite_json(suite: dict) -> str:
    return json.dumps(suite, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def compile_suites(contracts: dict[str, Contract]) -> dict[str, str]:
    """path -> JSON text of every partner × report suite."""
    out = {}
    for partner, contract in sorted(contracts.items()):
        for kind, spec in sorted(contract.reports.items()):
            out[suite_path(partner, kind)] = suite_json(compile_suite(contract, spec))
    return out


def write_suites(contracts: dict[str, Contract], directory: str = SUITES_DIR) -> list[str]:
    """Write every suite (and remove suites of reports no contract declares any more)."""
    os.makedirs(directory, exist_ok=True)
    texts = {os.path.join(directory, os.path.basename(p)): t for p, t in compile_suites(contracts).items()}
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.endswith(".json") and path not in texts:
            os.remove(path)
    for path, text in texts.items():
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return sorted(texts)


def load_suite(partner: str, report: str, directory: str = SUITES_DIR) -> dict:
    from transforms.errors import RexError

    path = suite_path(partner, report, directory)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise RexError(f"no expectation suite {path}; run `rex contracts compile`") from None


def checked_in_suite_problem(contract: Contract, spec: ReportSpec, compiled: dict | None = None,
                             directory: str = SUITES_DIR) -> str | None:
    """Why the checked-in suite of a shipped contract cannot be trusted (missing or stale), or None.

    Contracts from elsewhere (a test's, a partner's draft) have no checked-in suite to compare."""
    from contracts.model import PARTNERS_DIR

    if os.path.dirname(os.path.abspath(contract.file)) != os.path.abspath(PARTNERS_DIR):
        return None
    path = suite_path(contract.partner, spec.kind, directory)
    text = suite_json(compiled or compile_suite(contract, spec))
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return None
    except FileNotFoundError:
        return f"no checked-in suite {os.path.relpath(path)}; run `rex contracts compile`"
    return f"the checked-in suite {os.path.relpath(path)} is stale; run `rex contracts compile`"
