"""`rex ledger seed`: write a synthetic book to change-record files or into Spanner."""
from __future__ import annotations

from transforms.errors import LedgerSourceError


def seed_files(seed: int, policies: int, days: int, out_dir: str) -> dict:
    """Write the book as change-record files (desks in parallel, one process per core);
    refuses a folder that already holds some."""
    from pipelines.console import progress
    from transforms.seed_book import book_desks
    from transforms.seed_files import write_book_files

    with progress("Writing the book's desks", total=len(book_desks(seed, policies, days))) as advance:
        return write_book_files(seed, policies, days, out_dir, on_desk_done=lambda _done, _total: advance(1))


def seed_spanner(seed: int, policies: int, days: int, db_path: str, emulator_host: str | None = None) -> dict:
    """Write the book as real Spanner transactions; the database must not hold a ledger yet."""
    from pipelines.console import progress
    from transforms.seed_book import generate_book
    from transforms.seed_spanner import write_to_spanner
    from transforms.spanner_ledger import DatabasePath, create_ledger_database

    path = DatabasePath.parse(db_path)
    database = create_ledger_database(path, emulator_host=emulator_host, exist_ok=True)
    with database.snapshot() as snap:
        existing = list(snap.execute_sql("SELECT COUNT(*) FROM Reinsurers"))[0][0]
    if existing:
        raise LedgerSourceError(f"{path} already holds a ledger; seed a new database")
    with progress("Writing transactions to Spanner") as advance:
        return write_to_spanner(
            generate_book(seed=seed, policies=policies, days=days), database,
            on_progress=lambda _transactions, _mods: advance(1),
        )
