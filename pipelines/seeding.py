"""`rex ledger seed`: write a synthetic book to change-record files or into Spanner."""
from __future__ import annotations

import os

from transforms.errors import LedgerSourceError


def seed_files(seed: int, policies: int, days: int, out_dir: str, defects: float = 0.0,
               manifest: str | None = None) -> dict:
    """Write the book as change-record files (desks in parallel, one process per core);
    refuses a folder that already holds some. With `defects` > 0 the manifest of planted
    defects goes to `manifest` (default <out_dir>/seed-manifest.json)."""
    from pipelines.console import progress
    from transforms.seed_book import book_desks
    from transforms.seed_defects import MANIFEST_NAME
    from transforms.seed_files import write_book_files

    with progress("Writing the book's desks", total=len(book_desks(seed, policies, days))) as advance:
        stats = write_book_files(seed, policies, days, out_dir, defects=defects,
                                 on_desk_done=lambda _done, _total: advance(1))
    return _with_manifest(stats, seed, policies, days, defects, manifest or os.path.join(out_dir, MANIFEST_NAME))


def seed_spanner(seed: int, policies: int, days: int, db_path: str, emulator_host: str | None = None,
                 defects: float = 0.0, manifest: str | None = None) -> dict:
    """Write the book as real Spanner transactions; the database must not hold a ledger yet.
    With `defects` > 0 the manifest of planted defects goes to `manifest` (default
    ./seed-manifest.json)."""
    from pipelines.console import progress
    from transforms.seed_defects import MANIFEST_NAME, defective_book, merge_defects
    from transforms.seed_spanner import write_to_spanner
    from transforms.spanner_ledger import DatabasePath, create_ledger_database

    path = DatabasePath.parse(db_path)
    database = create_ledger_database(path, emulator_host=emulator_host, exist_ok=True)
    with database.snapshot() as snap:
        existing = list(snap.execute_sql("SELECT COUNT(*) FROM Reinsurers"))[0][0]
    if existing:
        raise LedgerSourceError(f"{path} already holds a ledger; seed a new database")
    book, injectors = defective_book(seed, policies, days, defects)  # defects=0: the clean book
    with progress("Writing transactions to Spanner") as advance:
        stats = write_to_spanner(book, database, on_progress=lambda _transactions, _mods: advance(1))
    if defects:
        stats["defects"] = merge_defects(inj.defects() for inj in injectors)
    return _with_manifest(stats, seed, policies, days, defects, manifest or MANIFEST_NAME)


def _with_manifest(stats: dict, seed: int, policies: int, days: int, defects: float, path: str) -> dict:
    """Write the defect manifest when defects were planted, and say where in the stats."""
    if not defects:
        return stats
    from transforms.seed_defects import write_manifest

    meta = {"seed": seed, "policies": policies, "days": days, "defect_rate": defects}
    stats["manifest"] = write_manifest(path, meta, stats["defects"])
    return stats
