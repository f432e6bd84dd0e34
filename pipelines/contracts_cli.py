"""`rex contracts ...`: partner data contracts (ODCS v3) on the command line.

The group is registered in `pipelines/cli.py` (`cli.add_command(contracts)`). Every command
prints plain lines on stdout (one problem or change per line, then a summary line), notes on
stderr, and fails like the rest of rex: a `RexError` becomes one line `rex: ...` with exit
status 1. A verdict ("problems found", "breaking changes") also exits 1, through `sys.exit`
so that it survives `cli.main(standalone_mode=False)`.
"""
from __future__ import annotations

import os
import sys

import click

from transforms.errors import RexError, WarehouseError

DEFAULT_WAREHOUSE = "duckdb:///rex.duckdb"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def contracts():
    """Partner data contracts (ODCS v3): lint, diff, compile, test."""


# -- shared helpers (for lint, diff and the commands that follow) ------------------------------

def contract_paths(paths: tuple[str, ...] | list[str]) -> list[str]:
    """Files as given, folders as every *.yaml/*.yml inside; the shipped partners by default."""
    from contracts.model import PARTNERS_DIR, contract_files

    out: list[str] = []
    for path in paths or (PARTNERS_DIR,):
        if os.path.isdir(path):
            found = contract_files(path)
        elif os.path.exists(path):
            found = [path]
        else:
            raise RexError(f"{path} does not exist (give contract files or folders of *.yaml)")
        for f in found:
            if os.path.normpath(f) not in {os.path.normpath(o) for o in out}:
                out.append(f)
    if not out:
        raise RexError(f"no contract files (*.yaml, *.yml) in {', '.join(paths or (PARTNERS_DIR,))}")
    return out


def duckdb_file(uri: str) -> str | None:
    """The file a DuckDB warehouse URI names (None for in-memory or another backend)."""
    if uri.startswith("duckdb:///"):
        path = uri[len("duckdb:///"):]  # duckdb:///rel/path, duckdb:////abs/path
        return path if path and path != ":memory:" else None
    if "://" in uri:
        return None
    return uri


def warehouse_ledger(uri: str):
    """(LedgerFacts or None, why not): never creates a warehouse just to read one."""
    from contracts.lint import ledger_facts

    if uri.startswith("duckdb:///") or "://" not in uri:
        path = duckdb_file(uri)
        if path is None:
            return None, "an in-memory warehouse holds no ledger"
        if not os.path.isfile(path):
            return None, f"no warehouse at {path}"
    try:
        facts = ledger_facts(uri)
    except WarehouseError as e:
        return None, str(e)
    if facts is None:
        return None, f"warehouse {uri} holds no ledger yet"
    return facts, None


def _fail() -> None:
    sys.exit(1)


# -- rex contracts lint ------------------------------------------------------------------------

@contracts.command("lint", short_help="Check contracts: ODCS v3, rex's catalog and terms, the ledger.")
@click.argument("paths", nargs=-1, type=click.Path(), metavar="[PATH]...")
@click.option("--warehouse", default=DEFAULT_WAREHOUSE, show_default=True, metavar="URI",
              help="Warehouse mirror to check partners and treaties against "
                   "(duckdb:///relative.duckdb or duckdb:////absolute.duckdb); never created by lint.")
def lint(paths, warehouse):
    """Check contracts: valid ODCS v3, and terms, reports and columns rex can honour.

    PATHs are contract files or folders (every *.yaml/*.yml inside); default: the partner
    contracts shipped with rex. Given a captured warehouse, also checks that each partner is a
    reinsurer of the ledger and its covered treaties exist and carry its participation.
    Prints one line per problem (file:line: field.path: reason [rule]); exits 1 on any error.
    """
    from contracts.lint import lint_paths

    files = contract_paths(paths)
    facts, why_not = warehouse_ledger(warehouse)
    if facts is None:
        click.echo(f"rex: note: treaties and partners were not checked against a ledger ({why_not}); "
                   f"capture one first (`rex capture --ledger SOURCE --warehouse URI`) and pass --warehouse URI",
                   err=True)
    problems = lint_paths(files, facts)
    for problem in problems:
        click.echo(str(problem))
    click.echo(f"{len(files)} contract(s), {len(problems)} problem(s)")
    if any(p.severity == "error" for p in problems):
        _fail()


# -- rex contracts diff ------------------------------------------------------------------------

@contracts.command("diff", short_help="List what changed between two contracts and what breaks.")
@click.argument("old", type=click.Path())
@click.argument("new", type=click.Path())
def diff(old, new):
    """What changed from contract OLD to contract NEW, and whether it breaks the partner.

    Prints one line per change (BREAKING or ok), then a summary; exits 1 if any change is
    breaking, including a breaking change without a new major version.
    """
    from contracts.diff import diff_contracts
    from contracts.model import load_contract

    changes = diff_contracts(load_contract(old), load_contract(new))
    if not changes:
        click.echo("no changes")
        return
    for change in changes:
        click.echo(str(change))
    breaking = sum(1 for c in changes if c.breaking)
    click.echo(f"{len(changes)} change(s), {breaking} breaking")
    if breaking:
        _fail()


# -- rex contracts compile -----------------------------------------------------------------------

@contracts.command("compile", short_help="Write the Great Expectations suites of every contract.")
@click.option("--check", is_flag=True, help="Only say whether the checked-in suites are current; exit 1 if not.")
def compile_(check):
    """Compile every shipped contract into its Great Expectations suites.

    One JSON suite per partner × report under expectations/suites/, checked in and reviewed like
    code; the gate refuses to run on a stale one. With --check nothing is written.
    """
    from contracts.model import load_partner_contracts
    from expectations.suites import compile_suites
    from pipelines.contract_testing import compile_contracts

    if check:
        stale = []
        for path, text in compile_suites(load_partner_contracts()).items():
            try:
                with open(path, encoding="utf-8") as f:
                    current = f.read() == text
            except FileNotFoundError:
                current = False
            if not current:
                stale.append(path)
        for path in stale:
            click.echo(f"stale: {os.path.relpath(path)}")
        click.echo(f"{len(stale)} stale suite(s)")
        if stale:
            _fail()
        return
    for path in compile_contracts():
        click.echo(os.path.relpath(path))


# -- rex contracts test --------------------------------------------------------------------------

@contracts.command("test", short_help="Run a partner's contract checks on what the warehouse holds.")
@click.option("--partner", required=True, metavar="ID", help="Reinsurer id, e.g. alpine-re.")
@click.option("--period", default=None, metavar="P", help="One reporting period, e.g. 2026-03 or 2026-Q1.")
@click.option("--warehouse", default=DEFAULT_WAREHOUSE, show_default=True, metavar="URI")
@click.option("--contracts", "contracts_dir", type=click.Path(file_okay=False, exists=True), default=None,
              metavar="DIR", help="Contracts to test against (default: the shipped ones).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Also write the validation report as HTML.")
def test(partner, period, warehouse, contracts_dir, html_path):
    """Check a partner's published reports in the warehouse against its current contract.

    Runs the contract's row checks, its uniqueness rules and its gate (Great Expectations suite
    and SQL rules) on partner_<id>.<report>, optionally for one period. Prints one line per
    report and per failing rule; exits 1 if anything fails.
    """
    from contracts.model import PARTNERS_DIR
    from pipelines.contract_testing import check_partner

    results = check_partner(warehouse, partner, period, contracts_dir or PARTNERS_DIR, html_path)
    failed = 0
    for r in results:
        verdict = "ok" if r.success else "FAILED"
        click.echo(f"{verdict:6}  {partner} {r.report} {', '.join(r.periods) or '-'}: {r.rows:,} rows, "
                   f"{len(r.gate.outcomes)} gate checks")
        for rule, n in sorted(r.row_failures.items()):
            click.echo(f"        row check {rule}: {n:,} rows")
        for o in r.gate.failures:
            click.echo(f"        gate {o.rule}: {o.observed}")
        failed += not r.success
    click.echo(f"{len(results)} report(s), {failed} failing")
    if failed:
        _fail()
