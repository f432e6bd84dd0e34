"""The Spanner change stream reader against the real Cloud Spanner emulator.

What is checked: records decode exactly (mod types, keys, NUMERIC digits, per-transaction
record counts); the partition tree is followed so every row change is read once while the
emulator splits and merges partitions; the [start, end] window is inclusive and exact; the Beam
transform returns the same mods; and broken setups fail within seconds with one clear line.

Windows are taken from the database's clock (`database_now`), never `datetime.now()`: the
emulator's commit timestamps run ahead of the wall clock.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from google.cloud import spanner

from pipelines.spanner_emulator import free_loopback_port
from transforms.change_batches import MODS_SCHEMA
from transforms.change_record import timestamp_to_ns
from transforms.errors import LedgerSourceError
from transforms.ledger_schema import CHANGE_STREAM_NAME, ddl_statements, table
from transforms.spanner_change_stream import (
    ReadSpannerChangeStream,
    ReadStats,
    _ChildPartition,
    _follow_partitions,
    read_change_stream,
)
from transforms.spanner_ledger import (
    DatabasePath,
    create_ledger_database,
    database_now,
    open_ledger_database,
    spanner_client,
)

FAIL_FAST_S = 10.0
MAX_NUMERIC = Decimal("99999999999999999999999999999.999999999")

REINSURER_COLS = ["ReinsurerId", "Name", "CountryCode"]
TREATY_COLS = [
    "TreatyId", "Umr", "Name", "TreatyType", "LineOfBusiness", "Currency",
    "InceptionDate", "ExpiryDate", "CessionRate", "Retention", "Lines", "Limit",
]
POLICY_COLS = [
    "PolicyId", "PolicyNumber", "InsuredName", "CountryCode", "LineOfBusiness", "Currency",
    "InceptionDate", "ExpiryDate", "Status",
]
LOCATION_COLS = [
    "PolicyId", "LocationId", "CountryCode", "Latitude", "Longitude", "OccupancyCode",
    "BuildingTiv",
]


def read_all(database, start, end, **kw):
    return list(read_change_stream(database, CHANGE_STREAM_NAME, start, end, **kw))


def by_transaction(records) -> dict[str, list]:
    out = defaultdict(list)
    for r in records:
        out[r.server_transaction_id].append(r)
    return out


def insert_reinsurers(database, ids) -> datetime:
    """One transaction inserting the given reinsurers; returns its commit timestamp."""
    with database.batch() as batch:
        batch.insert("Reinsurers", REINSURER_COLS, [[i, f"Re {i}", "GB"] for i in ids])
    return batch.committed


# --- (a) decoding ------------------------------------------------------------------------


def write_mixed_transactions(database) -> list[datetime]:
    """Three transactions: inserts over four tables, a NUMERIC update, a DML delete+update."""
    with database.batch() as b1:
        b1.insert("Reinsurers", REINSURER_COLS, [["R1", "Re One", "GB"], ["R2", "Re Two", "DE"]])
        b1.insert("Treaties", TREATY_COLS, [[
            "T1", "B0001QS26", "Property QS", "QUOTA_SHARE", "PROPERTY", "USD",
            "2026-01-01", "2026-12-31", Decimal("0.123456789"), None, 3,
            Decimal("12345678901234567890.123456789"),
        ]])
        b1.insert("Participations", ["TreatyId", "ReinsurerId", "SharePct"],
                  [["T1", "R1", Decimal("0.6")], ["T1", "R2", Decimal("0.4")]])
        b1.insert("Policies", POLICY_COLS, [[
            "P1", "POL-1", "Acme", "US", "PROPERTY", "USD", "2026-01-01", "2026-12-31", "BOUND",
        ]])
        b1.insert("Locations", LOCATION_COLS,
                  [["P1", "L1", "US", 25.7617, -80.1918, 1050, Decimal("1000000.01")]])
    with database.batch() as b2:
        b2.update("Treaties", ["TreatyId", "CessionRate"], [["T1", MAX_NUMERIC]])

    def dml(transaction):
        transaction.execute_update(
            "DELETE FROM Participations WHERE TreatyId = 'T1' AND ReinsurerId = 'R2'"
        )
        transaction.execute_update(
            "UPDATE Reinsurers SET Name = 'Renamed' WHERE ReinsurerId = 'R1'"
        )

    database.run_in_transaction(dml)
    return [b1.committed, b2.committed]


def test_records_decode_exactly(ledger_db):
    _, database = ledger_db
    start = database_now(database)
    committed = write_mixed_transactions(database)
    records = read_all(database, start, database_now(database))
    txns = by_transaction(records)

    assert len(txns) == 3
    for txn_records in txns.values():
        first = txn_records[0]
        assert len(txn_records) == first.number_of_records_in_transaction
        assert sum(r.is_last_record_in_transaction_in_partition for r in txn_records) == 1
        assert len({r.record_sequence for r in txn_records}) == len(txn_records)
        assert {r.value_capture_type for r in txn_records} == {"NEW_ROW"}
        assert {r.commit_timestamp_ns for r in txn_records} == {first.commit_timestamp_ns}
    t1, t2, t3 = sorted(txns.values(), key=lambda rs: rs[0].commit_timestamp_ns)
    assert [t1[0].commit_timestamp_ns, t2[0].commit_timestamp_ns] == [
        timestamp_to_ns(ts) for ts in committed
    ]

    # One record per table in the first transaction, with all of that table's mods.
    first = {r.table_name: r for r in t1}
    assert sorted(first) == ["Locations", "Participations", "Policies", "Reinsurers", "Treaties"]
    assert {r.mod_type for r in t1} == {"INSERT"}
    assert [m.keys_json for m in first["Participations"].mods] == [
        '{"ReinsurerId":"R1","TreatyId":"T1"}',
        '{"ReinsurerId":"R2","TreatyId":"T1"}',
    ]
    treaty = json.loads(first["Treaties"].mods[0].new_values_json)
    assert Decimal(treaty["CessionRate"]) == Decimal("0.123456789")
    assert Decimal(treaty["Limit"]) == Decimal("12345678901234567890.123456789")
    assert treaty["Lines"] == "3" and treaty["InceptionDate"] == "2026-01-01"
    assert treaty["Retention"] is None
    location = json.loads(first["Locations"].mods[0].new_values_json)
    assert location["Latitude"] == 25.7617 and location["OccupancyCode"] == "1050"
    assert Decimal(location["BuildingTiv"]) == Decimal("1000000.01")

    # Column types list every column, in order, with the key flagged.
    treaties = table("Treaties")
    assert [(c.name, c.type_json, c.is_primary_key, c.ordinal_position)
            for c in first["Treaties"].row_type] == [
        (c.name, c.spanner_type_json, c.name in treaties.primary_key, c.ordinal_position)
        for c in treaties.columns
    ]

    # NEW_ROW: an update carries the whole row, not only the changed column.
    (update,) = t2
    assert (update.table_name, update.mod_type) == ("Treaties", "UPDATE")
    row = json.loads(update.mods[0].new_values_json)
    assert Decimal(row["CessionRate"]) == MAX_NUMERIC
    assert row["Name"] == "Property QS"

    third = {r.table_name: r for r in t3}
    assert third["Participations"].mod_type == "DELETE"
    assert third["Participations"].mods[0].keys_json == '{"ReinsurerId":"R2","TreatyId":"T1"}'
    assert third["Participations"].mods[0].new_values_json == "{}"
    assert third["Reinsurers"].mod_type == "UPDATE"
    assert json.loads(third["Reinsurers"].mods[0].new_values_json) == {
        "CountryCode": "GB", "Name": "Renamed",
    }


# --- (b) partition following -------------------------------------------------------------


def test_every_change_read_once_across_partition_splits_and_merges(ledger_db):
    _, database = ledger_db
    start = database_now(database)
    expected = Counter()
    deadline = time.monotonic() + 5.0  # the test emulator churns partitions every ~2 s
    n = 0
    while time.monotonic() < deadline:
        ids = [f"R{n:05d}-{k}" for k in range(3)]
        insert_reinsurers(database, ids)
        expected.update(ids)
        n += 1
        time.sleep(0.01)
    stats = ReadStats()
    records = read_all(database, start, database_now(database), stats=stats, max_workers=3)

    got = Counter(json.loads(m.keys_json)["ReinsurerId"] for r in records for m in r.mods)
    assert got == expected
    assert all(count == 1 for count in got.values())
    assert len(by_transaction(records)) == n
    assert stats.partitions_read > 2
    assert len({r.partition_token for r in records}) > 1


def test_merge_child_waits_for_all_parents_and_is_read_once():
    """A scripted tree: root -> A, B; A and B both announce the merge child M; M -> N."""
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def at(seconds):
        return t0 + timedelta(seconds=seconds)

    tree = {
        None: [_ChildPartition("A", (), at(0)), _ChildPartition("B", (), at(0))],
        "A": [_ChildPartition("M", ("A", "B"), at(5))],
        "B": [_ChildPartition("M", ("A", "B"), at(5))],
        "M": [_ChildPartition("N", ("M",), at(8))],
        "N": [],
    }
    log, lock = [], threading.Lock()

    def query(token, start):
        with lock:
            log.append(("start", token, start))
        if token == "B":
            time.sleep(0.3)  # B finishes long after A announced M
        yield from tree[token]
        with lock:
            log.append(("end", token, start))

    progress = []
    stats = ReadStats()
    assert list(_follow_partitions(query, "S", t0, at(10), 4, progress.append, stats)) == []
    starts = [e for e in log if e[0] == "start"]
    assert sorted(token or "" for _, token, _ in starts) == ["", "A", "B", "M", "N"]
    assert ("start", "M", at(5)) in starts
    assert log.index(("start", "M", at(5))) > log.index(("end", "B", at(0)))
    assert log.index(("start", "M", at(5))) > log.index(("end", "A", at(0)))
    assert stats.partitions_read == 4
    assert progress == sorted(progress) and progress[-1] == at(10)


def test_closing_the_reader_early_stops_its_threads(ledger_db):
    _, database = ledger_db
    start = database_now(database)
    for i in range(20):
        insert_reinsurers(database, [f"E{i}"])
    records = read_change_stream(database, CHANGE_STREAM_NAME, start, database_now(database),
                                 max_workers=2)
    assert next(records).table_name == "Reinsurers"
    began = time.monotonic()
    records.close()
    assert time.monotonic() - began < 5
    assert not [t for t in threading.enumerate() if t.name.startswith("rex-change-stream")]


# --- (c) time window ---------------------------------------------------------------------


def test_window_returns_exactly_the_transactions_inside_it(ledger_db):
    _, database = ledger_db
    committed = []
    for i in range(8):
        committed.append(insert_reinsurers(database, [f"W{i}"]))
        time.sleep(0.02)

    def keys(start, end):
        return sorted(
            json.loads(m.keys_json)["ReinsurerId"]
            for r in read_all(database, start, end) for m in r.mods
        )

    # Both ends are inclusive, to the commit timestamp.
    assert keys(committed[2], committed[5]) == ["W2", "W3", "W4", "W5"]
    one_us = timedelta(microseconds=1)
    assert keys(committed[2] + one_us, committed[5] - one_us) == ["W3", "W4"]
    assert keys(committed[7] + one_us, database_now(database)) == []


# --- (d) Beam ----------------------------------------------------------------------------


def mod_rows(mods: pa.Table) -> list[tuple]:
    """The identity and content of each mod in a MODS_SCHEMA table, as plain tuples."""
    assert mods.schema.equals(MODS_SCHEMA)
    micros = mods.column("commit_timestamp").cast(pa.int64()).to_pylist()
    nanos = mods.column("commit_timestamp_nanos").to_pylist()
    rest = mods.select([
        "server_transaction_id", "record_sequence", "mod_index", "table_name", "mod_type",
        "keys_json", "new_values_json", "partition_token",
    ]).to_pylist()
    return [
        (us * 1000 + ns, *row.values()) for us, ns, row in zip(micros, nanos, rest)
    ]


def record_rows(records) -> list[tuple]:
    return [
        (r.commit_timestamp_ns, r.server_transaction_id, r.record_sequence, i, r.table_name,
         r.mod_type, m.keys_json, m.new_values_json, r.partition_token)
        for r in records for i, m in enumerate(r.mods)
    ]


def more_than_one(counts):
    assert counts[0] > 1, f"expected the mods in several tables, got {counts}"


def test_beam_transform_returns_the_same_mods(ledger_db):
    path, database = ledger_db
    start = database_now(database)
    for i in range(12):
        insert_reinsurers(database, [f"B{i}-{k}" for k in range(i % 4 + 1)])
    with database.batch() as batch:
        batch.delete("Reinsurers", spanner.KeySet(keys=[["B0-0"], ["B1-0"]]))
    end = database_now(database)
    expected = record_rows(read_all(database, start, end))
    assert len(expected) == sum(i % 4 + 1 for i in range(12)) + 2

    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    tables = pipeline | ReadSpannerChangeStream(str(path), start, end, batch_mods=7)
    assert_that(tables | beam.FlatMap(mod_rows), equal_to(expected))
    assert_that(
        tables | beam.Map(lambda t: 1) | beam.CombineGlobally(sum),
        more_than_one, label="SeveralTables",
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("rex"))["counters"]
    }
    assert counters["mods_read"] == len(expected)
    assert counters["records_read"] == 13
    assert counters["partitions_read"] >= 1


# --- (e) failing fast --------------------------------------------------------------------


def assert_fails_fast(fn, *message_parts):
    began = time.monotonic()
    with pytest.raises(LedgerSourceError) as caught:
        fn()
    elapsed = time.monotonic() - began
    message = str(caught.value)
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f} s: {message}"
    assert "\n" not in message
    for part in message_parts:
        assert part in message
    return message


def test_unreachable_emulator_fails_fast(spanner_emulator, monkeypatch):
    # The environment names a live emulator; the explicit host must still be the one used.
    monkeypatch.setenv("SPANNER_EMULATOR_HOST", spanner_emulator.host_port)
    host = f"127.0.0.1:{free_loopback_port()}"
    path = DatabasePath("rex-test", "nowhere", "ledger")
    assert_fails_fast(lambda: open_ledger_database(path, emulator_host=host), "cannot reach", host)


def test_beam_transform_checks_the_database_at_construction(ledger_db):
    path, database = ledger_db
    missing = DatabasePath(path.project, path.instance, "no-such-db")
    end = database_now(database)
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    assert_fails_fast(
        lambda: pipeline | ReadSpannerChangeStream(str(missing), end - timedelta(seconds=1), end),
        "not found",
    )


def test_missing_instance_fails_fast(ledger_db):
    path, _ = ledger_db
    missing = DatabasePath(path.project, "no-such-instance", path.database)
    assert_fails_fast(lambda: open_ledger_database(missing), "instance", "not found")


def test_missing_database_fails_fast(ledger_db):
    path, _ = ledger_db
    missing = DatabasePath(path.project, path.instance, "no-such-db")
    assert_fails_fast(lambda: open_ledger_database(missing), str(missing), "not found")


def test_missing_change_stream_fails_fast(ledger_db):
    path, database = ledger_db
    bare = DatabasePath(path.project, path.instance, path.database[:20] + "-bare")
    tables_only = [s for s in ddl_statements() if not s.startswith("CREATE CHANGE STREAM")]
    instance = spanner_client(path.project).instance(path.instance)
    instance.database(bare.database, ddl_statements=tables_only).create().result(60)
    assert_fails_fast(lambda: open_ledger_database(bare), "no change stream LedgerChanges")
    assert open_ledger_database(path) is not None


def test_start_before_the_stream_existed_fails_fast(ledger_db):
    _, database = ledger_db
    end = database_now(database)
    an_hour_ago = end - timedelta(hours=1)
    assert_fails_fast(lambda: read_all(database, an_hour_ago, end), "too far in the past")


def test_create_twice_needs_exist_ok(ledger_db):
    path, _ = ledger_db
    assert_fails_fast(lambda: create_ledger_database(path), "already exists")
    assert create_ledger_database(path, exist_ok=True) is not None


@pytest.mark.parametrize("text", [
    "projects/p/instances/i/databases/d",
    "spanner://projects/p/instances/i/databases/d",
])
def test_database_path_parses(text):
    path = DatabasePath.parse(text)
    assert path == DatabasePath("p", "i", "d")
    assert str(path) == "projects/p/instances/i/databases/d"


@pytest.mark.parametrize("text", ["", "p/i/d", "projects/p/instances/i", "gs://projects/p/x"])
def test_database_path_rejects_other_text(text):
    with pytest.raises(LedgerSourceError, match="bad Spanner database path"):
        DatabasePath.parse(text)
