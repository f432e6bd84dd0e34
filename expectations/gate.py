"""The publication gate: a partner × report × period is published only if its suite passes.

The suite (expectations/suites.py) runs in Great Expectations on the whole batch, as it would
be published; the contract's SQL quality rules run in DuckDB on the same batch. GX gets the
money and share columns as float64 *copies*: its range checks need numbers and converting
a million exact decimals into Python objects alone would blow the gate's time budget. Nothing
published or reconciled is ever computed from those copies — the exact checks (each row's
bounds in the row checks, the SQL identities here, the control totals) run on DECIMAL.

Every gate writes an HTML validation report; the run records its outcome either way.
"""
from __future__ import annotations

import html
import logging
import os
import warnings
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import cache

import pyarrow as pa

from transforms import duck


@dataclass
class CheckOutcome:
    rule: str
    check: str  # expectation type, or "sql"
    column: str | None
    success: bool
    observed: str  # what was found, for people
    unexpected: list = field(default_factory=list)


@dataclass
class GateResult:
    partner: str
    report: str
    period: str
    rows: int
    outcomes: list[CheckOutcome]

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failures(self) -> list[CheckOutcome]:
        return [o for o in self.outcomes if not o.success]

    def summary(self) -> str:
        if self.success:
            return f"{self.partner} {self.report} {self.period}: {len(self.outcomes)} checks passed on {self.rows} rows"
        first = self.failures[0]
        return (f"{self.partner} {self.report} {self.period}: {len(self.failures)} of {len(self.outcomes)} checks "
                f"failed, first {first.rule} ({first.observed})")


@cache
def _context():
    """One ephemeral GX context per process: building one costs more than a validation."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx

    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False, "profilers": False}
    batch = context.data_sources.add_pandas("rex").add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")
    return gx, context, batch


_EPOCH = date(1970, 1, 1)


def _frame(table: pa.Table):
    """The batch as pandas for GX: decimals as float64 copies (see the module docstring), dates
    as day numbers (GX compares date objects with a Python call per value: seconds per million)."""
    cols = {}
    for f in table.schema:
        col = table[f.name]
        if pa.types.is_decimal(f.type):
            col = col.cast(pa.float64())
        elif pa.types.is_date(f.type):
            col = col.cast(pa.int32()).cast(pa.int64())  # int64: GX only vectorises int64 and float64
        cols[f.name] = col
    return pa.table(cols).to_pandas()


def _day_number(value):
    return (date.fromisoformat(value) - _EPOCH).days if isinstance(value, str) else value


def _for_frame(expectation: dict, date_columns: set[str]) -> dict:
    """An expectation as it must read the frame: date bounds as day numbers too."""
    kwargs = expectation["kwargs"]
    if kwargs.get("column") in date_columns and expectation["type"] == "expect_column_values_to_be_between":
        kwargs = {k: (_day_number(v) if k in ("min_value", "max_value") else v) for k, v in kwargs.items()}
        return {**expectation, "kwargs": kwargs}
    return expectation


def _shown(value, is_date: bool):
    if is_date and isinstance(value, (int, float)) and value == value:
        return (_EPOCH + timedelta(days=int(value))).isoformat()
    return _plain(value)


def _validate(indexed: list[tuple[int, dict]], name: str, frame, result_format: str) -> dict:
    """Run (position, expectation) pairs; results by position."""
    gx, context, batch = _context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gx_suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=[
            dict(type=e["type"], kwargs=e["kwargs"], meta={**e.get("meta", {}), "rex_index": i})
            for i, e in indexed]))
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch, suite=gx_suite))
        return _indexed(definition.run(batch_parameters={"dataframe": frame}, result_format=result_format).results)


def _indexed(results) -> dict[int, object]:
    """Results by the position `_validate` stamped into each expectation's meta."""
    return {int(r.expectation_config.meta["rex_index"]): r for r in results}


def run_gx(suite: dict, table: pa.Table) -> list[CheckOutcome]:
    """The suite on the batch: a pass/fail sweep first, then details for what failed only
    (collecting unexpected values for 50 passing expectations costs a fifth of the gate)."""
    frame = _frame(table)
    dates = {f.name for f in table.schema if pa.types.is_date(f.type)}
    expectations = [_for_frame(e, dates) for e in suite["expectations"]]
    verdicts = _validate(list(enumerate(expectations)), suite["name"], frame, "BOOLEAN_ONLY")
    failed = [(i, e) for i, e in enumerate(expectations) if not verdicts[i].success]
    if failed:
        verdicts.update(_validate(failed, suite["name"] + ".failures", frame, "SUMMARY"))
    outcomes = []
    for i in range(len(expectations)):  # in suite order (GX returns results in its own order)
        r = verdicts[i]
        cfg = r.expectation_config
        res = r.result or {}
        exc = r.exception_info or {}
        if exc.get("raised_exception"):
            observed = f"error: {str(exc.get('exception_message')).splitlines()[0]}"
        elif res.get("unexpected_count") is not None:
            observed = f"{res.get('unexpected_count')} unexpected of {res.get('element_count')}"
        elif res.get("observed_value") is not None:
            observed = f"observed {res.get('observed_value')!r}"
        else:
            observed = "as expected" if r.success else "not as expected"
        outcomes.append(CheckOutcome(
            rule=(cfg.meta or {}).get("rule", cfg.type), check=cfg.type, column=cfg.kwargs.get("column"),
            success=bool(r.success), observed=observed,
            unexpected=[_shown(v, cfg.kwargs.get("column") in dates)
                        for v in (res.get("partial_unexpected_list") or [])[:10]],
        ))
    return outcomes


def _plain(value):
    if isinstance(value, float) and value != value:
        return None
    return value if isinstance(value, (str, int, float, type(None))) else str(value)


_COMPARE = {
    "mustBe": lambda v, x: v == x,
    "mustNotBe": lambda v, x: v != x,
    "mustBeGreaterThan": lambda v, x: v > x,
    "mustBeGreaterOrEqualTo": lambda v, x: v >= x,
    "mustBeLessThan": lambda v, x: v < x,
    "mustBeLessOrEqualTo": lambda v, x: v <= x,
    "mustBeBetween": lambda v, x: x[0] <= v <= x[1],
    "mustNotBeBetween": lambda v, x: not (x[0] <= v <= x[1]),
}


def run_sql_checks(suite: dict, table: pa.Table) -> list[CheckOutcome]:
    """The contract's SQL quality rules on the exact batch (`${table}` is the batch)."""
    checks = suite.get("meta", {}).get("rex_sql_checks", [])
    if not checks:
        return []
    con = duck.connect()
    out = []
    try:
        con.register("batch", table)
        for check in checks:
            rule = f"{suite['meta']['report']}.quality.{check['id']}"
            try:
                value = con.execute(check["query"].replace("${table}", "batch")).fetchall()[0][0]
                operand = check["operand"]
                operand = [Decimal(str(x)) for x in operand] if isinstance(operand, list) else Decimal(str(operand))
                ok = value is not None and _COMPARE[check["operator"]](Decimal(str(value)), operand)
                observed = f"query returned {value} ({check['operator']} {check['operand']})"
            except Exception as e:  # a broken query fails the gate, it does not crash the run
                ok, observed = False, f"error: {str(e).splitlines()[0]}"
            out.append(CheckOutcome(rule, "sql", None, ok, observed))
    finally:
        con.close()
    return out


def run_gate(suite: dict, table: pa.Table, partner: str, report: str, period: str) -> GateResult:
    outcomes = run_gx(suite, table) + run_sql_checks(suite, table)
    return GateResult(partner, report, period, table.num_rows, outcomes)


def write_html(results: list[GateResult], path: str, title: str) -> str:
    """A self-contained validation report: one section per partner × report × period."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
        ".ok{color:#0a0}.fail{color:#c00;font-weight:bold}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for r in results:
        status = "<span class='ok'>passed</span>" if r.success else "<span class='fail'>FAILED</span>"
        parts.append(f"<h2>{html.escape(r.partner)} · {html.escape(r.report)} · {html.escape(r.period)}: "
                     f"{status} ({r.rows} rows)</h2>")
        parts.append("<table><tr><th>rule</th><th>check</th><th>column</th><th>result</th>"
                     "<th>observed</th><th>sample of unexpected values</th></tr>")
        for o in r.outcomes:
            cls = "ok" if o.success else "fail"
            parts.append(
                f"<tr><td>{html.escape(o.rule)}</td><td>{html.escape(o.check)}</td>"
                f"<td>{html.escape(o.column or '')}</td><td class='{cls}'>{'pass' if o.success else 'FAIL'}</td>"
                f"<td>{html.escape(o.observed)}</td><td>{html.escape(', '.join(map(repr, o.unexpected)))}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path
