"""Quarantine rows: what could not be used, with the rule it broke and a reason a person reads.

Nothing is dropped silently: every source and check sends its rejects here as Arrow tables in
`QUARANTINE_SCHEMA`, and the warehouse keeps them in `rex_ops.quarantine`.
"""
from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pyarrow as pa

# Rules of the capture stage (contract rules of later stages use their own ids).
UNDECODABLE_RECORD = "undecodable_record"
UNKNOWN_TABLE = "unknown_table"
MISSING_KEY = "missing_key"
WRONG_TYPE = "wrong_type"
UNSUPPORTED_MOD = "unsupported_mod"
INCOMPLETE_TRANSACTION = "incomplete_transaction"

QUARANTINE_TAG_REPORT = "report_quarantine"  # Beam output tag of rows held back while building a report

QUARANTINE_SCHEMA = pa.schema(
    [
        ("quarantine_id", pa.string()),  # sha256 of stage, rule and raw record: dedupes re-runs
        ("stage", pa.string()),  # capture | contract | report
        ("partner", pa.string()),
        ("report", pa.string()),
        ("table_name", pa.string()),
        ("rule", pa.string()),
        ("reason", pa.string()),
        ("offending_value", pa.string()),
        ("commit_timestamp", pa.timestamp("us", tz="UTC")),
        ("server_transaction_id", pa.string()),
        ("record_sequence", pa.string()),
        ("raw_record", pa.string()),
        ("source", pa.string()),  # file and line, or partition token
    ]
)


def quarantine_id(stage: str, rule: str, raw_record: str) -> str:
    return hashlib.sha256(f"{stage}\x1f{rule}\x1f{raw_record}".encode()).hexdigest()


def quarantine_rows(rows: list[dict]) -> pa.Table:
    """Build a quarantine table from a few dicts (only for rare rejects, never the hot path)."""
    cols = {f.name: [] for f in QUARANTINE_SCHEMA}
    for r in rows:
        r = dict(r)
        r.setdefault("stage", "capture")
        r["quarantine_id"] = quarantine_id(r["stage"], r["rule"], r["raw_record"])
        for name in cols:
            cols[name].append(r.get(name))
    return pa.table(cols, schema=QUARANTINE_SCHEMA)


def empty_quarantine() -> pa.Table:
    return QUARANTINE_SCHEMA.empty_table()


def value_text(value) -> str | None:
    """A value as quarantine text: exact decimals in plain notation, dates ISO."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def row_json(row: dict) -> str:
    """A row as a quarantine raw record: sorted keys, exact decimals as strings."""
    return json.dumps({k: value_text(v) for k, v in row.items()}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
