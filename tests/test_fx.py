"""Settlement currency worked examples: numbers written out by hand, not computed by rex.

The cross rate goes through USD, fx_rate = UsdPerUnit(original) / UsdPerUnit(settlement) rounded
half up to 12 places, and each settlement amount is amount × fx_rate to 9 places; exports round
that once, to the settlement currency's minor units, in the contract's rounding mode.

Rates used below (USD per unit):

    date        JPY      EUR
    2026-01-15  0.0067   1.0850   -> JPY/EUR 0.0067 / 1.0850 = 0.006175115207|3732... -> 0.006175115207
    2026-01-20  0.0067   1.0850   -> the same
    2026-01-31  0.0070   1.1200   -> 0.0070 / 1.1200 = 0.00625 exactly              -> 0.006250000000
    2026-02-10  0.0068   1.0900   -> 0.0068 / 1.0900 = 0.006238532110|0917...       -> 0.006238532110
    2026-02-28  (none)            -> a period-end partner cannot convert February
    2026-01-07  (none)            -> only a same-currency row can be reported that day
"""
from __future__ import annotations

import csv
import json
from datetime import date
from decimal import Decimal as D

import duckdb
import pyarrow as pa
import pytest

from change_factory import build_once, policy, record, treaty, ts_ns, write_jsonl
from contract_factory import contract_doc, set_terms, write_contract
from contracts.model import load_contract
from pipelines.capture import run_capture
from pipelines.premium_report import run_premium_bordereau
from transforms.fx import settle
from transforms.ledger_schema import table as ledger_table
from transforms.report_exports import round_money

MONEY = pa.decimal128(38, 9)
RULE = "premium_bordereau.fx_rate.available"

RATES = [  # (currency, date, USD per unit)
    ("JPY", date(2026, 1, 15), "0.0067"), ("EUR", date(2026, 1, 15), "1.0850"),
    ("JPY", date(2026, 1, 20), "0.0067"), ("EUR", date(2026, 1, 20), "1.0850"),
    ("JPY", date(2026, 1, 31), "0.0070"), ("EUR", date(2026, 1, 31), "1.1200"),
    ("JPY", date(2026, 2, 10), "0.0068"), ("EUR", date(2026, 2, 10), "1.0900"),
]


def fx_table(rates=RATES) -> pa.Table:
    return pa.table({"Currency": [c for c, _d, _r in rates], "RateDate": [d for _c, d, _r in rates],
                     "UsdPerUnit": pa.array([D(r) for _c, _d, r in rates], MONEY)},
                    schema=ledger_table("FxRates").arrow_schema())


def make_contract(tmp_path, partner="alpine-re", settlement="EUR", currencies=("JPY", "EUR"),
                  frequency="monthly", **terms):
    doc = set_terms(contract_doc(partner, ["QSJ"], list(currencies), frequency=frequency, settlement=settlement),
                    **terms)
    return load_contract(write_contract(tmp_path / "contracts", doc))


def premium_rows(rows) -> pa.Table:
    """Bordereau-shaped rows: (currency, booked date, share premium, share tax)."""
    return pa.table({
        "transaction_id": [f"T{i}" for i in range(len(rows))],
        "original_currency": [r[0] for r in rows],
        "booked_date": pa.array([r[1] for r in rows], pa.date32()),
        "share_premium": pa.array([D(r[2]) for r in rows], MONEY),
        "share_tax": pa.array([D(r[3]) if len(r) > 3 else D(0) for r in rows], MONEY),
    })


# -- transforms.fx.settle on small Arrow tables -----------------------------------------------

def test_jpy_to_eur_at_the_booked_date_by_hand(tmp_path):
    contract = make_contract(tmp_path, fxRateDate="booked_date", rounding="half_up")
    rows = premium_rows([("JPY", date(2026, 1, 15), "1000000", "123457"),
                         ("JPY", date(2026, 1, 20), "-1000000")])
    ok, held = settle(rows, fx_table(), contract, "premium_bordereau", "booked_date")
    assert held.num_rows == 0
    got = ok.to_pylist()
    assert [r["fx_rate"] for r in got] == [D("0.006175115207"), D("0.006175115207")]
    assert str(ok.schema.field("fx_rate").type) == "decimal128(38, 12)"
    assert [r["fx_rate_date"] for r in got] == [date(2026, 1, 15), date(2026, 1, 20)]
    assert [r["settlement_currency"] for r in got] == ["EUR", "EUR"]
    # 1,000,000 x 0.006175115207 = 6,175.115207 exactly; -1,000,000 -> -6,175.115207
    assert [r["settlement_share_premium"] for r in got] == [D("6175.115207"), D("-6175.115207")]
    # 123,457 x 0.006175115207 = 762.361198110|599 -> 9 places, half up: 762.361198111
    assert got[0]["settlement_share_tax"] == D("762.361198111")
    assert ok["settlement_share_premium"].type == MONEY
    # the original amounts are kept as they were
    assert [r["share_premium"] for r in got] == [D("1000000"), D("-1000000")]
    # exported in EUR minor units: 6,175.115207 -> 6,175.12 (more than half a cent over .11)
    for mode in ("half_up", "half_even"):
        out = round_money(ok, ["settlement_share_premium"], "settlement_currency", mode)
        assert out["settlement_share_premium"].to_pylist() == ["6175.12", "-6175.12"]


def test_period_end_takes_the_last_day_of_the_month_not_the_booked_date(tmp_path):
    contract = make_contract(tmp_path, fxRateDate="period_end")
    rows = premium_rows([("JPY", date(2026, 1, 15), "500000"),  # rate of 31 Jan: 0.00625
                         ("JPY", date(2026, 2, 10), "100000"),  # 28 Feb has no rate: held
                         ("EUR", date(2026, 2, 10), "70.00")])  # EUR into EUR: no rate needed
    ok, held = settle(rows, fx_table(), contract, "premium_bordereau", "booked_date")
    got = {r["transaction_id"]: r for r in ok.to_pylist()}
    assert set(got) == {"T0", "T2"}  # the February JPY row is never converted at 1.0
    assert (got["T0"]["fx_rate"], got["T0"]["fx_rate_date"], got["T0"]["settlement_share_premium"]) == (
        D("0.00625"), date(2026, 1, 31), D("3125"))  # 500,000 x 0.00625 = 3,125
    assert (got["T2"]["fx_rate"], got["T2"]["settlement_share_premium"]) == (D("1"), D("70.00"))
    assert held.num_rows == 1
    q = held.to_pylist()[0]
    assert (q["rule"], q["partner"], q["report"], q["stage"]) == (RULE, "alpine-re", "premium_bordereau", "contract")
    assert "JPY" in q["reason"] and "EUR" in q["reason"] and "2026-02-28" in q["reason"]
    assert q["offending_value"] == "JPY@2026-02-28"
    raw = json.loads(q["raw_record"])
    assert raw["transaction_id"] == "T1" and raw["fx_rate"] is None


def test_period_end_of_a_quarterly_contract_is_the_quarter_end(tmp_path):
    # booked 10 Feb, quarterly: the rate of 31 March, not of 10 Feb (which exists) nor of 28 Feb
    contract = make_contract(tmp_path, frequency="quarterly", fxRateDate="period_end")
    rows = premium_rows([("JPY", date(2026, 2, 10), "100000")])
    ok, held = settle(rows, fx_table(), contract, "premium_bordereau", "booked_date")
    assert ok.num_rows == 0
    assert [(r["rule"], r["offending_value"]) for r in held.to_pylist()] == [(RULE, "JPY@2026-03-31")]
    q1_end = fx_table(RATES + [("JPY", date(2026, 3, 31), "0.0072"), ("EUR", date(2026, 3, 31), "1.0800")])
    ok, held = settle(rows, q1_end, contract, "premium_bordereau", "booked_date")
    # 0.0072 / 1.08 = 0.00666666666666... -> 0.006666666667; 100,000 x that = 666.6666667
    assert held.num_rows == 0
    r = ok.to_pylist()[0]
    assert (r["fx_rate"], r["fx_rate_date"], r["settlement_share_premium"]) == (
        D("0.006666666667"), date(2026, 3, 31), D("666.6666667"))


def test_claims_use_the_rows_own_period_end(tmp_path):
    contract = make_contract(tmp_path, fxRateDate="period_end")
    rows = pa.table({
        "claim_id": ["C1", "C2"], "original_currency": ["JPY", "JPY"],
        "last_booked_date": pa.array([date(2026, 1, 15), date(2026, 1, 15)], pa.date32()),
        "period_end": pa.array([date(2026, 1, 31), date(2026, 2, 28)], pa.date32()),  # C2: February's row
        "incurred_share": pa.array([D("800000"), D("800000")], MONEY),
    })
    ok, held = settle(rows, fx_table(), contract, "claims_bordereau", "last_booked_date", "period_end")
    assert [(r["claim_id"], r["fx_rate_date"], r["settlement_incurred_share"]) for r in ok.to_pylist()] == [
        ("C1", date(2026, 1, 31), D("5000"))]  # 800,000 x 0.00625
    assert [(r["rule"], r["offending_value"]) for r in held.to_pylist()] == [
        ("claims_bordereau.fx_rate.available", "JPY@2026-02-28")]


def test_a_missing_rate_of_either_currency_holds_the_row(tmp_path):
    contract = make_contract(tmp_path, fxRateDate="booked_date")
    only_jpy = fx_table([("JPY", date(2026, 1, 15), "0.0067")])
    only_eur = fx_table([("EUR", date(2026, 1, 15), "1.0850")])
    rows = premium_rows([("JPY", date(2026, 1, 15), "1000000")])
    for rates in (only_jpy, only_eur, fx_table([])):
        ok, held = settle(rows, rates, contract, "premium_bordereau", "booked_date")
        assert ok.num_rows == 0 and [r["rule"] for r in held.to_pylist()] == [RULE]
        assert "2026-01-15" in held["reason"][0].as_py()


def test_same_currency_is_exactly_one_without_any_rate(tmp_path):
    contract = make_contract(tmp_path, fxRateDate="booked_date")
    rows = premium_rows([("EUR", date(2026, 1, 7), "1234.565"), ("EUR", date(2026, 1, 7), "-0.005")])
    ok, held = settle(rows, fx_table([]), contract, "premium_bordereau", "booked_date")
    assert held.num_rows == 0
    assert [r["fx_rate"] for r in ok.to_pylist()] == [D("1.000000000000")] * 2
    assert ok["settlement_share_premium"].to_pylist() == [D("1234.565"), D("-0.005")]
    assert ok["fx_rate_date"].to_pylist() == [date(2026, 1, 7)] * 2


def test_half_a_minor_unit_in_the_settlement_currency_under_both_modes(tmp_path):
    """USD into EUR on a day EUR is at 2 USD: fx_rate = 1 / 2 = 0.5 exactly, so the settlement amounts
    land on exact half cents; and a JPY share of 15,000,000,000 at 0.006175115207 is
    92,626,728.105 EUR exactly (15e9 x 6,175,115,207e-12 = 92,626,728,105e-3)."""
    contract = make_contract(tmp_path, currencies=("USD", "JPY"), fxRateDate="booked_date")
    rates = fx_table(RATES + [("USD", date(2026, 1, 16), "1"), ("EUR", date(2026, 1, 16), "2.000000")])
    rows = premium_rows([("USD", date(2026, 1, 16), "4.69"),  # -> 2.345
                         ("USD", date(2026, 1, 16), "-4.69"),  # -> -2.345
                         ("USD", date(2026, 1, 16), "4.71"),  # -> 2.355
                         ("JPY", date(2026, 1, 15), "15000000000"),  # -> 92,626,728.105
                         ("JPY", date(2026, 1, 15), "5000000000")])  # -> 30,875,576.035
    ok, held = settle(rows, rates, contract, "premium_bordereau", "booked_date")
    assert held.num_rows == 0
    assert ok["fx_rate"].to_pylist() == [D("0.5")] * 3 + [D("0.006175115207")] * 2
    assert ok["settlement_share_premium"].to_pylist() == [
        D("2.345"), D("-2.345"), D("2.355"), D("92626728.105"), D("30875576.035")]
    half_up = round_money(ok, ["settlement_share_premium"], "settlement_currency", "half_up")
    half_even = round_money(ok, ["settlement_share_premium"], "settlement_currency", "half_even")
    # half up: away from zero; half even: to the even cent (…4|5 stays, …5|5 and …3|5 go up)
    assert half_up["settlement_share_premium"].to_pylist() == [
        "2.35", "-2.35", "2.36", "92626728.11", "30875576.04"]
    assert half_even["settlement_share_premium"].to_pylist() == [
        "2.34", "-2.34", "2.36", "92626728.10", "30875576.04"]
    # the original USD amounts round on their own currency, not the settlement one
    assert round_money(ok, ["share_premium"], "original_currency", "half_up")["share_premium"].to_pylist() == [
        "4.69", "-4.69", "4.71", "15000000000", "5000000000"]


# -- end to end: a JPY treaty published to partners settling in EUR ----------------------------

def _treaty(tid, currency, cession):
    return treaty(tid, "QUOTA_SHARE", Currency=currency, CessionRate=D(cession))


def _premium(pid, txid, ttype, gross, booked, currency):
    return {"PolicyId": pid, "TransactionId": txid, "TransactionType": ttype, "EffectiveDate": booked,
            "BookedDate": booked, "GrossPremium": D(gross), "CommissionAmount": D("0"), "TaxAmount": D("0"),
            "Currency": currency}


def _location(pid, currency_tiv):
    return {"PolicyId": pid, "LocationId": f"{pid}-1", "CountryCode": "DE", "Zone": "DE-1", "Latitude": 50.1,
            "Longitude": 8.6, "PerilsCovered": "WTC", "OccupancyCode": 1050, "ConstructionCode": 5000,
            "BuildingTiv": D(currency_tiv), "ContentsTiv": D("0"), "BiTiv": D("0")}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The book below, captured and published once per session: its folder."""
    d = build_once(tmp_path_factory, "fx-book", _publish_fx_book)
    with open(d / "summary.json") as f:
        summary = json.load(f)
    return d, d / "wh.duckdb", summary


def _publish_fx_book(d):
    """QSJ: JPY quota share 50%, alpine 40% / boreal 40% / meridian 20% (fully placed);
    QSE: EUR quota share 50%, alpine 100%. All three partners settle in EUR, monthly:
    alpine at the booked date rounding half up, boreal at the booked date half even,
    meridian at the period end (half even)."""
    fx_rows = [{"Currency": c, "RateDate": day, "UsdPerUnit": D(r)} for c, day, r in RATES]
    write_jsonl(str(d / "changes" / "book.jsonl"), [
        record("Reinsurers", "INSERT", [{"ReinsurerId": r, "Name": r, "CountryCode": "CH"}
                                        for r in ("alpine-re", "boreal-re", "meridian-re")],
               ts_ns=ts_ns(1), txn="r", seq=0, records_in_txn=4),
        record("Treaties", "INSERT", [_treaty("QSJ", "JPY", "0.5"), _treaty("QSE", "EUR", "0.5")],
               ts_ns=ts_ns(1), txn="r", seq=1, records_in_txn=4),
        record("Participations", "INSERT", [
            {"TreatyId": "QSJ", "ReinsurerId": "alpine-re", "SharePct": D("0.4")},
            {"TreatyId": "QSJ", "ReinsurerId": "boreal-re", "SharePct": D("0.4")},
            {"TreatyId": "QSJ", "ReinsurerId": "meridian-re", "SharePct": D("0.2")},
            {"TreatyId": "QSE", "ReinsurerId": "alpine-re", "SharePct": D("1")},
        ], ts_ns=ts_ns(1), txn="r", seq=2, records_in_txn=4),
        record("FxRates", "INSERT", fx_rows, ts_ns=ts_ns(1), txn="r", seq=3, records_in_txn=4),
        record("Policies", "INSERT", [policy("J", treaty="QSJ", currency="JPY"), policy("E", treaty="QSE")],
               ts_ns=ts_ns(2), txn="p", seq=0, records_in_txn=2),
        record("Locations", "INSERT", [_location("J", "800000000"), _location("E", "5000000")],
               ts_ns=ts_ns(2), txn="p", seq=1, records_in_txn=2),
        record("PremiumTransactions", "INSERT", [
            _premium("J", "J-1", "NEW", "5000000", date(2026, 1, 15), "JPY"),  # ceded 2,500,000
            _premium("J", "J-2", "ENDORSEMENT", "75000000000", date(2026, 1, 20), "JPY"),  # ceded 37.5e9
            _premium("J", "J-3", "ENDORSEMENT", "1000000", date(2026, 2, 10), "JPY"),  # ceded 500,000
            _premium("J", "J-4", "CANCELLATION", "-5000000", date(2026, 1, 15), "JPY"),  # ceded -2,500,000
            _premium("E", "E-1", "NEW", "100.00", date(2026, 1, 7), "EUR"),  # ceded 50.00, no rate that day
        ], ts_ns=ts_ns(3), txn="pt"),
    ])
    contracts = d / "contracts"
    for partner, treaties, terms in (
            ("alpine-re", ["QSJ", "QSE"], {"fxRateDate": "booked_date", "rounding": "half_up"}),
            ("boreal-re", ["QSJ"], {"fxRateDate": "booked_date", "rounding": "half_even"}),
            ("meridian-re", ["QSJ"], {"fxRateDate": "period_end", "rounding": "half_even"})):
        write_contract(contracts, set_terms(contract_doc(partner, treaties, ["JPY", "EUR"], settlement="EUR"),
                                            **terms))
    uri = "duckdb:///" + str(d / "wh.duckdb")
    run_capture(str(d / "changes"), uri)
    summary = run_premium_bordereau(uri, str(d / "exports"), contracts_dir=str(contracts), as_of=date(2026, 3, 5))
    with open(d / "summary.json", "w") as f:
        json.dump({"succeeded": summary.succeeded, "message": summary.message, "balanced": summary.balanced,
                   "quarantined_per_partner": summary.quarantined_per_partner}, f)


def _read(db):
    return duckdb.connect(str(db), read_only=True)


def _csv(d, partner, period):
    path = d / "exports" / partner / "premium_bordereau" / period / "v1" / "premium_bordereau.csv"
    with open(path, newline="") as f:
        return {r["transaction_id"]: r for r in csv.DictReader(f)}


def _cols(row):
    return (row["share_premium"], row["fx_rate"], row["fx_rate_date"], row["settlement_currency"],
            row["settlement_share_premium"], row["settlement_share_net_premium"])


def test_booked_date_partner_half_up_by_hand(published):
    d, _db, summary = published
    assert summary["succeeded"], summary["message"]
    jan = _csv(d, "alpine-re", "2026-01")
    # J-1: 5,000,000 x 50% x 40% = 1,000,000 JPY -> 6,175.115207 EUR -> 6,175.12
    assert _cols(jan["J-1"]) == ("1000000", "0.006175115207", "2026-01-15", "EUR", "6175.12", "6175.12")
    # J-2: 75e9 x 50% x 40% = 15e9 JPY -> 92,626,728.105 EUR: half a cent, half up -> .11
    assert _cols(jan["J-2"]) == ("15000000000", "0.006175115207", "2026-01-20", "EUR", "92626728.11", "92626728.11")
    assert _cols(jan["J-4"]) == ("-1000000", "0.006175115207", "2026-01-15", "EUR", "-6175.12", "-6175.12")
    # E-1: EUR into EUR at exactly 1, although the ledger has no rate on 7 January
    assert _cols(jan["E-1"]) == ("50.00", "1.000000000000", "2026-01-07", "EUR", "50.00", "50.00")
    feb = _csv(d, "alpine-re", "2026-02")
    # J-3: 1,000,000 x 50% x 40% = 200,000 JPY x 0.006238532110 = 1,247.706422 -> 1,247.71
    assert _cols(feb["J-3"]) == ("200000", "0.006238532110", "2026-02-10", "EUR", "1247.71", "1247.71")


def test_booked_date_partner_half_even_by_hand(published):
    d, _db, _summary = published
    jan = _csv(d, "boreal-re", "2026-01")
    assert set(jan) == {"J-1", "J-2", "J-4"}
    assert _cols(jan["J-1"])[4] == "6175.12"
    # the same 92,626,728.105 EUR, half even: the cent before the half is even (0) -> .10
    assert _cols(jan["J-2"]) == ("15000000000", "0.006175115207", "2026-01-20", "EUR", "92626728.10", "92626728.10")
    assert _cols(_csv(d, "boreal-re", "2026-02")["J-3"])[4] == "1247.71"


def test_period_end_partner_by_hand_and_a_missing_rate_is_quarantined(published):
    d, db, summary = published
    jan = _csv(d, "meridian-re", "2026-01")
    # all of January at the rate of 31 January, 0.00625: 500,000 -> 3,125; 7.5e9 -> 46,875,000
    assert _cols(jan["J-1"]) == ("500000", "0.006250000000", "2026-01-31", "EUR", "3125.00", "3125.00")
    assert _cols(jan["J-2"]) == ("7500000000", "0.006250000000", "2026-01-31", "EUR", "46875000.00", "46875000.00")
    assert _cols(jan["J-4"])[4] == "-3125.00"
    # J-3 (February) needs the rate of 28 February, which the ledger lacks: held, never sent at 1.0
    assert not (d / "exports" / "meridian-re" / "premium_bordereau" / "2026-02").exists()
    with _read(db) as con:
        held = con.execute("SELECT rule, reason, offending_value, raw_record FROM rex_ops.quarantine "
                           "WHERE partner = 'meridian-re' AND report = 'premium_bordereau'").fetchall()
        sent = con.execute("SELECT transaction_id FROM partner_meridian_re.premium_bordereau ORDER BY 1").fetchall()
        status = con.execute("SELECT publication_status, publication_rule FROM rex_reports.premium_bordereau "
                             "WHERE reinsurer_id = 'meridian-re' AND transaction_id = 'J-3'").fetchall()
    assert len(held) == 1
    rule, reason, offending, raw = held[0]
    assert (rule, offending) == (RULE, "JPY@2026-02-28")
    assert "JPY" in reason and "EUR" in reason and "2026-02-28" in reason
    assert json.loads(raw)["transaction_id"] == "J-3"
    assert sent == [("J-1",), ("J-2",), ("J-4",)]
    assert status == [("quarantined", RULE)]
    assert summary["quarantined_per_partner"].get("meridian-re") == 1
    assert summary["balanced"]  # the held share is accounted as quarantined


def test_partner_tables_keep_the_exact_settlement_amounts(published):
    _d, db, _summary = published
    with _read(db) as con:
        alpine = {r[0]: r[1:] for r in con.execute(
            "SELECT transaction_id, fx_rate, fx_rate_date, settlement_share_premium "
            "FROM partner_alpine_re.premium_bordereau").fetchall()}
        boreal = {r[0]: r[1:] for r in con.execute(
            "SELECT transaction_id, fx_rate, settlement_share_premium FROM partner_boreal_re.premium_bordereau"
        ).fetchall()}
    assert alpine == {
        "J-1": (D("0.006175115207"), date(2026, 1, 15), D("6175.115207")),
        "J-2": (D("0.006175115207"), date(2026, 1, 20), D("92626728.105")),
        "J-3": (D("0.006238532110"), date(2026, 2, 10), D("1247.706422")),
        "J-4": (D("0.006175115207"), date(2026, 1, 15), D("-6175.115207")),
        "E-1": (D("1"), date(2026, 1, 7), D("50")),
    }
    assert boreal["J-2"] == (D("0.006175115207"), D("92626728.105"))  # rounded only in the export
