"""Commit a seeded book to Cloud Spanner (or its emulator), so the ledger's change stream is real.

Each ledger transaction is one Spanner transaction: its mutations go into one commit, tagged
with the transaction's tag. The book writes blind (it never reads), so a mutation batch is the
whole transaction: one round trip per commit, which the client retries if Spanner aborts it.
Consecutive mutations of the same table and kind share one mutation group, in the book's
order, so parents stay ahead of their interleaved children. Values go as the book holds them:
Decimal for NUMERIC, date for DATE, float for FLOAT64.
"""
from __future__ import annotations

import time
from datetime import datetime
from itertools import groupby
from typing import Callable, Iterable

from google.api_core import exceptions as api_exceptions
from google.cloud.spanner_v1 import KeySet
from google.cloud.spanner_v1.database import Database

from transforms.errors import RexError
from transforms.ledger_schema import table as ledger_table
from transforms.seed_book import BookTally, LedgerTransaction, Mutation


def write_to_spanner(book: Iterable[LedgerTransaction], database: Database,
                     on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Commit every transaction of the book in order; return its counts and commit window.

    `on_progress(transactions, mods)` is called after each commit with the running totals."""
    tally = BookTally()
    first: datetime | None = None
    last: datetime | None = None
    started = time.monotonic()
    for ordinal, txn in enumerate(book):
        last = _commit(database, txn, ordinal)
        first = first or last
        tally.add(txn)
        if on_progress is not None:
            on_progress(tally.transactions, tally.mods)
    seconds = time.monotonic() - started
    stats = {**tally.as_dict(), "seconds": round(seconds, 3),
             "mods_per_second": round(tally.mods / seconds) if seconds else None}
    if first is not None:
        stats["first_commit"] = first.isoformat()
        stats["last_commit"] = last.isoformat()
    return stats


def _commit(database: Database, txn: LedgerTransaction, ordinal: int) -> datetime:
    """Apply one ledger transaction as one commit; return its commit timestamp."""
    try:
        with database.batch(request_options={"transaction_tag": txn.tag}) as batch:
            for (table, op), run in groupby(txn.mutations, key=lambda m: (m.table, m.op)):
                _apply(batch, table, op, list(run))
    except api_exceptions.GoogleAPICallError as exc:
        message = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]
        raise RexError(f"Spanner rejected ledger transaction {ordinal} ({txn.tag}): {message}") from exc
    return batch.committed


def _apply(batch, table: str, op: str, mutations: list[Mutation]) -> None:
    if op == "delete":
        key_columns = ledger_table(table).primary_key
        batch.delete(table, KeySet(keys=[[m.row[k] for k in key_columns] for m in mutations]))
        return
    columns = list(mutations[0].row)  # every insert/update row holds all columns in DDL order
    rows = [list(m.row.values()) for m in mutations]
    if op == "insert":
        batch.insert(table, columns, rows)
    elif op == "update":
        batch.update(table, columns, rows)
    else:
        raise ValueError(f"unknown mutation kind {op!r} for {table}")
