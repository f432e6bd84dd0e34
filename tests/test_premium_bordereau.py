"""Premium bordereau worked examples: numbers written out by hand, not computed by rex."""
from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal as D

import pyarrow as pa
import pytest

from change_factory import location, policy, record, treaty, ts_ns, write_jsonl
from contract_factory import contract_doc, write_contract
from pipelines.capture import run_capture
from pipelines.premium_report import run_premium_bordereau
from transforms.report_exports import round_money




def premium(pid, txid, ttype, gross, tax="0"):
    return {"PolicyId": pid, "TransactionId": txid, "TransactionType": ttype,
            "EffectiveDate": date(2026, 1, 10), "BookedDate": date(2026, 1, 15),
            "GrossPremium": D(gross), "CommissionAmount": D("0"), "TaxAmount": D(tax), "Currency": "EUR"}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    d = tmp_path_factory.mktemp("book")
    recs = [
        record("Reinsurers", "INSERT", [
            {"ReinsurerId": "alpine-re", "Name": "Alpine Re", "CountryCode": "CH"},
            {"ReinsurerId": "boreal-re", "Name": "Boreal Re", "CountryCode": "GB"},
        ], ts_ns=ts_ns(1), txn="r", seq=0, records_in_txn=3),
        record("Treaties", "INSERT", [
            treaty("QS1", "QUOTA_SHARE", CessionRate=D("0.4"), CommissionRate=D("0.25")),
            treaty("SP1", "SURPLUS", Retention=D("100000"), Lines=3, CommissionRate=D("0.2")),
        ], ts_ns=ts_ns(1), txn="r", seq=1, records_in_txn=3),
        record("Participations", "INSERT", [
            {"TreatyId": "QS1", "ReinsurerId": "alpine-re", "SharePct": D("0.6")},
            {"TreatyId": "QS1", "ReinsurerId": "boreal-re", "SharePct": D("0.4")},
            {"TreatyId": "SP1", "ReinsurerId": "alpine-re", "SharePct": D("0.5")},  # half placed
        ], ts_ns=ts_ns(1), txn="r", seq=2, records_in_txn=3),
        record("Policies", "INSERT", [
            policy("A", treaty="QS1"), policy("B", treaty="SP1"), policy("C", treaty="SP1"),
            policy("D", treaty="SP1"), policy("E", treaty="SP1"), policy("F", treaty=None),
        ], ts_ns=ts_ns(2), txn="p", seq=0, records_in_txn=3),
        record("Locations", "INSERT", [
            location("B", "B1", "300000"), location("B", "B2", "100000"),  # S = 400,000 -> 0.75
            location("C", "C1", "100000"),  # at retention -> 0
            location("D", "D1", "50000"),  # below retention -> 0
            location("E", "E1", "1000000"),  # above the 3 lines -> 300,000 / 1,000,000 = 0.3
        ], ts_ns=ts_ns(2), txn="p", seq=1, records_in_txn=3),
        record("PremiumTransactions", "INSERT", [
            premium("A", "A-1", "NEW", "1000.00", tax="50.00"),
            premium("A", "A-2", "CANCELLATION", "-250.00"),
            premium("B", "B-1", "NEW", "1000.00"), premium("C", "C-1", "NEW", "1000.00"),
            premium("D", "D-1", "NEW", "1000.00"), premium("E", "E-1", "NEW", "1000.00"),
            premium("F", "F-1", "NEW", "500.00"),
        ], ts_ns=ts_ns(2), txn="p", seq=2, records_in_txn=3),
    ]
    write_jsonl(str(d / "changes" / "book.jsonl"), recs)
    uri = "duckdb:///" + str(d / "wh.duckdb")
    run_capture(str(d / "changes"), uri)
    for partner in ("alpine-re", "boreal-re"):  # snake_case contracts covering the test treaties
        write_contract(d / "contracts", contract_doc(partner, ["QS1", "SP1"], ["EUR"]))
    summary = run_premium_bordereau(uri, str(d / "exports"), contracts_dir=str(d / "contracts"))
    return d, uri, summary


def _csv(d, partner):
    with open(d / "exports" / partner / "premium_bordereau" / "2026-01" / "v1" / "premium_bordereau.csv", newline="") as f:
        return {r["transaction_id"]: r for r in csv.DictReader(f)}


def test_quota_share_rows_by_hand(published):
    d, _uri, _s = published
    alpine, boreal = _csv(d, "alpine-re"), _csv(d, "boreal-re")
    # 1000.00 x 40% = 400.00 ceded; alpine 60% = 240.00, commission 25% = 60.00,
    # tax 50.00 x 40% x 60% = 12.00, net 240 - 60 - 12 = 168.00
    a = alpine["A-1"]
    assert (a["gross_premium_100"], a["ceded_premium_100"], a["share_premium"], a["share_commission"],
            a["share_tax"], a["share_net_premium"]) == ("1000.00", "400.00", "240.00", "60.00", "12.00", "168.00")
    assert (boreal["A-1"]["share_premium"], boreal["A-1"]["share_net_premium"]) == ("160.00", "112.00")
    # cancellation returns premium: -250 x 40% = -100; alpine -60, boreal -40
    assert (alpine["A-2"]["ceded_premium_100"], alpine["A-2"]["share_premium"]) == ("-100.00", "-60.00")
    assert boreal["A-2"]["share_premium"] == "-40.00"


def test_surplus_above_at_and_below_retention_by_hand(published):
    d, _uri, _s = published
    alpine = _csv(d, "alpine-re")
    assert (alpine["B-1"]["ceded_fraction"], alpine["B-1"]["ceded_premium_100"], alpine["B-1"]["share_premium"]) == (
        "0.750000000", "750.00", "375.00")
    assert alpine["C-1"]["ceded_premium_100"] == "0.00"  # S equals retention
    assert alpine["D-1"]["ceded_premium_100"] == "0.00"  # S below retention
    assert (alpine["E-1"]["ceded_fraction"], alpine["E-1"]["share_premium"]) == ("0.300000000", "150.00")
    assert "F-1" not in alpine  # outside every treaty
    assert set(_csv(d, "boreal-re")) == {"A-1", "A-2"}  # boreal is not on the surplus treaty


def test_control_totals_by_hand(published):
    _d, _uri, summary = published
    totals = {(t["treaty_id"], t["currency"]): t for t in summary.control_totals}
    qs = totals[("QS1", "EUR")]
    assert (qs["ledger_gross"], qs["ceded_100"], qs["retained"], qs["placed"], qs["unplaced"]) == (
        D("750"), D("300"), D("450"), D("300"), D("0"))
    sp = totals[("SP1", "EUR")]
    assert (sp["ledger_gross"], sp["ceded_100"], sp["retained"], sp["placed"], sp["unplaced"]) == (
        D("4000"), D("1050"), D("2950"), D("525"), D("525"))
    assert totals[("(not ceded)", "EUR")]["retained"] == D("500")
    assert summary.balanced and summary.rows_per_partner == {"alpine-re": 6, "boreal-re": 2}


def test_partner_tables_hold_only_their_own_rows(published):
    _d, uri, _s = published
    from transforms.warehouse import open_warehouse

    with open_warehouse(uri) as wh:
        for partner, table in (("alpine-re", "partner_alpine_re"), ("boreal-re", "partner_boreal_re")):
            own = wh.rows("SELECT treaty_id, transaction_id, share_premium FROM rex_reports.premium_bordereau "
                          "WHERE reinsurer_id = ? ORDER BY 1, 2", [partner])
            assert wh.rows(f"SELECT treaty_id, transaction_id, share_premium FROM {table}.premium_bordereau "
                           "ORDER BY 1, 2") == own
        assert wh.rows("SELECT typeof(share_premium) FROM partner_alpine_re.premium_bordereau LIMIT 1") == [
            ("DECIMAL(38,9)",)]
        assert wh.rows("SELECT DISTINCT publication_status FROM rex_reports.premium_bordereau") == [("published",)]


def test_rounding_happens_once_per_currency_in_the_contract_mode():
    t = pa.table({
        "ccy": ["EUR", "EUR", "JPY", "BHD", "EUR"],
        "amt": pa.array([D("2.345"), D("-2.345"), D("1234.5"), D("1.0005"), D("2.355")], pa.decimal128(38, 9)),
    })
    assert round_money(t, ["amt"], "ccy", "half_up")["amt"].to_pylist() == ["2.35", "-2.35", "1235", "1.001", "2.36"]
    assert round_money(t, ["amt"], "ccy", "half_even")["amt"].to_pylist() == ["2.34", "-2.34", "1234", "1.000", "2.36"]


def test_a_policy_that_cannot_attach_to_its_treaty_is_quarantined_and_reconciled(tmp_path):
    """Risks attach to a treaty of their line and currency, whose territory holds their country
    and whose period holds their inception."""
    recs = [
        record("Reinsurers", "INSERT", [{"ReinsurerId": "alpine-re", "Name": "Alpine Re", "CountryCode": "CH"}],
               ts_ns=ts_ns(1), txn="r", seq=0, records_in_txn=3),
        record("Treaties", "INSERT", [
            treaty("QS1", "QUOTA_SHARE", CessionRate=D("0.4"), Territories="DE; AT"),
            treaty("QS2", "QUOTA_SHARE", CessionRate=D("0.5"), Territories=None),  # worldwide
        ], ts_ns=ts_ns(1), txn="r", seq=1, records_in_txn=3),
        record("Participations", "INSERT", [{"TreatyId": "QS1", "ReinsurerId": "alpine-re", "SharePct": D("1")},
                                            {"TreatyId": "QS2", "ReinsurerId": "alpine-re", "SharePct": D("1")}],
               ts_ns=ts_ns(1), txn="r", seq=2, records_in_txn=3),
        record("Policies", "INSERT", [
            policy("OK", treaty="QS1"),  # DE
            policy("USD", treaty="QS1", currency="USD"),  # a EUR treaty
            policy("LATE", treaty="QS1", InceptionDate=date(2027, 2, 1), ExpiryDate=date(2028, 1, 31)),
            policy("FR", treaty="QS1", CountryCode="FR"),  # outside QS1's territory
            policy("WW", treaty="QS2", CountryCode="IT"),  # QS2 covers every country
        ], ts_ns=ts_ns(2), txn="p", seq=0, records_in_txn=2),
        record("PremiumTransactions", "INSERT", [
            premium("OK", "OK-1", "NEW", "1000.00"), {**premium("USD", "USD-1", "NEW", "700.00"), "Currency": "USD"},
            premium("LATE", "LATE-1", "NEW", "300.00"), premium("FR", "FR-1", "NEW", "200.00"),
            premium("WW", "WW-1", "NEW", "100.00"),
        ], ts_ns=ts_ns(2), txn="p", seq=1, records_in_txn=2),
    ]
    write_jsonl(str(tmp_path / "changes" / "book.jsonl"), recs)
    uri = "duckdb:///" + str(tmp_path / "wh.duckdb")
    run_capture(str(tmp_path / "changes"), uri)
    write_contract(tmp_path / "contracts", contract_doc("alpine-re", ["QS1", "QS2"], ["EUR"]))
    summary = run_premium_bordereau(uri, None, contracts_dir=str(tmp_path / "contracts"), as_of=date(2026, 3, 1))
    assert summary.succeeded, summary.message
    from transforms.warehouse import open_warehouse

    with open_warehouse(uri) as wh:
        held = wh.rows("SELECT rule, offending_value, reason FROM rex_reports.premium_bordereau_quarantine ORDER BY 3")
        published = wh.rows("SELECT transaction_id FROM rex_reports.premium_bordereau ORDER BY 1")
    assert [h[:2] for h in held] == [("ledger.policies.treaty_attachment", "QS1")] * 3
    reasons = {h[2].split()[1]: h[2] for h in held}
    assert reasons["FR"] == ("policy FR (PROPERTY, EUR, FR, incepting 2026-01-01) cannot attach to treaty QS1 "
                             "(PROPERTY, EUR, DE; AT, 2026-01-01..2026-12-31)")
    assert "cannot attach to treaty QS1" in reasons["USD"] and "cannot attach to treaty QS1" in reasons["LATE"]
    assert published == [("OK-1",), ("WW-1",)]
    totals = {(t["treaty_id"], t["currency"]): t for t in summary.control_totals}
    assert totals[("QS1", "EUR")]["ledger_quarantined"] == D("500.00")  # LATE-1 300 + FR-1 200
    assert totals[("QS1", "USD")]["ledger_quarantined"] == D("700.00")  # USD-1
    assert totals[("QS1", "EUR")]["ceded_100"] == D("400.00")
    assert totals[("QS2", "EUR")]["ceded_100"] == D("50.00")  # WW-1 100 x 0.5, in Italy
