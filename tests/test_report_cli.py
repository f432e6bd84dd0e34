"""`rex report` as a person runs it, ad hoc: one partner, one period, another format, a dry run,
the snapshot reports, and bad dates. Real subprocesses (`python -m pipelines.cli`) on a small
seeded book (`rex ledger seed` files, then `rex capture`); every test works on its own copy of
the captured warehouse, and no report run may move the capture checkpoint."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import duckdb
import openpyxl
import pyarrow.parquet as pq
import pytest

from change_factory import build_once
from contracts.model import load_partner_contracts
from pipelines.seeding import seed_files

# seed 10, 150 policies over 100 days: alpine-re has claims moving in January and February
SEED, POLICIES, DAYS = 10, 150, 100
ENV = {**os.environ, "REX_MASKING_KEY_CORAL_RE": "test-masking-key"}


def rex(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          timeout=600, env=ENV, cwd=str(cwd))


def _uri(path) -> str:
    return "duckdb:///" + str(path)


def state(path) -> dict:
    """What a report run must leave alone: checkpoints, the publication log, partner tables."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {"checkpoints": con.execute("SELECT * FROM rex_ops.checkpoints ORDER BY ALL").fetchall(),
               "publications": con.execute("SELECT partner, report, period, version, rows, content_hash "
                                           "FROM rex_ops.publications ORDER BY ALL").fetchall(),
               "quarantine": con.execute("SELECT count(*) FROM rex_ops.quarantine").fetchall()}
        for schema, table in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema LIKE 'partner_%' ORDER BY ALL").fetchall():
            rows = con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
            out[f"{schema}.{table}"] = sorted(map(repr, rows))
        return out
    finally:
        con.close()


def files(root) -> list[str]:
    """Files under an output folder, except the validation reports."""
    out = []
    for folder, _dirs, names in os.walk(root):
        out += [os.path.relpath(os.path.join(folder, n), root) for n in names]
    return sorted(p for p in out if not p.startswith("validation" + os.sep))


def _capture(d):
    seed_files(SEED, POLICIES, DAYS, str(d / "changes"))
    proc = rex("capture", "--ledger", str(d / "changes"), "--warehouse", _uri(d / "pristine.duckdb"), cwd=d)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """The seeded book captured by `rex capture` (once per session; copy it before writing)."""
    return build_once(tmp_path_factory, "cli-book", _capture) / "pristine.duckdb"


@pytest.fixture
def warehouse(captured, tmp_path):
    """A fresh copy of the captured warehouse: (path, its state before any report)."""
    path = tmp_path / "wh.duckdb"
    shutil.copy(captured, path)
    return path, state(path)


def _claims_feb(path, out, *extra):
    return rex("report", "--warehouse", _uri(path), "--kind", "claims", "--partner", "alpine-re",
               "--period", "2026-02", "--as-of", "2026-03-10", "--out", str(out), *extra, cwd=out.parent)


@pytest.fixture(scope="module")
def alpine_february(captured, tmp_path_factory):
    """alpine-re's February claims, published once per session on a copy of the captured
    warehouse: (warehouse, out, the process's (returncode, stdout, stderr), state before)."""
    def publish(d):
        shutil.copy(captured, d / "wh.duckdb")
        proc = _claims_feb(d / "wh.duckdb", d / "out")
        with open(d / "proc.json", "w") as f:
            json.dump([proc.returncode, proc.stdout, proc.stderr], f)

    d = build_once(tmp_path_factory, "alpine-feb", publish)
    with open(d / "proc.json") as f:
        proc = subprocess.CompletedProcess([], *json.load(f))
    return d / "wh.duckdb", d / "out", proc, state(captured)


def test_one_partner_one_period_of_claims(alpine_february):
    path, out, proc, before = alpine_february
    assert proc.returncode == 0, proc.stderr
    assert "alpine-re" in proc.stdout and "2026-02" in proc.stdout
    assert files(out) == [os.path.join("alpine-re", "claims_bordereau", "2026-02", "v1", "claims_bordereau.csv")]
    spec = load_partner_contracts()["alpine-re"].reports["claims_bordereau"]
    with open(out / "alpine-re" / "claims_bordereau" / "2026-02" / "v1" / "claims_bordereau.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    period = spec.by_source("period")
    assert rows and {r[period.name] for r in rows} == {"2026-02"}
    assert list(rows[0]) == [c.name for c in spec.columns]
    after = state(path)
    assert after["checkpoints"] == before["checkpoints"]  # a report never moves the capture checkpoint
    assert [p[:4] for p in after["publications"]] == [("alpine-re", "claims_bordereau", "2026-02", 1)]
    assert after["publications"][0][4] == len(rows)
    partner_tables = sorted(k for k in after if k.startswith("partner_"))
    assert partner_tables == ["partner_alpine_re.claims_bordereau"]
    con = duckdb.connect(str(path), read_only=True)
    try:
        periods = con.execute(f'SELECT DISTINCT "{period.physical_name}" '
                              "FROM partner_alpine_re.claims_bordereau").fetchall()
        run = con.execute("SELECT status, command FROM rex_ops.runs WHERE command LIKE 'report%'").fetchall()
    finally:
        con.close()
    assert periods == [("2026-02",)]
    assert run == [("succeeded", "report claims_bordereau")]
    # claims are built on both period grids; alpine-re (monthly) never checks the quarterly rows
    assert after["quarantine"] == before["quarantine"] == [(0,)]


def test_format_parquet_replaces_a_csv_partners_files(warehouse, tmp_path):
    path, before = warehouse
    out = tmp_path / "out"
    proc = _claims_feb(path, out, "--format", "parquet")
    assert proc.returncode == 0, proc.stderr
    folder = os.path.join("alpine-re", "claims_bordereau", "2026-02", "v1")
    assert files(out) == [os.path.join(folder, "claims_bordereau.parquet")]  # no CSV
    table = pq.read_table(out / folder / "claims_bordereau.parquet")
    spec = load_partner_contracts()["alpine-re"].reports["claims_bordereau"]
    assert table.column_names == [c.name for c in spec.columns]
    assert set(table[spec.by_source("period").name].to_pylist()) == {"2026-02"}
    money = table.schema.field(spec.by_source("incurred_share").name).type
    assert str(money).startswith("decimal128(38, ")  # exact, never a float
    after = state(path)
    assert after["checkpoints"] == before["checkpoints"]
    assert [p[:4] + (p[4] == table.num_rows,) for p in after["publications"]] == [
        ("alpine-re", "claims_bordereau", "2026-02", 1, True)]


def test_dry_run_publishes_nothing_but_prints_the_summary(alpine_february, tmp_path):
    published, _out, proc, _before = alpine_february
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "wh.duckdb"
    shutil.copy(published, path)  # a warehouse with a partner table and a publication already
    before = state(path)
    assert before["publications"] and "partner_alpine_re.claims_bordereau" in before
    out = tmp_path / "dry"
    proc = rex("report", "--warehouse", _uri(path), "--kind", "claims", "--as-of", "2026-04-10",
               "--out", str(out), "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "dry run" in proc.stdout and "alpine-re" in proc.stdout and "control totals" in proc.stdout.lower()
    assert files(out) == []  # the validation report only
    assert state(path) == before  # no publication, partner table, quarantine row or checkpoint moved
    con = duckdb.connect(str(path), read_only=True)
    try:
        last = con.execute("SELECT status, command FROM rex_ops.runs ORDER BY started_at DESC LIMIT 1").fetchall()
    finally:
        con.close()
    assert last == [("dry-run", "report claims_bordereau --dry-run")]


def test_exposure_publishes_coral_res_files(warehouse, tmp_path):
    path, before = warehouse
    out = tmp_path / "out"
    proc = rex("report", "--warehouse", _uri(path), "--kind", "exposure", "--as-of", "2026-03-31", "--out", str(out),
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = files(out)
    expected = [os.path.join("coral-re", report, "2026-03-31", "v1", f"{report}.{fmt}")
                for report in ("exposure", "exposure_top_locations") for fmt in ("csv", "xlsx")]
    assert got == sorted(expected)
    spec = load_partner_contracts()["coral-re"].reports["exposure"]
    folder = out / "coral-re" / "exposure" / "2026-03-31" / "v1"
    with open(folder / "exposure.csv", newline="") as f:
        rows = list(csv.reader(f))
    sheet = openpyxl.load_workbook(folder / "exposure.xlsx", read_only=True).worksheets[0]
    cells = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0] == [c.name for c in spec.columns] == list(cells[0])
    assert len(rows) == len(cells) > 1
    after = state(path)
    assert after["checkpoints"] == before["checkpoints"]
    assert {(p[0], p[1], p[2]) for p in after["publications"]} == {
        ("coral-re", "exposure", "2026-03-31"), ("coral-re", "exposure_top_locations", "2026-03-31")}


def test_oed_publishes_coral_res_oed_csv(warehouse, tmp_path):
    path, before = warehouse
    out = tmp_path / "out"
    proc = rex("report", "--warehouse", _uri(path), "--kind", "oed", "--as-of", "2026-03-31", "--out", str(out),
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert files(out) == sorted(os.path.join("coral-re", report, "2026-03-31", "v1", f"{report}.csv")
                                for report in ("oed_account", "oed_location"))
    contract = load_partner_contracts()["coral-re"]
    for report, key in (("oed_location", "LocNumber"), ("oed_account", "AccNumber")):
        with open(out / "coral-re" / report / "2026-03-31" / "v1" / f"{report}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and key in rows[0]
        assert list(rows[0]) == [c.name for c in contract.reports[report].columns]
    after = state(path)
    assert after["checkpoints"] == before["checkpoints"]
    assert {p[1] for p in after["publications"]} == {"oed_location", "oed_account"}


@pytest.mark.parametrize("option, value", [("--period", "2026-13"), ("--as-of", "2026/01/01")])
def test_bad_period_or_date_is_a_usage_error(warehouse, tmp_path, option, value):
    path, before = warehouse
    proc = rex("report", "--warehouse", _uri(path), "--kind", "claims", option, value, "--out", str(tmp_path / "out"),
               cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"Invalid value for '{option}'" in proc.stderr and value in proc.stderr
    assert "Usage: rex report" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert state(path) == before


def test_no_report_run_moves_the_capture_checkpoint(captured, alpine_february, tmp_path):
    path, _out, proc, before = alpine_february
    assert proc.returncode == 0, proc.stderr
    pristine = state(captured)["checkpoints"]
    assert pristine and before["checkpoints"] == pristine == state(path)["checkpoints"]
    # and a capture of the same ledger afterwards resumes from it: nothing new to mirror
    copy = tmp_path / "wh.duckdb"
    shutil.copy(path, copy)
    changes = captured.parent / "changes"
    again = rex("capture", "--ledger", str(changes), "--warehouse", _uri(copy), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    con = duckdb.connect(str(copy), read_only=True)
    try:
        counts, start, checkpoint_before = con.execute(
            "SELECT counts::VARCHAR, window_start, checkpoint_before FROM rex_ops.runs "
            "WHERE command = 'capture' ORDER BY started_at DESC LIMIT 1").fetchall()[0]
    finally:
        con.close()
    committed_through = pristine[0][1]
    assert start == checkpoint_before == committed_through
    assert set(json.loads(counts)["changes_applied"].values()) <= {0}
