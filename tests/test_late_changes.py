"""Late changes to a closed period, under both contract policies, with numbers written by hand.

The book: treaty QS1 cedes 40% of EUR premium, alpine-re takes 60% and boreal-re 40%. January is
published on 3 February (ended, still open: 5 grace days). Then a premium booked on 20 January
arrives late — after January closed — and later its amount is corrected:

* alpine-re (`next_period`): the late premium appears as an ADJUSTMENT row in the next open
  period (February), pointing at 2026-01; the correction as a further adjustment (the
  difference) in March. January's v1 is never re-issued.
* boreal-re (`restate`): January is restated as v2 with the late premium, then v3 with the
  corrected amount.

Published files of earlier versions stay byte-identical throughout.
"""
from __future__ import annotations

import csv
import os
from datetime import date
from decimal import Decimal as D

import pytest

from change_factory import policy, record, treaty, ts_ns, write_jsonl
from contract_factory import contract_doc, write_contract
from pipelines.capture import run_capture
from pipelines.premium_report import run_premium_bordereau
from transforms.warehouse import open_warehouse


def _premium(pid, txid, gross, booked):
    return {"PolicyId": pid, "TransactionId": txid, "TransactionType": "NEW", "EffectiveDate": booked,
            "BookedDate": booked, "GrossPremium": D(gross), "CommissionAmount": D("0"), "TaxAmount": D("0"),
            "Currency": "EUR"}


def _treaty():
    return treaty("QS1", "QUOTA_SHARE", CessionRate=D("0.4"), CommissionRate=D("0.25"))


def _location(pid):
    return {"PolicyId": pid, "LocationId": f"{pid}-L1", "CountryCode": "DE", "Zone": "DE-1", "Latitude": 50.1,
            "Longitude": 8.6, "PerilsCovered": "WEC", "OccupancyCode": 1050, "ConstructionCode": 5000,
            "BuildingTiv": D("1000000"), "ContentsTiv": D("0"), "BiTiv": D("0")}


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    d = tmp_path_factory.mktemp("late")
    write_jsonl(str(d / "changes" / "a.jsonl"), [
        record("Reinsurers", "INSERT", [{"ReinsurerId": "alpine-re", "Name": "Alpine", "CountryCode": "CH"},
                                        {"ReinsurerId": "boreal-re", "Name": "Boreal", "CountryCode": "GB"}],
               ts_ns=ts_ns(1), txn="r", seq=0, records_in_txn=3),
        record("Treaties", "INSERT", [_treaty()], ts_ns=ts_ns(1), txn="r", seq=1, records_in_txn=3),
        record("Participations", "INSERT", [{"TreatyId": "QS1", "ReinsurerId": "alpine-re", "SharePct": D("0.6")},
                                            {"TreatyId": "QS1", "ReinsurerId": "boreal-re", "SharePct": D("0.4")}],
               ts_ns=ts_ns(1), txn="r", seq=2, records_in_txn=3),
        record("Policies", "INSERT", [policy("A"), policy("B")], ts_ns=ts_ns(2), txn="p", seq=0, records_in_txn=3),
        record("Locations", "INSERT", [_location("A"), _location("B")], ts_ns=ts_ns(2), txn="p", seq=1,
               records_in_txn=3),
        record("PremiumTransactions", "INSERT", [_premium("A", "A-1", "1000.00", date(2026, 1, 10)),
                                                 _premium("B", "B-1", "500.00", date(2026, 2, 12))],
               ts_ns=ts_ns(2), txn="p", seq=2, records_in_txn=3),
    ])
    contracts = d / "contracts"
    alpine = contract_doc("alpine-re", ["QS1"], ["EUR"], base="meridian-re")  # next_period, entry columns
    boreal = contract_doc("boreal-re", ["QS1"], ["EUR"], base="boreal-re")  # restate, version column
    for doc, late in ((alpine, "next_period"), (boreal, "restate")):
        for p in doc["customProperties"]:
            if p["property"] == "lateChanges":
                p["value"] = late
        for p in doc["slaProperties"]:
            if p["property"] == "gracePeriod":
                p["value"] = 5
        write_contract(contracts, doc)
    uri = "duckdb:///" + str(d / "wh.duckdb")
    return d, uri, str(contracts)


def _publish(book, as_of):
    d, uri, contracts = book
    run_capture(str(d / "changes"), uri)
    summary = run_premium_bordereau(uri, str(d / "out"), contracts_dir=contracts, as_of=as_of)
    assert summary.succeeded, summary.message
    return summary


def _rows(d, partner, period, version):
    path = d / "out" / partner / "premium_bordereau" / period / f"v{version}" / "premium_bordereau.csv"
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _snapshot(d):
    out = {}
    for folder, _dirs, names in os.walk(d / "out"):
        for n in names:
            if "validation" not in folder:
                path = os.path.join(folder, n)
                out[os.path.relpath(path, d / "out")] = open(path, "rb").read()
    return out


def test_late_changes_follow_each_contract_and_never_alter_published_versions(book):
    d, uri, _contracts = book
    # 1. 3 Feb: January has ended (published), February has not (pending)
    first = _publish(book, date(2026, 2, 3))
    assert [(p["partner"], p["period"], p["version"], p["kind"]) for p in first.publications] == [
        ("alpine-re", "2026-01", 1, "initial"), ("boreal-re", "2026-01", 1, "initial")]
    assert first.pending_per_partner == {"alpine-re": 1, "boreal-re": 1}  # B-1, booked in February
    jan = _rows(d, "alpine-re", "2026-01", 1)
    assert [(r["transaction_id"], r["share_premium"], r["entry_type"]) for r in jan] == [("A-1", "240.00", "ORIGINAL")]
    assert [(r["transaction_id"], r["share_premium"], r["version"]) for r in _rows(d, "boreal-re", "2026-01", 1)] == [
        ("A-1", "160.00", "1")]
    sent = _snapshot(d)

    # 2. re-running changes nothing
    assert _publish(book, date(2026, 2, 3)).publications == []

    # 3. a premium booked on 20 January arrives on 20 February: January closed on 5 February
    write_jsonl(str(d / "changes" / "b.jsonl"), [
        record("PremiumTransactions", "INSERT", [_premium("A", "A-2", "300.00", date(2026, 1, 20))],
               ts_ns=ts_ns(3600), txn="late")])
    late = _publish(book, date(2026, 3, 2))  # February ended, open until 5 March
    got = {(p["partner"], p["period"], p["version"], p["kind"]) for p in late.publications}
    assert got == {("alpine-re", "2026-02", 1, "initial"), ("boreal-re", "2026-01", 2, "restatement"),
                   ("boreal-re", "2026-02", 1, "initial")}
    feb = {(r["transaction_id"], r["entry_type"]): r for r in _rows(d, "alpine-re", "2026-02", 1)}
    # its own premium: 500 x 40% x 60% = 120.00; the late one as an adjustment: 300 x 40% x 60% = 72.00
    assert feb[("B-1", "ORIGINAL")]["share_premium"] == "120.00"
    adj = feb[("A-2", "ADJUSTMENT")]
    assert (adj["share_premium"], adj["share_net_premium"], adj["adjusts_period"], adj["period"]) == (
        "72.00", "54.00", "2026-01", "2026-02")  # net: 72 - 25% commission
    restated = {r["transaction_id"]: r for r in _rows(d, "boreal-re", "2026-01", 2)}
    assert {k: v["share_premium"] for k, v in restated.items()} == {"A-1": "160.00", "A-2": "48.00"}
    assert all(v["version"] == "2" for v in restated.values())
    now = _snapshot(d)
    assert all(now[path] == data for path, data in sent.items())  # v1 files untouched
    assert not (d / "out" / "alpine-re" / "premium_bordereau" / "2026-01" / "v2").exists()

    # 4. the late premium is corrected to 350.00 on 10 March: alpine gets the difference in March
    corrected = _premium("A", "A-2", "350.00", date(2026, 1, 20))
    write_jsonl(str(d / "changes" / "c.jsonl"), [
        record("PremiumTransactions", "UPDATE", [corrected], ts_ns=ts_ns(7200), txn="fix")])
    fix = _publish(book, date(2026, 4, 2))
    got = {(p["partner"], p["period"], p["version"], p["kind"]) for p in fix.publications}
    assert ("alpine-re", "2026-03", 1, "initial") in got and ("boreal-re", "2026-01", 3, "restatement") in got
    assert not any(p[0] == "alpine-re" and p[1] in ("2026-01", "2026-02") for p in got)
    march = [r for r in _rows(d, "alpine-re", "2026-03", 1) if r["entry_type"] == "ADJUSTMENT"]
    assert [(r["transaction_id"], r["share_premium"], r["adjusts_period"]) for r in march] == [
        ("A-2", "12.00", "2026-01")]  # (350 - 300) x 40% x 60%
    assert {r["transaction_id"]: r["share_premium"] for r in _rows(d, "boreal-re", "2026-01", 3)} == {
        "A-1": "160.00", "A-2": "56.00"}
    final = _snapshot(d)
    assert all(final[path] == data for path, data in now.items())
    # what alpine holds for January now adds up: 240 + 72 + 12 = 324 = (1000 + 350) x 40% x 60%
    with open_warehouse(uri) as wh:
        total = wh.rows("SELECT sum(share_premium) FROM rex_reports.published_premium_bordereau "
                        "WHERE partner = 'alpine-re' AND (period = '2026-01' OR adjusts_period = '2026-01')")[0][0]
    assert total == D("324")


def test_an_endorsement_does_not_rewrite_the_surplus_cession_of_earlier_premiums(tmp_path):
    """Surplus cedes by the sum insured as booked: a later endorsement changes the fraction of
    later premiums only, so closed periods are not adjusted for it."""
    sp = {**_treaty(), "TreatyId": "SP1", "Umr": "B0999SP1", "TreatyType": "SURPLUS", "CessionRate": None,
          "Retention": D("100000"), "Lines": 3}
    site = {**_location("S"), "BuildingTiv": D("400000")}
    write_jsonl(str(tmp_path / "changes" / "a.jsonl"), [
        record("Reinsurers", "INSERT", [{"ReinsurerId": "alpine-re", "Name": "Alpine", "CountryCode": "CH"}],
               ts_ns=ts_ns(1), txn="r", seq=0, records_in_txn=3),
        record("Treaties", "INSERT", [sp], ts_ns=ts_ns(1), txn="r", seq=1, records_in_txn=3),
        record("Participations", "INSERT", [{"TreatyId": "SP1", "ReinsurerId": "alpine-re", "SharePct": D("1")}],
               ts_ns=ts_ns(1), txn="r", seq=2, records_in_txn=3),
        record("Policies", "INSERT", [policy("S", treaty="SP1")], ts_ns=ts_ns(2), txn="p", seq=0, records_in_txn=3),
        record("Locations", "INSERT", [site], ts_ns=ts_ns(2), txn="p", seq=1, records_in_txn=3),
        record("PremiumTransactions", "INSERT", [_premium("S", "S-1", "1000.00", date(2026, 1, 10))],
               ts_ns=ts_ns(2), txn="p", seq=2, records_in_txn=3),
        # 10 March: the site is revalued to 1,000,000 with an endorsement premium in one transaction
        record("Locations", "UPDATE", [{**site, "BuildingTiv": D("1000000")}], ts_ns=ts_ns(100), txn="e", seq=0,
               records_in_txn=2),
        record("PremiumTransactions", "INSERT", [{**_premium("S", "S-2", "200.00", date(2026, 3, 10)),
                                                  "TransactionType": "ENDORSEMENT"}],
               ts_ns=ts_ns(100), txn="e", seq=1, records_in_txn=2),
    ])
    write_contract(tmp_path / "contracts", contract_doc("alpine-re", ["SP1"], ["EUR"], base="meridian-re"))
    uri = "duckdb:///" + str(tmp_path / "wh.duckdb")
    run_capture(str(tmp_path / "changes"), uri)
    summary = run_premium_bordereau(uri, None, contracts_dir=str(tmp_path / "contracts"), as_of=date(2026, 4, 2))
    assert summary.succeeded, summary.message
    with open_warehouse(uri) as wh:
        rows = dict(((t, (f, c)) for t, f, c in wh.rows(
            "SELECT transaction_id, ceded_fraction, ceded_premium_100 FROM rex_reports.premium_bordereau")))
    # booked at S = 400,000: min(300,000, 300,000) / 400,000 = 0.75; at S = 1,000,000: 300,000 / 1,000,000
    assert rows == {"S-1": (D("0.75"), D("750")), "S-2": (D("0.3"), D("60"))}
    again = run_premium_bordereau(uri, None, contracts_dir=str(tmp_path / "contracts"), as_of=date(2026, 5, 2))
    assert not [p for p in again.publications if p["period"] == "2026-04" and p["kind"] == "adjustments"]
    assert not any(p["kind"] == "restatement" for p in again.publications)
