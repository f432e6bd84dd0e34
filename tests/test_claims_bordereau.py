"""Claims bordereau worked examples: numbers written out by hand, not computed by rex.

The book (EUR, booked in 2026):
* QS1 quota share 40%, alpine 60% / boreal 40% (fully placed);
* SP1 surplus, retention 100,000, 3 lines, alpine 70% / boreal 30% (fully placed);
* XL1 per-risk XoL 4,000,000 xs 1,000,000, alpine 50% / boreal 40% (90% placed);
* policy U names treaty GONE1 (not in the ledger), policy N has no treaty, claim CP names a
  policy GHOST that does not exist.
"""
from __future__ import annotations

import glob
import json
import os
import uuid
from datetime import date
from decimal import Decimal as D

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import pytest
from apache_beam.metrics.metric import MetricsFilter

from change_factory import location, policy, record, treaty, ts_ns, write_jsonl
from pipelines.capture import run_capture
from pipelines.options import pipeline_options
from transforms.claims_bordereau import (
    SORT_KEYS,
    BuildClaimsBordereau,
    ClaimPeriod,
    claim_periods,
    claims_bordereau_quarantine,
    claims_bordereau_rows,
    empty_claims_bordereau,
    period_grid,
)
from transforms.ledger_snapshot import read_current_table
from transforms.premium_bordereau import policy_risks
from transforms.quarantine import QUARANTINE_TAG_REPORT
from transforms.report_catalog import CLAIMS_BORDEREAU

THROUGH = date(2026, 6, 30)




def claim(cid, pid, lid, loss):
    return {"ClaimId": cid, "PolicyId": pid, "LocationId": lid, "LossDate": loss, "ReportedDate": loss,
            "Peril": "WTC", "CatEventCode": None, "Status": "OPEN", "Description": f"claim {cid}"}


def ctx(cid, txid, ttype, booked, paid, reserve):
    return {"ClaimId": cid, "TransactionId": txid, "TransactionType": ttype, "BookedDate": booked,
            "PaidAmount": D(paid), "ReserveAmount": D(reserve), "Currency": "EUR"}


ERRONEOUS = ctx("CA", "CA-03", "PAYMENT", date(2026, 2, 13), "4000", "6000")  # keyed twice, deleted later

CLAIM_TXNS = [
    # QS1, policy A: open, part payment, final payment, close, reopen, payment, close
    ctx("CA", "CA-01", "OPEN", date(2026, 1, 10), "0", "10000"),
    ctx("CA", "CA-02", "PAYMENT", date(2026, 2, 12), "4000", "6000"),
    ERRONEOUS,
    ctx("CA", "CA-04", "PAYMENT", date(2026, 3, 5), "6000", "0"),
    ctx("CA", "CA-05", "CLOSE", date(2026, 3, 6), "0", "0"),
    ctx("CA", "CA-06", "REOPEN", date(2026, 4, 20), "0", "2000"),
    ctx("CA", "CA-07", "PAYMENT", date(2026, 5, 8), "2000", "0"),
    ctx("CA", "CA-08", "CLOSE", date(2026, 5, 9), "0", "0"),
    # SP1, policy S (sum insured 300,000): two reserve changes on one day (the later id wins)
    ctx("CS", "CS-01", "OPEN", date(2026, 1, 12), "0", "9000"),
    ctx("CS", "CS-03", "RESERVE_CHANGE", date(2026, 1, 20), "0", "15000"),
    ctx("CS", "CS-02", "RESERVE_CHANGE", date(2026, 1, 20), "0", "12000"),
    ctx("CS", "CS-04", "PAYMENT", date(2026, 3, 3), "1003.50", "13996.50"),
    # XL1: below the attachment, inside the layer (with a recovery), above the layer
    ctx("CX1", "CX1-01", "OPEN", date(2026, 1, 15), "0", "800000"),
    ctx("CX1", "CX1-02", "PAYMENT", date(2026, 3, 2), "800000", "0"),
    ctx("CX1", "CX1-03", "CLOSE", date(2026, 3, 3), "0", "0"),
    ctx("CX2", "CX2-01", "OPEN", date(2026, 1, 20), "0", "2500000"),
    ctx("CX2", "CX2-02", "PAYMENT", date(2026, 2, 10), "1200000", "1300000"),
    ctx("CX2", "CX2-03", "RECOVERY", date(2026, 3, 15), "-150000", "1300000"),
    ctx("CX3", "CX3-01", "OPEN", date(2026, 1, 25), "0", "6000000"),
    ctx("CX3", "CX3-02", "PAYMENT", date(2026, 2, 20), "6000000", "0"),
    ctx("CX3", "CX3-03", "CLOSE", date(2026, 2, 21), "0", "0"),
    # ledger integrity and retained claims
    ctx("CU", "CU-01", "OPEN", date(2026, 1, 14), "0", "5000"),
    ctx("CU", "CU-02", "PAYMENT", date(2026, 2, 2), "1000", "4000"),
    ctx("CN", "CN-01", "OPEN", date(2026, 1, 16), "0", "3000"),
    ctx("CP", "CP-01", "OPEN", date(2026, 1, 18), "0", "700"),
]


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    d = tmp_path_factory.mktemp("claims-book")
    recs = [
        record("Reinsurers", "INSERT", [
            {"ReinsurerId": "alpine-re", "Name": "Alpine Re", "CountryCode": "CH"},
            {"ReinsurerId": "boreal-re", "Name": "Boreal Re", "CountryCode": "GB"},
        ], ts_ns=ts_ns(1), txn="r", seq=0, records_in_txn=3),
        record("Treaties", "INSERT", [
            treaty("QS1", "QUOTA_SHARE", CessionRate=D("0.4")),
            treaty("SP1", "SURPLUS", Retention=D("100000"), Lines=3),
            treaty("XL1", "XOL_PER_RISK", Attachment=D("1000000"), Limit=D("4000000")),
        ], ts_ns=ts_ns(1), txn="r", seq=1, records_in_txn=3),
        record("Participations", "INSERT", [
            {"TreatyId": "QS1", "ReinsurerId": "alpine-re", "SharePct": D("0.6")},
            {"TreatyId": "QS1", "ReinsurerId": "boreal-re", "SharePct": D("0.4")},
            {"TreatyId": "SP1", "ReinsurerId": "alpine-re", "SharePct": D("0.7")},
            {"TreatyId": "SP1", "ReinsurerId": "boreal-re", "SharePct": D("0.3")},
            {"TreatyId": "XL1", "ReinsurerId": "alpine-re", "SharePct": D("0.5")},
            {"TreatyId": "XL1", "ReinsurerId": "boreal-re", "SharePct": D("0.4")},
        ], ts_ns=ts_ns(1), txn="r", seq=2, records_in_txn=3),
        record("Policies", "INSERT", [
            policy("A", treaty="QS1"), policy("S", treaty="SP1"), policy("X1", treaty="XL1"),
            policy("X2", treaty="XL1"), policy("X3", treaty="XL1"), policy("U", treaty="GONE1"),
            policy("N", treaty=None),
        ], ts_ns=ts_ns(2), txn="p", seq=0, records_in_txn=2),
        record("Locations", "INSERT", [
            location("A", "A1", "1000000"),
            location("S", "S1", "200000"), location("S", "S2", "100000"),  # S = 300,000
            location("X1", "X1-1", "8000000"), location("X2", "X2-1", "8000000"),
            location("X3", "X3-1", "8000000"), location("U", "U1", "500000"), location("N", "N1", "500000"),
        ], ts_ns=ts_ns(2), txn="p", seq=1, records_in_txn=2),
        record("Claims", "INSERT", [
            claim("CA", "A", "A1", date(2026, 1, 8)), claim("CS", "S", "S1", date(2026, 1, 11)),
            claim("CX1", "X1", "X1-1", date(2026, 1, 14)), claim("CX2", "X2", "X2-1", date(2026, 1, 19)),
            claim("CX3", "X3", "X3-1", date(2026, 1, 24)), claim("CU", "U", "U1", date(2026, 1, 13)),
            claim("CN", "N", "N1", date(2026, 1, 15)), claim("CP", "GHOST", None, date(2026, 1, 17)),
        ], ts_ns=ts_ns(3), txn="c", seq=0, records_in_txn=2),
        record("ClaimTransactions", "INSERT", CLAIM_TXNS, ts_ns=ts_ns(3), txn="c", seq=1, records_in_txn=2),
        # the payment keyed twice is corrected: the mirror's current state no longer holds it
        record("ClaimTransactions", "DELETE", [ERRONEOUS], ts_ns=ts_ns(4), txn="d"),
    ]
    write_jsonl(str(d / "changes" / "book.jsonl"), recs)
    uri = "duckdb:///" + str(d / "wh.duckdb")
    run_capture(str(d / "changes"), uri)
    tables = {n: read_current_table(uri, n) for n in
              ("Claims", "ClaimTransactions", "Policies", "Locations", "Treaties", "Participations")}
    periods = claim_periods(tables["ClaimTransactions"], THROUGH)
    return d, uri, tables, periods


@pytest.fixture(scope="module")
def rows(book):
    _d, _uri, t, periods = book
    risks = policy_risks(t["Policies"], t["Locations"])
    return claims_bordereau_rows(t["Claims"], t["ClaimTransactions"], t["Policies"], risks, t["Treaties"],
                                 t["Participations"], periods)


@pytest.fixture(scope="module")
def by_key(rows):
    return {(r["frequency"], r["period"], r["claim_id"], r["reinsurer_id"]): r for r in rows.to_pylist()}


AMOUNTS = ("paid_this_period_100", "paid_to_date_100", "outstanding_reserve_100", "incurred_100")
CEDED = ("ceded_paid_this_period_100", "ceded_paid_to_date_100", "ceded_outstanding_100", "ceded_incurred_100")
SHARES = ("paid_this_period_share", "paid_to_date_share", "outstanding_share", "incurred_share")


def _d(*values):
    return tuple(D(v) for v in values)


def _check(row, status, last_booked, amounts, ceded, share):
    assert (row["claim_status"], row["last_booked_date"]) == (status, last_booked)
    assert tuple(row[c] for c in AMOUNTS) == _d(*amounts)
    assert tuple(row[c] for c in CEDED) == _d(*ceded)
    assert tuple(row[c] for c in SHARES) == _d(*share)


def test_period_grids():
    assert [(p.label, p.start, p.end) for p in period_grid(date(2025, 11, 15), date(2026, 2, 3), "monthly")] == [
        ("2025-11", date(2025, 11, 1), date(2025, 11, 30)), ("2025-12", date(2025, 12, 1), date(2025, 12, 31)),
        ("2026-01", date(2026, 1, 1), date(2026, 1, 31)), ("2026-02", date(2026, 2, 1), date(2026, 2, 28))]
    assert period_grid(date(2025, 11, 15), date(2026, 2, 3), "quarterly") == [
        ClaimPeriod("quarterly", "2025-Q4", date(2025, 10, 1), date(2025, 12, 31)),
        ClaimPeriod("quarterly", "2026-Q1", date(2026, 1, 1), date(2026, 3, 31))]
    with pytest.raises(ValueError):
        period_grid(date(2026, 1, 1), date(2026, 2, 1), "weekly")


def test_claim_periods_run_from_the_first_booking_month(book):
    _d, _uri, _t, periods = book
    assert [(p.frequency, p.label) for p in periods] == [
        ("monthly", "2026-01"), ("monthly", "2026-02"), ("monthly", "2026-03"), ("monthly", "2026-04"),
        ("monthly", "2026-05"), ("monthly", "2026-06"), ("quarterly", "2026-Q1"), ("quarterly", "2026-Q2")]


def test_quota_share_claim_month_by_month_by_hand(by_key):
    def row(period, reinsurer="alpine-re", frequency="monthly"):
        return by_key[(frequency, period, "CA", reinsurer)]

    # (paid this period, paid to date, outstanding, incurred) at 100%; ceded 40%; alpine 60% of ceded
    _check(row("2026-01"), "OPEN", date(2026, 1, 10), ("0", "0", "10000", "10000"),
           ("0", "0", "4000", "4000"), ("0", "0", "2400", "2400"))
    # the deleted double payment of 13 Feb does not count
    _check(row("2026-02"), "OPEN", date(2026, 2, 12), ("4000", "4000", "6000", "10000"),
           ("1600", "1600", "2400", "4000"), ("960", "960", "1440", "2400"))
    _check(row("2026-03"), "CLOSED", date(2026, 3, 6), ("6000", "10000", "0", "10000"),
           ("2400", "4000", "0", "4000"), ("1440", "2400", "0", "2400"))
    _check(row("2026-04"), "REOPENED", date(2026, 4, 20), ("0", "10000", "2000", "12000"),
           ("0", "4000", "800", "4800"), ("0", "2400", "480", "2880"))
    _check(row("2026-05"), "CLOSED", date(2026, 5, 9), ("2000", "12000", "0", "12000"),
           ("800", "4800", "0", "4800"), ("480", "2880", "0", "2880"))
    # boreal 40% of ceded
    assert tuple(row("2026-02", "boreal-re")[c] for c in SHARES) == _d("640", "640", "960", "1600")
    assert tuple(row("2026-04", "boreal-re")[c] for c in SHARES) == _d("0", "1600", "320", "1920")
    assert tuple(row("2026-05", "boreal-re")[c] for c in SHARES) == _d("320", "1920", "0", "1920")
    # June: no movement and nothing outstanding -> no row
    assert ("monthly", "2026-06", "CA", "alpine-re") not in by_key
    # quarters
    _check(row("2026-Q1", frequency="quarterly"), "CLOSED", date(2026, 3, 6), ("10000", "10000", "0", "10000"),
           ("4000", "4000", "0", "4000"), ("2400", "2400", "0", "2400"))
    _check(row("2026-Q2", frequency="quarterly"), "CLOSED", date(2026, 5, 9), ("2000", "12000", "0", "12000"),
           ("800", "4800", "0", "4800"), ("480", "2880", "0", "2880"))
    assert tuple(row("2026-Q1", "boreal-re", "quarterly")[c] for c in SHARES) == _d("1600", "1600", "0", "1600")
    r = row("2026-03")
    assert (r["treaty_id"], r["umr"], r["treaty_type"], r["ceded_fraction"], r["xol_recovery_100"],
            r["share_pct"]) == ("QS1", "B0999QS1", "QUOTA_SHARE", D("0.4"), D("0"), D("0.6"))
    assert (r["policy_id"], r["policy_number"], r["insured_name"], r["risk_country"], r["line_of_business"],
            r["location_id"], r["loss_date"], r["reported_date"], r["peril"], r["cat_event_code"],
            r["original_currency"]) == ("A", "PN-A", "Insured A", "DE", "PROPERTY", "A1", date(2026, 1, 8),
                                        date(2026, 1, 8), "WTC", None, "EUR")
    assert (r["period_start"], r["period_end"]) == (date(2026, 3, 1), date(2026, 3, 31))


def test_xol_layer_by_hand(by_key):
    def row(claim_id, period, reinsurer="alpine-re", frequency="monthly"):
        return by_key[(frequency, period, claim_id, reinsurer)]

    # below the attachment: incurred 800,000 -> nothing ceded (rows still report the claim)
    _check(row("CX1", "2026-01"), "OPEN", date(2026, 1, 15), ("0", "0", "800000", "800000"),
           ("0", "0", "0", "0"), ("0", "0", "0", "0"))
    _check(row("CX1", "2026-02"), "OPEN", date(2026, 1, 15), ("0", "0", "800000", "800000"),  # reserve only
           ("0", "0", "0", "0"), ("0", "0", "0", "0"))
    _check(row("CX1", "2026-03"), "CLOSED", date(2026, 3, 3), ("800000", "800000", "0", "800000"),
           ("0", "0", "0", "0"), ("0", "0", "0", "0"))
    assert ("monthly", "2026-04", "CX1", "alpine-re") not in by_key
    # inside the layer: 2,500,000 incurred -> 1,500,000 ceded; alpine 50% 750,000, boreal 40% 600,000
    _check(row("CX2", "2026-01"), "OPEN", date(2026, 1, 20), ("0", "0", "2500000", "2500000"),
           ("0", "0", "1500000", "1500000"), ("0", "0", "750000", "750000"))
    assert tuple(row("CX2", "2026-01", "boreal-re")[c] for c in SHARES) == _d("0", "0", "600000", "600000")
    # paid 1,200,000 of 2,500,000: paid recovery 200,000, outstanding recovery 1,300,000
    _check(row("CX2", "2026-02"), "OPEN", date(2026, 2, 10), ("1200000", "1200000", "1300000", "2500000"),
           ("200000", "200000", "1300000", "1500000"), ("100000", "100000", "650000", "750000"))
    assert tuple(row("CX2", "2026-02", "boreal-re")[c] for c in SHARES) == _d("80000", "80000", "520000", "600000")
    # recovery of 150,000: paid to date 1,050,000 -> ceded paid 50,000 (150,000 given back this month)
    _check(row("CX2", "2026-03"), "OPEN", date(2026, 3, 15), ("-150000", "1050000", "1300000", "2350000"),
           ("-150000", "50000", "1300000", "1350000"), ("-75000", "25000", "650000", "675000"))
    assert tuple(row("CX2", "2026-03", "boreal-re")[c] for c in SHARES) == _d("-60000", "20000", "520000", "540000")
    # April: no movement, the reserve is still open
    _check(row("CX2", "2026-04"), "OPEN", date(2026, 3, 15), ("0", "1050000", "1300000", "2350000"),
           ("0", "50000", "1300000", "1350000"), ("0", "25000", "650000", "675000"))
    _check(row("CX2", "2026-Q1", frequency="quarterly"), "OPEN", date(2026, 3, 15),
           ("1050000", "1050000", "1300000", "2350000"), ("50000", "50000", "1300000", "1350000"),
           ("25000", "25000", "650000", "675000"))
    _check(row("CX2", "2026-Q2", frequency="quarterly"), "OPEN", date(2026, 3, 15),
           ("0", "1050000", "1300000", "2350000"), ("0", "50000", "1300000", "1350000"),
           ("0", "25000", "650000", "675000"))
    # above the layer: 6,000,000 -> the full limit 4,000,000; alpine 2,000,000, boreal 1,600,000
    _check(row("CX3", "2026-01"), "OPEN", date(2026, 1, 25), ("0", "0", "6000000", "6000000"),
           ("0", "0", "4000000", "4000000"), ("0", "0", "2000000", "2000000"))
    _check(row("CX3", "2026-02"), "CLOSED", date(2026, 2, 21), ("6000000", "6000000", "0", "6000000"),
           ("4000000", "4000000", "0", "4000000"), ("2000000", "2000000", "0", "2000000"))
    assert tuple(row("CX3", "2026-02", "boreal-re")[c] for c in SHARES) == _d(
        "1600000", "1600000", "0", "1600000")
    assert ("monthly", "2026-03", "CX3", "alpine-re") not in by_key
    # 90% placed: the unplaced 10% of 4,000,000 (400,000) stays with the cedent
    jan = (row("CX3", "2026-01"), row("CX3", "2026-01", "boreal-re"))
    assert jan[0]["ceded_incurred_100"] - sum(r["incurred_share"] for r in jan) == D("400000")
    for r in (row("CX2", "2026-03"), row("CX3", "2026-01"), row("CX1", "2026-01")):
        assert r["ceded_fraction"] is None and r["treaty_type"] == "XOL_PER_RISK"
    assert (row("CX2", "2026-03")["xol_recovery_100"], row("CX3", "2026-01")["xol_recovery_100"],
            row("CX1", "2026-01")["xol_recovery_100"]) == _d("1350000", "4000000", "0")


def test_surplus_claim_by_hand(by_key):
    def row(period, reinsurer="alpine-re", frequency="monthly"):
        return by_key[(frequency, period, "CS", reinsurer)]

    # S = 300,000, R = 100,000, 3 lines: min(200,000, 300,000) / 300,000 = 0.666666666... -> 0.666666667
    assert row("2026-01")["ceded_fraction"] == D("0.666666667")
    # January: two reserve changes on 20 Jan, CS-03 (15,000) is the later one by id.
    # ceded incurred 15,000 x 0.666666667 = 10,000.000005; alpine 70% = 7,000.0000035, boreal 3,000.0000015
    _check(row("2026-01"), "OPEN", date(2026, 1, 20), ("0", "0", "15000", "15000"),
           ("0", "0", "10000.000005", "10000.000005"), ("0", "0", "7000.0000035", "7000.0000035"))
    _check(row("2026-02"), "OPEN", date(2026, 1, 20), ("0", "0", "15000", "15000"),  # reserve only
           ("0", "0", "10000.000005", "10000.000005"), ("0", "0", "7000.0000035", "7000.0000035"))
    # March: paid 1,003.50 -> ceded 1,003.50 x 0.666666667 = 669.0000003345 -> 669.000000335;
    # ceded outstanding = ceded incurred - ceded paid = 10,000.000005 - 669.000000335 = 9,331.000004665.
    # Shares of 669.000000335: 70% = 468.3000002345 -> .235, 30% = 200.7000001005 -> .101; they add
    # up to .336, so the largest share (alpine) gives back the residual: 468.300000234.
    _check(row("2026-03"), "OPEN", date(2026, 3, 3), ("1003.50", "1003.50", "13996.50", "15000"),
           ("669.000000335", "669.000000335", "9331.000004665", "10000.000005"),
           ("468.300000234", "468.300000234", "6531.700003266", "7000.0000035"))
    assert tuple(row("2026-03", "boreal-re")[c] for c in SHARES) == _d(
        "200.700000101", "200.700000101", "2799.300001399", "3000.0000015")
    _check(row("2026-06"), "OPEN", date(2026, 3, 3), ("0", "1003.50", "13996.50", "15000"),
           ("0", "669.000000335", "9331.000004665", "10000.000005"),
           ("0", "468.300000234", "6531.700003266", "7000.0000035"))
    _check(row("2026-Q1", frequency="quarterly"), "OPEN", date(2026, 3, 3), ("1003.50", "1003.50", "13996.50", "15000"),
           ("669.000000335", "669.000000335", "9331.000004665", "10000.000005"),
           ("468.300000234", "468.300000234", "6531.700003266", "7000.0000035"))


def test_which_claims_and_periods_are_reported(rows):
    # CA: Jan-May + Q1, Q2 = 7; CS: Jan-Jun + Q1, Q2 = 8; CX1: Jan-Mar + Q1 = 4; CX2: 8; CX3: Jan, Feb, Q1 = 3
    counts = {}
    for c in rows["claim_id"].to_pylist():
        counts[c] = counts.get(c, 0) + 1
    assert counts == {"CA": 14, "CS": 16, "CX1": 8, "CX2": 16, "CX3": 6}  # × 2 reinsurers
    assert rows.num_rows == 60  # no row for CN (retained: no treaty), CU (unknown treaty), CP (no policy)


def test_unknown_treaty_and_missing_policy_are_quarantined(book):
    _d, _uri, t, _periods = book
    held = claims_bordereau_quarantine(t["Claims"], t["ClaimTransactions"], t["Policies"], t["Treaties"])
    got = sorted((r["rule"], json.loads(r["raw_record"])["TransactionId"]) for r in held.to_pylist())
    assert got == [("ledger.claims.policy_exists", "CP-01"), ("ledger.policies.treaty_exists", "CU-01"),
                   ("ledger.policies.treaty_exists", "CU-02")]
    cu2 = next(r for r in held.to_pylist() if '"CU-02"' in r["raw_record"])
    raw = json.loads(cu2["raw_record"])
    assert {k: raw[k] for k in ("ClaimId", "PolicyId", "PolicyTreatyId", "PaidAmount", "ReserveAmount",
                                "Currency", "BookedDate")} == {
        "ClaimId": "CU", "PolicyId": "U", "PolicyTreatyId": "GONE1", "PaidAmount": "1000.000000000",
        "ReserveAmount": "4000.000000000", "Currency": "EUR", "BookedDate": "2026-02-02"}
    assert (cu2["stage"], cu2["report"], cu2["table_name"], cu2["offending_value"]) == (
        "report", "claims_bordereau", "ClaimTransactions", "GONE1")
    assert "policy U" in cu2["reason"] and "GONE1" in cu2["reason"]
    cp = next(r for r in held.to_pylist() if r["rule"] == "ledger.claims.policy_exists")
    assert cp["offending_value"] == "GHOST" and "GHOST" in cp["reason"]
    # CN's policy has no treaty: retained, neither reported nor quarantined
    assert not any('"CN"' in r for r in held["raw_record"].to_pylist())
    # a transaction whose claim row is missing is held too
    no_cn = t["Claims"].filter(pc.not_equal(t["Claims"]["ClaimId"], "CN"))
    held = claims_bordereau_quarantine(no_cn, t["ClaimTransactions"], t["Policies"], t["Treaties"])
    assert ("ledger.claim_transactions.claim_exists", "CN") in [(r["rule"], r["offending_value"])
                                                               for r in held.to_pylist()]


def test_a_claim_outside_its_treatys_territory_is_quarantined(book):
    _d, _uri, t, _periods = book
    treaties = t["Treaties"]
    qs1_in_austria = pc.if_else(pc.equal(treaties["TreatyId"], "QS1"), "AT", treaties["Territories"])
    treaties = treaties.set_column(treaties.schema.get_field_index("Territories"), "Territories",
                                   qs1_in_austria.cast(pa.string()))
    held = claims_bordereau_quarantine(t["Claims"], t["ClaimTransactions"], t["Policies"], treaties)
    attach = [r for r in held.to_pylist() if r["rule"] == "ledger.policies.treaty_attachment"]
    ca_txns = sorted(x for x in t["ClaimTransactions"].to_pydict()["TransactionId"] if x.startswith("CA-"))
    assert ca_txns and sorted(json.loads(r["raw_record"])["TransactionId"] for r in attach) == ca_txns
    assert all(r["offending_value"] == "QS1" and "country" in r["reason"] for r in attach)


def test_exact_decimals_and_tie_outs(rows):
    expected = [c.name for c in CLAIMS_BORDEREAU.columns  # settlement and publication columns come later
                if c.name not in ("settlement_currency", "fx_rate", "fx_rate_date", "entry_type", "adjusts_period",
                                  "version") and not c.name.startswith("settlement_")]
    assert rows.column_names == expected == empty_claims_bordereau().column_names
    assert empty_claims_bordereau().num_rows == 0 and empty_claims_bordereau().schema == rows.schema
    kinds = {c.name: c.kind for c in CLAIMS_BORDEREAU.columns}
    for field in rows.schema:
        want = {"money": pa.decimal128(38, 9), "decimal": pa.decimal128(38, 9), "date": pa.date32(),
                "string": pa.string()}[kinds[field.name]]
        assert field.type == want, field.name
    groups = {}
    for r in rows.to_pylist():
        assert r["incurred_100"] == r["paid_to_date_100"] + r["outstanding_reserve_100"]
        assert r["ceded_incurred_100"] == r["ceded_paid_to_date_100"] + r["ceded_outstanding_100"]
        assert r["incurred_share"] == r["paid_to_date_share"] + r["outstanding_share"]
        groups.setdefault((r["frequency"], r["period"], r["claim_id"]), []).append(r)
    fully_placed = 0
    for group in groups.values():
        if group[0]["treaty_id"] in ("QS1", "SP1"):  # fully placed: shares add up exactly
            fully_placed += 1
            assert sum(r["share_pct"] for r in group) == D("1")
            for ceded, share in zip(CEDED, SHARES):
                assert sum(r[share] for r in group) == group[0][ceded], (group[0]["period"], ceded)
    assert fully_placed == 7 + 8
    # periods of a grid add up: Σ paid this period = paid to date at the last period
    for claim_id, frequency, ptd, ceded_ptd in (("CA", "monthly", "12000", "4800"),
                                                ("CA", "quarterly", "12000", "4800"),
                                                ("CS", "monthly", "1003.50", "669.000000335"),
                                                ("CX2", "monthly", "1050000", "50000")):
        mine = [r for r in rows.to_pylist()
                if (r["claim_id"], r["frequency"], r["reinsurer_id"]) == (claim_id, frequency, "alpine-re")]
        assert sum(r["paid_this_period_100"] for r in mine) == D(ptd)
        assert sum(r["ceded_paid_this_period_100"] for r in mine) == D(ceded_ptd)


def test_beam_transform_agrees_with_the_function(book, rows, tmp_path):
    _d, uri, t, periods = book
    out = tmp_path / "beam"

    def save(kind):
        def write(table):
            os.makedirs(out / kind, exist_ok=True)
            feather.write_feather(table, str(out / kind / f"{uuid.uuid4().hex}.arrow"))
        return write

    p = beam.Pipeline(options=pipeline_options())
    built = p | "BuildClaimsBordereau" >> BuildClaimsBordereau(uri, periods, buckets=4)
    _ = built.rows | "SaveRows" >> beam.Map(save("rows"))
    _ = built[QUARANTINE_TAG_REPORT] | "SaveQuarantine" >> beam.Map(save("quarantine"))
    result = p.run()
    result.wait_until_finish()

    def read(kind):
        return pa.concat_tables([feather.read_table(f) for f in sorted(glob.glob(str(out / kind / "*.arrow")))])

    beam_rows = read("rows")
    assert beam_rows.schema == rows.schema
    assert beam_rows.sort_by(SORT_KEYS).to_pylist() == rows.sort_by(SORT_KEYS).to_pylist()
    held = read("quarantine")
    assert sorted(zip(held["rule"].to_pylist(), held["raw_record"].to_pylist())) == sorted(
        zip(*(claims_bordereau_quarantine(t["Claims"], t["ClaimTransactions"], t["Policies"], t["Treaties"])
              [c].to_pylist() for c in ("rule", "raw_record"))))
    assert held.num_rows == 3 and held["commit_timestamp"].null_count == 0  # the mirror's commit time

    def counter(name):
        found = result.metrics().query(MetricsFilter().with_name(name))["counters"]
        return sum(c.committed for c in found)

    assert (counter("claims_bordereau_rows"), counter("claim_transactions_quarantined")) == (60, 3)
