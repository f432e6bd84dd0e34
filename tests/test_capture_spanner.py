"""Capture through the real Cloud Spanner emulator's change stream into the DuckDB mirror.

The seeded book is written as real transactions (inserts, full-row updates, leaf deletes);
the mirror's current state must equal replaying the book in Python, whatever the window cuts.
"""
from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from decimal import Decimal

from pipelines.capture import run_capture
from pipelines.premium_report import run_premium_bordereau
from pipelines.spanner_emulator import free_loopback_port
from transforms.ledger_schema import ledger_tables
from transforms.seed_book import generate_book, replay_book
from transforms.seed_files import write_change_files
from transforms.seed_spanner import write_to_spanner
from transforms.spanner_ledger import database_now
from transforms.warehouse import open_warehouse

SEED, POLICIES, DAYS = 11, 40, 30


def _book():
    return list(generate_book(seed=SEED, policies=POLICIES, days=DAYS))


def _mirror(uri: str) -> dict[str, list[tuple]]:
    out = {}
    with open_warehouse(uri) as wh:
        for name, t in ledger_tables().items():
            cols = ", ".join(f'"{c}"' for c in t.column_names)
            out[name] = sorted(wh.rows(f'SELECT {cols} FROM rex_ledger."{name}"'), key=repr)
    return out


def _expected(book) -> dict[str, list[tuple]]:
    state = replay_book(book)
    return {
        name: sorted((tuple(row[c] for c in t.column_names) for row in state[name].values()), key=repr)
        for name, t in ledger_tables().items()
    }


def test_mirror_equals_the_replayed_book_and_reruns_add_nothing(ledger_db, tmp_path):
    path, db = ledger_db
    book = _book()
    start = database_now(db)
    write_to_spanner(book, db)
    uri = "duckdb:///" + str(tmp_path / "wh.duckdb")
    first = run_capture(f"spanner://{path}", uri, start=start)
    assert _mirror(uri) == _expected(book)
    assert sum(first.result.duplicates.values()) == 0 and first.result.quarantined == 0
    mods = sum(len(txn.mutations) for txn in book)  # one mod per mutated row
    assert sum(first.result.applied.values()) == mods
    with open_warehouse(uri) as wh:
        kinds = dict(wh.rows('SELECT _metadata_spanner_mod_type, count(*) FROM rex_ledger."Locations_changelog" GROUP BY 1'))
    assert set(kinds) == {"INSERT", "UPDATE", "DELETE"}

    again = run_capture(f"spanner://{path}", uri, start=start, end=first.window_end)
    assert sum(again.result.applied.values()) == 0
    assert sum(again.result.duplicates.values()) == mods
    assert _mirror(uri) == _expected(book)


def test_window_cut_mid_activity_then_resume_from_checkpoint(ledger_db, tmp_path):
    path, db = ledger_db
    book = _book()
    half = len(book) // 2
    start = database_now(db)
    write_to_spanner(book[:half], db)
    mid = database_now(db)
    write_to_spanner(book[half:], db)
    uri = "duckdb:///" + str(tmp_path / "wh.duckdb")

    cut = run_capture(f"spanner://{path}", uri, start=start, end=mid)
    assert _mirror(uri) == _expected(book[:half])
    assert cut.checkpoint == mid

    resumed = run_capture(f"spanner://{path}", uri)  # no --start: from the checkpoint
    assert resumed.window_start == mid
    assert _mirror(uri) == _expected(book)
    assert resumed.checkpoint > mid


def test_same_seed_through_spanner_and_files_gives_identical_bordereaux(ledger_db, tmp_path):
    path, db = ledger_db
    book = _book()
    start = database_now(db)
    write_to_spanner(book, db)
    write_change_files(book, str(tmp_path / "changes"), seed=SEED)
    via_spanner = "duckdb:///" + str(tmp_path / "spanner.duckdb")
    via_files = "duckdb:///" + str(tmp_path / "files.duckdb")
    run_capture(f"spanner://{path}", via_spanner, start=start)
    run_capture(str(tmp_path / "changes"), via_files)
    assert _mirror(via_spanner) == _mirror(via_files)
    a = run_premium_bordereau(via_spanner, str(tmp_path / "out-spanner"))
    b = run_premium_bordereau(via_files, str(tmp_path / "out-files"))
    assert a.balanced and b.balanced and a.rows_per_partner == b.rows_per_partner
    assert sum(a.rows_per_partner.values()) > 0
    files = _files(tmp_path / "out-spanner")
    assert files == _files(tmp_path / "out-files")
    partners = {f.split(os.sep)[0] for f in files if not f.startswith("validation")}
    assert len(partners) >= 3 and any(f.endswith(".csv") for f in files)
    for name in files:
        assert filecmp.cmp(tmp_path / "out-spanner" / name, tmp_path / "out-files" / name, shallow=False), name


def _files(root) -> list[str]:
    out = []
    for folder, _dirs, names in os.walk(root):
        out += [os.path.relpath(os.path.join(folder, n), root) for n in names]
    return sorted(f for f in out if not f.startswith("validation" + os.sep))


def test_quota_share_totals_equal_gross_times_rate_times_share(ledger_db, tmp_path):
    """Computed here from the seeded rows alone, not from rex's tables."""
    path, db = ledger_db
    book = _book()
    start = database_now(db)
    write_to_spanner(book, db)
    uri = "duckdb:///" + str(tmp_path / "wh.duckdb")
    run_capture(f"spanner://{path}", uri, start=start)
    run_premium_bordereau(uri, str(tmp_path / "out"))

    state = replay_book(book)
    treaties = {k[0]: r for k, r in state["Treaties"].items()}
    policies = {k[0]: r for k, r in state["Policies"].items()}
    expected: dict[tuple[str, str], Decimal] = {}
    for row in state["PremiumTransactions"].values():
        treaty = treaties.get(policies[row["PolicyId"]]["TreatyId"])
        if not treaty or treaty["TreatyType"] != "QUOTA_SHARE":
            continue
        for (tid, reinsurer), p in state["Participations"].items():
            if tid == treaty["TreatyId"]:
                key = (reinsurer, row["Currency"])
                expected[key] = expected.get(key, Decimal(0)) + row["GrossPremium"] * treaty["CessionRate"] * p["SharePct"]
    assert expected, "the seeded book has quota-share business"
    with open_warehouse(uri) as wh:
        got = {
            (r, c): v for r, c, v in wh.rows(
                "SELECT reinsurer_id, original_currency, sum(share_premium) FROM rex_reports.premium_bordereau "
                "WHERE treaty_type = 'QUOTA_SHARE' GROUP BY ALL")
        }
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert abs(got[key] - value) < Decimal("0.005"), (key, got[key], value)  # to the cent


def _rex(*args, env_extra):
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_missing_database_and_unreachable_spanner_fail_fast_with_one_line(spanner_emulator, tmp_path):
    wh = "duckdb:///" + str(tmp_path / "wh.duckdb")
    missing = _rex("capture", "--ledger", "spanner://projects/rex-test/instances/rex-test/databases/nope",
                   "--warehouse", wh, "--start", "2026-01-01T00:00:00Z",
                   env_extra={"SPANNER_EMULATOR_HOST": spanner_emulator.host_port})
    assert missing.returncode == 1
    assert len(missing.stderr.strip().splitlines()) == 1 and missing.stderr.startswith("rex: ")
    assert "not found" in missing.stderr
    port = free_loopback_port()
    down = _rex("capture", "--ledger", "spanner://projects/p/instances/i/databases/d", "--warehouse", wh,
                "--start", "2026-01-01T00:00:00Z", env_extra={"SPANNER_EMULATOR_HOST": f"127.0.0.1:{port}"})
    assert down.returncode == 1
    assert len(down.stderr.strip().splitlines()) == 1 and down.stderr.startswith("rex: ")
