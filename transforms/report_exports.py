"""Export report tables as files partners load: money rounded once, to the currency's minor
units, with the contract's rounding mode; rows in a fixed order so exports are byte-identical
for the same ledger."""
from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from transforms.currencies import minor_units

ROUNDING_MODES = {
    "half_up": "half_towards_infinity",  # commercial rounding: 2.345 -> 2.35, -2.345 -> -2.35
    "half_even": "half_to_even",  # banker's rounding: 2.345 -> 2.34
}


def round_money(table: pa.Table, money_columns, currency_column: str, mode: str = "half_up") -> pa.Table:
    """Money columns as decimal text with exactly the currency's minor units.

    One column holds many currencies (JPY has 0 places, BHD 3), so each currency's rows are
    rounded and formatted separately, vectorised, then put back in the original order.
    """
    if table.num_rows == 0:
        return table.cast(pa.schema([pa.field(f.name, pa.string() if f.name in money_columns else f.type)
                                     for f in table.schema]))
    arrow_mode = ROUNDING_MODES[mode]
    table = table.combine_chunks()
    currencies = table[currency_column].combine_chunks()
    out = {name: pa.array([None] * table.num_rows, pa.string()) for name in money_columns}
    for cur in pc.unique(currencies).to_pylist():
        places = minor_units(cur)
        mask = pc.equal(currencies, cur)
        idx = pc.indices_nonzero(mask)
        for name in money_columns:
            values = pc.take(table[name].combine_chunks(), idx)
            rounded = pc.round(values, ndigits=places, round_mode=arrow_mode)
            text = rounded.cast(pa.decimal128(38, places)).cast(pa.string())
            out[name] = pc.replace_with_mask(out[name], mask, text)
    for name in money_columns:
        table = table.set_column(table.schema.get_field_index(name), name, out[name])
    return table


def write_csv(table: pa.Table, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(quoting_style="needed"))
    os.replace(tmp, path)
