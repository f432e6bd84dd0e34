"""Export report tables as files partners load: money rounded once, to the currency's minor
units, with the contract's rounding mode; rows in a fixed order; files byte-identical for the
same ledger (no timestamps inside, fixed zip entry dates for XLSX).

Formats: CSV (money as decimal text with exactly the currency's places), Parquet (money as
DECIMAL(38, s), s the most places any currency in the column has), XLSX (money as numbers
with the currency's number format). Every file is written to a temporary name and renamed,
so a reader never sees half a file.
"""
from __future__ import annotations

import io
import os
import re
import zipfile
from datetime import datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from transforms.currencies import minor_units

ROUNDING_MODES = {
    "half_up": "half_towards_infinity",  # commercial rounding: 2.345 -> 2.35, -2.345 -> -2.35
    "half_even": "half_to_even",  # banker's rounding: 2.345 -> 2.34
}
FORMATS = ("csv", "parquet", "xlsx")
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FIXED_DOC_TIME = datetime(2000, 1, 1)


def _pairs(money_columns, currency_column) -> list[tuple[str, str]]:
    """(money column, currency column) pairs from either one currency column for all, or pairs."""
    if isinstance(currency_column, str):
        return [(m, currency_column) for m in money_columns]
    return list(money_columns)


def _rounded(table: pa.Table, pairs, mode: str, as_text: bool) -> dict[str, pa.Array]:
    """Each money column rounded per row to its currency's minor units (vectorised per currency)."""
    arrow_mode = ROUNDING_MODES[mode]
    out = {}
    for name, ccy_col in pairs:
        values = table[name].combine_chunks()
        currencies = table[ccy_col].combine_chunks()
        present = [c for c in pc.unique(currencies).to_pylist() if c is not None]
        places = {c: minor_units(c) for c in present}
        scale = max(places.values(), default=2)
        target = pa.string() if as_text else pa.decimal128(38, scale)
        result = pa.nulls(table.num_rows, target)
        for cur in present:
            mask = pc.fill_null(pc.equal(currencies, cur), False)
            rounded = pc.round(pc.filter(values, mask), ndigits=places[cur], round_mode=arrow_mode)
            typed = rounded.cast(pa.decimal128(38, places[cur]))
            typed = typed.cast(pa.string()) if as_text else typed.cast(target)
            result = pc.replace_with_mask(result, mask, typed)
        out[name] = result
    return out


def round_money(table: pa.Table, money_columns, currency_column="original_currency", mode: str = "half_up",
                as_text: bool = True) -> pa.Table:
    """Money columns rounded to each row's currency (text with exactly its places, or decimals).

    `money_columns` with a single `currency_column`, or `(money, currency)` pairs and None.
    One column may hold many currencies (JPY 0 places, BHD 3), so each currency's rows are
    rounded separately, vectorised. A row whose currency is not ISO 4217 fails loudly: such
    rows are quarantined by the contract checks before anything is exported."""
    pairs = _pairs(money_columns, currency_column)
    if table.num_rows == 0:
        if not as_text:
            return table
        names = {m for m, _ in pairs}
        return table.cast(pa.schema([pa.field(f.name, pa.string() if f.name in names else f.type)
                                     for f in table.schema]))
    table = table.combine_chunks()
    for name, array in _rounded(table, pairs, mode, as_text).items():
        table = table.set_column(table.schema.get_field_index(name), name, array)
    return table


def write_csv(table: pa.Table, path: str) -> None:
    _atomic(path, lambda tmp: pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(quoting_style="needed")))


def write_parquet(table: pa.Table, path: str) -> None:
    _atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def write_xlsx(table: pa.Table, path: str, number_formats: dict[str, list[str]] | None = None,
               sheet: str = "report") -> None:
    """One sheet with a header row; `number_formats[column]` gives each row's Excel format."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    wb.properties.created = wb.properties.modified = _FIXED_DOC_TIME
    ws = wb.create_sheet(sheet[:31])
    ws.append(table.column_names)
    columns = [table[name].to_pylist() for name in table.column_names]
    formats = [(number_formats or {}).get(name) for name in table.column_names]
    from openpyxl.cell import WriteOnlyCell

    for r in range(table.num_rows):
        row = []
        for c, values in enumerate(columns):
            value = values[r]
            if formats[c] is not None and value is not None:
                cell = WriteOnlyCell(ws, value=value)
                cell.number_format = formats[c][r]
                row.append(cell)
            else:
                row.append(value)
        ws.append(row)
    buffer = io.BytesIO()
    wb.save(buffer)
    _atomic(path, lambda tmp: _rezip_fixed(buffer.getvalue(), tmp))


def _rezip_fixed(data: bytes, path: str) -> None:
    """The same workbook with fixed zip entry dates, so equal data gives equal bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":  # openpyxl stamps the save time here
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)", rb"\g<1>2000-01-01T00:00:00Z\g<2>", data)
            dst.writestr(fixed, data)


def excel_formats(table: pa.Table, pairs) -> dict[str, list[str]]:
    """Per money column, each row's number format with its currency's minor units."""
    out = {}
    for name, ccy_col in pairs:
        if name not in table.column_names or ccy_col not in table.column_names:
            continue
        fmts = {}
        rows = []
        for cur in table[ccy_col].to_pylist():
            if cur not in fmts:
                places = minor_units(cur) if cur else 2
                fmts[cur] = "#,##0" + ("." + "0" * places if places else "")
            rows.append(fmts[cur])
        out[name] = rows
    return out


def _atomic(path: str, write) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    write(tmp)
    os.replace(tmp, path)


def decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")
