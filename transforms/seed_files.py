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
transaction id derived from the book's seed and the transaction's ordinal, and commit
timestamps 1 ms apart from `first_commit`. Reports never read them (they use business dates).
"""
from __future__ import annotations

import gc
import hashlib
import json
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
from transforms.seed_book import BookTally, LedgerTransaction, Mutation

FIRST_COMMIT = datetime(2026, 1, 1, tzinfo=timezone.utc)
PARTITION_TOKEN = "rex-seeded-book-partition-0"
COMMIT_STEP_NS = 1_000_000  # 1 ms between transactions
FILE_PATTERN = "changes-{:05d}.jsonl"


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


def server_transaction_id(seed: int, ordinal: int) -> str:
    """A stable, opaque id for the book's `ordinal`-th transaction (Spanner's ids are opaque too)."""
    return hashlib.blake2b(f"rex-seed:{seed}:{ordinal}".encode(), digest_size=12).hexdigest()


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

    def __init__(self, out_dir: str, limit: int):
        self.out_dir, self.limit = out_dir, limit
        self.files, self.in_file, self.out = 0, 0, None

    def write(self, lines: list[str]) -> None:
        if self.out is None or self.in_file >= self.limit:
            self.close()
            path = os.path.join(self.out_dir, FILE_PATTERN.format(self.files))
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
                       shard_records: int = 200_000, *, seed: int = 0) -> dict:
    """Write the book as `changes-NNNNN.jsonl` files into `out_dir` and return its counts.

    `seed` only labels the server transaction ids (pass the book's seed so that two books'
    ids differ); the files are otherwise fully determined by the book and `first_commit`."""
    if first_commit.tzinfo is None:
        raise RexError("first_commit must be timezone-aware (UTC)")
    os.makedirs(out_dir, exist_ok=True)
    if any(name.startswith("changes-") and name.endswith(".jsonl") for name in os.listdir(out_dir)):
        raise RexError(f"{out_dir} already holds change files; write the book into an empty folder")
    codecs = {name: _TableCodec(t) for name, t in ledger_tables().items()}
    tally, first_ns = BookTally(), timestamp_to_ns(first_commit)
    with gc_paused(), _Shards(out_dir, shard_records) as shards:
        for ordinal, txn in enumerate(book):
            groups = tally.add(txn)
            commit_ns = first_ns + ordinal * COMMIT_STEP_NS
            shards.write(transaction_lines(txn, groups, commit_ns, server_transaction_id(seed, ordinal), codecs))
    stats = {**tally.as_dict(), "files": shards.files}
    if tally.transactions:
        stats["first_commit"] = ns_to_rfc3339(first_ns)
        stats["last_commit"] = ns_to_rfc3339(first_ns + (tally.transactions - 1) * COMMIT_STEP_NS)
    return stats
