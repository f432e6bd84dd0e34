"""Publishing under the shipped contracts: suites are current, the gate blocks a failing report,
and each partner gets its own layout (names, periods, masking, formats)."""
from __future__ import annotations

import csv
import hashlib
import hmac
import os
import shutil
import subprocess
import sys

import openpyxl
import pyarrow.parquet as pq
import pytest

from contract_factory import contract_doc, write_contract
from contracts.model import PARTNERS_DIR, load_partner_contracts, read_yaml
from expectations.suites import SUITES_DIR, compile_suites
from pipelines.capture import run_capture
from pipelines.premium_report import run_premium_bordereau
from pipelines.seeding import seed_files
from transforms.warehouse import open_warehouse


def test_checked_in_suites_are_current():
    """`rex contracts compile` output must be what is checked in (a stale suite fails here)."""
    compiled = compile_suites(load_partner_contracts())
    on_disk = sorted(os.path.join(SUITES_DIR, n) for n in os.listdir(SUITES_DIR) if n.endswith(".json"))
    assert sorted(compiled) == on_disk
    for path, text in compiled.items():
        with open(path, encoding="utf-8") as f:
            assert f.read() == text, f"{path} is stale: run `rex contracts compile`"


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    d = tmp_path_factory.mktemp("book")
    seed_files(7, 150, 100, str(d / "changes"))
    uri = "duckdb:///" + str(d / "wh.duckdb")
    run_capture(str(d / "changes"), uri)
    shutil.copy(d / "wh.duckdb", d / "pristine.duckdb")  # for tests that must publish into a fresh one
    return d, uri


def _fresh_copy(book, tmp_path) -> str:
    d, _uri = book
    shutil.copy(d / "pristine.duckdb", tmp_path / "wh.duckdb")
    return "duckdb:///" + str(tmp_path / "wh.duckdb")


@pytest.fixture(scope="module")
def published(book):
    d, uri = book
    os.environ.setdefault("REX_MASKING_KEY_CORAL_RE", "test-masking-key")
    summary = run_premium_bordereau(uri, str(d / "exports"))
    assert summary.succeeded, summary.message
    return d, uri, summary


def _files(root):
    out = []
    for folder, _dirs, names in os.walk(root):
        out += [os.path.relpath(os.path.join(folder, n), root) for n in names]
    return sorted(out)


def test_each_partner_gets_its_contracts_layout(published):
    d, uri, _summary = published
    exports = d / "exports"
    alpine = sorted(p for p in _files(exports) if p.startswith("alpine-re"))
    assert alpine and all(p.endswith(".csv") and "/premium_bordereau/2026-" in p for p in alpine)
    with open(exports / alpine[0], newline="") as f:
        header = next(csv.reader(f))
    names = [c.name for c in load_partner_contracts()["alpine-re"].reports["premium_bordereau"].columns]
    assert header == names and header[0] == "Unique Market Reference (UMR)"
    boreal = [p for p in _files(exports) if p.startswith("boreal-re")]
    assert boreal and all(p.endswith(".parquet") and "/2026-Q" in p for p in boreal)  # quarterly, Parquet
    table = pq.read_table(exports / boreal[0])
    assert str(table.schema.field("share_premium").type) == "decimal128(38, 2)"  # USD, exact
    coral = [p for p in _files(exports) if p.startswith("coral-re")]
    assert {os.path.splitext(p)[1] for p in coral} == {".csv", ".xlsx"}
    sheet = openpyxl.load_workbook(exports / next(p for p in coral if p.endswith(".xlsx"))).active
    header = [c.value for c in sheet[1]]
    row = [c for c in sheet[2]]
    money = row[header.index("share_premium")]
    assert isinstance(money.value, (int, float)) and money.number_format.endswith(".00")
    with open_warehouse(uri) as wh:
        periods = {r[0] for r in wh.rows("SELECT DISTINCT period FROM partner_boreal_re.premium_bordereau")}
        assert periods and all("-Q" in p for p in periods)
        cols = [r[0] for r in wh.rows("SELECT column_name FROM information_schema.columns WHERE "
                                      "table_schema = 'partner_alpine_re' AND table_name = 'premium_bordereau' "
                                      "ORDER BY ordinal_position")]
        assert cols[:2] == ["unique_market_reference", "reporting_period"]  # BigQuery-safe physical names


def test_masked_names_are_keyed_pseudonyms(published):
    _d, uri, _s = published
    key = os.environ["REX_MASKING_KEY_CORAL_RE"].encode()
    with open_warehouse(uri) as wh:
        pairs = wh.rows(
            "SELECT DISTINCT c.insured_name, r.insured_name FROM partner_coral_re.premium_bordereau c "
            "JOIN rex_reports.premium_bordereau r ON r.transaction_id = c.transaction_id "
            "AND r.treaty_id = c.treaty_id AND r.reinsurer_id = 'coral-re'")
        clear = {r[0] for r in wh.rows("SELECT DISTINCT insured_full_name_or_company_name "
                                       "FROM partner_alpine_re.premium_bordereau")}
    assert pairs
    for pseudonym, name in pairs:
        assert pseudonym == hmac.new(key, name.encode(), hashlib.sha256).hexdigest()[:24]
        assert pseudonym not in clear


def test_a_partner_sees_only_its_own_rows(published):
    _d, uri, _s = published
    with open_warehouse(uri) as wh:
        for partner in ("boreal-re", "coral-re", "meridian-re", "sakura-re"):
            table = "partner_" + partner.replace("-", "_")
            own = wh.rows("SELECT transaction_id, treaty_id, share_premium FROM rex_reports.premium_bordereau "
                          "WHERE reinsurer_id = ? ORDER BY 1, 2", [partner])
            got = wh.rows(f"SELECT transaction_id, treaty_id, share_premium FROM {table}.premium_bordereau "
                          "ORDER BY 1, 2")
            assert got == own


def test_republishing_sends_nothing_new_and_a_fresh_run_gives_byte_identical_files(published, book, tmp_path):
    d, uri, _s = published
    again = run_premium_bordereau(uri, str(tmp_path / "again"))
    assert again.succeeded and again.publications == [] and not (tmp_path / "again" / "alpine-re").exists()
    assert sum(again.rows_per_partner.values()) == sum(_s.rows_per_partner.values())  # still all published
    fresh = run_premium_bordereau(_fresh_copy(book, tmp_path), str(tmp_path / "fresh"))
    assert fresh.succeeded and fresh.publications
    first = [p for p in _files(d / "exports") if not p.startswith("validation")]
    assert first == [p for p in _files(tmp_path / "fresh") if not p.startswith("validation")]
    for p in first:
        assert (d / "exports" / p).read_bytes() == (tmp_path / "fresh" / p).read_bytes(), p


def test_a_failing_gate_publishes_nothing_of_that_report_and_fails_the_run(book, tmp_path):
    uri = _fresh_copy(book, tmp_path)
    contracts = tmp_path / "contracts"
    strict = contract_doc("boreal-re", ["QS-PROP-USD-*"], ["USD"], frequency="quarterly", formats=("csv",))
    # a whole-batch rule the rows cannot meet: only the gate sees it
    strict["schema"][0]["quality"].append({"id": "at_most_three_rows", "type": "library", "metric": "rowCount",
                                          "mustBeLessThan": 3})
    write_contract(contracts, strict)
    write_contract(contracts, contract_doc("alpine-re", ["QS-PROP-USD-*", "SP-PROP-EUR-*", "QS-ENG-JPY-*"],
                                           ["USD", "EUR", "JPY"]))
    with open_warehouse(uri) as wh:
        before = wh.rows("SELECT count(*) FROM partner_boreal_re.premium_bordereau")[0][0] if wh.rows(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'partner_boreal_re'")[0][0] else None
    out = tmp_path / "out"
    summary = run_premium_bordereau(uri, str(out), partners=["alpine-re", "boreal-re"], contracts_dir=str(contracts))
    assert not summary.succeeded and "boreal-re" in summary.message
    assert summary.rows_per_partner["boreal-re"] == 0 and summary.withheld_per_partner["boreal-re"] > 0
    assert summary.rows_per_partner["alpine-re"] > 0  # the other partner is published
    assert not (out / "boreal-re").exists() and (out / "alpine-re").exists()
    html = open(summary.validation_html, encoding="utf-8").read()
    assert "FAILED" in html and "at_most_three_rows" in html
    with open_warehouse(uri) as wh:
        after = wh.rows("SELECT count(*) FROM partner_boreal_re.premium_bordereau")[0][0] if before is not None else None
        run = wh.rows("SELECT status, message FROM rex_ops.runs WHERE run_id = ?", [summary.run_id])[0]
        gate = wh.rows("SELECT success, failed FROM rex_ops.validations WHERE run_id = ? AND partner = 'boreal-re'",
                       [summary.run_id])[0]
    assert after == before  # the partner's table is untouched
    assert run[0] == "failed" and "gate failed" in run[1]
    assert gate[0] is False and gate[1] >= 1
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "report", "--warehouse", uri, "--contracts", str(contracts),
         "--partner", "boreal-re", "--out", str(tmp_path / "cli")],
        capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rex: the gate failed for boreal-re")


def test_the_shipped_contracts_are_the_packaged_ones():
    assert sorted(load_partner_contracts()) == sorted(
        os.path.splitext(n)[0] for n in os.listdir(PARTNERS_DIR) if n.endswith(".yaml"))


def test_contracts_test_rechecks_published_data_against_the_current_contract(published, tmp_path):
    from click.testing import CliRunner

    from pipelines.contracts_cli import contracts

    _d, uri, _s = published
    runner = CliRunner()
    ok = runner.invoke(contracts, ["test", "--partner", "alpine-re", "--warehouse", uri])
    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines()[-1] == "1 report(s), 0 failing"
    period = ok.output.split("premium_bordereau ")[1].split(",")[0].split(":")[0]
    one = runner.invoke(contracts, ["test", "--partner", "alpine-re", "--warehouse", uri, "--period", period])
    assert one.exit_code == 0 and f"premium_bordereau {period}:" in one.output
    # a tightened contract: no sum insured above 1,000 — the published rows now break it
    tight, _lines = read_yaml(os.path.join(PARTNERS_DIR, "alpine-re.yaml"))
    for prop in tight["schema"][0]["properties"]:
        if prop["transformLogic"] == "sum_insured":
            prop["logicalTypeOptions"] = {"minimum": 0, "maximum": 1000}
    write_contract(tmp_path / "contracts", tight)
    html = tmp_path / "test.html"
    failing = runner.invoke(contracts, ["test", "--partner", "alpine-re", "--warehouse", uri, "--contracts",
                                        str(tmp_path / "contracts"), "--html", str(html)])
    assert failing.exit_code == 1
    assert "row check premium_bordereau.sum_insured.maximum" in failing.output
    assert "gate premium_bordereau.sum_insured.range" in failing.output
    assert "FAILED" in html.read_text()
