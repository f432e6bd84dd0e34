"""`rex ledger seed --defects`: planted defects and the manifest that lists them.

What is checked: a zero rate changes nothing; the defects and the manifest bytes are a function
of the arguments; every kind appears in a book of a few hundred policies; each manifest entry
points at a row that carries its defect in the book's final state, and no other row carries
one; defects survive later updates of their rows (and are dropped when the book undoes them);
the defective book is still a valid mutation sequence, which Spanner (the emulator) accepts;
the parallel file writer plants the same defects as the sequential path; the CLI writes the
manifest.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import date
from decimal import Decimal

import pytest
from click.testing import CliRunner
from test_seed_book import decode_files, table_rows

from pipelines.cli import cli
from pipelines.seeding import seed_files, seed_spanner
from transforms.ledger_schema import ledger_tables
from transforms.seed_book import LedgerTransaction, Mutation, book_desks, desk_book, generate_book, replay_book
from transforms.seed_defects import (
    DEFECT_KINDS,
    KINDS,
    MANIFEST_NAME,
    OUT_OF_RANGE_DATE,
    DefectInjector,
    generate_book_with_defects,
    manifest_text,
    write_manifest,
)
from transforms.seed_files import write_book_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOK = dict(seed=3, policies=400, days=120)  # every kind appears at this size and rate
RATE = 0.2
PROPORTIONAL_PLANS = {"QS-PROP-USD", "SP-PROP-EUR", "QS-ENG-JPY"}


def meta(seed=BOOK["seed"], policies=BOOK["policies"], days=BOOK["days"], rate=RATE) -> dict:
    return {"seed": seed, "policies": policies, "days": days, "defect_rate": rate}


def plan_of(treaty_id: str | None) -> str | None:
    return treaty_id.rsplit("-", 1)[0] if treaty_id else None


def policy_tiv(final: dict) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for loc in final["Locations"].values():
        totals[loc["PolicyId"]] += loc["BuildingTiv"] + loc["ContentsTiv"] + (loc["BiTiv"] or 0)
    return totals


def inserted_at(book) -> dict[tuple, int]:
    """(PolicyId, TransactionId) of each premium transaction -> the ordinal of its transaction."""
    return {(m.row["PolicyId"], m.row["TransactionId"]): n for n, t in enumerate(book) for m in t.mutations
            if m.table == "PremiumTransactions"}


def assert_defects_are_exactly(book, defects) -> None:
    """Each manifest entry's row carries its defect in the final state, and no other row does."""
    final = replay_book(book)  # raises unless the book is a valid mutation sequence
    treaties = {key[0] for key in final["Treaties"]}
    policies, premiums = final["Policies"], final["PremiumTransactions"]
    by_kind = defaultdict(set)
    for d in defects:
        assert (d["expected_rule"], d["stage"]) == KINDS[d["kind"]]
        key = tuple(d["key"][k] for k in ledger_tables()[d["table"]].primary_key)
        assert key in final[d["table"]], d
        assert d["policy_id"] == d["key"]["PolicyId"]
        assert (d["transaction_id"] is not None) == (d["table"] == "PremiumTransactions")
        assert plan_of(policies[(d["policy_id"],)]["TreatyId"]) in PROPORTIONAL_PLANS  # yields bordereau rows
        by_kind[d["kind"]].add(key)
    assert len({d["policy_id"] for d in defects}) == len(defects)  # one defect per defective policy

    assert {k for k, p in policies.items() if p["InsuredName"] == ""} == by_kind["missing_required"]
    assert {k for k, p in policies.items()
            if p["TreatyId"] is not None and p["TreatyId"] not in treaties} == by_kind["unknown_treaty"]
    assert {k for k, pt in premiums.items() if pt["Currency"] == "XYZ"} == by_kind["unknown_currency"]
    assert {k for k, pt in premiums.items()
            if pt["EffectiveDate"] < date(2000, 1, 1)} == by_kind["date_out_of_range"]
    assert all(premiums[k]["EffectiveDate"] == OUT_OF_RANGE_DATE for k in by_kind["date_out_of_range"])

    negative = {pid for pid, tiv in policy_tiv(final).items() if tiv < 0}
    assert negative == {pid for pid, _lid in by_kind["negative_sum_insured"]}
    for key in by_kind["negative_sum_insured"]:
        assert final["Locations"][key]["BuildingTiv"] < 0

    owners = defaultdict(list)
    for pid, tid in premiums:
        owners[tid].append(pid)
    order = inserted_at(book)
    copies = set()
    for tid, pids in owners.items():
        if len(pids) > 1:
            assert len(pids) == 2, (tid, pids)
            original, copy = sorted(pids, key=lambda pid: order[(pid, tid)])
            assert order[(original, tid)] < order[(copy, tid)]
            # the same treaty plan, so the same reinsurers see both
            assert plan_of(policies[(original,)]["TreatyId"]) == plan_of(policies[(copy,)]["TreatyId"])
            copies.add((copy, tid))
    assert copies == by_kind["duplicate_transaction_id"]


@pytest.fixture(scope="module")
def defective():
    return generate_book_with_defects(rate=RATE, **BOOK)


# --- the book ------------------------------------------------------------------------------

def test_a_zero_rate_gives_exactly_the_clean_book():
    clean = list(generate_book(**BOOK))
    book, defects = generate_book_with_defects(rate=0.0, **BOOK)
    assert book == clean and defects == []
    assert list(generate_book(**BOOK, defects=0.0)) == clean
    desk = book_desks(**BOOK)[0]
    assert all(a is b for a, b in zip(DefectInjector(desk, 0.0).apply(clean), clean))


def test_every_kind_appears_and_each_entry_points_at_its_defective_row(defective):
    book, defects = defective
    assert set(Counter(d["kind"] for d in defects)) == set(DEFECT_KINDS)
    assert book != list(generate_book(**BOOK))
    assert list(generate_book(**BOOK, defects=RATE)) == book
    assert_defects_are_exactly(book, defects)


def test_defects_change_only_rows_the_manifest_names_and_nothing_else(defective):
    book, defects = defective
    clean = list(generate_book(**BOOK))
    assert len(book) == len(clean)
    named = {(d["table"], tuple(d["key"].values())) for d in defects}
    clean_ids = {d["policy_id"]: d for d in defects if d["kind"] == "duplicate_transaction_id"}
    for ours, theirs in zip(book, clean):
        assert (ours.tag, ours.day, ours.desk, len(ours.mutations)) == (theirs.tag, theirs.day, theirs.desk,
                                                                        len(theirs.mutations))
        for m, c in zip(ours.mutations, theirs.mutations):
            if m == c:
                continue
            changed = {k for k in m.row if m.row[k] != c.row[k]}
            key = tuple(m.row[k] for k in ledger_tables()[m.table].primary_key)
            if m.table == "PremiumTransactions" and changed == {"TransactionId"}:
                assert m.row["PolicyId"] in clean_ids
            else:
                assert (m.table, key) in named, (m.table, key, changed)
                assert len(changed) == 1, changed


def test_the_same_arguments_give_the_same_manifest_bytes_and_another_seed_another(tmp_path, defective):
    _book, defects = defective
    _again, same = generate_book_with_defects(rate=RATE, **BOOK)
    a = write_manifest(str(tmp_path / "a" / MANIFEST_NAME), meta(), defects)
    b = write_manifest(str(tmp_path / "b" / MANIFEST_NAME), meta(), same)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read()
    _other_book, other = generate_book_with_defects(rate=RATE, **{**BOOK, "seed": 4})
    assert manifest_text(meta(seed=4), other) != manifest_text(meta(), defects)
    assert other != defects

    with open(a, encoding="utf-8") as f:
        document = json.load(f)
    assert set(document) == {"seed", "policies", "days", "defect_rate", "defects", "counts"}
    assert (document["seed"], document["policies"], document["days"], document["defect_rate"]) == (3, 400, 120, 0.2)
    assert document["defects"] == defects
    assert document["counts"] == {k: sum(d["kind"] == k for d in defects) for k in DEFECT_KINDS}
    assert all(set(d) == {"kind", "expected_rule", "stage", "table", "key", "policy_id", "transaction_id",
                          "description"} for d in defects)
    tables = ledger_tables()
    order = [(d["kind"], d["table"], tuple(d["key"][k] for k in tables[d["table"]].primary_key)) for d in defects]
    assert order == sorted(order)


@pytest.mark.parametrize("seed", [1, 7, 11])
def test_other_books_carry_exactly_their_listed_defects(seed):
    book, defects = generate_book_with_defects(seed=seed, policies=300, days=200, rate=0.3)
    assert defects
    assert_defects_are_exactly(book, defects)


def test_the_rate_must_be_a_probability():
    desk = book_desks(**BOOK)[0]
    for rate in (-0.1, 1.5):
        with pytest.raises(ValueError, match="defect rate"):
            DefectInjector(desk, rate)


# --- defects survive the rest of the book ---------------------------------------------------

class _OneKind(DefectInjector):
    """Plants one kind wherever it applies (rate 1: on every proportional policy), to exercise
    how that kind follows its rows through renewals, cancellations and endorsements."""

    def __init__(self, desk, kind, rate=1.0):
        super().__init__(desk, rate)
        self.kind = kind

    def applicable(self, txn, plan):
        kinds = super().applicable(txn, plan)
        return [self.kind] if self.kind in kinds else kinds


def one_kind_book(kind, seed=2, policies=600, days=365, rate=1.0):
    desk = book_desks(seed, policies, days)[0]
    injector = _OneKind(desk, kind, rate)
    book = list(injector.apply(desk_book(desk)))
    return book, injector.defects()


@pytest.mark.parametrize("kind, column", [("missing_required", "InsuredName"), ("unknown_treaty", "TreatyId")])
def test_policy_defects_are_reapplied_on_every_policy_update(kind, column):
    book, defects = one_kind_book(kind)
    marked = {d["policy_id"] for d in defects if d["kind"] == kind}
    updates = [m.row for t in book for m in t.mutations
               if m.table == "Policies" and m.op == "update" and m.row["PolicyId"] in marked]
    assert len(updates) > 20 and {r["Status"] for r in updates} == {"RENEWED", "CANCELLED"}
    for row in updates:
        assert row[column] == ("" if kind == "missing_required" else plan_of(row["TreatyId"]) + "-1999")
    assert_defects_are_exactly(book, defects)


def test_a_negative_sum_insured_survives_revaluations():
    book, defects = one_kind_book("negative_sum_insured")
    carriers = {}  # policy -> its negated site, from the binds
    clean = list(generate_book(seed=2, policies=600, days=365))
    for ours, theirs in zip(book, clean):
        if ours.tag == "seed:policy-bind":
            for m, c in zip(ours.mutations, theirs.mutations):
                if m.table == "Locations" and m.row["BuildingTiv"] != c.row["BuildingTiv"]:
                    assert m.row["BuildingTiv"] == -10 * c.row["BuildingTiv"]
                    carriers[m.row["PolicyId"]] = m.row["LocationId"]
    assert len(carriers) > 50
    assert {d["policy_id"] for d in defects if d["kind"] == "negative_sum_insured"} == set(carriers)
    revalued = 0
    for ours, theirs in zip(book, clean):
        for m, c in zip(ours.mutations, theirs.mutations):
            if m.table == "Locations" and m.op == "update" and carriers.get(m.row["PolicyId"]) == m.row["LocationId"]:
                assert m.row["BuildingTiv"] == -10 * c.row["BuildingTiv"]
                revalued += 1
    assert revalued > 5
    assert_defects_are_exactly(book, defects)


def negated_carrier(later):
    """A short desk stream up to its first negative_sum_insured binding, then the transactions
    `later(policy_id, site)` books on that policy: (the injected stream, its defects)."""
    desk = book_desks(1, 50, 30)[0]
    injector = _OneKind(desk, "negative_sum_insured")
    out = []
    for txn in injector.apply(desk_book(desk)):
        out.append(txn)
        if injector.negated:
            break
    (policy_id, location_id), = injector.negated
    site = next(m.row for m in out[-1].mutations if m.table == "Locations")
    extra = [LedgerTransaction("seed:policy-endorse", muts, out[-1].day + 1, 0) for muts in later(policy_id, site)]
    out += injector.apply(extra)
    replay_book(out)
    return out, injector.defects()


def test_a_negative_sum_insured_is_dropped_when_its_site_is_removed_or_outweighed():
    def add(site, n, building):
        return Mutation("Locations", "insert", {**site, "LocationId": f"{site['LocationId']}-{n}",
                                                "BuildingTiv": building})

    def small_addition(pid, site):
        return [(add(site, 1, Decimal(1)),)]

    def big_addition(pid, site):
        return [(add(site, 1, -100 * site["BuildingTiv"]),)]

    def removal(pid, site):
        return [(add(site, 1, Decimal(1)),), (Mutation("Locations", "delete", {"PolicyId": pid,
                                                                                "LocationId": site["LocationId"]}),)]

    book, defects = negated_carrier(small_addition)
    kept, = [d["policy_id"] for d in defects if d["kind"] == "negative_sum_insured"]
    assert policy_tiv(replay_book(book))[kept] < 0
    for later in (big_addition, removal):
        book, defects = negated_carrier(later)
        assert "negative_sum_insured" not in {d["kind"] for d in defects}
        assert all(tiv >= 0 for tiv in policy_tiv(replay_book(book)).values())


def test_a_duplicate_reuses_each_original_once():
    book, defects = one_kind_book("duplicate_transaction_id", policies=300, days=120, rate=0.5)
    dups = [d for d in defects if d["kind"] == "duplicate_transaction_id"]
    assert len(dups) > 40
    assert_defects_are_exactly(book, defects)


# --- the writers ----------------------------------------------------------------------------

def test_parallel_desks_plant_the_defects_of_the_sequential_book(tmp_path):
    args = dict(seed=5, policies=240, days=90)
    stats = write_book_files(*args.values(), str(tmp_path / "parallel"), workers=2, desk_policies=60, defects=RATE)
    book, defects = generate_book_with_defects(**args, rate=RATE, desk_policies=60)
    assert len({t.desk for t in book}) == 4
    assert stats["defects"] == defects and len(defects) > 10
    assert len({(int(d["policy_id"][2:]) - 1) // 60 for d in defects}) > 1  # from several desks
    assert stats["transactions"] == len(book)
    assert decode_files(tmp_path / "parallel") == replay_book(book)
    assert_defects_are_exactly(book, defects)

    one = write_book_files(*args.values(), str(tmp_path / "one"), workers=1, desk_policies=60, defects=RATE)
    assert one["defects"] == defects
    clean = write_book_files(*args.values(), str(tmp_path / "clean"), workers=2, desk_policies=60)
    assert "defects" not in clean


def test_seed_files_writes_the_manifest_beside_the_records(tmp_path):
    stats = seed_files(BOOK["seed"], BOOK["policies"], BOOK["days"], str(tmp_path / "book"), defects=RATE)
    path = tmp_path / "book" / MANIFEST_NAME
    assert stats["manifest"] == str(path)
    with open(path, encoding="utf-8") as f:
        assert f.read() == manifest_text(meta(), generate_book_with_defects(rate=RATE, **BOOK)[1])
    assert decode_files(tmp_path / "book") == replay_book(generate_book(**BOOK, defects=RATE))

    elsewhere = tmp_path / "elsewhere" / "m.json"
    stats = seed_files(1, 50, 30, str(tmp_path / "book2"), defects=RATE, manifest=str(elsewhere))
    assert stats["manifest"] == str(elsewhere) and elsewhere.exists()
    assert not (tmp_path / "book2" / MANIFEST_NAME).exists()
    stats = seed_files(1, 50, 30, str(tmp_path / "book3"))
    assert "manifest" not in stats and not (tmp_path / "book3" / MANIFEST_NAME).exists()


def test_spanner_accepts_the_defective_book(ledger_db, tmp_path):
    path, database = ledger_db
    args = dict(seed=3, policies=120, days=60)
    manifest = tmp_path / MANIFEST_NAME
    stats = seed_spanner(*args.values(), str(path), defects=0.3, manifest=str(manifest))
    book, defects = generate_book_with_defects(**args, rate=0.3)
    assert stats["defects"] == defects and stats["manifest"] == str(manifest)
    assert {d["kind"] for d in defects} >= {"missing_required", "duplicate_transaction_id", "unknown_currency"}
    with open(manifest, encoding="utf-8") as f:
        assert f.read() == manifest_text(meta(3, 120, 60, 0.3), defects)
    assert table_rows(database) == replay_book(book)


# --- the command line -----------------------------------------------------------------------

def test_the_cli_seeds_files_with_defects_and_writes_the_manifest(tmp_path):
    out = tmp_path / "book"
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "ledger", "seed", "--seed", "3", "--policies", "200",
         "--days", "60", "--files", str(out), "--defects", "0.2"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with open(out / MANIFEST_NAME, encoding="utf-8") as f:
        document = json.load(f)
    assert document["defect_rate"] == 0.2 and document["defects"]
    assert f"{len(document['defects'])} defects injected → {out / MANIFEST_NAME}" in done.stdout
    assert document["defects"] == generate_book_with_defects(seed=3, policies=200, days=60, rate=0.2)[1]


def test_the_cli_checks_the_rate_and_documents_it(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(cli, ["ledger", "seed", "--files", str(tmp_path / "x"), "--defects", "1.5"])
    assert bad.exit_code == 2 and "--defects" in bad.output
    helped = runner.invoke(cli, ["ledger", "seed", "--help"])
    assert "--defects RATE" in helped.output and "--manifest PATH" in helped.output
    clean = runner.invoke(cli, ["ledger", "seed", "--files", str(tmp_path / "y"), "--policies", "20",
                                "--days", "10"])
    assert clean.exit_code == 0, clean.output
    assert "defects injected" not in clean.output and not (tmp_path / "y" / MANIFEST_NAME).exists()
