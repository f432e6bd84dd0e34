"""Publish a report: per partner, replace its warehouse table and write its export file."""
from __future__ import annotations

import os

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from transforms.report_exports import round_money, write_csv
from transforms.warehouse import open_warehouse


class _PublishFn(beam.DoFn):
    def __init__(self, warehouse_uri, report, partners, out_dir, empty, sort_keys, money_columns,
                 currency_column, rounding):
        self.warehouse_uri = warehouse_uri
        self.report = report
        self.partners = partners
        self.out_dir = out_dir
        self.empty = empty
        self.sort_keys = sort_keys
        self.money_columns = money_columns
        self.currency_column = currency_column
        self.rounding = rounding
        self.written = Metrics.counter("rex", "report_rows_written")

    def process(self, batches):
        rows = pa.concat_tables([self.empty] + list(batches)).combine_chunks()
        with open_warehouse(self.warehouse_uri) as wh:
            wh.replace_central_table(self.report, rows.sort_by([("reinsurer_id", "ascending")] + list(self.sort_keys)))
            for partner in self.partners:
                mine = rows.filter(pa.compute.equal(rows["reinsurer_id"], partner))
                mine = mine.sort_by(self.sort_keys)
                wh.replace_partner_table(partner, self.report, mine)
                if self.out_dir:
                    export = round_money(mine, self.money_columns, self.currency_column, self.rounding)
                    write_csv(export, os.path.join(self.out_dir, partner, f"{self.report}.csv"))
                self.written.inc(mine.num_rows)
                yield (partner, mine.num_rows)


class PublishPartnerReport(beam.PTransform):
    """Report batches (all partners) -> `rex_reports.<report>` (every partner, for control
    totals), and for each listed partner `partner_<id>.<report>` and its CSV export.

    Every listed partner gets its table and file, empty ones included, so a partner can tell
    "nothing this period" from "not run". A partner's rows are filtered by its own id only.
    """

    def __init__(self, warehouse_uri: str, report: str, partners: list[str], out_dir: str | None,
                 empty: pa.Table, sort_keys, money_columns, currency_column: str,
                 rounding: str = "half_up"):
        super().__init__()
        self.fn = _PublishFn(warehouse_uri, report, sorted(partners), out_dir, empty, sort_keys,
                             tuple(money_columns), currency_column, rounding)

    def expand(self, batches):
        return batches | "CollectReport" >> beam.combiners.ToList() | "Publish" >> beam.ParDo(self.fn)
