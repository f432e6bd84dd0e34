"""Capture from change-record files into the DuckDB mirror: ordering, idempotency, checkpoints,
quarantine. Uses a real DuckDB file and the real Beam FnApiRunner."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import pytest

from change_factory import T0, policy, record, ts_ns, write_jsonl
from pipelines.capture import run_capture
from transforms.errors import LedgerSourceError
from transforms.warehouse import open_warehouse


def _wh(tmp_path):
    return "duckdb:///" + str(tmp_path / "wh.duckdb")


def _rows(uri, sql):
    with open_warehouse(uri) as wh:
        return wh.rows(sql)


def _policy_history(d):
    """Four transactions on two policies: insert, update, insert, delete."""
    write_jsonl(str(d / "a.jsonl"), [
        record("Policies", "INSERT", [policy("P1")], ts_ns=ts_ns(1), txn="t1"),
        record("Policies", "INSERT", [policy("P2")], ts_ns=ts_ns(3), txn="t3"),
    ])
    write_jsonl(str(d / "b.jsonl"), [
        record("Policies", "DELETE", [{"PolicyId": "P2"}], ts_ns=ts_ns(4), txn="t4"),
        record("Policies", "UPDATE", [policy("P1", status="CANCELLED")], ts_ns=ts_ns(2), txn="t2"),
    ])


def test_current_state_applies_insert_update_delete_in_commit_order(tmp_path):
    _policy_history(tmp_path / "changes")
    uri = _wh(tmp_path)
    summary = run_capture(str(tmp_path / "changes"), uri)
    assert summary.result.applied == {"Policies": 4}
    assert _rows(uri, "SELECT PolicyId, Status FROM rex_ledger.Policies") == [("P1", "CANCELLED")]
    log = _rows(uri, 'SELECT PolicyId, _metadata_spanner_mod_type, _metadata_spanner_server_transaction_id '
                     'FROM rex_ledger."Policies_changelog" ORDER BY _metadata_spanner_commit_timestamp')
    assert log == [("P1", "INSERT", "t1"), ("P1", "UPDATE", "t2"), ("P2", "INSERT", "t3"), ("P2", "DELETE", "t4")]


def test_windows_captured_out_of_order_give_the_same_state(tmp_path):
    _policy_history(tmp_path / "changes")
    uri = _wh(tmp_path)
    mid = datetime.fromtimestamp(ts_ns(2.5) / 1e9, tz=timezone.utc)
    later = run_capture(str(tmp_path / "changes"), uri, start=mid)
    assert later.result.applied == {"Policies": 2}
    assert _rows(uri, "SELECT count(*) FROM rex_ledger.Policies") == [(0,)]  # P2 inserted then deleted
    earlier = run_capture(str(tmp_path / "changes"), uri, start=T0, end=mid)
    assert earlier.result.applied == {"Policies": 2}
    assert _rows(uri, "SELECT PolicyId, Status FROM rex_ledger.Policies") == [("P1", "CANCELLED")]


def test_rerunning_the_same_window_adds_nothing(tmp_path):
    _policy_history(tmp_path / "changes")
    write_jsonl(str(tmp_path / "changes" / "c.jsonl"), ["{broken"])
    uri = _wh(tmp_path)
    first = run_capture(str(tmp_path / "changes"), uri, start=T0)
    again = run_capture(str(tmp_path / "changes"), uri, start=T0)
    assert sum(first.result.applied.values()) == 4
    assert sum(again.result.applied.values()) == 0
    assert again.result.duplicates == {"Policies": 4}
    assert again.result.quarantined_new == 0
    assert _rows(uri, 'SELECT count(*) FROM rex_ledger."Policies_changelog"') == [(4,)]
    assert _rows(uri, "SELECT count(*) FROM rex_ops.quarantine") == [(1,)]
    assert _rows(uri, "SELECT count(*) FROM rex_ops.runs WHERE command = 'capture'") == [(2,)]


def test_next_run_resumes_from_the_checkpoint(tmp_path):
    d = tmp_path / "changes"
    write_jsonl(str(d / "a.jsonl"), [record("Policies", "INSERT", [policy("P1")], ts_ns=ts_ns(1), txn="t1")])
    uri = _wh(tmp_path)
    first = run_capture(str(d), uri)
    assert first.checkpoint == datetime.fromtimestamp(ts_ns(1) / 1e9, tz=timezone.utc)
    write_jsonl(str(d / "b.jsonl"), [record("Policies", "INSERT", [policy("P2")], ts_ns=ts_ns(5), txn="t5")])
    second = run_capture(str(d), uri)
    assert second.window_start == first.checkpoint
    assert second.result.applied == {"Policies": 1}  # P1 is at the checkpoint: seen, not re-applied
    assert second.result.duplicates == {"Policies": 1}
    assert _rows(uri, "SELECT PolicyId FROM rex_ledger.Policies ORDER BY 1") == [("P1",), ("P2",)]
    assert second.checkpoint == datetime.fromtimestamp(ts_ns(5) / 1e9, tz=timezone.utc)


def test_each_kind_of_bad_input_is_quarantined_and_the_run_goes_on(tmp_path):
    d = tmp_path / "changes"
    good = record("Policies", "INSERT", [policy("P1")], ts_ns=ts_ns(1), txn="t1")
    unknown = record("Policies", "INSERT", [policy("PX")], ts_ns=ts_ns(2), txn="t2")
    unknown.table_name = "Policys"
    missing_key = record("Policies", "INSERT", [policy("P3")], ts_ns=ts_ns(3), txn="t3")
    missing_key.mods[0] = missing_key.mods[0].__class__("{}", missing_key.mods[0].new_values_json)
    wrong_type = record("FxRates", "INSERT", [
        {"Currency": "EUR", "RateDate": "2026-01-05", "UsdPerUnit": "1.08"},
        {"Currency": "GBP", "RateDate": "2026-01-05", "UsdPerUnit": 1.27},  # a float for money
        {"Currency": "JPY", "RateDate": "05/01/2026", "UsdPerUnit": "0.0067"},  # not a DATE
    ], ts_ns=ts_ns(4), txn="t4")
    incomplete = record("Policies", "INSERT", [policy("P9")], ts_ns=ts_ns(5), txn="t5", records_in_txn=2)
    write_jsonl(str(d / "a.jsonl"), [good, "not json at all", unknown, missing_key, wrong_type, incomplete,
                                    '{"tableName": "Policies", "mods": []}'])
    uri = _wh(tmp_path)
    summary = run_capture(str(d), uri)
    assert summary.result.applied == {"Policies": 1, "FxRates": 1}
    rules = _rows(uri, "SELECT rule, table_name, reason FROM rex_ops.quarantine ORDER BY rule, reason")
    assert [(r[0], r[1]) for r in rules] == [
        ("incomplete_transaction", "Policies"),
        ("missing_key", "Policies"),
        ("undecodable_record", None),
        ("undecodable_record", "Policies"),
        ("unknown_table", "Policys"),
        ("wrong_type", "FxRates"),
        ("wrong_type", "FxRates"),
    ]
    reasons = {r[2] for r in rules}
    assert "UsdPerUnit is not a valid NUMERIC: 1.27" in reasons
    assert "RateDate is not a valid DATE: 05/01/2026" in reasons
    assert "read 1 of 2 records of transaction t5" in reasons
    assert summary.result.quarantined == 7
    raw = _rows(uri, "SELECT raw_record FROM rex_ops.quarantine WHERE rule = 'unknown_table'")[0][0]
    assert '"tableName":"Policys"' in raw and "PX" in raw


def test_a_transaction_split_over_files_is_applied_once_all_its_records_are_read(tmp_path):
    """The template may write one transaction's records into different files (and a re-delivered
    file repeats records): completeness counts distinct records over the whole read."""
    d = tmp_path / "changes"
    first = record("Policies", "INSERT", [policy("P1")], ts_ns=ts_ns(1), txn="t1", seq=0, records_in_txn=2)
    second = record("Policies", "UPDATE", [policy("P2")], ts_ns=ts_ns(1), txn="t1", seq=1, records_in_txn=2)
    half = record("Policies", "INSERT", [policy("P3")], ts_ns=ts_ns(2), txn="t2", seq=0, records_in_txn=2)
    write_jsonl(str(d / "a.jsonl"), [first, half])
    write_jsonl(str(d / "b.jsonl"), [second])
    write_jsonl(str(d / "c.jsonl"), [first, half])  # re-delivered: the same records again
    uri = _wh(tmp_path)
    summary = run_capture(str(d), uri)
    assert summary.result.applied == {"Policies": 2}
    assert _rows(uri, "SELECT PolicyId FROM rex_ledger.Policies ORDER BY 1") == [("P1",), ("P2",)]
    assert _rows(uri, "SELECT rule, reason FROM rex_ops.quarantine") == [
        ("incomplete_transaction", "read 1 of 2 records of transaction t2")]


def test_missing_folder_fails_fast_with_one_line(tmp_path):
    with pytest.raises(LedgerSourceError, match="does not exist"):
        run_capture(str(tmp_path / "nope"), _wh(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "capture", "--ledger", str(tmp_path / "nope"),
         "--warehouse", _wh(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"rex: change-record directory {tmp_path / 'nope'} does not exist or is not a directory"]


def test_unreadable_change_file_fails_fast(tmp_path):
    d = tmp_path / "changes"
    write_jsonl(str(d / "a.jsonl"), [record("Policies", "INSERT", [policy("P1")], ts_ns=ts_ns(1), txn="t1")])
    (d / "b.jsonl").symlink_to(d / "gone.jsonl")  # listed, but cannot be opened (even by root)
    with pytest.raises(LedgerSourceError, match="cannot read change-record file .*b.jsonl"):
        run_capture(str(d), _wh(tmp_path))
