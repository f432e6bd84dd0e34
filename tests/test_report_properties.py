"""Property tests over random books: the bordereaux against an independent model of the ledger.

Random books (a quota share with a random cession rate, a surplus with random retention and
lines, a per-risk XoL, sometimes more proportional treaties; 1-4 reinsurers per treaty, fully
placed or partly placed; policies with random locations, premiums of every transaction type,
claims with random movements) are built as Arrow tables in the ledger's schema and fed to the
pure functions, so each example takes milliseconds. The model below recomputes every amount with
Python's `decimal` from the ledger rows (never a float):

* DECIMAL(38,9) rounding of a product is `quantize(1e-9, ROUND_HALF_UP)` (half away from zero,
  as DuckDB casts);
* surplus fraction = min(max(S - R, 0), L*R) / S to 9 places, half up; 0 when S <= 0;
* XoL ceded = min(max(amount - Attachment, 0), Limit) (no limit: unlimited);
* a reinsurer's share = ceded x SharePct to 9 places; on a fully placed treaty (shares summing to
  exactly 1) the largest share (ties: reinsurer id) takes the rounding residual.

The last test writes random books as change records, captures them into a DuckDB warehouse and
publishes them, then checks the partners' tables and files against SQL over the mirror.
"""
from __future__ import annotations

import csv
import glob
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from change_factory import policy as policy_row, record, ts_ns, write_jsonl
from change_factory import treaty as treaty_row
from contract_factory import contract_doc, write_contract
from pipelines.capture import run_capture
from pipelines.premium_report import run_premium_bordereau
from transforms import duck
from transforms.claims_bordereau import claims_bordereau_rows, period_grid
from transforms.currencies import minor_units
from transforms.ledger_schema import table as ledger_table
from transforms.premium_bordereau import policy_risks, premium_bordereau_rows
from transforms.warehouse import open_warehouse

START = date(2026, 1, 1)
LAST_DAY = 180  # books run 1 January .. 30 June 2026
CURRENCIES = ("EUR", "USD", "JPY")
REINSURERS = ("alpha-re", "beta-re", "gamma-re", "delta-re")
PREMIUM_TYPES = ("NEW", "RENEWAL", "ENDORSEMENT", "CANCELLATION")
CLAIM_STEPS = ("RESERVE_CHANGE", "PAYMENT", "RECOVERY", "CLOSE", "REOPEN")
NINE = Decimal("1e-9")
ONE = Decimal(1)
ZERO = Decimal(0)

# No shrinking: an example takes ~0.1 s and a book hundreds of draws, so shrinking a failure would
# run for Hypothesis' full 5 minutes per test; the first failing book is reported as drawn.
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, database=None,
                             phases=(Phase.explicit, Phase.generate),
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- drawing a random book ----------------------------------------------------------------------

class HypothesisDraw:
    def __init__(self, data):
        self.data = data

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def choice(self, seq):
        return self.data.draw(st.sampled_from(list(seq)))

    def bool(self) -> bool:
        return self.data.draw(st.booleans())


class RandomDraw:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, seq):
        return self.rng.choice(list(seq))

    def bool(self) -> bool:
        return self.rng.random() < 0.5


def cents(n: int) -> Decimal:
    """An amount with 2 decimal places from a whole number of cents."""
    return (Decimal(n) / 100).quantize(Decimal("0.01"))


def day(n: int) -> date:
    return START + timedelta(days=n)


@dataclass
class Book:
    treaties: list = field(default_factory=list)
    participations: list = field(default_factory=list)
    policies: list = field(default_factory=list)
    locations: list = field(default_factory=list)
    premiums: list = field(default_factory=list)
    claims: list = field(default_factory=list)
    claim_txns: list = field(default_factory=list)

    def treaty(self, tid):
        return next((t for t in self.treaties if t["TreatyId"] == tid), None)

    def shares(self, tid) -> list[tuple[str, Decimal]]:
        return [(p["ReinsurerId"], p["SharePct"]) for p in self.participations if p["TreatyId"] == tid]

    def locations_of(self, pid):
        return [loc for loc in self.locations if loc["PolicyId"] == pid]

    def policy(self, pid):
        return next(p for p in self.policies if p["PolicyId"] == pid)


def _shares(draw, treaty_id: str) -> list[dict]:
    n = draw.int(1, 4)
    pool, who = list(REINSURERS), []
    for _ in range(n):
        who.append(draw.choice(pool))
        pool.remove(who[-1])
    scale = draw.choice((100, 10_000, 1_000_000_000))  # whole percent, basis points, or 9 places
    if draw.bool():  # fully placed: parts summing to exactly 1
        left, parts = scale, []
        for i in range(n - 1):
            parts.append(draw.int(1, left - (n - 1 - i)))
            left -= parts[-1]
        parts.append(left)
    else:  # partly placed: short of 1 by at least one part
        parts = [draw.int(1, (scale - 1) // n) for _ in range(n)]
    return [{"TreatyId": treaty_id, "ReinsurerId": r, "SharePct": Decimal(part) / scale}
            for r, part in zip(who, parts)]


def _location(draw, pid: str, k: int, building: Decimal | None = None) -> dict:
    if building is None:
        building = cents(draw.int(0, 400_000_000))
        contents = cents(draw.int(0, 100_000_000)) if draw.bool() else None
        bi = cents(draw.int(0, 50_000_000)) if draw.bool() else None
    else:
        contents, bi = ZERO, None
    return {"PolicyId": pid, "LocationId": f"{pid}-L{k}", "CountryCode": "DE", "Zone": "DE-1", "Latitude": 50.1,
            "Longitude": 8.6, "PerilsCovered": "WTC", "OccupancyCode": 1050, "ConstructionCode": 5000,
            "BuildingTiv": building, "ContentsTiv": contents, "BiTiv": bi}


def draw_book(draw, policies=(1, 6)) -> Book:
    book = Book()
    kinds = ["QUOTA_SHARE", "SURPLUS", "XOL_PER_RISK"]
    kinds += [draw.choice(("QUOTA_SHARE", "SURPLUS")) for _ in range(draw.int(0, 2))]
    for i, kind in enumerate(kinds, 1):
        tid = {"QUOTA_SHARE": "QS", "SURPLUS": "SP", "XOL_PER_RISK": "XL"}[kind] + str(i)
        t = treaty_row(tid, kind, Currency=draw.choice(CURRENCIES), InceptionDate=START, ExpiryDate=date(2027, 1, 1))
        if kind == "QUOTA_SHARE":
            t["CessionRate"] = Decimal(draw.int(0, 10000)) / 10000
        elif kind == "SURPLUS":
            t["Retention"] = cents(draw.int(1, 300_000_000))
            t["Lines"] = draw.int(1, 9)
        else:
            t["Attachment"] = Decimal(draw.int(0, 2000) * 1000)
            t["Limit"] = None if draw.int(0, 3) == 0 else Decimal(draw.int(1, 5000) * 1000)
        if kind != "XOL_PER_RISK" and draw.bool():
            t["CommissionRate"] = Decimal(draw.int(0, 400)) / 1000
        book.treaties.append(t)
        book.participations += _shares(draw, tid)
    for n in range(draw.int(*policies)):
        pid = f"P{n}"
        t = draw.choice(book.treaties + [None])
        currency = t["Currency"] if t else draw.choice(CURRENCIES)
        book.policies.append(policy_row(pid, treaty=t["TreatyId"] if t else None, currency=currency,
                                        InceptionDate=day(draw.int(0, LAST_DAY))))
        mode = draw.int(0, 3) if t and t["TreatyType"] == "SURPLUS" else 0
        if mode == 1:  # exactly at the retention
            book.locations.append(_location(draw, pid, 0, t["Retention"]))
        elif mode == 2:  # exactly at retention + all lines: the cap
            book.locations.append(_location(draw, pid, 0, t["Retention"] * (t["Lines"] + 1)))
        elif mode == 3:  # retention split over two locations, plus or minus a cent
            half = (t["Retention"] / 2).quantize(Decimal("0.01"))
            book.locations.append(_location(draw, pid, 0, half))
            book.locations.append(_location(draw, pid, 1, t["Retention"] - half + cents(draw.int(-1, 1))))
        else:
            for k in range(draw.int(0, 3)):
                book.locations.append(_location(draw, pid, k))
        for k in range(draw.int(0, 4)):
            kind = draw.choice(PREMIUM_TYPES)
            size = draw.int(0, 100_000_000)
            sign = -1 if kind == "CANCELLATION" or (kind == "ENDORSEMENT" and draw.bool()) else 1
            booked = day(draw.int(0, LAST_DAY))
            book.premiums.append({
                "PolicyId": pid, "TransactionId": f"{pid}-T{k}", "TransactionType": kind,
                "EffectiveDate": booked - timedelta(days=draw.int(0, 20)), "BookedDate": booked,
                "GrossPremium": sign * cents(size), "CommissionAmount": sign * cents(draw.int(0, size // 4)),
                "TaxAmount": sign * cents(draw.int(0, size // 5)), "Currency": currency})
        locs = book.locations_of(pid)
        for c in range(draw.int(0, 2)):
            cid = f"C{pid}{c}"
            loss = draw.int(0, LAST_DAY - 30)
            book.claims.append({"ClaimId": cid, "PolicyId": pid,
                                "LocationId": draw.choice(locs)["LocationId"] if locs and draw.bool() else None,
                                "LossDate": day(loss), "ReportedDate": day(loss), "Peril": "WTC",
                                "CatEventCode": None, "Status": "OPEN", "Description": cid})
            steps = ["OPEN"] + [draw.choice(CLAIM_STEPS) for _ in range(draw.int(0, 5))]
            for k, kind in enumerate(steps):
                paid, reserve = ZERO, cents(draw.int(0, 300_000_000))
                if kind == "PAYMENT":
                    paid = cents(draw.int(1, 300_000_000))
                elif kind == "RECOVERY":
                    paid = -cents(draw.int(1, 100_000_000))
                elif kind == "CLOSE":
                    reserve = ZERO
                book.claim_txns.append({
                    "ClaimId": cid, "TransactionId": f"{cid}-{k:02d}", "TransactionType": kind,
                    "BookedDate": day(min(loss + draw.int(0, 90), LAST_DAY)),  # same-day moves happen
                    "PaidAmount": None if kind in ("OPEN", "CLOSE") and draw.bool() else paid,
                    "ReserveAmount": reserve, "Currency": currency})
    return book


def arrow(name: str, rows: list[dict]) -> pa.Table:
    schema = ledger_table(name).arrow_schema()
    return pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)


def tables(book: Book) -> dict[str, pa.Table]:
    return {"Treaties": arrow("Treaties", book.treaties), "Participations": arrow("Participations", book.participations),
            "Policies": arrow("Policies", book.policies), "Locations": arrow("Locations", book.locations),
            "PremiumTransactions": arrow("PremiumTransactions", book.premiums),
            "Claims": arrow("Claims", book.claims), "ClaimTransactions": arrow("ClaimTransactions", book.claim_txns)}


# -- the independent model ----------------------------------------------------------------------

def q9(x: Decimal) -> Decimal:
    return x.quantize(NINE, rounding=ROUND_HALF_UP)


def sum_insured(book: Book, pid: str) -> Decimal:
    return sum(((loc["BuildingTiv"] or ZERO) + (loc["ContentsTiv"] or ZERO) + (loc["BiTiv"] or ZERO)
                for loc in book.locations_of(pid)), ZERO)


def fraction(book: Book, pid: str) -> Decimal | None:
    """The ceded fraction of a policy's treaty; None if it has no proportional treaty."""
    t = book.treaty(book.policy(pid)["TreatyId"])
    if t is None or t["TreatyType"] == "XOL_PER_RISK":
        return None
    if t["TreatyType"] == "QUOTA_SHARE":
        return t["CessionRate"]
    s = sum_insured(book, pid)
    if s <= 0:
        return ZERO
    ceded = min(max(s - t["Retention"], ZERO), t["Lines"] * t["Retention"])
    with localcontext() as ctx:
        ctx.prec = 80
        return (ceded / s).quantize(NINE, rounding=ROUND_HALF_UP)


def split(amount: Decimal, shares: list[tuple[str, Decimal]]) -> dict[str, Decimal]:
    """Each reinsurer's share of a ceded amount; the largest takes the residual if fully placed."""
    raw = {r: q9(amount * pct) for r, pct in shares}
    if sum(pct for _r, pct in shares) == ONE:
        largest = sorted(shares, key=lambda s: (-s[1], s[0]))[0][0]
        raw[largest] += amount - sum(raw.values())
    return raw


def fully_placed(book: Book, tid: str) -> bool:
    return sum(pct for _r, pct in book.shares(tid)) == ONE


def premium_model(book: Book) -> dict[str, dict]:
    """Per ceded premium transaction: its fraction, ceded premium and tax, and each share."""
    out = {}
    for pt in book.premiums:
        f = fraction(book, pt["PolicyId"])
        if f is None:
            continue
        tid = book.policy(pt["PolicyId"])["TreatyId"]
        ceded, tax = q9(pt["GrossPremium"] * f), q9(pt["TaxAmount"] * f)
        out[pt["TransactionId"]] = {"treaty": tid, "fraction": f, "ceded": ceded, "ceded_tax": tax,
                                    "share": split(ceded, book.shares(tid)), "share_tax": split(tax, book.shares(tid))}
    return out


@pytest.fixture(scope="module")
def con():
    """One DuckDB connection for the pure functions that take one (a connection costs ~20 ms)."""
    c = duck.connect()
    yield c
    c.close()


def premium_rows(book: Book, con=None) -> pa.Table:
    t = tables(book)
    risks = policy_risks(t["Policies"], t["Locations"])
    return premium_bordereau_rows(t["PremiumTransactions"], risks, t["Treaties"], t["Participations"], con)


def grid(book: Book, extra_days: int):
    booked = [c["BookedDate"] for c in book.claim_txns]
    first, last = min(booked), max(booked) + timedelta(days=extra_days)
    return period_grid(first, last, "monthly") + period_grid(first, last, "quarterly")


def claim_rows(book: Book, periods, con=None) -> pa.Table:
    t = tables(book)
    risks = policy_risks(t["Policies"], t["Locations"])
    return claims_bordereau_rows(t["Claims"], t["ClaimTransactions"], t["Policies"], risks, t["Treaties"],
                                 t["Participations"], periods, con)


def ceded_claim(t: dict, f: Decimal | None, amount: Decimal) -> Decimal:
    if t["TreatyType"] == "XOL_PER_RISK":
        layer = max(amount - (t["Attachment"] or ZERO), ZERO)
        return q9(layer if t["Limit"] is None else min(layer, t["Limit"]))
    return q9(amount * f)


def claims_model(book: Book, periods) -> dict[tuple, dict]:
    """(claim, frequency, period) -> the claim's position and its cession, for every reported row."""
    out = {}
    for claim in book.claims:
        t = book.treaty(book.policy(claim["PolicyId"])["TreatyId"])
        if t is None:
            continue  # retained
        f = fraction(book, claim["PolicyId"])
        txns = sorted((x for x in book.claim_txns if x["ClaimId"] == claim["ClaimId"]),
                      key=lambda x: (x["BookedDate"], x["TransactionId"]))
        for p in periods:
            upto = [x for x in txns if x["BookedDate"] <= p.end]
            if not upto:
                continue
            paid = [(x["BookedDate"], x["PaidAmount"] or ZERO) for x in upto]
            moved = [x for x in upto if x["BookedDate"] >= p.start]
            outstanding = upto[-1]["ReserveAmount"] or ZERO
            if not moved and outstanding == 0:
                continue
            ptd = sum((a for _d, a in paid), ZERO)
            before = sum((a for d, a in paid if d < p.start), ZERO)
            changes = [x["TransactionType"] for x in upto if x["TransactionType"] in ("CLOSE", "REOPEN")]
            c_inc, c_ptd, c_before = (ceded_claim(t, f, a) for a in (ptd + outstanding, ptd, before))
            shares = book.shares(t["TreatyId"])
            s_inc, s_ptd, s_before = split(c_inc, shares), split(c_ptd, shares), split(c_before, shares)
            out[(claim["ClaimId"], p.frequency, p.label)] = {
                "treaty_id": t["TreatyId"], "period_start": p.start, "period_end": p.end,
                "claim_status": {"CLOSE": "CLOSED", "REOPEN": "REOPENED"}[changes[-1]] if changes else "OPEN",
                "last_booked_date": upto[-1]["BookedDate"],
                "paid_this_period_100": ptd - before, "paid_to_date_100": ptd,
                "outstanding_reserve_100": outstanding, "incurred_100": ptd + outstanding,
                "ceded_fraction": f, "ceded_paid_this_period_100": c_ptd - c_before,
                "ceded_paid_to_date_100": c_ptd, "ceded_outstanding_100": c_inc - c_ptd,
                "ceded_incurred_100": c_inc,
                "xol_recovery_100": c_inc if t["TreatyType"] == "XOL_PER_RISK" else ZERO,
                "shares": {r: {"paid_this_period_share": s_ptd[r] - s_before[r], "paid_to_date_share": s_ptd[r],
                               "outstanding_share": s_inc[r] - s_ptd[r], "incurred_share": s_inc[r],
                               "share_pct": pct} for r, pct in shares},
            }
    return out


AMOUNTS_100 = ("paid_this_period_100", "paid_to_date_100", "outstanding_reserve_100", "incurred_100")
CEDED = ("ceded_paid_this_period_100", "ceded_paid_to_date_100", "ceded_outstanding_100", "ceded_incurred_100")
SHARES = ("paid_this_period_share", "paid_to_date_share", "outstanding_share", "incurred_share")


# -- premium bordereau --------------------------------------------------------------------------

@PROPERTY_SETTINGS
@given(st.data())
def test_premium_rows_match_the_model_exactly(con, data):
    book = draw_book(HypothesisDraw(data))
    rows = premium_rows(book, con).to_pylist()
    model = premium_model(book)
    by_txn = defaultdict(list)
    for r in rows:
        by_txn[r["transaction_id"]].append(r)
    # every premium of a policy under a proportional treaty, once per participating reinsurer
    assert set(by_txn) == set(model)
    gross = {p["TransactionId"]: p for p in book.premiums}
    for txid, group in by_txn.items():
        m, pt = model[txid], gross[txid]
        assert sorted(r["reinsurer_id"] for r in group) == sorted(r for r, _p in book.shares(m["treaty"]))
        for r in group:
            assert ZERO <= r["ceded_fraction"] <= ONE
            assert r["treaty_id"] == m["treaty"] and r["ceded_fraction"] == m["fraction"]
            assert r["sum_insured"] == sum_insured(book, pt["PolicyId"])
            assert r["gross_premium_100"] == pt["GrossPremium"] and r["tax_100"] == pt["TaxAmount"]
            # ceded = DECIMAL(38,9) rounding of gross x fraction
            assert r["ceded_premium_100"] == q9(pt["GrossPremium"] * m["fraction"]) == m["ceded"]
            assert r["share_premium"] == m["share"][r["reinsurer_id"]], (txid, r["reinsurer_id"])
            assert r["share_tax"] == m["share_tax"][r["reinsurer_id"]]
            rate = book.treaty(m["treaty"])["CommissionRate"] or ZERO
            assert r["share_commission"] == q9(r["share_premium"] * rate)
            assert r["share_net_premium"] == r["share_premium"] - r["share_commission"] - r["share_tax"]
            assert r["original_currency"] == pt["Currency"] and r["period"] == pt["BookedDate"].strftime("%Y-%m")


@PROPERTY_SETTINGS
@given(st.data())
def test_fully_placed_premium_shares_add_up_to_the_ceded_amount_exactly(con, data):
    book = draw_book(HypothesisDraw(data))
    rows = premium_rows(book, con).to_pylist()
    groups = defaultdict(list)
    for r in rows:
        groups[(r["transaction_id"], r["treaty_id"])].append(r)
    pt = {p["TransactionId"]: p for p in book.premiums}
    for (txid, tid), group in groups.items():
        ceded = group[0]["ceded_premium_100"]
        assert all(r["ceded_premium_100"] == ceded for r in group)
        ceded_tax = q9(pt[txid]["TaxAmount"] * group[0]["ceded_fraction"])
        if fully_placed(book, tid):
            assert sum(r["share_premium"] for r in group) == ceded
            assert sum(r["share_tax"] for r in group) == ceded_tax
        else:  # the unplaced part stays with the cedent: each share is its plain product
            for r in group:
                assert r["share_premium"] == q9(ceded * r["share_pct"])
                assert r["share_tax"] == q9(ceded_tax * r["share_pct"])


@PROPERTY_SETTINGS
@given(st.data())
def test_premium_gross_is_ceded_plus_retained_per_treaty_and_currency(con, data):
    book = draw_book(HypothesisDraw(data))
    rows = premium_rows(book, con).to_pylist()
    ceded = {}  # distinct transactions of the bordereau
    for r in rows:
        ceded[(r["treaty_id"], r["original_currency"], r["transaction_id"])] = r["ceded_premium_100"]
    gross, retained, ceded_sum = defaultdict(Decimal), defaultdict(Decimal), defaultdict(Decimal)
    for pt in book.premiums:  # the ledger side, independently of the bordereau
        tid = book.policy(pt["PolicyId"])["TreatyId"] or "(none)"
        key = (tid, pt["Currency"])
        f = fraction(book, pt["PolicyId"]) if tid != "(none)" else None
        gross[key] += pt["GrossPremium"]
        retained[key] += pt["GrossPremium"] - (q9(pt["GrossPremium"] * f) if f is not None else ZERO)
    for (tid, ccy, _txid), amount in ceded.items():
        ceded_sum[(tid, ccy)] += amount
    assert set(ceded_sum) <= set(gross)
    for key in gross:
        assert gross[key] == ceded_sum.get(key, ZERO) + retained[key], key
        if key[0] == "(none)" or book.treaty(key[0])["TreatyType"] == "XOL_PER_RISK":
            assert key not in ceded_sum  # XoL and unceded premium never reach the premium bordereau


# -- claims bordereau ---------------------------------------------------------------------------

@PROPERTY_SETTINGS
@given(st.data())
def test_claims_rows_match_the_model_exactly(con, data):
    book = draw_book(HypothesisDraw(data))
    assume(book.claim_txns)
    periods = grid(book, data.draw(st.integers(0, 70)))
    rows = claim_rows(book, periods, con).to_pylist()
    model = claims_model(book, periods)
    got = defaultdict(dict)
    for r in rows:
        got[(r["claim_id"], r["frequency"], r["period"])][r["reinsurer_id"]] = r
    assert set(got) == set(model)  # claims that moved in a period, or still carry a reserve at its end
    for key, by_reinsurer in got.items():
        m = model[key]
        assert set(by_reinsurer) == set(m["shares"])
        for reinsurer, r in by_reinsurer.items():
            for col in ("treaty_id", "period_start", "period_end", "claim_status", "last_booked_date",
                        *AMOUNTS_100, "ceded_fraction", *CEDED, "xol_recovery_100"):
                assert r[col] == m[col], (key, reinsurer, col)
            for col, value in m["shares"][reinsurer].items():
                assert r[col] == value, (key, reinsurer, col)


@PROPERTY_SETTINGS
@given(st.data())
def test_claims_incurred_ties_out_and_periods_add_up_to_paid_to_date(con, data):
    book = draw_book(HypothesisDraw(data))
    assume(book.claim_txns)
    rows = claim_rows(book, grid(book, data.draw(st.integers(0, 70))), con).to_pylist()
    series = defaultdict(list)
    for r in rows:
        assert r["incurred_100"] == r["paid_to_date_100"] + r["outstanding_reserve_100"]
        assert r["ceded_incurred_100"] == r["ceded_paid_to_date_100"] + r["ceded_outstanding_100"]
        assert r["incurred_share"] == r["paid_to_date_share"] + r["outstanding_share"]
        series[(r["claim_id"], r["frequency"], r["reinsurer_id"])].append(r)
    for (claim_id, _f, _r), claim_rows_ in series.items():
        claim_rows_.sort(key=lambda r: r["period_start"])
        last = claim_rows_[-1]
        assert sum(r["paid_this_period_100"] for r in claim_rows_) == last["paid_to_date_100"]
        assert sum(r["ceded_paid_this_period_100"] for r in claim_rows_) == last["ceded_paid_to_date_100"]
        assert sum(r["paid_this_period_share"] for r in claim_rows_) == last["paid_to_date_share"]
        # and the paid to date is the ledger's: every payment booked by then
        booked = sum((x["PaidAmount"] or ZERO for x in book.claim_txns
                      if x["ClaimId"] == claim_id and x["BookedDate"] <= last["period_end"]), ZERO)
        assert last["paid_to_date_100"] == booked


@PROPERTY_SETTINGS
@given(st.data())
def test_fully_placed_claim_shares_add_up_to_every_ceded_amount_exactly(con, data):
    book = draw_book(HypothesisDraw(data))
    assume(book.claim_txns)
    rows = claim_rows(book, grid(book, 0), con).to_pylist()
    groups = defaultdict(list)
    for r in rows:
        groups[(r["claim_id"], r["frequency"], r["period"], r["treaty_id"])].append(r)
    for (_c, _f, _p, tid), group in groups.items():
        for ceded, share in zip(CEDED, SHARES):
            assert len({r[ceded] for r in group}) == 1
            total = sum(r[share] for r in group)
            if fully_placed(book, tid):
                assert total == group[0][ceded], (tid, share)
        if not fully_placed(book, tid):
            for r in group:
                assert r["incurred_share"] == q9(r["ceded_incurred_100"] * r["share_pct"])
                assert r["paid_to_date_share"] == q9(r["ceded_paid_to_date_100"] * r["share_pct"])


@settings(max_examples=60, deadline=None, database=None)
@given(st.dates(date(2020, 1, 1), date(2030, 12, 31)), st.integers(0, 800), st.sampled_from(["monthly", "quarterly"]))
def test_period_grid_covers_first_to_last_with_whole_contiguous_periods(first, span, frequency):
    last = first + timedelta(days=span)
    periods = period_grid(first, last, frequency)
    assert periods[0].start <= first <= periods[0].end and periods[-1].start <= last <= periods[-1].end
    for a, b in zip(periods, periods[1:]):
        assert b.start == a.end + timedelta(days=1)
    for p in periods:
        assert p.start.day == 1 and (p.end + timedelta(days=1)).day == 1 and p.frequency == frequency
        if frequency == "monthly":
            assert p.label == f"{p.start.year}-{p.start.month:02d}" and p.start.month == p.end.month
        else:
            assert p.start.month in (1, 4, 7, 10) and p.end.month == p.start.month + 2
            assert p.label == f"{p.start.year}-Q{(p.start.month + 2) // 3}"


# -- through the warehouse: capture, publish, compare with SQL over the mirror ------------------

FX = {"USD": Decimal("1"), "EUR": Decimal("1.0850"), "JPY": Decimal("0.0067")}


def _records(book: Book, reinsurers) -> list:
    fx = [{"Currency": c, "RateDate": day(n), "UsdPerUnit": rate} for c, rate in FX.items()
          for n in range(LAST_DAY + 1)]
    out = [
        record("Reinsurers", "INSERT", [{"ReinsurerId": r, "Name": r, "CountryCode": "CH"} for r in reinsurers],
               ts_ns=ts_ns(1), txn="ref", seq=0, records_in_txn=4),
        record("Treaties", "INSERT", book.treaties, ts_ns=ts_ns(1), txn="ref", seq=1, records_in_txn=4),
        record("Participations", "INSERT", book.participations, ts_ns=ts_ns(1), txn="ref", seq=2, records_in_txn=4),
        record("FxRates", "INSERT", fx, ts_ns=ts_ns(1), txn="ref", seq=3, records_in_txn=4),
    ]
    risk = [("Policies", book.policies), ("Locations", book.locations)]
    risk = [(n, rows) for n, rows in risk if rows]
    out += [record(n, "INSERT", rows, ts_ns=ts_ns(2), txn="risk", seq=i, records_in_txn=len(risk))
            for i, (n, rows) in enumerate(risk)]
    later = [("PremiumTransactions", book.premiums), ("Claims", book.claims), ("ClaimTransactions", book.claim_txns)]
    later = [(n, rows) for n, rows in later if rows]
    out += [record(n, "INSERT", rows, ts_ns=ts_ns(3), txn="books", seq=i, records_in_txn=len(later))
            for i, (n, rows) in enumerate(later)]
    return out


def _half_away(units: str) -> str:
    """SQL: an integer count of 1e-18 units to 1e-9 units, half away from zero."""
    return f"(sign({units}) * ((abs({units}) + 500000000) // 1000000000))"


def _units(expr: str) -> str:
    return f"CAST(({expr}) * 1000000000 AS HUGEINT)"


# Each partner's share premium per currency, straight from the ledger mirror, in integer units of
# 1e-9: sums insured, fractions, ceded premium and shares computed here, not by rex.
LEDGER_SHARES_SQL = f"""
WITH si AS (
  SELECT p.PolicyId, p.TreatyId,
         coalesce(sum({_units('coalesce(l.BuildingTiv, 0)')} + {_units('coalesce(l.ContentsTiv, 0)')}
                      + {_units('coalesce(l.BiTiv, 0)')}), 0) AS s
  FROM rex_ledger.Policies p LEFT JOIN rex_ledger.Locations l ON l.PolicyId = p.PolicyId
  GROUP BY p.PolicyId, p.TreatyId
), frac AS (
  SELECT si.PolicyId, t.TreatyId,
         CASE WHEN t.TreatyType = 'QUOTA_SHARE' THEN {_units('t.CessionRate')}
              WHEN si.s <= 0 THEN CAST(0 AS HUGEINT)
              -- round half up of n / s: floor((2n + s) / 2s), all non-negative
              ELSE (2 * least(greatest(si.s - {_units('t.Retention')}, 0), t.Lines * {_units('t.Retention')})
                    * 1000000000 + si.s) // (2 * si.s) END AS f
  FROM si JOIN rex_ledger.Treaties t ON t.TreatyId = si.TreatyId
  WHERE t.TreatyType IN ('QUOTA_SHARE', 'SURPLUS')
), ceded AS (
  SELECT pt.TransactionId, pt.Currency, frac.TreatyId,
         {_half_away(_units('pt.GrossPremium') + ' * frac.f')} AS c
  FROM rex_ledger.PremiumTransactions pt JOIN frac ON frac.PolicyId = pt.PolicyId
), raw AS (
  SELECT ceded.*, pa.ReinsurerId, {_half_away('ceded.c * ' + _units('pa.SharePct'))} AS share,
         sum({_units('pa.SharePct')}) OVER w AS placed,
         row_number() OVER (PARTITION BY ceded.TransactionId, ceded.TreatyId
                            ORDER BY pa.SharePct DESC, pa.ReinsurerId) AS rank_
  FROM ceded JOIN rex_ledger.Participations pa ON pa.TreatyId = ceded.TreatyId
  WINDOW w AS (PARTITION BY ceded.TransactionId, ceded.TreatyId)
), shares AS (
  SELECT ReinsurerId, Currency,
         share + CASE WHEN placed = 1000000000 AND rank_ = 1
                      THEN c - sum(share) OVER (PARTITION BY TransactionId, TreatyId) ELSE 0 END AS units
  FROM raw
)
SELECT ReinsurerId, Currency, CAST(sum(units) AS VARCHAR), count(*) FROM shares GROUP BY ALL ORDER BY ALL
"""


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15])
def test_published_shares_equal_sql_over_the_ledger_mirror(seed, tmp_path):
    book = draw_book(RandomDraw(seed), policies=(6, 14))
    reinsurers = sorted({p["ReinsurerId"] for p in book.participations})
    write_jsonl(str(tmp_path / "changes" / "book.jsonl"), _records(book, reinsurers))
    uri = "duckdb:///" + str(tmp_path / "wh.duckdb")
    run_capture(str(tmp_path / "changes"), uri)
    treaties = [t["TreatyId"] for t in book.treaties]
    for partner in reinsurers:  # every reinsurer takes every treaty in any currency, settling in USD
        write_contract(tmp_path / "contracts", contract_doc(partner, treaties, list(CURRENCIES), settlement="USD"))
    summary = run_premium_bordereau(uri, str(tmp_path / "exports"), contracts_dir=str(tmp_path / "contracts"),
                                    as_of=date(2026, 7, 31))
    assert not any(summary.quarantined_per_partner.values())
    with open_warehouse(uri) as wh:
        expected = {(r, c): (Decimal(units).scaleb(-9), n) for r, c, units, n in wh.rows(LEDGER_SHARES_SQL)}
        got = {}
        for partner in reinsurers:
            schema = "partner_" + partner.replace("-", "_")
            exists = wh.rows("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
                             "AND table_name = 'premium_bordereau'", [schema])[0][0]
            if not exists:
                continue
            for ccy, total, n in wh.rows(f"SELECT original_currency, sum(share_premium), count(*) "
                                         f"FROM {schema}.premium_bordereau GROUP BY ALL"):
                got[(partner, ccy)] = (total, n)
            table = {(r[0]): (r[1], r[2]) for r in wh.rows(
                f"SELECT transaction_id, original_currency, share_premium FROM {schema}.premium_bordereau")}
            # the partner's files: the same rows, each rounded once to its currency (half even)
            files = glob.glob(os.path.join(str(tmp_path / "exports"), partner, "premium_bordereau", "*", "v1",
                                           "premium_bordereau.csv"))
            exported = {}
            for path in files:
                with open(path, newline="") as f:
                    for row in csv.DictReader(f):
                        exported[row["transaction_id"]] = Decimal(row["share_premium"])
            assert set(exported) == set(table), partner
            for txid, (ccy, exact) in table.items():
                places = Decimal(1).scaleb(-minor_units(ccy))
                assert exported[txid] == exact.quantize(places, rounding=ROUND_HALF_EVEN), (partner, txid)
    assert got == expected
    # and the model agrees with both
    model = defaultdict(lambda: [ZERO, 0])
    for txid, m in premium_model(book).items():
        ccy = next(p["Currency"] for p in book.premiums if p["TransactionId"] == txid)
        for reinsurer, amount in m["share"].items():
            model[(reinsurer, ccy)][0] += amount
            model[(reinsurer, ccy)][1] += 1
    assert {k: tuple(v) for k, v in model.items()} == expected
    # every control total balances, and so the run succeeds
    unbalanced = [(t["treaty_id"], t["currency"], t["period"], t["why"])
                  for t in summary.control_totals if not t["balanced"]]
    assert summary.control_totals
    assert unbalanced == []
    assert summary.succeeded, summary.message


def test_a_month_of_return_premium_on_a_partly_placed_treaty_reconciles(tmp_path):
    """Found by the test above (seed 11), written out by hand: QS1 cedes 40% and is only half
    placed (alpine-re 50%). January: a NEW premium of 1,000.00 -> ceded 400.00, alpine 200.00,
    unplaced 200.00. February: its CANCELLATION, -1,000.00 -> ceded -400.00, alpine -200.00 and
    unplaced -200.00 (the cedent keeps half of the return premium, as it kept half of the premium).
    Both months tie out exactly: ledger gross = ceded + retained, ceded = placed + unplaced."""
    def premium(txid, kind, gross, booked):
        return {"PolicyId": "A", "TransactionId": txid, "TransactionType": kind, "EffectiveDate": booked,
                "BookedDate": booked, "GrossPremium": Decimal(gross), "CommissionAmount": ZERO,
                "TaxAmount": ZERO, "Currency": "EUR"}

    qs1 = treaty_row("QS1", "QUOTA_SHARE", InceptionDate=START, ExpiryDate=date(2027, 1, 1),
                     CessionRate=Decimal("0.4"))
    write_jsonl(str(tmp_path / "changes" / "book.jsonl"), [
        record("Reinsurers", "INSERT", [{"ReinsurerId": "alpine-re", "Name": "Alpine", "CountryCode": "CH"}],
               ts_ns=ts_ns(1), txn="r", seq=0, records_in_txn=3),
        record("Treaties", "INSERT", [qs1], ts_ns=ts_ns(1), txn="r", seq=1, records_in_txn=3),
        record("Participations", "INSERT", [{"TreatyId": "QS1", "ReinsurerId": "alpine-re",
                                             "SharePct": Decimal("0.5")}],
               ts_ns=ts_ns(1), txn="r", seq=2, records_in_txn=3),
        record("Policies", "INSERT", [policy_row("A", treaty="QS1")], ts_ns=ts_ns(2), txn="p"),
        record("PremiumTransactions", "INSERT", [premium("A-1", "NEW", "1000.00", date(2026, 1, 15)),
                                                 premium("A-2", "CANCELLATION", "-1000.00", date(2026, 2, 10))],
               ts_ns=ts_ns(3), txn="pt"),
    ])
    uri = "duckdb:///" + str(tmp_path / "wh.duckdb")
    run_capture(str(tmp_path / "changes"), uri)
    write_contract(tmp_path / "contracts", contract_doc("alpine-re", ["QS1"], ["EUR"]))
    summary = run_premium_bordereau(uri, str(tmp_path / "exports"), contracts_dir=str(tmp_path / "contracts"),
                                    as_of=date(2026, 3, 31))
    totals = {t["period"]: t for t in summary.control_totals if t["treaty_id"] == "QS1"}
    got = {p: (t["ledger_gross"], t["ceded_100"], t["retained"], t["placed"], t["unplaced"])
           for p, t in totals.items()}
    assert got == {"2026-01": (Decimal("1000"), Decimal("400"), Decimal("600"), Decimal("200"), Decimal("200")),
                   "2026-02": (Decimal("-1000"), Decimal("-400"), Decimal("-600"), Decimal("-200"), Decimal("-200"))}
    assert summary.rows_per_partner == {"alpine-re": 2}
    assert [t["why"] for t in summary.control_totals] == [None] * len(summary.control_totals)
    assert summary.balanced and summary.succeeded, summary.message
