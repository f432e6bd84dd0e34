"""Settlement-currency amounts from the ledger's own FX rates, per partner contract.

The ledger keeps `FxRates(Currency, RateDate, UsdPerUnit)`. A partner settles in its contract's
currency, at the rate of the date its contract names (`booked_date`: each row's booked date;
`period_end`: the last day of the row's reporting period). The cross rate goes through USD:

    fx_rate = UsdPerUnit(original, d) / UsdPerUnit(settlement, d), rounded half-up to 12 places

computed as an integer quotient, never a float; each settlement amount is `amount × fx_rate`
to 9 places (so a partner can recompute it from the rate printed on the row). A row in its
settlement currency needs no rate (1 exactly). A row whose rate is missing is quarantined with
rule `<report>.fx_rate.available` — never converted at a silent 1.0.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from contracts.model import Contract
from transforms import duck
from transforms.quarantine import QUARANTINE_SCHEMA, row_json
from transforms.report_catalog import report as report_definition

RATE_SCALE = 12
_UNITS = "1000000000"  # DECIMAL(38,9) <-> integer units


def settlement_pairs(kind: str) -> list[tuple[str, str]]:
    """(settlement column, the money column it converts) of a report."""
    names = set(report_definition(kind).names)
    return [(c.name, c.name[len("settlement_"):]) for c in report_definition(kind).columns
            if c.kind == "money" and c.name.startswith("settlement_") and c.name[len("settlement_"):] in names]


def _rate_date_sql(contract: Contract, date_column: str, period_end_column: str | None) -> str:
    if contract.fx_rate_date == "booked_date":
        return f'"{date_column}"'
    if period_end_column:
        return f'"{period_end_column}"'
    if contract.frequency == "quarterly":
        return (f"(date_trunc('quarter', \"{date_column}\") + INTERVAL 3 MONTH - INTERVAL 1 DAY)::DATE")
    return f"last_day(\"{date_column}\")"


def settle(rows: pa.Table, fx_rates: pa.Table, contract: Contract, kind: str, date_column: str,
           period_end_column: str | None = None) -> tuple[pa.Table, pa.Table]:
    """(rows with settlement_currency, fx_rate, fx_rate_date and settlement amounts; quarantine
    rows for those whose rate is missing)."""
    pairs = [(s, m) for s, m in settlement_pairs(kind) if m in rows.column_names]
    if rows.num_rows == 0 or not pairs:
        return rows, QUARANTINE_SCHEMA.empty_table()
    con = duck.connect()
    try:
        con.register("rows_in", rows.append_column("_row", pa.array(range(rows.num_rows), pa.int64())))
        con.register("fx", fx_rates)
        settle_ccy = contract.settlement_currency.replace("'", "''")
        rate_date = _rate_date_sql(contract, date_column, period_end_column)
        # rate as an integer quotient in units of 1e-12, rounded half up (both rates are positive)
        num = f"CAST(CAST(o.UsdPerUnit AS DECIMAL(38,9)) * {_UNITS} AS HUGEINT)"
        den = f"CAST(CAST(s.UsdPerUnit AS DECIMAL(38,9)) * {_UNITS} AS HUGEINT)"
        quotient = f"(({num}) * {10 ** RATE_SCALE} + ({den}) // 2) // ({den})"
        rate = (f"CAST(CAST({quotient} AS DECIMAL(38,0)) * CAST(0.{'0' * (RATE_SCALE - 1)}1 AS DECIMAL(13,12)) "
                f"AS DECIMAL(38,{RATE_SCALE}))")
        amounts = ", ".join(
            f'CAST(CAST(r."{m}" AS DECIMAL(38,9)) * d.fx_rate AS DECIMAL(38,9)) AS "{s}"' for s, m in pairs)
        # each rate once per (currency, date) in the batch, then one pass over the rows
        settled = con.sql(f"""
            WITH dated AS (SELECT *, {rate_date} AS _rate_date FROM rows_in),
            rates AS (
              SELECT c.original_currency, c._rate_date,
                     CASE WHEN c.original_currency = '{settle_ccy}' THEN CAST(1 AS DECIMAL(38,{RATE_SCALE}))
                          WHEN o.UsdPerUnit > 0 AND s.UsdPerUnit > 0 THEN {rate} END AS fx_rate
              FROM (SELECT DISTINCT original_currency, _rate_date FROM dated) c
              LEFT JOIN fx o ON o.Currency = c.original_currency AND o.RateDate = c._rate_date
              LEFT JOIN fx s ON s.Currency = '{settle_ccy}' AND s.RateDate = c._rate_date
            )
            SELECT r.* EXCLUDE (_row, _rate_date), '{settle_ccy}' AS settlement_currency,
                   r._rate_date AS fx_rate_date, d.fx_rate, {amounts}
            FROM dated r LEFT JOIN rates d
              ON d.original_currency IS NOT DISTINCT FROM r.original_currency
             AND d._rate_date IS NOT DISTINCT FROM r._rate_date
            ORDER BY r._row
        """).to_arrow_table()
    finally:
        con.close()
    rated = pc.is_valid(settled["fx_rate"])
    ok = settled.filter(rated)
    missing = settled.filter(pc.invert(rated)).drop_columns([s for s, _m in pairs])
    return ok, _quarantine(missing, contract, kind)


def _quarantine(missing: pa.Table, contract: Contract, kind: str) -> pa.Table:
    if missing.num_rows == 0:
        return QUARANTINE_SCHEMA.empty_table()
    from contracts.row_checks import rows_to_quarantine

    out = []
    for row in missing.to_pylist():
        out.append({
            "stage": "contract", "partner": contract.partner, "report": kind, "table_name": None,
            "rule": f"{kind}.fx_rate.available",
            "reason": (f"no ledger FX rate to convert {row['original_currency']} into {contract.settlement_currency} "
                       f"on {row['fx_rate_date']} ({contract.partner}'s contract: {contract.fx_rate_date})"),
            "offending_value": f"{row['original_currency']}@{row['fx_rate_date']}",
            "raw_record": row_json(row), "source": f"contract {contract.partner} {contract.version}",
        })
    return rows_to_quarantine(out)
