"""Realistic defects planted in a seeded book, and the manifest that lists them (`--defects`).

An end-to-end test seeds a book with defects, captures it and builds the reports, then checks
that every defect in `seed-manifest.json` is caught by the rule named there and that no clean
record is. So defects go only where a rule can see them: into policies ceded to a quota-share
or surplus treaty (only those yield premium bordereau rows), one defect per chosen policy,
planted in its bind transaction and kept through the policy's later full-row updates.

Why it works this way:
* The injector rewrites a desk's transactions after the simulator booked them, so everything
  else (amounts, ids, the simulator's random draws) is exactly the clean book's.
* Its draws come from a stream of its own per desk (book seed, desk index, a fixed label), so
  the defects do not depend on how many processes write the desks.
* Spanner must still accept the book: an empty InsuredName, not NULL (the column is NOT NULL),
  and a TransactionId reused only under another policy (the key is (PolicyId, TransactionId)).
"""
from __future__ import annotations

import heapq
import json
import os
import random
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Iterable, Iterator

from transforms.ledger_schema import ledger_tables
from transforms.seed_book import (
    DESK_POLICIES,
    BookDesk,
    LedgerTransaction,
    Mutation,
    _BookSimulator,
    _derived_seed,
    book_desks,
    desk_book,
)

# kind -> (the rule expected to catch it, the stage that rule runs in)
KINDS: dict[str, tuple[str, str]] = {
    "missing_required": ("premium_bordereau.insured_name.required", "contract"),
    "unknown_currency": ("premium_bordereau.original_currency.allowed_values", "contract"),
    "negative_sum_insured": ("premium_bordereau.sum_insured.minimum", "contract"),
    "duplicate_transaction_id": ("premium_bordereau.transaction_id.unique", "contract"),
    "date_out_of_range": ("premium_bordereau.effective_date.minimum", "contract"),
    "unknown_treaty": ("ledger.policies.treaty_exists", "report"),
}
DEFECT_KINDS = tuple(KINDS)
PROPORTIONAL = ("QUOTA_SHARE", "SURPLUS")
UNKNOWN_CURRENCY = "XYZ"
OUT_OF_RANGE_DATE = date(1999, 12, 31)
MANIFEST_NAME = "seed-manifest.json"
BIND_TAG = "seed:policy-bind"


@dataclass(frozen=True)
class Defect:
    kind: str
    table: str
    key: tuple[tuple[str, str], ...]  # the defective row's primary key, (column, value as text)
    policy_id: str  # the policy whose bordereau rows are affected
    transaction_id: str | None  # set for PremiumTransactions defects
    description: str

    def as_dict(self) -> dict:
        rule, stage = KINDS[self.kind]
        return {"kind": self.kind, "expected_rule": rule, "stage": stage, "table": self.table,
                "key": dict(self.key), "policy_id": self.policy_id, "transaction_id": self.transaction_id,
                "description": self.description}


def proportional_treaties(desk: BookDesk) -> dict[str, str]:
    """TreatyId -> plan code (e.g. QS-PROP-USD) of the desk's quota-share and surplus treaties.

    Built from the desk's own reference data, since only desk 0 yields that transaction."""
    reference = _BookSimulator(desk).reference_data()
    return {m.row["TreatyId"]: m.row["TreatyId"].rsplit("-", 1)[0] for m in reference.mutations
            if m.table == "Treaties" and m.row["TreatyType"] in PROPORTIONAL}


def _site_tiv(row: dict) -> Decimal:
    return row["BuildingTiv"] + row["ContentsTiv"] + (row["BiTiv"] or 0)


def _negated(row: dict) -> dict:
    """The negative_sum_insured site: BuildingTiv negated and tenfold, so the total is negative."""
    return {**row, "BuildingTiv": -10 * abs(row["BuildingTiv"])}


def _find(txn: LedgerTransaction, table: str, op: str = "insert") -> list[int]:
    return [i for i, m in enumerate(txn.mutations) if m.table == table and m.op == op]


def _with_row(txn: LedgerTransaction, index: int, row: dict) -> LedgerTransaction:
    """The transaction with one mutation's row replaced (same day, desk and tag)."""
    muts = list(txn.mutations)
    muts[index] = Mutation(muts[index].table, muts[index].op, row)
    return replace(txn, mutations=tuple(muts))


class DefectInjector:
    """Plants defects into one desk's transactions as they stream past, and lists them.

    `apply(book)` yields the defective transactions; `defects()` lists what it planted once
    the book has been consumed (a defect the rest of the book undid is left out)."""

    def __init__(self, desk: BookDesk, rate: float):
        if not 0 <= rate <= 1:
            raise ValueError(f"the defect rate must lie in [0, 1], not {rate}")
        self.desk, self.rate = desk, rate
        self.random = random.Random(_derived_seed("defects", desk.seed, desk.index)).random
        self.plans = proportional_treaties(desk)
        self.bad_year = min(1999, desk.start_date.year - 1)  # treaties start in the book's first year
        self.found: dict[str, Defect] = {}  # PolicyId -> its one defect
        self.on_policy: dict[str, tuple[str, object]] = {}  # PolicyId -> (column, defective value)
        self.negated: set[tuple[str, str]] = set()  # (PolicyId, LocationId) of negated sites
        self.sites: dict[str, dict[str, Decimal]] = {}  # negated policy -> LocationId -> current TIV
        self.clean: dict[str, str] = {}  # clean proportional policy -> its treaty plan
        self.earlier: dict[str, list[tuple[str, str]]] = {}  # plan -> unused (PolicyId, TransactionId)

    # -- streaming ------------------------------------------------------------------------------
    def apply(self, book: Iterable[LedgerTransaction]) -> Iterator[LedgerTransaction]:
        if self.rate <= 0:
            yield from book
            return
        for txn in book:
            txn = self.bind(txn) if txn.tag == BIND_TAG else self.follow(txn)
            self.remember(txn)
            yield txn

    def remember(self, txn: LedgerTransaction) -> None:
        """Premium transactions of clean proportional policies: ids a later duplicate may reuse."""
        for m in txn.mutations:
            if m.table == "PremiumTransactions" and (plan := self.clean.get(m.row["PolicyId"])):
                self.earlier.setdefault(plan, []).append((m.row["PolicyId"], m.row["TransactionId"]))

    def bind(self, txn: LedgerTransaction) -> LedgerTransaction:
        """A proportional policy's binding becomes a defect carrier with probability `rate`."""
        policy = txn.mutations[_find(txn, "Policies")[0]].row
        plan = self.plans.get(policy["TreatyId"])
        if plan is None:
            return txn
        if self.random() >= self.rate:
            self.clean[policy["PolicyId"]] = plan
            return txn
        kinds = self.applicable(txn, plan)
        kind = kinds[int(self.random() * len(kinds))]
        return getattr(self, kind)(txn, policy["PolicyId"], plan)

    def applicable(self, txn: LedgerTransaction, plan: str) -> list[str]:
        """The kinds this binding can carry: a negative sum insured needs a one-site policy; a
        duplicate id needs an earlier premium of a clean policy under the same treaty plan
        (same reinsurers, so every partner who sees the copy also sees the original)."""
        kinds = list(DEFECT_KINDS)
        if len(_find(txn, "Locations")) != 1:
            kinds.remove("negative_sum_insured")
        if not self.earlier.get(plan):
            kinds.remove("duplicate_transaction_id")
        return kinds

    def follow(self, txn: LedgerTransaction) -> LedgerTransaction:
        """Re-apply defects to later full-row updates of defective rows; forget deleted ones."""
        if not (self.on_policy or self.sites):
            return txn
        for i, m in enumerate(txn.mutations):
            if m.table == "Policies" and m.op == "update" and m.row["PolicyId"] in self.on_policy:
                column, value = self.on_policy[m.row["PolicyId"]]
                txn = _with_row(txn, i, {**m.row, column: value})
            elif m.table == "Locations" and m.row["PolicyId"] in self.sites:
                txn = self.follow_site(txn, i, m)
        return txn

    def follow_site(self, txn: LedgerTransaction, i: int, m: Mutation) -> LedgerTransaction:
        """Keep the negated site negated and the policy's current TIV per site up to date."""
        policy_id, location_id = m.row["PolicyId"], m.row["LocationId"]
        if m.op == "delete":
            if (policy_id, location_id) in self.negated:  # the defective row is gone
                self.negated.discard((policy_id, location_id))
                del self.sites[policy_id], self.found[policy_id]
            else:
                self.sites[policy_id].pop(location_id, None)
            return txn
        row = m.row
        if (policy_id, location_id) in self.negated:
            row = _negated(row)
            txn = _with_row(txn, i, row)
        self.sites[policy_id][location_id] = _site_tiv(row)
        return txn

    def defects(self) -> list[dict]:
        """The defects planted, as manifest entries in manifest order. A negated site whose
        policy gained sites worth more than it lost no longer makes the total negative: left out."""
        return sort_defects(d.as_dict() for policy_id, d in self.found.items()
                            if d.kind != "negative_sum_insured" or sum(self.sites[policy_id].values()) < 0)

    # -- the kinds ------------------------------------------------------------------------------
    def _record(self, kind: str, table: str, row: dict, description: str) -> None:
        key = tuple((k, str(row[k])) for k in ledger_tables()[table].primary_key)
        txn_id = row["TransactionId"] if table == "PremiumTransactions" else None
        self.found[row["PolicyId"]] = Defect(kind, table, key, row["PolicyId"], txn_id, description)

    def _policy_defect(self, txn, kind: str, column: str, value, description: str) -> LedgerTransaction:
        i = _find(txn, "Policies")[0]
        row = {**txn.mutations[i].row, column: value}
        self.on_policy[row["PolicyId"]] = (column, value)
        self._record(kind, "Policies", row, description)
        return _with_row(txn, i, row)

    def _premium_defect(self, txn, kind: str, column: str, value, description: str) -> LedgerTransaction:
        i = _find(txn, "PremiumTransactions")[0]
        row = {**txn.mutations[i].row, column: value}
        self._record(kind, "PremiumTransactions", row, description.format(**row))
        return _with_row(txn, i, row)

    def missing_required(self, txn, policy_id: str, plan: str) -> LedgerTransaction:
        return self._policy_defect(txn, "missing_required", "InsuredName", "",
                                   f"Policy {policy_id} has an empty InsuredName, a required bordereau column.")

    def unknown_treaty(self, txn, policy_id: str, plan: str) -> LedgerTransaction:
        bad = f"{plan}-{self.bad_year}"
        return self._policy_defect(txn, "unknown_treaty", "TreatyId", bad,
                                   f"Policy {policy_id} names treaty {bad}, which does not exist "
                                   f"(a {plan} treaty of the book's years was meant).")

    def unknown_currency(self, txn, policy_id: str, plan: str) -> LedgerTransaction:
        return self._premium_defect(txn, "unknown_currency", "Currency", UNKNOWN_CURRENCY,
                                    "Premium transaction {TransactionId} of policy {PolicyId} is booked in "
                                    f"{UNKNOWN_CURRENCY}, which is not an ISO 4217 currency.")

    def date_out_of_range(self, txn, policy_id: str, plan: str) -> LedgerTransaction:
        return self._premium_defect(txn, "date_out_of_range", "EffectiveDate", OUT_OF_RANGE_DATE,
                                    "Premium transaction {TransactionId} of policy {PolicyId} takes effect on "
                                    f"{OUT_OF_RANGE_DATE.isoformat()}, before any date a bordereau accepts.")

    def duplicate_transaction_id(self, txn, policy_id: str, plan: str) -> LedgerTransaction:
        pool = self.earlier[plan]
        j = int(self.random() * len(pool))
        pool[j], pool[-1] = pool[-1], pool[j]
        original_policy, original_id = pool.pop()  # each original is copied once at most
        return self._premium_defect(txn, "duplicate_transaction_id", "TransactionId", original_id,
                                    "Premium transaction {TransactionId} of policy {PolicyId} reuses the id of "
                                    f"an earlier premium transaction of policy {original_policy}.")

    def negative_sum_insured(self, txn, policy_id: str, plan: str) -> LedgerTransaction:
        i = _find(txn, "Locations")[0]
        row = _negated(txn.mutations[i].row)
        self.negated.add((policy_id, row["LocationId"]))
        self.sites[policy_id] = {row["LocationId"]: _site_tiv(row)}
        self._record("negative_sum_insured", "Locations", row,
                     f"Location {row['LocationId']}, the only site of policy {policy_id} when bound, has its "
                     "BuildingTiv negated and tenfold, so the policy's sum insured is negative.")
        return _with_row(txn, i, row)


# ---------------------------------------------------------------------------------------------
# Whole books and the manifest
# ---------------------------------------------------------------------------------------------

def defective_book(seed: int, policies: int, days: int, rate: float, start_date: date = date(2026, 1, 1),
                   desk_policies: int = DESK_POLICIES) -> tuple[Iterator[LedgerTransaction], list[DefectInjector]]:
    """`generate_book` with defects, streamed; read the injectors' `defects()` once it is consumed."""
    desks = book_desks(seed, policies, days, start_date, desk_policies)
    injectors = [DefectInjector(desk, rate) for desk in desks]
    streams = [inj.apply(desk_book(desk)) for inj, desk in zip(injectors, desks)]
    book = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda t: (t.day, t.desk))
    return book, injectors


def generate_book_with_defects(seed: int, policies: int, days: int, rate: float,
                               start_date: date = date(2026, 1, 1),
                               desk_policies: int = DESK_POLICIES) -> tuple[list[LedgerTransaction], list[dict]]:
    """The defective book as a list, and its manifest entries."""
    book, injectors = defective_book(seed, policies, days, rate, start_date, desk_policies)
    book = list(book)
    return book, merge_defects(inj.defects() for inj in injectors)


def sort_defects(defects: Iterable[dict]) -> list[dict]:
    """Manifest order: by kind, table and primary key."""
    tables = ledger_tables()
    return sorted(defects, key=lambda d: (d["kind"], d["table"],
                                          tuple(d["key"][k] for k in tables[d["table"]].primary_key)))


def merge_defects(parts: Iterable[list[dict]]) -> list[dict]:
    """The desks' defect lists as one, in manifest order (desks never share a policy)."""
    return sort_defects(d for part in parts for d in part)


def manifest_text(meta: dict, defects: list[dict]) -> str:
    """The manifest: `meta` (seed, policies, days, defect_rate), the defects and their counts
    per kind (every kind, zeros too); sorted keys, so the same book gives the same bytes."""
    counts = {kind: 0 for kind in DEFECT_KINDS}
    for d in defects:
        counts[d["kind"]] += 1
    document = {**meta, "defects": sort_defects(defects), "counts": counts}
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_manifest(path: str, meta: dict, defects: list[dict]) -> str:
    """Write the manifest as UTF-8 to `path` (its folder is created); return the path."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(manifest_text(meta, defects))
    return path
