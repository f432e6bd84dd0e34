"""The ledger's tables, read from the checked-in Spanner DDL so there is one source of truth.

Every other part of rex (seeding, decoding change records, the warehouse mirror) asks this
module for table names, column types and primary keys instead of repeating them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import pyarrow as pa

CHANGE_STREAM_NAME = "LedgerChanges"

MONEY_TYPE = pa.decimal128(38, 9)

# Spanner type -> Arrow type of the decoded column. NUMERIC is exact decimal, never float.
_ARROW_TYPES = {
    "STRING": pa.string(),
    "INT64": pa.int64(),
    "NUMERIC": MONEY_TYPE,
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "FLOAT64": pa.float64(),
    "BOOL": pa.bool_(),
}

# Spanner type -> DuckDB type of the mirrored column.
_DUCKDB_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "NUMERIC": "DECIMAL(38,9)",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMPTZ",
    "FLOAT64": "DOUBLE",
    "BOOL": "BOOLEAN",
}


@dataclass(frozen=True)
class Column:
    name: str
    spanner_type: str  # base type code: STRING, INT64, NUMERIC, DATE, TIMESTAMP, FLOAT64, BOOL
    nullable: bool
    ordinal_position: int

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.spanner_type]

    @property
    def duckdb_type(self) -> str:
        return _DUCKDB_TYPES[self.spanner_type]

    @property
    def spanner_type_json(self) -> str:
        """The column's type as Spanner's change stream `column_types.type` JSON spells it."""
        return '{"code":"%s"}' % self.spanner_type


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    parent: str | None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def value_columns(self) -> list[Column]:
        return [c for c in self.columns if c.name not in self.primary_key]

    @property
    def key_columns(self) -> list[Column]:
        by_name = {c.name: c for c in self.columns}
        return [by_name[k] for k in self.primary_key]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name}")

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns]
        )


def ddl_text() -> str:
    return resources.files("transforms").joinpath("ledger_ddl.sql").read_text()


def ddl_statements() -> list[str]:
    """The DDL as separate statements without comments, as Spanner's update_ddl wants them."""
    lines = [ln for ln in ddl_text().splitlines() if not ln.lstrip().startswith("--")]
    body = "\n".join(lines)
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


_TABLE_RE = re.compile(
    r"CREATE TABLE (\w+) \((.*?)\n\) PRIMARY KEY \(([^)]*)\)(.*)", re.S
)
_COLUMN_RE = re.compile(r"`?(\w+)`?\s+([A-Z0-9]+)(?:\([^)]*\))?(\s+NOT NULL)?")
_PARENT_RE = re.compile(r"INTERLEAVE IN PARENT (\w+)")


@lru_cache(maxsize=1)
def ledger_tables() -> dict[str, Table]:
    """All ledger tables by name, in DDL order (parents before children)."""
    tables: dict[str, Table] = {}
    for stmt in ddl_statements():
        m = _TABLE_RE.match(stmt)
        if not m:
            continue
        name, body, pk, tail = m.groups()
        columns = []
        for i, line in enumerate(ln.strip().rstrip(",") for ln in body.strip().splitlines()):
            cm = _COLUMN_RE.match(line)
            if not cm:
                raise ValueError(f"cannot parse column definition {line!r} of {name}")
            columns.append(Column(cm.group(1), cm.group(2), cm.group(3) is None, i + 1))
        parent = _PARENT_RE.search(tail)
        tables[name] = Table(
            name=name,
            columns=tuple(columns),
            primary_key=tuple(k.strip().strip("`") for k in pk.split(",")),
            parent=parent.group(1) if parent else None,
        )
    return tables


def table(name: str) -> Table:
    return ledger_tables()[name]
