"""A partner's report, shaped by its contract: its periods, its columns, its masking.

rex builds every report once for all reinsurers in rex's own columns (`rex_reports`). Each
partner then gets its own rows only (filtered by its reinsurer id, never by anything a contract
could widen) — labelled with the contract's reporting periods, checked, masked where the
contract says so, and renamed to the contract's columns: `physicalName` in the warehouse, the
exported `name` in files.
"""
from __future__ import annotations

import hashlib
import hmac
import os

import pyarrow as pa
import pyarrow.compute as pc

from contracts.model import Contract, ReportSpec
from transforms.errors import RexError
from transforms.report_catalog import report as report_definition

MASK_HEX_CHARS = 24  # 96 bits of HMAC-SHA256: unique enough for a book, short enough to read
MASK_PATTERN = f"^[0-9a-f]{{{MASK_HEX_CHARS}}}$"


def partner_rows(rows: pa.Table, contract: Contract) -> tuple[pa.Table, pa.Table]:
    """(this partner's rows on treaties its contract covers, its rows on treaties it does not)."""
    mine = rows.filter(pc.equal(rows["reinsurer_id"], contract.partner))
    if mine.num_rows == 0:
        return mine, mine
    treaties = pc.unique(mine["treaty_id"]).to_pylist()
    covered = pa.array([t for t in treaties if t is not None and contract.covers(t)], pa.string())
    inside = pc.is_in(mine["treaty_id"], value_set=covered)
    return mine.filter(inside), mine.filter(pc.invert(inside))


def period_labels(booked: pa.Array, frequency: str) -> pa.Array:
    """`2026-03` (monthly) or `2026-Q1` (quarterly) for each booked date."""
    year = pc.cast(pc.year(booked), pa.string())
    month = pc.month(booked)
    if frequency == "quarterly":
        quarter = pc.add(pc.divide(pc.subtract(month, 1), 3), 1)
        return pc.binary_join_element_wise(year, pc.cast(quarter, pa.string()), "-Q")
    return pc.strftime(booked, format="%Y-%m")


def with_contract_periods(rows: pa.Table, contract: Contract, date_column: str = "booked_date") -> pa.Table:
    """Relabel the `period` column by the contract's reporting frequency."""
    if "period" not in rows.column_names or date_column not in rows.column_names:
        return rows
    labels = period_labels(rows[date_column].combine_chunks(), contract.frequency)
    return rows.set_column(rows.schema.get_field_index("period"), "period", labels.cast(pa.string()))


def masking_key(env_name: str) -> bytes:
    value = os.environ.get(env_name)
    if not value:
        raise RexError(f"the masking key {env_name} is not set (a contract pseudonymises a column with it)")
    return value.encode("utf-8")


def mask_column(values: pa.Array, key: bytes) -> pa.Array:
    """HMAC-SHA256 pseudonyms: the same name always maps to the same pseudonym under one key,
    so a partner can follow an insured across periods without learning who it is. Each
    distinct value is hashed once."""
    encoded = pc.dictionary_encode(values).combine_chunks() if isinstance(values, pa.ChunkedArray) \
        else pc.dictionary_encode(values)
    pseudonyms = [
        None if v is None else hmac.new(key, v.encode("utf-8"), hashlib.sha256).hexdigest()[:MASK_HEX_CHARS]
        for v in encoded.dictionary.to_pylist()
    ]
    return pc.take(pa.array(pseudonyms, pa.string()), encoded.indices)


def apply_masking(rows: pa.Table, contract: Contract) -> pa.Table:
    for m in contract.masking:
        if m.column in rows.column_names:
            i = rows.schema.get_field_index(m.column)
            rows = rows.set_column(i, m.column, mask_column(rows[m.column].combine_chunks(), masking_key(m.key_env)))
    return rows


def selected(spec: ReportSpec, rows: pa.Table):
    """The contract's columns that rex produces, in contract order."""
    return [c for c in spec.columns if c.source in rows.column_names]


def to_partner_table(rows: pa.Table, spec: ReportSpec) -> pa.Table:
    """rex columns -> the partner's warehouse table (physical names, exact values)."""
    cols = selected(spec, rows)
    return pa.table({c.physical_name: rows[c.source] for c in cols})


def money_sources(kind: str) -> list[tuple[str, str]]:
    """(money column, its currency column) of a report."""
    return [(c.name, c.currency_column) for c in report_definition(kind).columns if c.kind == "money"]


def missing_columns(spec: ReportSpec, rows: pa.Table) -> list[str]:
    """Contract columns rex does not produce (yet): named in the run's message, never invented."""
    return [c.name for c in spec.columns if c.source not in rows.column_names]


def export_path(out_dir: str, partner: str, report: str, period: str, fmt: str, version: int | None = None) -> str:
    folder = os.path.join(out_dir, partner, report, period)
    if version is not None:
        folder = os.path.join(folder, f"v{version}")
    return os.path.join(folder, f"{report}.{fmt}")


def write_partner_exports(rows: pa.Table, contract: Contract, spec: ReportSpec, out_dir: str,
                          period_column: str = "period", version: int | None = None) -> list[str]:
    """The partner's files, one folder per period (and version), in every format its contract
    asks for: the contract's column names and order, money rounded once in the contract's mode.
    A published version's file is never rewritten: writing different bytes to it is an error."""
    from transforms.report_exports import excel_formats, round_money, write_csv, write_parquet, write_xlsx

    cols = selected(spec, rows)
    pairs = [(m, c) for m, c in money_sources(spec.kind) if m in rows.column_names and c in rows.column_names]
    if period_column in rows.column_names and rows.num_rows:
        periods = sorted(p for p in pc.unique(rows[period_column]).to_pylist() if p is not None)
    else:
        periods = ["all"]
    written = []
    oed = spec.kind.startswith("oed_")
    for period in periods:
        part = rows if period == "all" else rows.filter(pc.equal(rows[period_column], period))
        if oed:  # OED files are OED CSV whatever else the partner takes: cat models read them
            from transforms.oed import write_oed_csv

            path = export_path(out_dir, contract.partner, spec.kind, period, "csv", version)
            named = pa.table({c.name: part[c.source] for c in cols})
            _write_once(path, lambda tmp: write_oed_csv(named, tmp))
            written.append(path)
            continue
        for fmt in contract.export_formats:
            path = export_path(out_dir, contract.partner, spec.kind, period, fmt, version)
            rounded = round_money(part, pairs, None, contract.rounding, as_text=(fmt == "csv"))
            named = pa.table({c.name: rounded[c.source] for c in cols})
            if fmt == "csv":
                write = lambda tmp: write_csv(named, tmp)  # noqa: E731
            elif fmt == "parquet":
                write = lambda tmp: write_parquet(named, tmp)  # noqa: E731
            else:
                formats = {c.name: f for c in cols
                           for name, f in excel_formats(rounded, pairs).items() if name == c.source}
                write = lambda tmp: write_xlsx(named, tmp, formats, sheet=spec.kind)  # noqa: E731
            _write_once(path, write)
            written.append(path)
    return written


def _write_once(path: str, write) -> None:
    """Write a published file; if it exists, it must already hold exactly these bytes."""
    if version_folder(path) and os.path.exists(path):
        fresh = path + ".check"
        write(fresh)
        try:
            with open(fresh, "rb") as a, open(path, "rb") as b:
                same = a.read() == b.read()
        finally:
            os.remove(fresh)
        if not same:
            raise RexError(f"{path} is a published version and would change; refusing to overwrite it")
        return
    write(path)


def version_folder(path: str) -> bool:
    name = os.path.basename(os.path.dirname(path))
    return name.startswith("v") and name[1:].isdigit()
