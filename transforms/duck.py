"""DuckDB connections as rex uses them: quiet (no progress bar on stdout) and in UTC."""
from __future__ import annotations

import duckdb


def connect(path: str = ":memory:") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path)
    con.execute("SET enable_progress_bar = false")
    con.execute("SET TimeZone = 'UTC'")
    return con
