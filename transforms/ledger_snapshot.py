"""Read the warehouse's current-state ledger tables into Beam as Arrow batches."""
from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from transforms.ledger_schema import ledger_tables
from transforms.mod_decoding import qi
from transforms.warehouse import LEDGER_DATASET, open_warehouse


def read_current_table(warehouse_uri: str, table: str, extra_columns=()) -> pa.Table:
    """The current state of one ledger table, without mirror bookkeeping columns (but for
    `extra_columns`, e.g. `_metadata_spanner_commit_timestamp`)."""
    cols = ", ".join(qi(c) for c in [*ledger_tables()[table].column_names, *extra_columns])
    with open_warehouse(warehouse_uri) as wh:
        return wh.query(f"SELECT {cols} FROM {LEDGER_DATASET}.{qi(table)}")


class _ReadTableFn(beam.DoFn):
    def __init__(self, warehouse_uri: str, batch_rows: int, extra_columns=()):
        self.warehouse_uri = warehouse_uri
        self.batch_rows = batch_rows
        self.extra_columns = tuple(extra_columns)
        self.rows = Metrics.counter("rex", "ledger_rows_read")

    def process(self, table: str):
        data = read_current_table(self.warehouse_uri, table, self.extra_columns)
        self.rows.inc(data.num_rows)
        if data.num_rows == 0:
            yield data
            return
        for batch in data.to_batches(max_chunksize=self.batch_rows):
            yield pa.Table.from_batches([batch], schema=data.schema)


class ReadLedgerTable(beam.PTransform):
    """One current-state ledger table as Arrow batches of at most `batch_rows` rows."""

    def __init__(self, warehouse_uri: str, table: str, batch_rows: int = 50_000, extra_columns=()):
        super().__init__()
        self.warehouse_uri, self.table, self.batch_rows = warehouse_uri, table, batch_rows
        self.extra_columns = tuple(extra_columns)

    def expand(self, pbegin):
        return (
            pbegin
            | "Table" >> beam.Create([self.table])
            | "Read" >> beam.ParDo(_ReadTableFn(self.warehouse_uri, self.batch_rows, self.extra_columns))
        )


def concat_batches(batches) -> pa.Table:
    """Side-input helper: the batches of a small table as one table."""
    batches = [b for b in batches]
    return pa.concat_tables(batches) if batches else None


class _ReadChangelogFn(beam.DoFn):
    def __init__(self, warehouse_uri: str, columns: tuple[str, ...]):
        self.warehouse_uri, self.columns = warehouse_uri, columns

    def process(self, table: str):
        cols = ", ".join(qi(c) for c in self.columns)
        with open_warehouse(self.warehouse_uri) as wh:
            yield wh.query(f"SELECT {cols} FROM {LEDGER_DATASET}.{qi(table + '_changelog')}")


class ReadLedgerChangelog(beam.PTransform):
    """Some columns of a ledger table's changelog (every version of every row), as one table."""

    def __init__(self, warehouse_uri: str, table: str, columns):
        super().__init__()
        self.warehouse_uri, self.table, self.columns = warehouse_uri, table, tuple(columns)

    def expand(self, pbegin):
        return (
            pbegin
            | "Table" >> beam.Create([self.table])
            | "Read" >> beam.ParDo(_ReadChangelogFn(self.warehouse_uri, self.columns))
        )
