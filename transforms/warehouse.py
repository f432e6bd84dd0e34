"""The warehouse behind one small interface: DuckDB (embedded default) or BigQuery.

Callers name a warehouse by URI, as SQLAlchemy and duckdb_engine spell it:
`duckdb:///relative/file.duckdb`, `duckdb:////absolute/file.duckdb`, or a bare path. The
BigQuery backend (`bigquery://project`) is a later issue; asking for it now fails clearly.
"""
from __future__ import annotations

import re

from transforms.errors import WarehouseError

DEFAULT_WAREHOUSE = "duckdb:///rex.duckdb"

LEDGER_DATASET = "rex_ledger"
OPS_DATASET = "rex_ops"
REPORTS_DATASET = "rex_reports"  # all partners' report rows; partners see only partner_<id>


def partner_dataset(partner_id: str) -> str:
    """`alpine-re` -> `partner_alpine_re` (BigQuery dataset names allow letters, digits, _)."""
    return "partner_" + re.sub(r"[^0-9a-zA-Z_]", "_", partner_id).lower()


def open_warehouse(uri: str):
    """Open (creating if needed) the warehouse a URI names."""
    if uri.startswith("bigquery://"):
        raise WarehouseError("the BigQuery warehouse backend is not available yet; use duckdb:///PATH")
    if uri.startswith("duckdb:///"):
        # SQLAlchemy/duckdb_engine convention: duckdb:///rel/path, duckdb:////abs/path
        path = uri[len("duckdb:///"):] or ":memory:"
    elif "://" in uri:
        raise WarehouseError(f"unknown warehouse URI {uri!r}: use duckdb:///PATH")
    else:
        path = uri
    from transforms.warehouse_duckdb import DuckDbWarehouse

    return DuckDbWarehouse(path)
