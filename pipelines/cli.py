"""The `rex` command line: capture the ledger's change stream, build and publish reports.

Errors a person can act on are printed as one line (`rex: ...`) with exit status 1; set
REX_DEBUG=1 to see the traceback as well.
"""
from __future__ import annotations

import logging
import os
import sys
import traceback
from datetime import datetime, timezone

import click

from transforms.errors import RexError

BEAM_ARGS_HELP = (
    "Unrecognised --options are passed to Apache Beam as pipeline options "
    "(default --runner=FnApiRunner, in-process; e.g. --direct_num_workers=2)."
)


def _parse_ts(_ctx, _param, value):
    if value is None:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an RFC 3339 timestamp (e.g. 2026-11-30T00:00:00Z)")
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option("0.1.0", prog_name="rex")
def cli():
    """Proveniq Reinsurance Exchange: from the insurer's Spanner ledger to reinsurer bordereaux.

    \b
    Typical flow:
      rex demo                                  seed, capture and report on embedded defaults
      rex ledger seed --files DIR               write a synthetic ledger as change records
      rex capture --ledger DIR|spanner://...    mirror the change stream into the warehouse
      rex report --kind premium --out DIR       publish every reinsurer's premium bordereau

    Nothing reaches beyond this machine unless you point it there (a real Spanner database,
    --runner=DataflowRunner). The warehouse defaults to the DuckDB file ./rex.duckdb.
    """


@cli.group()
def ledger():
    """The ledger itself: schema and synthetic books."""


@ledger.command("ddl")
def ledger_ddl():
    """Print the ledger's Spanner DDL (tables and the LedgerChanges change stream)."""
    from transforms.ledger_schema import ddl_text

    click.echo(ddl_text())


@ledger.command("seed")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed; same seed, same book.")
@click.option("--policies", type=click.IntRange(1), default=200, show_default=True, help="Policies to bind.")
@click.option("--days", type=click.IntRange(1), default=60, show_default=True, help="Days of activity.")
@click.option("--spanner", "spanner_db", metavar="DB_PATH",
              help="Write real mutations to projects/P/instances/I/databases/D (created if missing; "
                   "set SPANNER_EMULATOR_HOST for the emulator).")
@click.option("--files", "files_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Write change-record files (the Gson JSON-lines of the change-streams-to-GCS template).")
@click.option("--defects", type=click.FloatRange(0, 1), default=0.0, show_default=True, metavar="RATE",
              help="Plant realistic data defects to test the checks: each policy ceded to a quota-share or "
                   "surplus treaty gets, with probability RATE, one of an empty insured name, an unknown "
                   "currency, a negative sum insured, a reused transaction id, an out-of-range effective "
                   "date or an unknown treaty. Each is listed with the rule expected to catch it in the "
                   "manifest.")
@click.option("--manifest", "manifest_path", type=click.Path(dir_okay=False), metavar="PATH",
              help="Where --defects writes its manifest (default: DIR/seed-manifest.json with --files, "
                   "./seed-manifest.json with --spanner).")
def ledger_seed(seed, policies, days, spanner_db, files_dir, defects, manifest_path):
    """Write a deterministic synthetic book: reinsurers, treaties, policies, premiums, claims, FX."""
    from pipelines.seeding import seed_files, seed_spanner

    if bool(spanner_db) == bool(files_dir):
        raise click.UsageError("give exactly one of --spanner DB_PATH or --files DIR")
    if files_dir:
        stats = seed_files(seed, policies, days, files_dir, defects=defects, manifest=manifest_path)
        where = files_dir
    else:
        stats = seed_spanner(seed, policies, days, spanner_db, defects=defects, manifest=manifest_path)
        where = spanner_db
    from pipelines.console import print_seed_stats

    print_seed_stats(stats, where)
    if defects:
        click.echo(f"{len(stats['defects']):,} defects injected → {stats['manifest']}")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
             epilog=BEAM_ARGS_HELP)
@click.option("--ledger", "ledger_uri", required=True, metavar="SOURCE",
              help="spanner://projects/P/instances/I/databases/D, or a folder of change-record files.")
@click.option("--warehouse", default="duckdb:///rex.duckdb", show_default=True, metavar="URI",
              help="Warehouse URI (duckdb:///relative.duckdb or duckdb:////absolute.duckdb).")
@click.option("--start", callback=_parse_ts, metavar="TS",
              help="Window start, RFC 3339 (default: the last checkpoint of this source).")
@click.option("--end", callback=_parse_ts, metavar="TS",
              help="Window end, RFC 3339 (default: now for Spanner, everything for files).")
@click.pass_context
def capture(ctx, ledger_uri, warehouse, start, end):
    """Mirror the ledger's change records over [start, end] into the warehouse.

    Writes every change to rex_ledger.<Table>_changelog, keeps rex_ledger.<Table> current,
    quarantines bad records in rex_ops.quarantine and advances rex_ops.checkpoints, all in one
    transaction. Re-running the same window adds nothing.
    """
    from pipelines.capture import run_capture
    from pipelines.console import print_capture_summary, status

    with status(f"Capturing {ledger_uri}…"):
        summary = run_capture(ledger_uri, warehouse, start, end, beam_args=ctx.args)
    print_capture_summary(summary)


def _parse_date(_ctx, _param, value):
    if value is None:
        return None
    try:
        from datetime import date

        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)")


def _check_period(_ctx, _param, value):
    import re

    if value is not None and not re.fullmatch(r"[0-9]{4}-(0[1-9]|1[0-2]|Q[1-4])", value):
        raise click.BadParameter(f"{value!r} is not a period: YYYY-MM (monthly) or YYYY-Qn (quarterly)")
    return value


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
             epilog=BEAM_ARGS_HELP)
@click.option("--warehouse", default="duckdb:///rex.duckdb", show_default=True, metavar="URI")
@click.option("--kind", type=click.Choice(["premium", "claims", "exposure", "oed"]), default="premium",
              show_default=True, help="premium or claims bordereau, exposure report (with top locations), "
                                      "or OED location and account files.")
@click.option("--partner", "partners", multiple=True, metavar="ID",
              help="Reinsurer id, e.g. alpine-re; repeat for several (default: every contracted reinsurer).")
@click.option("--period", callback=_check_period, metavar="YYYY-MM|YYYY-Qn",
              help="Publish this period only (bordereaux); partners on another grid get nothing.")
@click.option("--as-of", "as_of", callback=_parse_date, metavar="DATE",
              help="The run's date (default today): periods ending after it are pending; exposure and OED are "
                   "the risks in force on it; periods past their grace days are closed.")
@click.option("--format", "formats", type=click.Choice(["csv", "parquet", "xlsx"]), multiple=True,
              help="Export these formats instead of the contracts' (repeat for several).")
@click.option("--out", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also write <DIR>/<partner>/<report>/<period>/v<N>/<report>.<csv|parquet|xlsx>, as each "
                   "contract asks, and the validation report under <DIR>/validation/.")
@click.option("--contracts", "contracts_dir", type=click.Path(file_okay=False, exists=True), default=None,
              metavar="DIR", help="Partner contracts (ODCS YAML) to publish under (default: the shipped ones).")
@click.option("--dry-run", is_flag=True, help="Build, check and gate everything; publish nothing.")
@click.pass_context
def report(ctx, warehouse, kind, partners, period, as_of, formats, out, contracts_dir, dry_run):
    """Build, check and publish partner reports from the warehouse mirror.

    Each partner gets what its contract says: its own rows only, its columns and names, its
    reporting periods, settlement currency, masking, export formats and rounding. Rows breaking
    a contract rule go to rex_ops.quarantine with the rule and a reason; each partner's report
    passes its Great Expectations suite before anything of it is published. Periods are sent as
    versions that are never altered; a late change to a closed period follows the contract
    (adjustment rows in the next open period, or a restated version). Ends with control totals
    (ledger = ceded + retained + quarantined); exits 1 if a gate failed or the totals do not
    reconcile. Never moves the capture checkpoint.
    """
    from contracts.model import PARTNERS_DIR
    from pipelines.console import print_report_summary, status

    options = dict(partners=list(partners) or None, beam_args=ctx.args, contracts_dir=contracts_dir or PARTNERS_DIR,
                   period=period, as_of=as_of, formats=tuple(formats) or None, dry_run=dry_run)
    with status(f"Building {kind} reports…"):
        if kind == "premium":
            from pipelines.premium_report import run_premium_bordereau

            summaries = [run_premium_bordereau(warehouse, out, **options)]
        elif kind == "claims":
            from pipelines.claims_report import run_claims_bordereau

            summaries = [run_claims_bordereau(warehouse, out, **options)]
        else:
            from pipelines.exposure_report import run_snapshot_reports

            options.pop("period")
            summaries = run_snapshot_reports(kind, warehouse, out, **options)
    if not summaries:
        raise RexError(f"no contract takes the {kind} report" + (f" for {', '.join(partners)}" if partners else ""))
    for summary in summaries:
        print_report_summary(summary)
    failed = [s for s in summaries if s.message]
    if failed:
        raise RexError(failed[0].message)


@cli.command()
@click.option("--out", type=click.Path(file_okay=False), default="rex-demo", show_default=True,
              help="Folder for the demo's warehouse, change records and exports.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--policies", type=click.IntRange(1), default=300, show_default=True)
@click.option("--days", type=click.IntRange(1), default=90, show_default=True)
@click.option("--files-only", is_flag=True, help="Skip the Spanner emulator even when it is installed.")
def demo(out, seed, policies, days, files_only):
    """Seed a book, capture it and publish every partner's reports, all on this machine.

    Uses the Cloud Spanner emulator (started on a free loopback port, stopped afterwards) when
    it is installed, otherwise change-record files; says which.
    """
    from pipelines.demo import run_demo

    run_demo(out, seed, policies, days, files_only)


from pipelines.contracts_cli import contracts  # noqa: E402  (the `rex contracts` group)

cli.add_command(contracts)


def main(argv=None):
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    try:
        cli.main(args=argv, prog_name="rex", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("rex: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Exception as e:  # one clear line, never a Beam stack trace
        if os.environ.get("REX_DEBUG"):
            traceback.print_exc()
        click.echo(f"rex: {one_line(e)}", err=True)
        sys.exit(1)


def one_line(exc: BaseException) -> str:
    """The message of the RexError behind an exception (Beam wraps DoFn errors), else its first line."""
    seen = set()
    e = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, RexError):
            return str(e).strip().splitlines()[0]
        e = e.__cause__ or e.__context__
    text = str(exc).strip()
    for line in text.splitlines():
        for marker in ("LedgerSourceError: ", "WarehouseError: ", "RexError: "):
            if marker in line:
                return line.split(marker, 1)[1].strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {first}" if not isinstance(exc, RexError) else first


if __name__ == "__main__":
    main()
