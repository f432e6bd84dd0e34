"""Write a seeded book as change-record files, exactly as Spanner's change stream would emit it.

Each ledger transaction becomes the data change records Spanner emits for it under
value_capture_type NEW_ROW: one record per (table, mod type) holding all of that table's mods
of that type, numbered "00000000", "00000001"… within the transaction, the last one flagged
is-last-in-transaction-in-partition. Records are written as JSON lines in the Gson form of
Beam's Java DataChangeRecord (what Google's change-streams-to-GCS template writes), byte for
byte what `DataChangeRecord.to_json_line()` gives, but assembled from pre-serialised pieces:
a 1M-record book is a few million JSON values, and a dict per record would cost most of the time.

The row JSON (keysJson / newValuesJson) follows what the Cloud Spanner emulator emits, checked
against it (tests/test_seed_book.py): keys sorted by column name, compact separators, non-ASCII
kept as is; NUMERIC as a string without trailing zeros or exponent ("2500000", "0.4"), INT64
and DATE as strings, FLOAT64 as a JSON number, NULL as null; newValuesJson holds every non-key
column (NEW_ROW), "{}" for a DELETE; oldValuesJson is "{}" under NEW_ROW. The records of a
transaction follow the first appearance of each (table, mod type) in it; the emulator numbers
them in its own order, so readers must rely on record_sequence, not on table order.

Spanner fills in what a file writer must invent: one synthetic partition token, a server
transaction id derived from the book's seed, the desk and the transaction's ordinal on its
desk, and commit timestamps: business day d of the book commits in minute d after
`first_commit`, each desk in its own slice of that minute, its transactions 1 µs apart. So a
desk's timestamps follow from the desk alone, and desks are written in parallel
(`write_book_files`) to the same records the sequential writer gives. Reports never read
commit timestamps (they use business dates).
"""
from __future__ import annotations

import gc
import hashlib
import json
import multiprocessing
import os
from contextlib import contextmanager
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import cache
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Callable, Iterable

from transforms.change_record import ns_to_rfc3339, timestamp_to_ns
from transforms.errors import RexError
from transforms.ledger_schema import Table, ledger_tables
from transforms.seed_book import (
    MAX_DESKS,
    BookDesk,
    BookTally,
    LedgerTransaction,
    Mutation,
    book_desks,
    desk_book,
)
from transforms.seed_defects import DefectInjector, merge_defects

FIRST_COMMIT = datetime(2026, 1, 1, tzinfo=timezone.utc)
PARTITION_TOKEN = "rex-seeded-book-partition-0"
DAY_NS = 60 * 1_000_000_000  # one business day of the book commits within one minute
DESK_SLOT_NS = DAY_NS // MAX_DESKS
COMMIT_STEP_NS = 1_000  # 1 µs between a desk's transactions of a day
FILE_PATTERN = "changes-{:05d}.jsonl"
DESK_FILE_PATTERN = "changes-d{desk:02d}-{n:05d}.jsonl"


def numeric_text(value: Decimal) -> str:
    """NUMERIC as Spanner's change stream spells it: plain digits, no trailing zeros."""
    text = str(value)  # three times faster than format(value, "f"), but may use an exponent
    if "E" in text:
        text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _numeric_json(value: Decimal) -> str:
    return '"' + numeric_text(value) + '"'


@cache  # a book spans a few thousand dates but holds millions of date values
def _date_json(value: date) -> str:
    return '"' + value.isoformat() + '"'


# JSON text of a non-NULL value, per column type. Mostly C functions: the writer encodes
# millions of values and a Python call per value is most of its cost. A type the ledger does
# not use yet must be checked against the emulator before it is added here.
_VALUE_JSON: dict[str, Callable[[object], str]] = {
    "STRING": encode_basestring,
    "INT64": '"%d"'.__mod__,
    "NUMERIC": _numeric_json,
    "DATE": _date_json,
    "FLOAT64": float.__repr__,
}
_MOD_TYPES = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}
_EMPTY_OBJECT = encode_basestring_ascii("{}")
_TOKEN_JSON = encode_basestring_ascii(PARTITION_TOKEN)


class _TableCodec:
    """One table's pre-serialised record pieces (name, rowType) and its row encoders."""

    def __init__(self, table: Table):
        try:
            self.keys = self._fields(table, sorted(table.primary_key))
            self.values = self._fields(table, sorted(c.name for c in table.value_columns))
        except KeyError as exc:
            raise RexError(f"{table.name} has a column of type {exc.args[0]}, which the file writer cannot encode")
        row_type = json.dumps(
            [{"name": c.name, "type": {"code": c.spanner_type_json}, "isPrimaryKey": c.name in table.primary_key,
              "ordinalPosition": c.ordinal_position} for c in table.columns],
            separators=(",", ":"),
        )
        self.head = f',"tableName":{encode_basestring_ascii(table.name)},"rowType":{row_type},"mods":['

    @staticmethod
    def _fields(table: Table, names: list[str]) -> list[tuple[str, str, Callable]]:
        return [(name, encode_basestring(name) + ":", _VALUE_JSON[table.column(name).spanner_type])
                for name in names]

    @staticmethod
    def _object(fields, row: dict) -> str:
        """A row as Spanner's change stream writes it: sorted keys, compact, non-ASCII as is."""
        return "{" + ",".join([prefix + ("null" if (v := row[name]) is None else encode(v))
                               for name, prefix, encode in fields]) + "}"

    def mod_json(self, m: Mutation) -> str:
        keys = encode_basestring_ascii(self._object(self.keys, m.row))
        new = _EMPTY_OBJECT if m.op == "delete" else encode_basestring_ascii(self._object(self.values, m.row))
        return '{"keysJson":' + keys + ',"oldValuesJson":' + _EMPTY_OBJECT + ',"newValuesJson":' + new + "}"


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while a book streams through.

    A big book keeps millions of small objects alive until it ends (the generator's state);
    the collector would rescan them over and over, about a third of the run, and no cycle
    needs collecting before the end."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def server_transaction_id(seed: int, ordinal: int, desk: int = 0) -> str:
    """A stable, opaque id for a desk's `ordinal`-th transaction (Spanner's ids are opaque too)."""
    label = f"rex-seed:{seed}:{ordinal}" if desk == 0 else f"rex-seed:{seed}:{desk}:{ordinal}"
    return hashlib.blake2b(label.encode(), digest_size=12).hexdigest()


class _CommitClock:
    """Commit timestamps and transaction ids of a book's transactions, desk by desk."""

    def __init__(self, first_commit: datetime, seed: int):
        if first_commit.tzinfo is None:
            raise RexError("first_commit must be timezone-aware (UTC)")
        self.first_ns, self.seed = timestamp_to_ns(first_commit), seed
        self.ordinal: dict[int, int] = {}  # desk -> transactions so far
        self.slot: dict[int, tuple[int, int]] = {}  # desk -> (day, transactions that day)
        self.first = self.last = None

    def stamp(self, txn: LedgerTransaction) -> tuple[int, str]:
        desk, day = txn.desk, txn.day
        ordinal = self.ordinal.get(desk, 0)
        self.ordinal[desk] = ordinal + 1
        last_day, in_day = self.slot.get(desk, (day, 0))
        in_day = in_day if last_day == day else 0
        self.slot[desk] = (day, in_day + 1)
        if in_day * COMMIT_STEP_NS >= DESK_SLOT_NS:
            raise RexError(f"desk {desk} books over {DESK_SLOT_NS // COMMIT_STEP_NS} transactions on day {day}")
        commit_ns = self.first_ns + day * DAY_NS + desk * DESK_SLOT_NS + in_day * COMMIT_STEP_NS
        self.first = commit_ns if self.first is None else min(self.first, commit_ns)
        self.last = commit_ns if self.last is None else max(self.last, commit_ns)
        return commit_ns, server_transaction_id(self.seed, ordinal, desk)

    def window(self) -> dict:
        if self.first is None:
            return {}
        return {"first_commit": ns_to_rfc3339(self.first), "last_commit": ns_to_rfc3339(self.last)}


def transaction_lines(txn: LedgerTransaction, groups: list[tuple[str, str, list[Mutation]]], commit_ns: int,
                      txn_id: str, codecs: dict[str, _TableCodec]) -> list[str]:
    """The JSON lines of one transaction's change records, fields in Gson's order."""
    seconds, nanos = divmod(commit_ns, 1_000_000_000)
    prefix = (f'{{"partitionToken":{_TOKEN_JSON},"commitTimestamp":{{"seconds":{seconds},"nanos":{nanos}}},'
              f'"serverTransactionId":{encode_basestring_ascii(txn_id)},"isLastRecordInTransactionInPartition":')
    suffix = (f'","valueCaptureType":"NEW_ROW","numberOfRecordsInTransaction":{len(groups)},'
              f'"numberOfPartitionsInTransaction":1,"transactionTag":{encode_basestring_ascii(txn.tag)},'
              '"isSystemTransaction":false}\n')
    last = len(groups) - 1
    lines = []
    for sequence, (table, op, muts) in enumerate(groups):
        codec = codecs[table]
        lines.append("".join([
            prefix, "true" if sequence == last else "false", ',"recordSequence":"%08d"' % sequence, codec.head,
            ",".join([codec.mod_json(m) for m in muts]), '],"modType":"', _MOD_TYPES[op], suffix,
        ]))
    return lines


class _Shards:
    """The numbered output files. A new file starts once the current one holds `limit`
    records, and only between transactions, so every file holds whole transactions."""

    def __init__(self, out_dir: str, limit: int, name: Callable[[int], str] = FILE_PATTERN.format):
        self.out_dir, self.limit, self.name = out_dir, limit, name
        self.files, self.in_file, self.out = 0, 0, None

    def write(self, lines: list[str]) -> None:
        if self.out is None or self.in_file >= self.limit:
            self.close()
            path = os.path.join(self.out_dir, self.name(self.files))
            self.out = open(path, "w", encoding="ascii", newline="\n")
            self.files, self.in_file = self.files + 1, 0
        self.out.writelines(lines)
        self.in_file += len(lines)

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None

    def __enter__(self) -> "_Shards":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_change_files(book: Iterable[LedgerTransaction], out_dir: str, first_commit: datetime = FIRST_COMMIT,
                       shard_records: int = 200_000, *, seed: int = 0,
                       file_name: Callable[[int], str] = FILE_PATTERN.format) -> dict:
    """Write the book as `changes-NNNNN.jsonl` files into `out_dir` and return its counts.

    `seed` only labels the server transaction ids (pass the book's seed so that two books'
    ids differ); the files are otherwise fully determined by the book and `first_commit`."""
    _check_empty(out_dir)
    return _write_transactions(book, out_dir, first_commit, shard_records, seed, file_name)


def _write_transactions(book: Iterable[LedgerTransaction], out_dir: str, first_commit: datetime,
                        shard_records: int, seed: int, file_name: Callable[[int], str]) -> dict:
    codecs = {name: _TableCodec(t) for name, t in ledger_tables().items()}
    tally, clock = BookTally(), _CommitClock(first_commit, seed)
    with gc_paused(), _Shards(out_dir, shard_records, file_name) as shards:
        for txn in book:
            groups = tally.add(txn)
            commit_ns, txn_id = clock.stamp(txn)
            shards.write(transaction_lines(txn, groups, commit_ns, txn_id, codecs))
    return {**tally.as_dict(), "files": shards.files, **clock.window()}


def write_book_files(seed: int, policies: int, days: int, out_dir: str, *, workers: int | None = None,
                     first_commit: datetime = FIRST_COMMIT, shard_records: int = 200_000,
                     desk_policies: int | None = None,
                     on_desk_done: Callable[[int, int], None] | None = None, defects: float = 0.0) -> dict:
    """Generate a seeded book and write it as change-record files, its desks in parallel.

    The records are those `write_change_files(generate_book(...))` writes (same timestamps,
    ids and contents); only the split into files differs: each desk writes its own
    `changes-dNN-NNNNN.jsonl`. A one-desk book is written by this process alone.
    `on_desk_done(done, desks)` reports progress as desks finish. With `defects` > 0 each desk
    plants its own defects (transforms.seed_defects) and the stats list them under "defects"."""
    kwargs = {} if desk_policies is None else {"desk_policies": desk_policies}
    desks = book_desks(seed, policies, days, **kwargs)
    _check_empty(out_dir)
    report = on_desk_done or (lambda _done, _total: None)
    if len(desks) == 1:
        stats = _write_desk((desks[0], out_dir, first_commit, shard_records, defects), FILE_PATTERN.format)
        del stats["desk"]
        report(1, 1)
        return stats
    workers = max(1, min(workers or os.cpu_count() or 1, len(desks)))
    jobs = [(desk, out_dir, first_commit, shard_records, defects) for desk in desks]
    parts: list[dict] = []
    if workers == 1:
        for job in jobs:
            parts.append(_write_desk(job))
            report(len(parts), len(desks))
    else:
        # fork: the children inherit the loaded modules (spawn would re-import Beam & co.)
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for part in pool.imap_unordered(_write_desk, jobs):
                parts.append(part)
                report(len(parts), len(desks))
    total = _merge_stats(sorted(parts, key=lambda p: p["desk"]))
    if defects:
        total["defects"] = merge_defects(p["defects"] for p in parts)
    return total


def _write_desk(job: tuple[BookDesk, str, datetime, int, float],
                file_name: Callable[[int], str] | None = None) -> dict:
    """Write one desk's files (in a worker process, or here for a one-desk book)."""
    desk, out_dir, first_commit, shard_records, defects = job

    def name(n: int) -> str:
        return DESK_FILE_PATTERN.format(desk=desk.index, n=n)

    injector = DefectInjector(desk, defects) if defects else None
    book = injector.apply(desk_book(desk)) if injector else desk_book(desk)
    stats = _write_transactions(book, out_dir, first_commit, shard_records, desk.seed, file_name or name)
    if injector:
        stats["defects"] = injector.defects()
    return {**stats, "desk": desk.index}


def _merge_stats(parts: list[dict]) -> dict:
    total: dict = {"transactions": 0, "records": 0, "mods": 0, "per_table": {}, "mod_types": {}, "files": 0}
    for part in parts:
        for key in ("transactions", "records", "mods", "files"):
            total[key] += part[key]
        for key in ("per_table", "mod_types"):
            for name, n in part[key].items():
                total[key][name] = total[key].get(name, 0) + n
    for key in ("per_table", "mod_types"):
        total[key] = dict(sorted(total[key].items()))
    firsts = [p["first_commit"] for p in parts if "first_commit" in p]
    if firsts:  # RFC 3339 in UTC with fixed width: text order is time order
        total["first_commit"] = min(firsts)
        total["last_commit"] = max(p["last_commit"] for p in parts if "last_commit" in p)
    return total


def _check_empty(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    if any(name.startswith("changes-") and name.endswith(".jsonl") for name in os.listdir(out_dir)):
        raise RexError(f"{out_dir} already holds change files; write the book into an empty folder")
