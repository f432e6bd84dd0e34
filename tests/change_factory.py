"""Build Spanner-shaped change records by hand for tests (values encoded as Spanner does)."""
from __future__ import annotations

import json
import os
from datetime import date, datetime, timezone
from decimal import Decimal

from transforms.change_record import ColumnType, DataChangeRecord, Mod
from transforms.ledger_schema import table as ledger_table

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def spanner_json_value(value):
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def record(table: str, mod_type: str, rows: list[dict], *, ts_ns: int, txn: str, seq: int = 0,
           records_in_txn: int = 1, partition: str = "p0") -> DataChangeRecord:
    t = ledger_table(table)
    mods = []
    for row in rows:
        keys = {k: spanner_json_value(row[k]) for k in t.primary_key}
        if mod_type == "DELETE":
            values = {}
        else:
            values = {c.name: spanner_json_value(row.get(c.name)) for c in t.value_columns}
        mods.append(Mod(json.dumps(keys, separators=(",", ":")), json.dumps(values, separators=(",", ":"))))
    return DataChangeRecord(
        partition_token=partition, commit_timestamp_ns=ts_ns, server_transaction_id=txn,
        is_last_record_in_transaction_in_partition=seq == records_in_txn - 1,
        record_sequence=f"{seq:08d}", table_name=table,
        row_type=[ColumnType(c.name, c.spanner_type_json, c.name in t.primary_key, c.ordinal_position)
                  for c in t.columns],
        mods=mods, mod_type=mod_type, value_capture_type="NEW_ROW",
        number_of_records_in_transaction=records_in_txn, number_of_partitions_in_transaction=1,
    )


def ts_ns(seconds_after_t0: float) -> int:
    return int(T0.timestamp() * 1_000_000_000) + int(seconds_after_t0 * 1_000_000_000)


def write_jsonl(path: str, records_or_lines) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for r in records_or_lines:
            f.write((r if isinstance(r, str) else r.to_json_line()) + "\n")
    return path


def treaty(tid: str, ttype: str, **kw) -> dict:
    """A whole Treaties row: a 2026 EUR property treaty, worldwide, with no terms unless given."""
    row = {"TreatyId": tid, "Umr": f"B0999{tid}", "Name": tid, "TreatyType": ttype,
           "LineOfBusiness": "PROPERTY", "Currency": "EUR", "InceptionDate": date(2026, 1, 1),
           "ExpiryDate": date(2026, 12, 31), "CessionRate": None, "Retention": None, "Lines": None,
           "Attachment": None, "Limit": None, "CommissionRate": None, "Territories": None}
    row.update(kw)
    return row


def location(pid: str, lid: str, building: str) -> dict:
    """A German location with only a building sum insured."""
    return {"PolicyId": pid, "LocationId": lid, "CountryCode": "DE", "Zone": "DE-1", "Latitude": 50.1,
            "Longitude": 8.6, "PerilsCovered": "WTC", "OccupancyCode": 1050, "ConstructionCode": 5000,
            "BuildingTiv": Decimal(building), "ContentsTiv": Decimal("0"), "BiTiv": Decimal("0")}


def policy(pid: str, status: str = "ACTIVE", treaty: str | None = "QS1", currency: str = "EUR", **kw) -> dict:
    row = {
        "PolicyId": pid, "PolicyNumber": f"PN-{pid}", "InsuredName": f"Insured {pid}", "CountryCode": "DE",
        "LineOfBusiness": "PROPERTY", "Currency": currency, "InceptionDate": date(2026, 1, 1),
        "ExpiryDate": date(2026, 12, 31), "TreatyId": treaty, "Status": status,
    }
    row.update(kw)
    return row


def build_once(tmp_path_factory, name: str, build) -> "os.PathLike":
    """A folder built once per test session, even with pytest-xdist: the first worker to get
    here runs `build(folder)` under a file lock, the others wait and reuse what it built (so a
    slow module fixture, e.g. a capture and a report run, is not repeated on every worker).
    Whatever uses the folder must treat it as read-only (DuckDB files: read_only=True)."""
    import fcntl
    import shutil

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this session
    folder = root / name
    with open(str(root / f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (folder / ".built").exists():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                build(folder)
                (folder / ".built").write_text("ok")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder
