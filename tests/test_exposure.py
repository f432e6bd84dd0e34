"""Exposure worked examples: a hand-built book, numbers written out by hand, not computed by rex."""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal as D

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to

from change_factory import policy, record, ts_ns, write_jsonl
from change_factory import treaty as change_treaty
from pipelines.capture import run_capture
from pipelines.options import pipeline_options
from transforms.exposure import (
    BOOK_TABLES,
    TIV_NOT_NEGATIVE_RULE,
    BuildExposure,
    BuildTopLocations,
    empty_exposure,
    empty_top_locations,
    exposure_quarantine,
    exposure_rows,
    top_locations,
)
from transforms.ledger_snapshot import read_current_table
from transforms.premium_bordereau import UNKNOWN_TREATY_RULE
from transforms.quarantine import QUARANTINE_SCHEMA, QUARANTINE_TAG_REPORT
from transforms.report_catalog import EXPOSURE, EXPOSURE_TOP_LOCATIONS, REPORTS

AS_OF = date(2026, 6, 30)


def treaty(tid, ttype, **kw):
    return change_treaty(tid, ttype, **{"ExpiryDate": date(2027, 1, 1), **kw})


def location(pid, lid, zone, perils, building, contents="0", bi=None, country=None):
    return {"PolicyId": pid, "LocationId": lid, "CountryCode": country or zone[:2], "Zone": zone,
            "Latitude": 50.1, "Longitude": 8.6, "PerilsCovered": perils, "OccupancyCode": 1050,
            "ConstructionCode": 5100, "BuildingTiv": D(building),
            "ContentsTiv": None if contents is None else D(contents), "BiTiv": None if bi is None else D(bi)}


def gbp(pid, **kw):
    return policy(pid, treaty="XL1", currency="GBP", CountryCode="GB", **kw)


BOOK = [
    record("Reinsurers", "INSERT", [
        {"ReinsurerId": r, "Name": r, "CountryCode": "CH"}
        for r in ("alpine-re", "boreal-re", "coral-re", "meridian-re")
    ], ts_ns=ts_ns(1), txn="ref", seq=0, records_in_txn=3),
    record("Treaties", "INSERT", [
        treaty("QS1", "QUOTA_SHARE", CessionRate=D("0.4")),
        treaty("SP1", "SURPLUS", Retention=D("1000000"), Lines=4),
        treaty("XL1", "XOL_PER_RISK", Currency="GBP", Attachment=D("1000000"), Limit=D("4000000")),
        treaty("QS9", "QUOTA_SHARE", CessionRate=D("0.5")),  # no participations: nobody's exposure
    ], ts_ns=ts_ns(1), txn="ref", seq=1, records_in_txn=3),
    record("Participations", "INSERT", [
        {"TreatyId": "QS1", "ReinsurerId": "alpine-re", "SharePct": D("0.6")},
        {"TreatyId": "QS1", "ReinsurerId": "boreal-re", "SharePct": D("0.4")},
        {"TreatyId": "SP1", "ReinsurerId": "alpine-re", "SharePct": D("0.5")},
        {"TreatyId": "SP1", "ReinsurerId": "coral-re", "SharePct": D("0.3")},
        {"TreatyId": "SP1", "ReinsurerId": "meridian-re", "SharePct": D("0.2")},
        {"TreatyId": "XL1", "ReinsurerId": "boreal-re", "SharePct": D("0.5")},  # the panel is 90% placed
        {"TreatyId": "XL1", "ReinsurerId": "meridian-re", "SharePct": D("0.4")},
    ], ts_ns=ts_ns(1), txn="ref", seq=2, records_in_txn=3),
    record("Policies", "INSERT", [
        policy("QA", treaty="QS1", InceptionDate=AS_OF),  # incepts on the as-of date: in force
        policy("SA", treaty="SP1"),
        gbp("XA"), gbp("XB"),
        policy("NY", treaty="QS1", InceptionDate=date(2026, 7, 1)),  # not yet incepted
        policy("CX", status="CANCELLED", treaty="QS1", ExpiryDate=date(2026, 3, 15)),  # cancelled in March
        policy("EX", treaty="QS1", ExpiryDate=AS_OF),  # expires on the as-of date: no longer in force
        policy("NT", treaty=None),  # retained business
        policy("NP", treaty="QS9"),  # a treaty nobody participates in
        policy("UT", treaty="QS-GHOST"),  # a treaty the ledger does not hold
    ], ts_ns=ts_ns(2), txn="book", seq=0, records_in_txn=2),
    record("Locations", "INSERT", [
        location("QA", "QA1", "DE-20", "WEC;ORF", "1000000", "250000", None),  # BI NULL counts 0
        location("QA", "QA2", "DE-20", "WEC", "500000.50", "100000", "50000"),
        location("SA", "SA1", "DE-20", "WEC", "2000000.01"),
        location("SA", "SA2", "DE-80", "XHL", "999999.99", "0", None),
        location("SA", "SA3", "DE-80", "XHL", "300000", "0", "-1"),  # negative BI: quarantined
        location("XA", "XA1", "GB-MAN", "WEC", "800000"),  # below the layer
        location("XA", "XA2", "GB-LON", "WEC", "2000000", "500000"),  # inside the layer
        location("XA", "XA3", "GB-LON", "WEC", "5000000", "0", "1000000"),  # above the layer
        location("XB", "XB1", "GB-EDI", "WEC", "7000000"),  # above the layer, ties with XA3
        location("NY", "NY1", "DE-20", "WEC", "1000000"),
        location("CX", "CX1", "DE-20", "WEC", "1000000", "-5"),  # not in force: not quarantined either
        location("EX", "EX1", "DE-20", "WEC", "1000000"),
        location("NT", "NT1", "DE-20", "WEC", "1000000"),
        location("NP", "NP1", "DE-20", "WEC", "1000000"),
        location("UT", "UT1", "DE-20", "WEC", "1000000"),
    ], ts_ns=ts_ns(2), txn="book", seq=1, records_in_txn=2),
]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    d = tmp_path_factory.mktemp("exposure")
    write_jsonl(str(d / "changes" / "book.jsonl"), BOOK)
    uri = "duckdb:///" + str(d / "wh.duckdb")
    run_capture(str(d / "changes"), uri)
    return uri, [read_current_table(uri, name) for name in BOOK_TABLES]


def _rows(table):
    cols = ("reinsurer_id", "treaty_id", "peril", "country", "zone", "location_count", "building_tiv_100",
            "contents_tiv_100", "bi_tiv_100", "total_tiv_100", "ceded_tiv_100", "share_pct", "ceded_tiv_share")
    return [tuple(r[c] for c in cols) for r in table.to_pylist()]


# (reinsurer, treaty, peril, country, zone, locations, building, contents, BI, total, ceded 100%, share, share TIV)
EXPECTED = [
    # QS1, 40% ceded, 60/40. ORF: QA1 only, 1,250,000 x 40% = 500,000 -> 300,000 / 200,000.
    ("alpine-re", "QS1", "ORF", "DE", "DE-20", 1, D("1000000"), D("250000"), D("0"), D("1250000"), D("500000"),
     D("0.6"), D("300000")),
    # WEC: QA1 + QA2 = 1,250,000 + 650,000.50 = 1,900,000.50 x 40% = 760,000.20 -> 456,000.12 / 304,000.08
    ("alpine-re", "QS1", "WEC", "DE", "DE-20", 2, D("1500000.50"), D("350000"), D("50000"), D("1900000.50"),
     D("760000.20"), D("0.6"), D("456000.12")),
    # SP1: S = 2,000,000.01 + 999,999.99 = 3,000,000 (SA3 quarantined, not counted); fraction =
    # min(3,000,000 - 1,000,000, 4 x 1,000,000) / 3,000,000 = 0.666666667.
    # SA1: 2,000,000.01 x 0.666666667 = 1,333,333.34066666667 -> 1,333,333.340666667;
    # x 0.5 = 666,666.6703333335 -> 666,666.670333334; x 0.3 = 400,000.0022000001 -> 400,000.002200000;
    # x 0.2 = 266,666.6681333334 -> 266,666.668133333 (sum: 1,333,333.340666667, no residual).
    ("alpine-re", "SP1", "WEC", "DE", "DE-20", 1, D("2000000.01"), D("0"), D("0"), D("2000000.01"),
     D("1333333.340666667"), D("0.5"), D("666666.670333334")),
    # SA2: 999,999.99 x 0.666666667 = 666,666.66033333333 -> 666,666.660333333;
    # x 0.5 = 333,333.3301666665 -> 333,333.330166667; x 0.3 = 199,999.9980999999 -> 199,999.998100000;
    # x 0.2 = 133,333.3320666666 -> 133,333.332066667; they add up to 666,666.660333334, one billionth
    # too many: the largest share (alpine) gives it back -> 333,333.330166666.
    ("alpine-re", "SP1", "XHL", "DE", "DE-80", 1, D("999999.99"), D("0"), D("0"), D("999999.99"),
     D("666666.660333333"), D("0.5"), D("333333.330166666")),
    ("boreal-re", "QS1", "ORF", "DE", "DE-20", 1, D("1000000"), D("250000"), D("0"), D("1250000"), D("500000"),
     D("0.4"), D("200000")),
    ("boreal-re", "QS1", "WEC", "DE", "DE-20", 2, D("1500000.50"), D("350000"), D("50000"), D("1900000.50"),
     D("760000.20"), D("0.4"), D("304000.08")),
    # XL1 1,000,000 xs... limit 4,000,000, per location. XB1: 7,000,000 -> 4,000,000 (the limit).
    ("boreal-re", "XL1", "WEC", "GB", "GB-EDI", 1, D("7000000"), D("0"), D("0"), D("7000000"), D("4000000"),
     D("0.5"), D("2000000")),
    # XA2: 2,500,000 -> 1,500,000; XA3: 6,000,000 -> 4,000,000; together 5,500,000 -> 2,750,000 / 2,200,000
    ("boreal-re", "XL1", "WEC", "GB", "GB-LON", 2, D("7000000"), D("500000"), D("1000000"), D("8500000"),
     D("5500000"), D("0.5"), D("2750000")),
    # XA1: 800,000 is below the attachment: in force at 100%, nothing ceded.
    ("boreal-re", "XL1", "WEC", "GB", "GB-MAN", 1, D("800000"), D("0"), D("0"), D("800000"), D("0"),
     D("0.5"), D("0")),
    ("coral-re", "SP1", "WEC", "DE", "DE-20", 1, D("2000000.01"), D("0"), D("0"), D("2000000.01"),
     D("1333333.340666667"), D("0.3"), D("400000.0022")),
    ("coral-re", "SP1", "XHL", "DE", "DE-80", 1, D("999999.99"), D("0"), D("0"), D("999999.99"),
     D("666666.660333333"), D("0.3"), D("199999.9981")),
    ("meridian-re", "SP1", "WEC", "DE", "DE-20", 1, D("2000000.01"), D("0"), D("0"), D("2000000.01"),
     D("1333333.340666667"), D("0.2"), D("266666.668133333")),
    ("meridian-re", "SP1", "XHL", "DE", "DE-80", 1, D("999999.99"), D("0"), D("0"), D("999999.99"),
     D("666666.660333333"), D("0.2"), D("133333.332066667")),
    ("meridian-re", "XL1", "WEC", "GB", "GB-EDI", 1, D("7000000"), D("0"), D("0"), D("7000000"), D("4000000"),
     D("0.4"), D("1600000")),
    ("meridian-re", "XL1", "WEC", "GB", "GB-LON", 2, D("7000000"), D("500000"), D("1000000"), D("8500000"),
     D("5500000"), D("0.4"), D("2200000")),
    ("meridian-re", "XL1", "WEC", "GB", "GB-MAN", 1, D("800000"), D("0"), D("0"), D("800000"), D("0"),
     D("0.4"), D("0")),
]


def test_exposure_rows_by_hand(ledger):
    _uri, book = ledger
    rows = exposure_rows(*book, AS_OF)
    assert rows.column_names == EXPOSURE.names
    assert rows.schema == empty_exposure().schema
    assert _rows(rows) == EXPECTED  # in order: reinsurer, treaty, peril, country, zone
    assert set(rows["as_of_date"].to_pylist()) == {AS_OF}
    assert set(zip(rows["line_of_business"].to_pylist(), rows["currency"].to_pylist(),
                   rows["treaty_id"].to_pylist())) == {
        ("PROPERTY", "EUR", "QS1"), ("PROPERTY", "EUR", "SP1"), ("PROPERTY", "GBP", "XL1")}
    assert str(rows.schema.field("ceded_tiv_share").type) == "decimal128(38, 9)"
    assert str(rows.schema.field("location_count").type) == "int64"


def test_in_force_rule_and_untreatied_business(ledger):
    _uri, book = ledger
    policies = {r["PolicyId"] for r in book[0].to_pylist()}
    assert {"NY", "CX", "EX", "NT", "NP"} <= policies  # they are in the ledger ...
    rows = exposure_rows(*book, AS_OF)
    assert "QS9" not in rows["treaty_id"].to_pylist()  # ... but none of them is reported
    # On 2026-03-01 QA has not incepted, CX and EX are still in force: QS1's WEC/DE-20 row holds CX1 + EX1.
    march = {(r["reinsurer_id"], r["treaty_id"], r["peril"], r["zone"]): r
             for r in exposure_rows(*book, date(2026, 3, 1)).to_pylist()}
    assert ("alpine-re", "QS1", "ORF", "DE-20") not in march
    qs = march[("alpine-re", "QS1", "WEC", "DE-20")]
    # CX1's contents are negative: quarantined then, so only EX1 (1,000,000 x 40% = 400,000; 60% = 240,000)
    assert (qs["location_count"], qs["total_tiv_100"], qs["ceded_tiv_100"], qs["ceded_tiv_share"]) == (
        1, D("1000000"), D("400000"), D("240000"))


def test_shares_of_fully_placed_treaties_add_up_exactly(ledger):
    _uri, book = ledger
    groups: dict[tuple, list] = {}
    for r in exposure_rows(*book, AS_OF).to_pylist():
        assert r["total_tiv_100"] == r["building_tiv_100"] + r["contents_tiv_100"] + r["bi_tiv_100"]
        key = (r["treaty_id"], r["peril"], r["country"], r["zone"], r["line_of_business"], r["currency"])
        groups.setdefault(key, []).append(r)
    for key, rows in groups.items():
        placed = sum(r["share_pct"] for r in rows)
        shares = sum(r["ceded_tiv_share"] for r in rows)
        if key[0] == "XL1":
            assert placed == D("0.9") and shares == rows[0]["ceded_tiv_100"] * D("0.9")
        else:
            assert placed == 1 and shares == rows[0]["ceded_tiv_100"], key


def test_negative_tiv_and_unknown_treaty_are_quarantined(ledger):
    _uri, book = ledger
    held = exposure_quarantine(*book, AS_OF)
    assert held.schema == QUARANTINE_SCHEMA
    got = {json.loads(r["raw_record"])["LocationId"]: r for r in held.to_pylist()}
    assert set(got) == {"SA3", "UT1"}  # CX1 (negative, but not in force) is not this report's business
    sa3, ut1 = got["SA3"], got["UT1"]
    assert (sa3["stage"], sa3["report"], sa3["table_name"], sa3["rule"], sa3["offending_value"]) == (
        "report", "exposure", "Locations", TIV_NOT_NEGATIVE_RULE, "-1.000000000")
    assert "SA3" in sa3["reason"] and "SA" in sa3["reason"] and "BiTiv" in sa3["reason"]
    assert json.loads(sa3["raw_record"])["BiTiv"] == "-1.000000000"
    assert (ut1["stage"], ut1["report"], ut1["table_name"], ut1["rule"], ut1["offending_value"]) == (
        "report", "exposure", "Policies", UNKNOWN_TREATY_RULE, "QS-GHOST")
    assert "policy UT" in ut1["reason"] and "QS-GHOST" in ut1["reason"] and "UT1" in ut1["reason"]
    assert json.loads(ut1["raw_record"])["PolicyTreatyId"] == "QS-GHOST"
    assert all(len(r["quarantine_id"]) == 64 for r in held.to_pylist())
    rows = exposure_rows(*book, AS_OF)
    assert "QS-GHOST" not in rows["treaty_id"].to_pylist()
    assert exposure_quarantine(*book, AS_OF, report="oed_location")["report"].to_pylist() == ["oed_location"] * 2


def test_a_policy_outside_its_treatys_territory_is_quarantined_not_reported(ledger):
    _uri, (policies, locations, treaties, participations) = ledger
    column = treaties.schema.get_field_index("Territories")
    qs1_in_austria = pc.if_else(pc.equal(treaties["TreatyId"], "QS1"), "AT", treaties["Territories"])
    treaties = treaties.set_column(column, "Territories", qs1_in_austria.cast(pa.string()))
    book = (policies, locations, treaties, participations)
    held = {json.loads(r["raw_record"])["LocationId"]: r for r in exposure_quarantine(*book, AS_OF).to_pylist()}
    assert set(held) == {"QA1", "QA2", "SA3", "UT1"}  # QA (in Germany) no longer attaches to QS1
    qa1 = held["QA1"]
    assert (qa1["table_name"], qa1["rule"], qa1["offending_value"]) == (
        "Policies", "ledger.policies.treaty_attachment", "QS1")
    assert qa1["reason"] == ("policy QA (PROPERTY, EUR, DE, incepting 2026-06-30) cannot attach to treaty QS1 "
                             "(PROPERTY, EUR, AT, 2026-01-01..2027-01-01); its location QA1 is not reported")
    assert "QS1" not in exposure_rows(*book, AS_OF)["treaty_id"].to_pylist()
    assert "QS1" not in top_locations(*book, AS_OF)["treaty_id"].to_pylist()


def _top(table):
    return [(r["reinsurer_id"], r["treaty_id"], r["rank"], r["policy_id"], r["location_id"], r["total_tiv_100"],
             r["ceded_tiv_100"], r["share_pct"], r["ceded_tiv_share"]) for r in table.to_pylist()]


def test_top_locations_order_by_hand(ledger):
    _uri, book = ledger
    top = top_locations(*book, AS_OF, n=2)
    assert top.column_names == EXPOSURE_TOP_LOCATIONS.names and top.schema == empty_top_locations().schema
    assert REPORTS["exposure_top_locations"] is EXPOSURE_TOP_LOCATIONS
    assert _top(top) == [
        ("alpine-re", "QS1", 1, "QA", "QA1", D("1250000"), D("500000"), D("0.6"), D("300000")),
        ("alpine-re", "QS1", 2, "QA", "QA2", D("650000.50"), D("260000.20"), D("0.6"), D("156000.12")),
        ("alpine-re", "SP1", 1, "SA", "SA1", D("2000000.01"), D("1333333.340666667"), D("0.5"), D("666666.670333334")),
        ("alpine-re", "SP1", 2, "SA", "SA2", D("999999.99"), D("666666.660333333"), D("0.5"), D("333333.330166666")),
        ("boreal-re", "QS1", 1, "QA", "QA1", D("1250000"), D("500000"), D("0.4"), D("200000")),
        ("boreal-re", "QS1", 2, "QA", "QA2", D("650000.50"), D("260000.20"), D("0.4"), D("104000.08")),
        # XA3 and XB1 both cede the 4,000,000 limit: the policy id breaks the tie; XA2 (1,500,000) is third
        ("boreal-re", "XL1", 1, "XA", "XA3", D("6000000"), D("4000000"), D("0.5"), D("2000000")),
        ("boreal-re", "XL1", 2, "XB", "XB1", D("7000000"), D("4000000"), D("0.5"), D("2000000")),
        ("coral-re", "SP1", 1, "SA", "SA1", D("2000000.01"), D("1333333.340666667"), D("0.3"), D("400000.0022")),
        ("coral-re", "SP1", 2, "SA", "SA2", D("999999.99"), D("666666.660333333"), D("0.3"), D("199999.9981")),
        ("meridian-re", "SP1", 1, "SA", "SA1", D("2000000.01"), D("1333333.340666667"), D("0.2"),
         D("266666.668133333")),
        ("meridian-re", "SP1", 2, "SA", "SA2", D("999999.99"), D("666666.660333333"), D("0.2"),
         D("133333.332066667")),
        ("meridian-re", "XL1", 1, "XA", "XA3", D("6000000"), D("4000000"), D("0.4"), D("1600000")),
        ("meridian-re", "XL1", 2, "XB", "XB1", D("7000000"), D("4000000"), D("0.4"), D("1600000")),
    ]
    everything = [r for r in _top(top_locations(*book, AS_OF)) if r[:2] == ("boreal-re", "XL1")]
    assert [(r[2], r[4], r[6]) for r in everything] == [
        (1, "XA3", D("4000000")), (2, "XB1", D("4000000")), (3, "XA2", D("1500000")), (4, "XA1", D("0"))]
    first = top_locations(*book, AS_OF, n=2).to_pylist()[0]
    assert (first["country"], first["zone"], first["currency"], first["as_of_date"]) == ("DE", "DE-20", "EUR", AS_OF)


def _pylist(table):
    return table.to_pylist()


def test_beam_transforms_give_the_functions_rows(ledger):
    uri, book = ledger
    expected = exposure_rows(*book, AS_OF).to_pylist()
    held = exposure_quarantine(*book, AS_OF).to_pylist()
    top = top_locations(*book, AS_OF, n=2).to_pylist()
    assert len(expected) == 16 and len(held) == 2 and len(top) == 14
    p = beam.Pipeline(options=pipeline_options())
    # two policies a batch: a group's sums come from several batches, combined before shares
    built = p | "BuildExposure" >> BuildExposure(uri, AS_OF, batch_rows=2)
    assert_that(built.rows | "Rows" >> beam.FlatMap(_pylist), equal_to(expected), label="ExposureRows")
    assert_that(built[QUARANTINE_TAG_REPORT] | "Held" >> beam.FlatMap(_pylist), equal_to(held),
                label="ExposureQuarantine")
    ranked = p | "BuildTopLocations" >> BuildTopLocations(uri, AS_OF, n=2, batch_rows=3)
    assert_that(ranked.rows | "TopRows" >> beam.FlatMap(_pylist), equal_to(top), label="TopRows")
    result = p.run()
    result.wait_until_finish()

    def counter(name):
        found = result.metrics().query(MetricsFilter().with_namespace("rex").with_name(name))["counters"]
        return sum(c.committed for c in found)

    assert counter("exposure_rows") == 16 and counter("exposure_top_locations_rows") == 14
    assert counter("exposure_locations_quarantined") == 2  # SA3 and UT1, counted once per report
    assert counter("exposure_top_locations_locations_quarantined") == 2
