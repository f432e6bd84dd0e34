"""Planted defects, end to end: seed with --defects, capture, publish under the shipped contracts.

Every defect in the seed manifest must be quarantined under the rule the manifest expects, no
clean record may be quarantined, nothing defective may reach a partner, and the control totals
must reconcile exactly: ledger = ceded + retained + quarantined, shares = published + quarantined.
"""
from __future__ import annotations

import json
from collections import defaultdict

import pytest

from pipelines.capture import run_capture
from pipelines.premium_report import run_premium_bordereau
from pipelines.seeding import seed_files
from transforms.warehouse import open_warehouse

SEED, POLICIES, DAYS, RATE = 3, 400, 120, 0.2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("defects")
    stats = seed_files(SEED, POLICIES, DAYS, str(d / "changes"), defects=RATE)
    uri = "duckdb:///" + str(d / "wh.duckdb")
    capture = run_capture(str(d / "changes"), uri)
    import os

    os.environ.setdefault("REX_MASKING_KEY_CORAL_RE", "test-masking-key")
    summary = run_premium_bordereau(uri, str(d / "exports"))
    with open(stats["manifest"], encoding="utf-8") as f:
        manifest = json.load(f)
    with open_warehouse(uri) as wh:
        quarantine = [dict(zip(("stage", "partner", "rule", "reason", "raw"), r)) for r in wh.rows(
            "SELECT stage, partner, rule, reason, raw_record FROM rex_reports.premium_bordereau_quarantine")]
    for q in quarantine:
        q["raw"] = json.loads(q["raw"])
    return d, uri, capture, summary, manifest, quarantine


def _identity(q: dict) -> tuple[str, str]:
    raw = q["raw"]
    return raw.get("policy_id") or raw.get("PolicyId"), raw.get("transaction_id") or raw.get("TransactionId")


def test_the_manifest_holds_every_kind(run):
    manifest = run[4]
    assert all(n > 0 for n in manifest["counts"].values()), manifest["counts"]


def test_every_defect_is_quarantined_under_its_expected_rule(run):
    _d, _uri, capture, _s, manifest, quarantine = run
    assert capture.result.quarantined == 0  # the defects are valid ledger rows: capture keeps them
    by_rule = defaultdict(set)
    for q in quarantine:
        by_rule[q["rule"]].add(_identity(q))
    missed = []
    for defect in manifest["defects"]:
        hits = by_rule[defect["expected_rule"]]
        policy, txn = defect["policy_id"], defect["transaction_id"]
        if not any(p == policy and (txn is None or t == txn) for p, t in hits):
            missed.append(defect)
    assert not missed, missed[:3]


def test_no_clean_record_is_quarantined(run):
    manifest, quarantine = run[4], run[5]
    explained = defaultdict(set)  # rule -> (policy, transaction or None)
    for defect in manifest["defects"]:
        explained[defect["expected_rule"]].add((defect["policy_id"], defect["transaction_id"]))
    unexplained = []
    for q in quarantine:
        policy, txn = _identity(q)
        if (policy, txn) not in explained[q["rule"]] and (policy, None) not in explained[q["rule"]]:
            unexplained.append((q["rule"], policy, txn, q["reason"]))
    assert not unexplained, unexplained[:3]


def test_nothing_defective_reaches_a_partner(run):
    _d, uri, *_ = run
    manifest = run[4]
    defective_txns = {(d["policy_id"], d["transaction_id"]) for d in manifest["defects"]
                      if d["transaction_id"] and d["kind"] != "duplicate_transaction_id"}
    defective_policies = {d["policy_id"] for d in manifest["defects"] if d["transaction_id"] is None}
    with open_warehouse(uri) as wh:
        published = wh.rows("SELECT policy_id, transaction_id, original_currency, effective_date "
                            "FROM rex_reports.premium_bordereau WHERE publication_status = 'published'")
        for table in ("partner_alpine_re", "partner_boreal_re", "partner_coral_re"):
            names = {r[0] for r in wh.rows(f"SELECT DISTINCT original_currency FROM {table}.premium_bordereau")}
            assert "XYZ" not in names
    assert published
    for policy, txn, currency, effective in published:
        assert policy not in defective_policies and (policy, txn) not in defective_txns
        assert currency != "XYZ" and effective.year >= 2000
    # the copy of a reused transaction id is held back, its original is published
    dupes = [d for d in manifest["defects"] if d["kind"] == "duplicate_transaction_id"]
    published_ids = defaultdict(set)
    for policy, txn, _c, _e in published:
        published_ids[txn].add(policy)
    for d in dupes:
        assert d["policy_id"] not in published_ids[d["transaction_id"]]
        assert published_ids[d["transaction_id"]], "the original of a reused id stays published"


def test_control_totals_reconcile_exactly_with_the_quarantine(run):
    summary = run[3]
    assert summary.balanced and summary.succeeded, summary.message
    totals = summary.control_totals
    assert any(t["ledger_quarantined"] > 0 for t in totals)  # unknown-treaty premiums
    assert any(t["quarantined"] > 0 for t in totals)  # contract-quarantined shares
    for t in totals:
        assert t["ledger_gross"] == t["ceded_100"] + t["retained"] + t["ledger_quarantined"]
        assert t["placed"] == t["published"] + t["quarantined"]
        assert t["withheld"] == 0


def test_quarantine_rows_name_partner_rule_value_and_reason(run):
    quarantine = run[5]
    contract_rows = [q for q in quarantine if q["stage"] == "contract"]
    assert contract_rows and all(q["partner"] and q["reason"] for q in contract_rows)
    sample = next(q for q in contract_rows if q["rule"] == "premium_bordereau.original_currency.allowed_values")
    assert "'XYZ'" in sample["reason"] and sample["partner"] in sample["reason"]
    ledger_rows = [q for q in quarantine if q["stage"] == "report"]
    assert ledger_rows and all(q["partner"] is None and "not in the ledger" in q["reason"] for q in ledger_rows)


def test_rerunning_the_report_quarantines_nothing_twice(run):
    _d, uri, *_ = run
    with open_warehouse(uri) as wh:
        before = wh.rows("SELECT count(*) FROM rex_ops.quarantine")[0][0]
    again = run_premium_bordereau(uri, None)
    assert again.balanced
    with open_warehouse(uri) as wh:
        assert wh.rows("SELECT count(*) FROM rex_ops.quarantine")[0][0] == before
