"""The embedded DuckDB warehouse: ledger mirror, run ledger, checkpoints, quarantine, reports.

One file, one writer at a time. A capture commits in ONE transaction: changelog rows, the
current-state tables, quarantine rows, the checkpoint and the run row; a crash before commit
leaves everything as it was, so running again repairs it.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pyarrow as pa

from transforms import duck
from transforms.errors import WarehouseError
from transforms.ledger_schema import Table, ledger_tables
from transforms.mod_decoding import METADATA_COLUMNS, qi, ql
from transforms.quarantine import INCOMPLETE_TRANSACTION, QUARANTINE_SCHEMA
from transforms.warehouse import LEDGER_DATASET, OPS_DATASET, REPORTS_DATASET, partner_dataset

_TS = "_metadata_spanner_commit_timestamp"
_SEQ = "_metadata_spanner_record_sequence"
_TXN = "_metadata_spanner_server_transaction_id"
_MOD = "_metadata_spanner_mod_type"

_NO_INCOMPLETE = pa.table(
    {"server_transaction_id": pa.array([], pa.string()), "records_seen": pa.array([], pa.int64()),
     "records_expected": pa.array([], pa.int64())}
)

_OPS_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {OPS_DATASET};
CREATE TABLE IF NOT EXISTS {OPS_DATASET}.checkpoints (
  source VARCHAR NOT NULL, committed_through TIMESTAMPTZ NOT NULL, run_id VARCHAR NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS {OPS_DATASET}.runs (
  run_id VARCHAR NOT NULL, command VARCHAR NOT NULL, status VARCHAR NOT NULL,
  started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, source VARCHAR,
  window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, checkpoint_before TIMESTAMPTZ,
  checkpoint_after TIMESTAMPTZ, code_version VARCHAR, counts JSON, control_totals JSON,
  message VARCHAR);
CREATE TABLE IF NOT EXISTS {OPS_DATASET}.quarantine (
  quarantine_id VARCHAR NOT NULL, stage VARCHAR NOT NULL, partner VARCHAR, report VARCHAR,
  table_name VARCHAR, rule VARCHAR NOT NULL, reason VARCHAR NOT NULL, offending_value VARCHAR,
  commit_timestamp TIMESTAMPTZ, server_transaction_id VARCHAR, record_sequence VARCHAR,
  raw_record VARCHAR NOT NULL, source VARCHAR, run_id VARCHAR NOT NULL,
  quarantined_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS {OPS_DATASET}.publications (
  partner VARCHAR NOT NULL, report VARCHAR NOT NULL, period VARCHAR NOT NULL, version BIGINT NOT NULL,
  kind VARCHAR NOT NULL, closed BOOLEAN NOT NULL, rows BIGINT NOT NULL, content_hash VARCHAR NOT NULL,
  contract_version VARCHAR, run_id VARCHAR NOT NULL, files JSON, published_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS {OPS_DATASET}.validations (
  run_id VARCHAR NOT NULL, partner VARCHAR NOT NULL, report VARCHAR NOT NULL, periods VARCHAR,
  contract_version VARCHAR, rows BIGINT NOT NULL, success BOOLEAN NOT NULL, checks BIGINT NOT NULL,
  failed BIGINT NOT NULL, summary VARCHAR NOT NULL, failures JSON, html VARCHAR,
  validated_at TIMESTAMPTZ NOT NULL);
"""


@dataclass
class CaptureResult:
    """What one capture commit changed, per ledger table."""

    read: dict[str, int] = field(default_factory=dict)  # decoded mods per table
    applied: dict[str, int] = field(default_factory=dict)  # new changelog rows per table
    duplicates: dict[str, int] = field(default_factory=dict)  # already mirrored, skipped
    quarantined: int = 0
    quarantined_new: int = 0


def _table_ddl(t: Table, changelog: bool) -> str:
    cols = [f"{qi(c.name)} {c.duckdb_type}" for c in t.columns]
    if changelog:
        cols += [f"{qi(name)} {typ}" for name, _src, typ in METADATA_COLUMNS]
    else:
        cols.append(f"{qi(_TS)} TIMESTAMPTZ")
    name = f"{t.name}_changelog" if changelog else t.name
    return f"CREATE TABLE IF NOT EXISTS {LEDGER_DATASET}.{qi(name)} ({', '.join(cols)})"


def _expected_tables() -> set[str]:
    ops = {f"{OPS_DATASET}.{m}" for m in re.findall(rf"CREATE TABLE IF NOT EXISTS {OPS_DATASET}\.(\w+)", _OPS_DDL)}
    ledger = {f"{LEDGER_DATASET}.{n}{suffix}" for n in ledger_tables() for suffix in ("", "_changelog")}
    return ops | ledger


class DuckDbWarehouse:
    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise WarehouseError(f"warehouse folder {parent} does not exist")
        try:
            self.con = duck.connect(path)
        except duckdb.Error as e:
            raise WarehouseError(f"cannot open warehouse {path}: {str(e).splitlines()[0]}") from e
        self.ensure_schema()

    @property
    def uri(self) -> str:
        return "duckdb:///" + self.path

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- schema -------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create what is missing (a run opens the warehouse a dozen times: when every table is
        there already, one catalog query instead of forty DDL statements)."""
        con = self.con
        have = {f"{s}.{t}" for s, t in con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN (?, ?)",
            [OPS_DATASET, LEDGER_DATASET]).fetchall()}
        if _expected_tables() <= have:
            return
        con.execute(_OPS_DDL)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {LEDGER_DATASET}")
        for t in ledger_tables().values():
            con.execute(_table_ddl(t, changelog=True))
            con.execute(_table_ddl(t, changelog=False))

    # -- reads --------------------------------------------------------------------------
    def query(self, sql: str, params: list | None = None) -> pa.Table:
        return self.con.sql(sql, params=params or None).to_arrow_table()

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        return self.con.execute(sql, params or []).fetchall()

    def read_checkpoint(self, source: str) -> datetime | None:
        rows = self.rows(
            f"SELECT max(committed_through) FROM {OPS_DATASET}.checkpoints WHERE source = ?", [source]
        )
        return rows[0][0] if rows else None

    # -- capture ------------------------------------------------------------------------
    def commit_capture(
        self,
        staged: dict[str, list[str]],
        quarantine_files: list[str],
        source: str,
        checkpoint: datetime,
        run: dict,
        incomplete: pa.Table | None = None,
    ) -> CaptureResult:
        """Apply staged Parquet changes, quarantine, checkpoint and run row in one transaction.

        `incomplete` lists transactions read only in part (server_transaction_id,
        records_seen, records_expected); their changes are quarantined, not applied.
        """
        con = self.con
        result = CaptureResult()
        con.register("_incomplete", incomplete if incomplete is not None else _NO_INCOMPLETE)
        con.execute("BEGIN TRANSACTION")
        try:
            held = 0
            for name, files in sorted(staged.items()):
                t = ledger_tables()[name]
                held += self._hold_incomplete(t, files, run["run_id"])
                read, applied = self._apply_table(t)
                result.read[name] = read
                result.applied[name] = applied
                result.duplicates[name] = read - applied
            result.quarantined, result.quarantined_new = self._insert_quarantine(
                quarantine_files, run["run_id"]
            )
            result.quarantined += held
            result.quarantined_new += held
            con.execute(f"DELETE FROM {OPS_DATASET}.checkpoints WHERE source = ?", [source])
            con.execute(
                f"INSERT INTO {OPS_DATASET}.checkpoints VALUES (?, ?, ?, now())",
                [source, checkpoint, run["run_id"]],
            )
            run = dict(run, checkpoint_after=checkpoint)
            run["counts"] = dict(run.get("counts") or {}, **_counts_json(result))
            self._insert_run(run)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("_incomplete")
        return result

    def _hold_incomplete(self, t: Table, files: list[str], run_id: str) -> int:
        """Stage a table's changes in `_stg`, moving those of incomplete transactions to quarantine."""
        con = self.con
        pk = [qi(k) for k in t.primary_key]
        ident = [qi(_TXN)] + pk
        file_list = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
        con.execute(f"CREATE OR REPLACE TEMP TABLE _stg AS SELECT * FROM read_parquet({file_list})")
        # The same change read twice (overlapping files) is kept once. Checking on the key
        # columns first is a tenth of the cost of DISTINCT ON over every column.
        repeated = con.execute(
            f"SELECT count(*) - count(DISTINCT ({', '.join(ident)})) FROM _stg"
        ).fetchall()[0][0]
        if repeated:
            con.execute(f"CREATE OR REPLACE TEMP TABLE _stg AS SELECT DISTINCT ON ({', '.join(ident)}) * FROM _stg")
        held = con.execute(
            f"SELECT count(*) FROM _stg s JOIN _incomplete i ON i.server_transaction_id = s.{qi(_TXN)}"
        ).fetchall()[0][0]
        if not held:
            return 0
        raw = "to_json(s)::VARCHAR"
        con.execute(
            f"""INSERT INTO {OPS_DATASET}.quarantine
            SELECT sha256('capture' || chr(31) || '{INCOMPLETE_TRANSACTION}' || chr(31) || {raw}),
              'capture', NULL, NULL, {ql(t.name)}, '{INCOMPLETE_TRANSACTION}',
              'read ' || i.records_seen || ' of ' || i.records_expected || ' records of transaction ' || s.{qi(_TXN)},
              NULL, s.{qi(_TS)}, s.{qi(_TXN)}, s.{qi(_SEQ)}, {raw}, NULL, ?, now()
            FROM _stg s JOIN _incomplete i ON i.server_transaction_id = s.{qi(_TXN)}
            WHERE NOT EXISTS (SELECT 1 FROM {OPS_DATASET}.quarantine q
              WHERE q.quarantine_id = sha256('capture' || chr(31) || '{INCOMPLETE_TRANSACTION}' || chr(31) || {raw}))""",
            [run_id],
        )
        con.execute(f"DELETE FROM _stg WHERE {qi(_TXN)} IN (SELECT server_transaction_id FROM _incomplete)")
        return held

    def _apply_table(self, t: Table) -> tuple[int, int]:
        """Append unseen changes to the changelog, then rebuild current state for their keys.

        A change is identified by (server transaction id, primary key): Spanner emits at most
        one mod per row per transaction, so re-reading a window finds only duplicates.
        Current state is recomputed from the whole changelog for the touched keys, so the
        result is right whatever order windows arrive in.
        """
        con = self.con
        log = f"{LEDGER_DATASET}.{qi(t.name + '_changelog')}"
        cur = f"{LEDGER_DATASET}.{qi(t.name)}"
        pk = [qi(k) for k in t.primary_key]
        ident = [qi(_TXN)] + pk
        read = con.execute("SELECT count(*) FROM _stg").fetchall()[0][0]
        on = " AND ".join(f"c.{c} IS NOT DISTINCT FROM s.{c}" for c in ident)
        cols = ", ".join(qi(c.name) for c in t.columns) + ", " + ", ".join(qi(m[0]) for m in METADATA_COLUMNS)
        before = con.execute(f"SELECT count(*) FROM {log}").fetchall()[0][0]
        con.execute(
            f"INSERT INTO {log} ({cols}) SELECT {', '.join('s.' + c for c in cols.split(', '))} "
            f"FROM _stg s WHERE NOT EXISTS (SELECT 1 FROM {log} c WHERE {on})"
        )
        applied = con.execute(f"SELECT count(*) FROM {log}").fetchall()[0][0] - before
        keys_on = " AND ".join(f"{cur}.{k} = k.{k}" for k in pk)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _keys AS SELECT DISTINCT {', '.join(pk)} FROM _stg")
        con.execute(f"DELETE FROM {cur} USING _keys k WHERE {keys_on}")
        value_cols = ", ".join(qi(c.name) for c in t.columns)
        con.execute(
            f"""INSERT INTO {cur} ({value_cols}, {qi(_TS)})
            SELECT {value_cols}, {qi(_TS)} FROM (
              SELECT c.*, row_number() OVER (
                PARTITION BY {', '.join('c.' + k for k in pk)}
                ORDER BY c.{qi(_TS)} DESC, c.{qi(_SEQ)} DESC, c.{qi(_TXN)} DESC) AS _rn
              FROM {log} c SEMI JOIN _keys k ON {' AND '.join(f'c.{k} = k.{k}' for k in pk)}
            ) WHERE _rn = 1 AND {qi(_MOD)} <> 'DELETE'"""
        )
        con.execute("DROP TABLE _stg")
        con.execute("DROP TABLE _keys")
        return read, applied

    def _insert_quarantine(self, files: list[str], run_id: str) -> tuple[int, int]:
        if not files:
            return 0, 0
        con = self.con
        file_list = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
        cols = ", ".join(qi(f.name) for f in QUARANTINE_SCHEMA)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _q AS SELECT DISTINCT ON (quarantine_id) {cols} "
            f"FROM read_parquet({file_list})"
        )
        total = con.execute("SELECT count(*) FROM _q").fetchall()[0][0]
        before = con.execute(f"SELECT count(*) FROM {OPS_DATASET}.quarantine").fetchall()[0][0]
        con.execute(
            f"INSERT INTO {OPS_DATASET}.quarantine ({cols}, run_id, quarantined_at) "
            f"SELECT {cols}, ?, now() FROM _q q WHERE NOT EXISTS "
            f"(SELECT 1 FROM {OPS_DATASET}.quarantine x WHERE x.quarantine_id = q.quarantine_id)",
            [run_id],
        )
        new = con.execute(f"SELECT count(*) FROM {OPS_DATASET}.quarantine").fetchall()[0][0] - before
        con.execute("DROP TABLE _q")
        return total, new

    def append_quarantine(self, table: pa.Table, run_id: str) -> int:
        """Add quarantine rows not already there (by quarantine_id); returns how many were new."""
        if table.num_rows == 0:
            return 0
        con = self.con
        cols = ", ".join(qi(f.name) for f in QUARANTINE_SCHEMA)
        con.register("_new_q", table.cast(QUARANTINE_SCHEMA))
        try:
            before = con.execute(f"SELECT count(*) FROM {OPS_DATASET}.quarantine").fetchall()[0][0]
            con.execute(
                f"INSERT INTO {OPS_DATASET}.quarantine ({cols}, run_id, quarantined_at) "
                f"SELECT {cols}, ?, now() FROM (SELECT DISTINCT ON (quarantine_id) * FROM _new_q) q "
                f"WHERE NOT EXISTS (SELECT 1 FROM {OPS_DATASET}.quarantine x WHERE x.quarantine_id = q.quarantine_id)",
                [run_id],
            )
            return con.execute(f"SELECT count(*) FROM {OPS_DATASET}.quarantine").fetchall()[0][0] - before
        finally:
            con.unregister("_new_q")

    def record_validations(self, rows: list[dict]) -> None:
        """The gate outcomes of a run, one row per partner × report."""
        cols = ["run_id", "partner", "report", "periods", "contract_version", "rows", "success", "checks",
                "failed", "summary", "failures", "html"]
        for r in rows:
            values = [json.dumps(r[c], default=str) if c == "failures" else r.get(c) for c in cols]
            self.con.execute(
                f"INSERT INTO {OPS_DATASET}.validations ({', '.join(cols)}, validated_at) "
                f"VALUES ({', '.join('?' * len(cols))}, now())", values)

    def validations(self, run_id: str) -> list[dict]:
        rel = self.con.execute(
            f"SELECT partner, report, periods, contract_version, rows, success, checks, failed, summary, "
            f"failures::VARCHAR AS failures, html FROM {OPS_DATASET}.validations WHERE run_id = ? ORDER BY partner, report",
            [run_id])
        names = [d[0] for d in rel.description]
        out = []
        for row in rel.fetchall():
            r = dict(zip(names, row))
            r["failures"] = json.loads(r["failures"] or "[]")
            out.append(r)
        return out

    # -- publications -------------------------------------------------------------------
    def latest_publications(self, partner: str, report: str) -> dict:
        """period -> `Published` (latest version, its content hash and the rows as sent)."""
        from transforms.publications import Published

        latest = self.rows(
            f"SELECT period, max(version) FROM {OPS_DATASET}.publications WHERE partner = ? AND report = ? "
            "GROUP BY period", [partner, report])
        if not latest:
            return {}
        table = f"{REPORTS_DATASET}.{qi('published_' + report)}"
        out = {}
        for period, version in latest:
            h, terms = self.rows(f"SELECT content_hash, contract_version FROM {OPS_DATASET}.publications "
                                 "WHERE partner = ? AND report = ? AND period = ? AND version = ?",
                                 [partner, report, period, version])[0]
            rows = self.query(f"SELECT * EXCLUDE (partner, published_period, version, run_id) FROM {table} "
                              "WHERE partner = ? AND published_period = ? AND version = ?", [partner, period, version])
            out[period] = Published(period, int(version), h, rows, terms)
        return out

    def publish_versions(self, partner: str, report: str, contract_version: str, run_id: str, plans,
                         partner_tables: dict, files: list[str], period_column: str | None) -> None:
        """Record new versions: their rows as sent (rex columns), the partner's table (latest
        version of each period) and the publication log, in one transaction."""
        from transforms.publications import content_hash

        con = self.con
        snapshot = f"{REPORTS_DATASET}.{qi('published_' + report)}"
        ds = partner_dataset(partner)
        target = f"{ds}.{qi(report)}"
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {REPORTS_DATASET}")
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {ds}")
            sent, hashes = [], []
            for plan in plans:
                rows = plan.rows
                n = rows.num_rows
                sent.append(rows.append_column("partner", pa.repeat(pa.scalar(partner, pa.string()), n))
                            .append_column("published_period", pa.repeat(pa.scalar(plan.period, pa.string()), n))
                            .append_column("version", pa.repeat(pa.scalar(plan.version, pa.int64()), n))
                            .append_column("run_id", pa.repeat(pa.scalar(run_id, pa.string()), n)))
                hashes.append(content_hash(rows, rows.column_names))
            # one insert for all the versions, one swap of the partner's periods (not one per period)
            self._append_by_name(snapshot, pa.concat_tables(sent, promote_options="permissive"))
            self._replace_periods(target, [partner_tables[plan.period] for plan in plans],
                                  [plan.period for plan in plans], period_column)
            for plan, h in zip(plans, hashes):
                period_files = [f for f in files if f"{os.sep}{plan.period}{os.sep}v{plan.version}{os.sep}" in f]
                con.execute(
                    f"INSERT INTO {OPS_DATASET}.publications VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                    [partner, report, plan.period, plan.version, plan.kind, plan.closed, plan.rows.num_rows,
                     h, contract_version, run_id, json.dumps(period_files)])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise

    def _append_by_name(self, table: str, rows: pa.Table) -> None:
        con = self.con
        con.register("_rows", rows)
        try:
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _rows WHERE false")
            have = {r[0] for r in con.execute(f"SELECT name FROM pragma_table_info('{table}')").fetchall()}
            for f in rows.schema:
                if f.name not in have:
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {qi(f.name)} "
                                f"{con.sql(f'SELECT {qi(f.name)} FROM _rows LIMIT 0').types[0]}")
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows")
        finally:
            con.unregister("_rows")

    def _replace_periods(self, target: str, tables: list[pa.Table], periods: list[str],
                         period_column: str | None) -> None:
        """The partner's table holds the latest version of each period: swap in these periods
        (`period_column` is the partner's name for it; without one the table holds one batch,
        the last). If the contract's columns changed, the table is rebuilt from these periods."""
        con = self.con
        if period_column is None or any(period_column not in t.column_names for t in tables):
            tables, periods, period_column = tables[-1:], periods[-1:], None
        table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        con.register("_period", table)
        try:
            exists = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema || '.' || table_name = ?",
                [target.replace('"', "")]).fetchall()[0][0]
            same = exists and [r[0] for r in con.execute(f"DESCRIBE {target}").fetchall()] == table.column_names
            if not same:
                con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM _period")
            elif period_column is None:
                con.execute(f"DELETE FROM {target}")
                con.execute(f"INSERT INTO {target} SELECT * FROM _period")
            else:
                con.execute(f"DELETE FROM {target} WHERE list_contains(?, {qi(period_column)})", [periods])
                con.execute(f"INSERT INTO {target} SELECT * FROM _period")
        finally:
            con.unregister("_period")

    def publications(self, run_id: str) -> list[dict]:
        rel = self.con.execute(
            f"SELECT partner, report, period, version, kind, closed, rows, files::VARCHAR AS files "
            f"FROM {OPS_DATASET}.publications WHERE run_id = ? ORDER BY partner, report, period, version", [run_id])
        names = [d[0] for d in rel.description]
        out = [dict(zip(names, r)) for r in rel.fetchall()]
        for r in out:
            r["files"] = json.loads(r["files"] or "[]")
        return out

    # -- runs ---------------------------------------------------------------------------
    def _insert_run(self, run: dict) -> None:
        cols = [
            "run_id", "command", "status", "started_at", "finished_at", "source", "window_start",
            "window_end", "checkpoint_before", "checkpoint_after", "code_version", "counts",
            "control_totals", "message",
        ]
        values = []
        for c in cols:
            v = run.get(c)
            if c in ("counts", "control_totals") and v is not None:
                v = json.dumps(v, default=str, sort_keys=True)
            values.append(v)
        self.con.execute(
            f"INSERT INTO {OPS_DATASET}.runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            values,
        )

    def record_run(self, run: dict) -> None:
        """Store a run row outside a capture (reports, failures)."""
        self._insert_run(run)

    # -- reports ------------------------------------------------------------------------
    def replace_central_table(self, name: str, data: pa.Table) -> None:
        """Replace the all-partner report table `rex_reports.<name>` (never shown to partners)."""
        self._replace_table(REPORTS_DATASET, name, data)

    def replace_partner_table(self, partner_id: str, name: str, data: pa.Table) -> None:
        """Replace a partner's report table with a freshly built one, atomically."""
        self._replace_table(partner_dataset(partner_id), name, data)

    def _replace_table(self, ds: str, name: str, data: pa.Table) -> None:
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {ds}")
            con.register("_report", data)
            con.execute(f"CREATE OR REPLACE TABLE {ds}.{qi(name)} AS SELECT * FROM _report")
            con.unregister("_report")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise


def _counts_json(result: CaptureResult) -> dict:
    return {
        "mods_decoded": result.read,
        "changes_applied": result.applied,
        "duplicates_skipped": result.duplicates,
        "quarantined": result.quarantined,
        "quarantined_new": result.quarantined_new,
    }
