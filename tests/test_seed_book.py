"""The seeded book and its two writers: change-record files and real Spanner commits.

What is checked: the book is a deterministic function of its arguments; even a small book
holds every table and every premium and claim transaction type; it is a valid mutation
sequence (deletes only of existing leaf rows, full rows on insert/update); money is Decimal
rounded to the currency's minor units; treaty shares add up. The file writer's records are
byte-identical to the DataChangeRecord model's JSON and decode back to the same ledger. Against
the real emulator: committing a book leaves exactly the replayed rows, and the change stream
Spanner emits for it carries the same records, mods and JSON encodings as the files.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest

from transforms.change_record import DataChangeRecord
from transforms.currencies import minor_units
from transforms.errors import RexError
from transforms.ledger_schema import CHANGE_STREAM_NAME, ledger_tables
from transforms.seed_book import (
    CLAIM_TRANSACTION_TYPES,
    PREMIUM_TYPES,
    book_summary,
    generate_book,
    replay_book,
)
from transforms.seed_files import numeric_text, write_book_files, write_change_files
from transforms.seed_spanner import write_to_spanner
from transforms.spanner_change_stream import read_change_stream
from transforms.spanner_ledger import database_now

SMALL = dict(seed=11, policies=50, days=30)
START = date(2026, 1, 1)


def small_book(**overrides):
    return list(generate_book(**{**SMALL, **overrides}))


# --- the book ------------------------------------------------------------------------------

def test_same_arguments_give_the_same_book_and_another_seed_another():
    assert small_book() == small_book()
    assert small_book() != small_book(seed=12)
    shifted = small_book(start_date=date(2027, 3, 1))
    assert shifted[1].tag == "seed:fx-rates" and shifted[1].mutations[0].row["RateDate"] == date(2027, 3, 1)


@pytest.mark.parametrize("seed", [1, 7, 11, 42])
def test_a_small_book_holds_every_table_and_transaction_type(seed):
    book = small_book(seed=seed)
    summary = book_summary(book)
    assert set(summary["per_table"]) == set(ledger_tables())
    assert set(summary["premium_types"]) == set(PREMIUM_TYPES)
    assert set(summary["claim_types"]) == set(CLAIM_TRANSACTION_TYPES)
    assert set(summary["mod_types"]) == {"INSERT", "UPDATE", "DELETE"}
    changed = {(m.table, m.op) for t in book for m in t.mutations}
    assert {("Locations", "update"), ("Locations", "insert"), ("Locations", "delete"),
            ("ClaimTransactions", "delete"), ("Policies", "update"), ("Claims", "update")} <= changed
    claim_statuses = {m.row["Status"] for t in book for m in t.mutations if m.table == "Claims"}
    assert claim_statuses == {"OPEN", "CLOSED", "REOPENED"}
    final = replay_book(book)
    assert any(c["CatEventCode"] for c in final["Claims"].values())
    assert any(p["TreatyId"] is None for p in final["Policies"].values())
    assert any(p["TreatyId"] for p in final["Policies"].values())
    assert all(len(t.mutations) > 1 for t in book if t.tag == "seed:policy-bind")


def test_volume_scales_with_policies():
    small, large = book_summary(small_book()), book_summary(generate_book(seed=11, policies=400, days=30))
    assert small["per_table"]["Policies"] >= 50 and large["per_table"]["Policies"] >= 400
    assert large["records"] > 4 * small["records"]


def test_rows_are_full_on_insert_and_update_and_keys_only_on_delete():
    tables = ledger_tables()
    for txn in small_book():
        for m in txn.mutations:
            expected = tables[m.table].primary_key if m.op == "delete" else tuple(tables[m.table].column_names)
            assert tuple(m.row) == tuple(expected), (txn.tag, m)


def test_deletes_touch_only_existing_leaf_rows():
    book = small_book()
    parents = {t.parent for t in ledger_tables().values() if t.parent}
    deleted = {m.table for t in book for m in t.mutations if m.op == "delete"}
    assert deleted == {"Locations", "ClaimTransactions"}
    assert not deleted & parents
    replay_book(book)  # raises on a delete (or update) of a missing row, or a duplicate insert


def test_a_row_changes_at_most_once_per_transaction_and_parents_are_inserted_first():
    tables = ledger_tables()
    for txn in generate_book(seed=3, policies=300, days=90):
        keys = [(m.table, tuple(m.row[k] for k in tables[m.table].primary_key)) for m in txn.mutations]
        assert len(keys) == len(set(keys)), txn.tag
        inserted_at = {key: i for i, (key, m) in enumerate(zip(keys, txn.mutations)) if m.op == "insert"}
        for i, (table_name, key) in enumerate(keys):
            parent = tables[table_name].parent
            if parent:
                parent_key = (parent, key[:len(tables[parent].primary_key)])
                assert inserted_at.get(parent_key, -1) < i, txn.tag


def test_treaties_cover_each_type_and_fully_placed_shares_sum_to_one():
    final = replay_book(small_book())
    treaties = final["Treaties"]
    assert {t["TreatyType"] for t in treaties.values()} == {"QUOTA_SHARE", "SURPLUS", "XOL_PER_RISK"}
    shares = defaultdict(Decimal)
    for p in final["Participations"].values():
        shares[p["TreatyId"]] += p["SharePct"]
    assert set(shares) == {t["TreatyId"] for t in treaties.values()}
    assert sorted(set(shares.values())) == [Decimal("0.9"), Decimal("1")]
    for t in treaties.values():
        assert t["InceptionDate"] <= START < t["ExpiryDate"] and t["Umr"].startswith("B0999")
        needed = {"QUOTA_SHARE": ("CessionRate",), "SURPLUS": ("Retention", "Lines"),
                  "XOL_PER_RISK": ("Attachment", "Limit")}[t["TreatyType"]]
        assert all(t[c] is not None for c in needed)
    fx = final["FxRates"]
    assert {c for c, _d in fx} == {"USD", "EUR", "GBP", "JPY", "CHF", "BHD"}
    assert len(fx) == 6 * SMALL["days"]


def test_money_is_decimal_rounded_to_minor_units_and_only_coordinates_are_float():
    tables = ledger_tables()
    book = generate_book(seed=5, policies=300, days=120)
    policy_currency = {}
    for txn in book:
        for m in txn.mutations:
            if m.op == "delete":
                continue
            for column in tables[m.table].columns:
                value = m.row[column.name]
                if column.spanner_type == "NUMERIC":
                    assert value is None or isinstance(value, Decimal), (m.table, column.name, value)
                elif isinstance(value, float):
                    assert column.spanner_type == "FLOAT64" and column.name in ("Latitude", "Longitude")
            if m.table == "Policies":
                policy_currency[m.row["PolicyId"]] = m.row["Currency"]
            currency = m.row.get("Currency") or policy_currency.get(m.row.get("PolicyId"))
            if m.table in ("PremiumTransactions", "ClaimTransactions", "Locations"):
                for column in tables[m.table].columns:
                    value = m.row[column.name]
                    if column.spanner_type == "NUMERIC" and value is not None:
                        assert value.as_tuple().exponent >= -minor_units(currency), (m.table, column.name, value)


def test_business_dates_follow_the_simulated_days():
    days = 60
    last_day = START + timedelta(days=days - 1)
    final = replay_book(generate_book(seed=9, policies=200, days=days, start_date=START))
    for pt in final["PremiumTransactions"].values():
        assert START <= pt["BookedDate"] <= last_day
    claims = final["Claims"]
    for c in claims.values():
        assert c["LossDate"] <= c["ReportedDate"] <= last_day
    for ct in final["ClaimTransactions"].values():
        assert claims[(ct["ClaimId"],)]["ReportedDate"] <= ct["BookedDate"] <= last_day


def test_claim_transactions_carry_paid_in_the_transaction_and_reserve_after_it():
    final = replay_book(generate_book(seed=2, policies=2000, days=240))
    by_claim = defaultdict(list)
    for ct in final["ClaimTransactions"].values():
        by_claim[ct["ClaimId"]].append(ct)
    for claim_id, txns in by_claim.items():
        txns.sort(key=lambda ct: ct["TransactionId"])
        assert txns[0]["TransactionType"] == "OPEN" and txns[0]["ReserveAmount"] > 0
        for ct in txns:
            kind, paid, reserve = ct["TransactionType"], ct["PaidAmount"], ct["ReserveAmount"]
            assert reserve >= 0
            assert (paid > 0) if kind == "PAYMENT" else (paid < 0) if kind == "RECOVERY" else (paid == 0)
            if kind == "CLOSE":
                assert reserve == 0
        status = "OPEN"
        for ct in txns:
            status = {"CLOSE": "CLOSED", "REOPEN": "REOPENED"}.get(ct["TransactionType"], status)
        assert final["Claims"][(claim_id,)]["Status"] == status


# --- change-record files --------------------------------------------------------------------

def read_records(out_dir) -> list[tuple[str, str]]:
    lines = []
    for name in sorted(os.listdir(out_dir)):
        with open(os.path.join(out_dir, name), encoding="utf-8") as f:
            lines += [(name, line) for line in f]
    return lines


def test_files_hold_spanners_records_per_transaction(tmp_path):
    book = small_book()
    stats = write_change_files(book, tmp_path, shard_records=40, seed=SMALL["seed"])
    lines = read_records(tmp_path)
    records = [DataChangeRecord.from_gson(json.loads(line)) for _name, line in lines]
    assert [r.to_json_line() + "\n" for r in records] == [line for _name, line in lines]

    by_txn = defaultdict(list)
    files_of_txn = defaultdict(set)
    for (name, _line), r in zip(lines, records):
        by_txn[r.server_transaction_id].append(r)
        files_of_txn[r.server_transaction_id].add(name)
    assert len(by_txn) == len(book) == stats["transactions"]
    assert all(len(names) == 1 for names in files_of_txn.values())  # files hold whole transactions
    assert stats["files"] == len(os.listdir(tmp_path)) > 1
    assert sorted(os.listdir(tmp_path))[0] == "changes-00000.jsonl"

    previous_commit = None
    for txn, recs in zip(book, by_txn.values()):
        groups = txn.record_groups()
        assert [r.record_sequence for r in recs] == [f"{i:08d}" for i in range(len(groups))]
        assert {r.number_of_records_in_transaction for r in recs} == {len(groups)}
        assert [r.is_last_record_in_transaction_in_partition for r in recs] == [False] * (len(recs) - 1) + [True]
        assert [(r.table_name, r.mod_type) for r in recs] == [(t, op.upper()) for t, op, _ in groups]
        assert [len(r.mods) for r in recs] == [len(muts) for _t, _op, muts in groups]
        assert {r.transaction_tag for r in recs} == {txn.tag}
        assert {r.commit_timestamp_ns for r in recs} == {recs[0].commit_timestamp_ns}
        assert previous_commit is None or recs[0].commit_timestamp_ns > previous_commit
        previous_commit = recs[0].commit_timestamp_ns
        for r in recs:
            assert r.value_capture_type == "NEW_ROW" and r.number_of_partitions_in_transaction == 1
            assert [c.name for c in r.row_type] == ledger_tables()[r.table_name].column_names
            assert all(m.old_values_json == "{}" for m in r.mods)
            if r.mod_type == "DELETE":
                assert all(m.new_values_json == "{}" for m in r.mods)
    assert stats["records"] == len(records) and stats["mods"] == sum(len(r.mods) for r in records)


DECODERS = {"STRING": str, "INT64": int, "NUMERIC": Decimal, "DATE": date.fromisoformat, "FLOAT64": float}


def decode(table_name: str, json_text: str) -> dict:
    """Change-record JSON back into Python values, by the column types of the ledger DDL."""
    table = ledger_tables()[table_name]
    return {name: None if v is None else DECODERS[table.column(name).spanner_type](v)
            for name, v in json.loads(json_text).items()}


def decode_files(out_dir) -> dict:
    """The ledger's final rows as the change-record files in a folder carry them."""
    state = {name: {} for name in ledger_tables()}
    for name, line in read_records(out_dir):
        if not name.startswith("changes-"):
            continue  # e.g. the seed manifest
        r = DataChangeRecord.from_gson(json.loads(line))
        table = ledger_tables()[r.table_name]
        for m in r.mods:
            keys = decode(r.table_name, m.keys_json)
            key = tuple(keys[k] for k in table.primary_key)
            if r.mod_type == "DELETE":
                del state[r.table_name][key]
            else:
                row = {**keys, **decode(r.table_name, m.new_values_json)}
                assert sorted(row) == sorted(table.column_names)
                state[r.table_name][key] = {c: row[c] for c in table.column_names}
    return state


def test_files_decode_back_to_the_replayed_ledger(tmp_path):
    book = list(generate_book(seed=4, policies=150, days=45))
    write_change_files(book, tmp_path)
    assert decode_files(tmp_path) == replay_book(book)


@pytest.mark.parametrize("value, text", [
    ("2500000.00", "2500000"), ("0.40", "0.4"), ("0.000000001", "0.000000001"), ("-3.50", "-3.5"),
    ("0E-9", "0"), ("-0.00", "0"), ("1E+3", "1000"),
    ("12345678901234567890.123456789", "12345678901234567890.123456789"),
])
def test_numeric_text_is_spanners(value, text):
    assert numeric_text(Decimal(value)) == text


def test_file_writer_refuses_a_folder_with_change_files(tmp_path):
    write_change_files(small_book(policies=3, days=5), tmp_path)
    with pytest.raises(RexError, match="already holds change files"):
        write_change_files(small_book(policies=3, days=5), tmp_path)


# --- desks: big books are generated in parallel -------------------------------------------

DESKED = dict(seed=5, policies=90, days=60, desk_policies=25)  # four desks of 22-23 policies


def test_a_desked_book_is_one_valid_ledger_with_unique_ids():
    book = list(generate_book(**DESKED))
    assert {t.desk for t in book} == {0, 1, 2, 3}
    assert [(t.day, t.desk) for t in book] == sorted((t.day, t.desk) for t in book)
    final = replay_book(book)  # raises on a duplicate insert: ids are unique across desks
    assert len(final["Policies"]) == 90
    assert sum(t.tag.startswith("seed:reference") or t.tag == "seed:fx-rates" for t in book) == 2
    policies_by_desk = defaultdict(set)
    for t in book:
        for m in t.mutations:
            if m.table == "Policies":
                policies_by_desk[t.desk].add(m.row["PolicyId"])
    assert all(a.isdisjoint(b) for a in policies_by_desk.values() for b in policies_by_desk.values() if a is not b)
    events = defaultdict(set)  # a catastrophe's code names one peril on every desk
    for claim in final["Claims"].values():
        if claim["CatEventCode"]:
            events[claim["CatEventCode"]].add((claim["Peril"], claim["LossDate"]))
    assert events and all(len(v) == 1 for v in events.values())


def test_desks_written_in_parallel_hold_the_records_of_the_sequential_writer(tmp_path):
    parallel = write_book_files(DESKED["seed"], 90, 60, str(tmp_path / "parallel"), workers=2, desk_policies=25)
    book = generate_book(**DESKED)
    sequential = write_change_files(book, str(tmp_path / "sequential"), seed=DESKED["seed"])
    assert parallel["files"] == 4 and sorted(os.listdir(tmp_path / "parallel"))[0] == "changes-d00-00000.jsonl"
    assert {k: v for k, v in parallel.items() if k != "files"} == {k: v for k, v in sequential.items() if k != "files"}
    assert sorted(line for _n, line in read_records(tmp_path / "parallel")) == \
        sorted(line for _n, line in read_records(tmp_path / "sequential"))
    commits = [json.loads(line)["commitTimestamp"] for _n, line in read_records(tmp_path / "sequential")]
    assert commits == sorted(commits, key=lambda c: (c["seconds"], c["nanos"]))  # merged order = commit order


# --- real Spanner (emulator) ----------------------------------------------------------------

def table_rows(database) -> dict[str, dict[tuple, dict]]:
    state = {}
    with database.snapshot(multi_use=True) as snap:
        for name, t in ledger_tables().items():
            columns = ", ".join(f"`{c}`" for c in t.column_names)
            rows = snap.execute_sql(f"SELECT {columns} FROM {name}")
            state[name] = {}
            for values in rows:
                row = dict(zip(t.column_names, values))
                state[name][tuple(row[k] for k in t.primary_key)] = row
    return state


def test_spanner_ends_with_the_replayed_rows(ledger_db):
    _path, database = ledger_db
    book = small_book()
    calls = []
    stats = write_to_spanner(book, database, on_progress=lambda txns, mods: calls.append((txns, mods)))
    assert stats["transactions"] == len(book) == len(calls)
    assert calls[-1] == (stats["transactions"], stats["mods"])
    assert stats["first_commit"] < stats["last_commit"]
    assert table_rows(database) == replay_book(book)


def canonical(json_text: str) -> str:
    """Spanner's own JSON form: sorted keys, compact, non-ASCII as is (the client library
    re-serialises JSON columns, escaping non-ASCII, so the reader's text is normalised here)."""
    return json.dumps(json.loads(json_text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_spanners_change_stream_matches_the_files(ledger_db, tmp_path):
    _path, database = ledger_db
    book = small_book(seed=7, policies=40)
    start = database_now(database)
    write_to_spanner(book, database)
    end = database_now(database)
    streamed = defaultdict(list)
    for r in read_change_stream(database, CHANGE_STREAM_NAME, start, end):
        streamed[(r.commit_timestamp_ns, r.server_transaction_id)].append(r)
    write_change_files(book, tmp_path)
    written = defaultdict(list)
    for _name, line in read_records(tmp_path):
        r = DataChangeRecord.from_gson(json.loads(line))
        written[r.server_transaction_id].append(r)

    assert len(streamed) == len(written) == len(book)
    in_commit_order = [records for _commit, records in sorted(streamed.items())]
    for from_spanner, from_files in zip(in_commit_order, written.values()):
        assert {r.number_of_records_in_transaction for r in from_spanner} == {len(from_files)}
        assert sorted(r.record_sequence for r in from_spanner) == [r.record_sequence for r in from_files]
        assert record_contents(from_spanner, canonical) == record_contents(from_files, str)


def record_contents(records, normalise) -> dict:
    """(table, mod type) -> (rowType, sorted mods): what must match whatever the record order."""
    return {
        (r.table_name, r.mod_type): (
            [(c.name, c.type_json, c.is_primary_key, c.ordinal_position) for c in r.row_type],
            sorted((normalise(m.keys_json), normalise(m.new_values_json), normalise(m.old_values_json))
                   for m in r.mods),
        )
        for r in records
    }
