"""What rex prints for people: progress while it works, a summary table when it is done."""
from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

def _console(stderr: bool = False) -> Console:
    probe = Console(stderr=stderr)
    # Piped output (CI logs, files) gets a width that fits the tables, not the 80-column default.
    return Console(stderr=stderr, highlight=False, width=None if probe.is_terminal else 150)


console = _console()
err_console = _console(stderr=True)


@contextmanager
def progress(description: str, total: int | None = None):
    """A progress bar on stderr; yields `advance(n)`. Quiet when stderr is not a terminal."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def status(message: str):
    """A spinner with a message on stderr while a step runs (nothing when not a terminal)."""
    if err_console.is_terminal:
        return err_console.status(message)
    return _Nothing()  # scripts and cron get the summary on stdout, and errors, nothing else


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def print_seed_stats(stats: dict, where: str) -> None:
    table = Table(title=f"Seeded book → {where}", title_justify="left")
    table.add_column("table")
    table.add_column("row changes", justify="right")
    for name, n in sorted((stats.get("per_table") or {}).items()):
        table.add_row(name, f"{n:,}")
    console.print(table)
    parts = [f"{stats.get(k):,} {k}" for k in ("transactions", "records", "mods", "files") if stats.get(k) is not None]
    console.print(", ".join(parts))


def print_capture_summary(summary) -> None:
    r = summary.result
    table = Table(title=f"Capture {summary.run_id}", title_justify="left")
    for col in ("table", "mods read", "changes applied", "already mirrored"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for name in sorted(r.read):
        table.add_row(name, f"{r.read[name]:,}", f"{r.applied.get(name, 0):,}", f"{r.duplicates.get(name, 0):,}")
    table.add_row("total", f"{sum(r.read.values()):,}", f"{sum(r.applied.values()):,}",
                  f"{sum(r.duplicates.values()):,}", style="bold")
    console.print(table)
    console.print(
        f"quarantined: {r.quarantined:,} ({r.quarantined_new:,} new) · source {summary.source} · "
        f"checkpoint {summary.checkpoint.isoformat() if summary.checkpoint else '-'}"
    )


def print_report_summary(summary) -> None:
    """Rows per partner and disposition, what was published, the control totals."""
    label = summary.report.replace("_", " ").capitalize() + (" (dry run: nothing published)" if summary.dry_run else "")
    rows = Table(title=f"{label} rows per partner", title_justify="left")
    for col in ("partner", "published", "quarantined", "pending", "withheld", "gate"):
        rows.add_column(col, justify="left" if col in ("partner", "gate") else "right")
    gates = {g["partner"]: g for g in summary.gates}
    partners = sorted(set(summary.rows_per_partner) | set(summary.quarantined_per_partner)
                      | set(summary.withheld_per_partner) | set(summary.pending_per_partner))
    for partner in partners:
        gate = gates.get(partner)
        verdict = "nothing new" if gate is None else (f"passed ({gate['checks']} checks)" if gate["success"]
                                                     else f"FAILED ({gate['failed']} of {gate['checks']})")
        rows.add_row(partner, f"{summary.rows_per_partner.get(partner, 0):,}",
                     f"{summary.quarantined_per_partner.get(partner, 0):,}",
                     f"{summary.pending_per_partner.get(partner, 0):,}",
                     f"{summary.withheld_per_partner.get(partner, 0):,}", verdict)
    console.print(rows)
    if summary.publications:
        pubs = Table(title="Versions published", title_justify="left")
        for col in ("partner", "period", "version", "kind", "rows"):
            pubs.add_column(col, justify="right" if col in ("version", "rows") else "left")
        for pub in summary.publications:
            pubs.add_row(pub["partner"], pub["period"], f"v{pub['version']}", pub["kind"], f"{pub['rows']:,}")
        console.print(pubs)
    print_control_totals(summary.report, summary.control_totals)
    for gate in summary.gates:
        if not gate["success"]:
            console.print(f"[bold red]gate failed[/] {gate['summary']}")
    if summary.validation_html:
        console.print(f"Validation report: {summary.validation_html}")


# per report: (title, columns summed per treaty × currency over the periods)
_TOTALS = {
    "premium_bordereau": ("Premium control totals (unrounded): ledger = ceded + retained + quarantined; "
                          "shares = published + quarantined + pending",
                          ("ledger_gross", "ceded_100", "retained", "ledger_quarantined", "published", "quarantined",
                           "not_due", "unplaced")),
    "claims_bordereau": ("Claims control totals (unrounded): ledger paid = bordereau paid; incurred shares = "
                         "published + quarantined + pending",
                         ("ledger_paid", "bordereau_paid", "ceded_incurred", "published", "quarantined", "not_due",
                          )),
    "exposure": ("Exposure control totals: ceded TIV shares = published + quarantined",
                 ("placed", "published", "quarantined", "not_due")),
}


def print_control_totals(report: str, totals: list[dict]) -> None:
    if report not in _TOTALS or not totals:
        return
    title, columns = _TOTALS[report]
    grouped: dict[tuple, dict] = {}
    for t in totals:
        key = (t["treaty_id"], t["currency"]) + ((t["frequency"],) if "frequency" in t else ())
        g = grouped.setdefault(key, {c: 0 for c in columns} | {"periods": 0, "ok": True})
        for c in columns:
            g[c] += t.get(c) or 0
        g["periods"] += 1
        g["ok"] = g["ok"] and t["balanced"]
    table = Table(title=title + " · per treaty × currency, summed over its periods", title_justify="left")
    table.add_column("treaty")
    table.add_column("ccy")
    if any(len(k) == 3 for k in grouped):
        table.add_column("grid")
    for c in (*columns, "periods", "ok"):
        table.add_column(c.replace("_", " "), justify="right")
    for key, g in grouped.items():
        table.add_row(*key, *(_num(g[c]) for c in columns), str(g["periods"]), "✓" if g["ok"] else "✗")
    console.print(table)
    for t in totals:
        if not t["balanced"]:
            where = " ".join(str(t.get(k)) for k in ("treaty_id", "currency", "frequency", "period") if t.get(k))
            console.print(f"[bold red]does not reconcile[/] {where}: {t['why']}")


def _num(value) -> str:
    return f"{value:,.9f}".rstrip("0").rstrip(".") if value is not None else "-"
