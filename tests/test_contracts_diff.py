"""`rex contracts diff OLD NEW`: every kind of change, classified breaking or not.

Each case mutates a shipped contract (loaded as a dict, written back as YAML) and names a change
the diff must list (a substring of its text) and whether that change is breaking. A case
whose change is not breaking must leave the whole diff free of breaking changes.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

import pytest
from click.testing import CliRunner

from contracts.diff import Change, diff_contracts
from contracts.model import PARTNERS_DIR, load_contract
from pipelines.contracts_cli import contracts
from test_contracts_lint import (  # the corpus helpers: load, mutate, write a contract
    _DELETE,
    add_treaty,
    base_doc,
    prop,
    quality,
    set_options,
    set_prop,
    set_quality,
    set_term,
    term,
    write_contract,
)
from transforms.errors import RexError

PREMIUM, CLAIMS, EXPOSURE = "premium_bordereau", "claims_bordereau", "exposure"


def shipped(partner: str) -> str:
    return os.path.join(PARTNERS_DIR, f"{partner}.yaml")


# -- mutations --------------------------------------------------------------------------------------

def remove_column(kind: str, physical: str):
    def mutate(doc):
        props = doc["schema"][_report(doc, kind)]["properties"]
        props.remove(prop(doc, kind, physical))
    return mutate


def add_column(kind: str, column: dict):
    def mutate(doc):
        doc["schema"][_report(doc, kind)]["properties"].append(copy.deepcopy(column))
    return mutate


def insert_column(kind: str, column: dict, at: int):
    def mutate(doc):
        doc["schema"][_report(doc, kind)]["properties"].insert(at, copy.deepcopy(column))
    return mutate


def swap_first_columns(kind: str):
    def mutate(doc):
        props = doc["schema"][_report(doc, kind)]["properties"]
        props[0], props[1] = props[1], props[0]
    return mutate


def edit_enum(kind: str, physical: str, drop=(), add=()):
    def mutate(doc):
        p = prop(doc, kind, physical)
        p["enum"] = [e for e in p["enum"] if e["value"] not in drop] + [{"value": v} for v in add]
    return mutate


def drop_option(kind: str, physical: str, option: str):
    def mutate(doc):
        prop(doc, kind, physical)["logicalTypeOptions"].pop(option)
    return mutate


def remove_report(kind: str):
    def mutate(doc):
        doc["schema"].pop(_report(doc, kind))
    return mutate


def add_report_from(partner: str, kind: str):
    def mutate(doc):
        other = base_doc(partner)
        doc["schema"].append(other["schema"][_report(other, kind)])
    return mutate


def remove_treaty(pattern: str):
    def mutate(doc):
        term(doc, "coveredTreaties")["value"].remove(pattern)
    return mutate


def add_quality(kind: str, rule: dict):
    def mutate(doc):
        doc["schema"][_report(doc, kind)]["quality"].append(dict(rule))
    return mutate


def remove_quality(kind: str, *rule_ids: str):
    def mutate(doc):
        rules = doc["schema"][_report(doc, kind)]["quality"]
        for rule_id in rule_ids:
            rules.remove(quality(doc, kind, rule_id))
    return mutate


def _report(doc: dict, kind: str) -> int:
    return next(i for i, s in enumerate(doc["schema"]) if s["name"] == kind)


def both(*mutations):
    def mutate(doc):
        for m in mutations:
            m(doc)
    return mutate


TAX_100 = {"name": "Tax 100%", "physicalName": "tax_100", "transformLogic": "tax_100", "logicalType": "number",
           "physicalType": "NUMERIC"}
MASK_INSURED = {"column": "insured_name", "method": "hmac_sha256", "keyEnv": "REX_MASKING_KEY_ALPINE_RE"}
POSITIVE_SUM_INSURED = {"id": "premium_sum_insured_positive", "type": "sql", "mustBe": 0,
                        "query": "SELECT count(*) FROM ${table} WHERE sum_insured_amount <= 0"}


# -- the cases ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    partner: str
    mutate: Callable[[dict], None]
    expected: str  # a substring of the change's text ("BREAKING  where: what" / "ok        where: what")
    breaking: bool


P = f"schema[{PREMIUM}]"
C = f"schema[{CLAIMS}]"

CASES = [
    # columns
    Case("column_removed", "alpine-re", remove_column(PREMIUM, "commission_amount"),
         f"{P}.commission_amount: column removed", True),
    Case("column_renamed_in_exports", "alpine-re", set_prop(PREMIUM, "agreement_number", name="Agreement No"),
         f"{P}.agreement_number: renamed in exports: 'Agreement Number' -> 'Agreement No'", True),
    Case("column_renamed_physically", "alpine-re", set_prop(PREMIUM, "agreement_number", physicalName="agreement_no"),
         f"{P}.agreement_number: renamed to agreement_no ('Agreement Number')", True),
    Case("column_resourced", "boreal-re", set_prop(PREMIUM, "share_premium", transformLogic="share_net_premium"),
         f"{P}.share_premium: now carries share_net_premium instead of share_premium", True),
    Case("type_narrowed", "alpine-re", set_prop(PREMIUM, "signed_line", logicalType="integer"),
         f"{P}.signed_line: logicalType number -> integer (narrowed or incompatible)", True),
    Case("physical_type_narrowed", "boreal-re", set_prop(PREMIUM, "share_pct", physicalType="INT64"),
         f"{P}.share_pct: physicalType NUMERIC -> INT64", True),
    Case("type_widened", "coral-re", set_prop(EXPOSURE, "location_count", logicalType="number", physicalType="NUMERIC"),
         "schema[exposure].location_count: logicalType integer -> number (widened)", False),
    Case("new_required_column", "alpine-re", add_column(PREMIUM, dict(TAX_100, required=True)),
         f"{P}.tax_100: new required column", True),
    Case("new_optional_column", "alpine-re", add_column(PREMIUM, TAX_100),
         f"{P}.tax_100: new optional column", False),
    Case("new_optional_column_in_the_middle", "alpine-re", insert_column(PREMIUM, TAX_100, 2),
         f"{P}.tax_100: new optional column (moves the columns after it)", True),
    Case("made_required", "alpine-re", set_prop(CLAIMS, "catastrophe_code", required=True),
         f"{C}.catastrophe_code: now required", True),
    Case("no_longer_required", "alpine-re", set_prop(PREMIUM, "agreement_number", required=False),
         f"{P}.agreement_number: no longer required", False),
    Case("made_unique", "boreal-re", set_prop(PREMIUM, "policy_number", unique=True),
         f"{P}.policy_number: now unique", True),
    Case("no_longer_unique", "boreal-re", set_prop(PREMIUM, "transaction_id", unique=_DELETE),
         f"{P}.transaction_id: no longer unique", False),
    Case("enum_value_removed", "alpine-re", edit_enum(PREMIUM, "transaction_type", drop=("CANCELLATION",)),
         f"{P}.transaction_type: values no longer allowed: ['CANCELLATION']", True),
    Case("enum_value_added", "alpine-re", edit_enum(PREMIUM, "class_of_business", add=("ENERGY",)),
         f"{P}.class_of_business: values now allowed: ['ENERGY']", False),
    Case("enum_lifted", "boreal-re", set_prop(PREMIUM, "line_of_business", enum=_DELETE),
         f"{P}.line_of_business: allowed values lifted", False),
    Case("enum_introduced", "boreal-re", set_prop(PREMIUM, "risk_country", enum=[{"value": "US"}, {"value": "GB"}]),
         f"{P}.risk_country: values now limited to ['US', 'GB']", True),
    Case("minimum_raised", "alpine-re", set_options(PREMIUM, "sum_insured_amount", minimum=1),
         f"{P}.sum_insured_amount: lower bound >= 0 -> >= 1", True),
    Case("minimum_lowered", "alpine-re", set_options(PREMIUM, "commission_percent", minimum=-1),
         f"{P}.commission_percent: lower bound >= 0 -> >= -1", False),
    Case("exclusive_minimum_relaxed", "boreal-re",
         both(drop_option(PREMIUM, "share_pct", "exclusiveMinimum"), set_options(PREMIUM, "share_pct", minimum=0)),
         f"{P}.share_pct: lower bound > 0 -> >= 0", False),
    Case("minimum_made_exclusive", "boreal-re",
         both(drop_option(PREMIUM, "ceded_fraction", "minimum"), set_options(PREMIUM, "ceded_fraction", exclusiveMinimum=0)),
         f"{P}.ceded_fraction: lower bound >= 0 -> > 0", True),
    Case("maximum_lowered", "alpine-re", set_options(PREMIUM, "commission_percent", maximum=Decimal("0.5")),
         f"{P}.commission_percent: upper bound <= 1 -> <= 0.5", True),
    Case("maximum_raised", "alpine-re", set_options(PREMIUM, "commission_percent", maximum=2),
         f"{P}.commission_percent: upper bound <= 1 -> <= 2", False),
    Case("new_maximum", "alpine-re", set_options(PREMIUM, "sum_insured_amount", maximum=10**12),
         f"{P}.sum_insured_amount: new upper bound <= 1000000000000", True),
    Case("minimum_removed", "alpine-re", drop_option(PREMIUM, "sum_insured_amount", "minimum"),
         f"{P}.sum_insured_amount: lower bound >= 0 removed", False),
    Case("date_minimum_raised", "alpine-re", set_options(PREMIUM, "date_booked", minimum="2020-01-01"),
         f"{P}.date_booked: lower bound >= 2000-01-01 -> >= 2020-01-01", True),
    Case("new_pattern", "alpine-re", set_options(PREMIUM, "agreement_number", pattern="^[A-Z]{2}-"),
         f"{P}.agreement_number: pattern None -> '^[A-Z]{{2}}-'", True),
    Case("pattern_changed", "boreal-re", set_options(PREMIUM, "period", pattern="^[0-9]{4}-(0[1-9]|1[0-2])$"),
         f"{P}.period: pattern '^[0-9]{{4}}-Q[1-4]$' -> ", True),
    Case("pattern_removed", "alpine-re", drop_option(PREMIUM, "unique_market_reference", "pattern"),
         f"{P}.unique_market_reference: pattern removed", False),
    Case("max_length_lowered", "boreal-re", set_options(PREMIUM, "policy_number", maxLength=16),
         f"{P}.policy_number: maxLength 32 -> 16", True),
    Case("min_length_removed", "boreal-re", drop_option(PREMIUM, "insured_name", "minLength"),
         f"{P}.insured_name: minLength 1 -> None", False),
    Case("columns_reordered", "alpine-re", swap_first_columns(PREMIUM),
         f"{P}: columns reordered", True),
    # terms and SLA
    Case("rounding_changed", "alpine-re", set_term("rounding", "half_even"), "rounding: 'half_up' -> 'half_even'", True),
    Case("settlement_currency_changed", "alpine-re", set_term("settlementCurrency", "USD"),
         "settlementCurrency: 'EUR' -> 'USD'", True),
    Case("frequency_changed", "alpine-re", set_term("frequency", "quarterly", section="slaProperties"),
         "frequency: 'monthly' -> 'quarterly'", True),
    Case("frequency_changed_quarterly_to_monthly", "boreal-re", set_term("frequency", "monthly", section="slaProperties"),
         "frequency: 'quarterly' -> 'monthly'", True),
    Case("fx_rate_date_changed", "alpine-re", set_term("fxRateDate", "period_end"),
         "fxRateDate: 'booked_date' -> 'period_end'", True),
    Case("late_changes_changed", "alpine-re", set_term("lateChanges", "restate"),
         "lateChanges: 'next_period' -> 'restate'", True),
    Case("partner_changed", "boreal-re", set_term("partnerId", "boreal-re-uk"), "partnerId: 'boreal-re' -> 'boreal-re-uk'", True),
    Case("export_format_added", "alpine-re", set_term("exportFormats", ["csv", "xlsx"]), "exportFormats: format xlsx added", False),
    Case("export_format_dropped", "coral-re", set_term("exportFormats", ["xlsx"]), "exportFormats: format csv dropped", True),
    Case("grace_period_changed", "alpine-re", set_term("gracePeriod", 7, section="slaProperties"), "gracePeriod: 5 -> 7", False),
    Case("time_of_availability_changed", "boreal-re", set_term("timeOfAvailability", "09:00", section="slaProperties"),
         "timeOfAvailability: '08:00' -> '09:00'", False),
    Case("masking_added", "alpine-re", set_term("masking", [MASK_INSURED]),
         "masking: insured_name now masked with hmac_sha256 (key REX_MASKING_KEY_ALPINE_RE)", True),
    Case("masking_removed", "coral-re",
         lambda doc: term(doc, "masking")["value"].pop(1),
         "masking: AccName no longer masked with hmac_sha256", True),
    Case("treaty_added", "alpine-re", add_treaty("XL-PROP-GBP-*"), "coveredTreaties: treaty XL-PROP-GBP-* added", False),
    Case("treaty_removed", "alpine-re", remove_treaty("QS-ENG-JPY-*"), "coveredTreaties: treaty QS-ENG-JPY-* dropped", True),
    # reports and quality
    Case("report_removed", "alpine-re", remove_report(CLAIMS), f"{C}: report removed", True),
    Case("report_added", "alpine-re", add_report_from("coral-re", EXPOSURE), "schema[exposure]: report added", False),
    Case("quality_rule_added", "alpine-re", add_quality(PREMIUM, POSITIVE_SUM_INSURED),
         f"{P}.quality[premium_sum_insured_positive]: quality rule added (stricter)", True),
    Case("quality_rule_removed", "alpine-re", remove_quality(PREMIUM, "premium_one_row_per_transaction"),
         f"{P}.quality[premium_one_row_per_transaction]: quality rule removed", False),
    Case("quality_rule_changed", "boreal-re", set_quality(CLAIMS, "claims_incurred_ties_out", mustBeLessThan=5, mustBe=_DELETE),
         f"{C}.quality[claims_incurred_ties_out]: quality rule changed", True),
]


def _write(tmp_path, partner: str, mutate, version: str | None = None, name: str = "new") -> str:
    doc = base_doc(partner)
    mutate(doc)
    if version is not None:
        doc["version"] = version
    (tmp_path / name).mkdir(exist_ok=True)
    return write_contract(tmp_path / name, partner, doc)


def _changes(tmp_path, partner: str, mutate, version: str | None = None) -> list[Change]:
    return diff_contracts(load_contract(shipped(partner)), load_contract(_write(tmp_path, partner, mutate, version)))


def test_case_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_change_is_listed_and_classified(case: Case, tmp_path):
    changes = _changes(tmp_path, case.partner, case.mutate)
    text = "\n".join(map(str, changes))
    hits = [c for c in changes if case.expected in str(c)]
    assert hits, f"no change {case.expected!r} in:\n{text}"
    assert all(c.breaking is case.breaking for c in hits), text
    assert all(str(c).startswith("BREAKING  " if case.breaking else "ok        ") for c in hits)
    # the version stayed the shipped one: a breaking change asks for a new major version, anything else notes it
    v = load_contract(shipped(case.partner)).version
    version = [c for c in changes if c.where == "version"]
    if case.breaking:
        assert [c.what for c in version] == [f"{v} -> {v}: breaking changes need a new major version"]
        assert version[0].breaking
    else:
        assert [c for c in changes if c.breaking] == [], text
        assert [(c.what, c.breaking) for c in version] == [(f"still {v} although the contract changed", False)]


def test_identical_contracts_have_no_changes():
    for partner in ("alpine-re", "boreal-re", "coral-re"):
        assert diff_contracts(load_contract(shipped(partner)), load_contract(shipped(partner))) == []


def test_a_rewritten_but_equal_contract_has_no_changes(tmp_path):
    assert _changes(tmp_path, "coral-re", lambda doc: None) == []


BREAKING_EDIT = remove_column(PREMIUM, "commission_amount")
NEW_MAJOR = "breaking changes need a new major version"


@pytest.mark.parametrize("version, asks_for_major", [  # the shipped alpine-re is 2.0.0
    ("2.0.0", True), ("2.1.0", True), ("2.0.1", True), ("1.9.0", True), ("draft", True),
    ("3.0.0", False), ("4.0.0", False),
])
def test_breaking_changes_need_a_new_major_version(tmp_path, version, asks_for_major):
    changes = _changes(tmp_path, "alpine-re", BREAKING_EDIT, version)
    flagged = [c for c in changes if NEW_MAJOR in c.what]
    assert bool(flagged) is asks_for_major, "\n".join(map(str, changes))
    assert all(c.breaking and c.where == "version" for c in flagged)
    assert any(c.what == "column removed" and c.breaking for c in changes)  # the change itself is still breaking
    if not asks_for_major:
        assert [c for c in changes if c.where == "version"] == []


def test_a_non_breaking_change_with_a_minor_bump_is_clean(tmp_path):
    changes = _changes(tmp_path, "alpine-re", add_treaty("XL-PROP-GBP-*"), "1.1.0")
    assert [(c.where, c.what, c.breaking) for c in changes] == [
        ("coveredTreaties", "treaty XL-PROP-GBP-* added", False)]


def test_removed_quality_rules_are_listed_in_a_stable_order(tmp_path):
    changes = _changes(tmp_path, "boreal-re", both(
        remove_quality(PREMIUM, "premium_one_row_per_transaction", "premium_net_ties_out")), "1.1.0")
    removed = [c.where for c in changes if c.what == "quality rule removed"]
    assert removed == [f"{P}.quality[premium_net_ties_out]", f"{P}.quality[premium_one_row_per_transaction]"]


@pytest.mark.parametrize("mutate, expected", [
    (set_prop(PREMIUM, "signed_line", logicalType=["number"]), "logicalType number -> ['number']"),
    (set_prop(PREMIUM, "signed_line", physicalType=["NUMERIC"]), "physicalType NUMERIC -> ['NUMERIC']"),
    (set_options(PREMIUM, "sum_insured_amount", minimum="zero"), "lower bound changed (not comparable)"),
    (set_options(PREMIUM, "date_booked", minimum=5), "lower bound changed (not comparable)"),
    (set_options(PREMIUM, "sum_insured_amount", minimum=Decimal("NaN")), "lower bound changed (not comparable)"),
    (lambda doc: term(doc, "masking").update(value=[dict(MASK_INSURED, keyEnv=["A"])]), "insured_name now masked"),
], ids=["logical_type_list", "physical_type_list", "bound_not_a_number", "date_bound_a_number", "bound_nan",
        "key_env_list"])
def test_odd_values_are_a_breaking_change_not_a_crash(tmp_path, mutate, expected):
    for reverse in (False, True):
        old, new = load_contract(shipped("alpine-re")), load_contract(_write(tmp_path, "alpine-re", mutate))
        changes = diff_contracts(new, old) if reverse else diff_contracts(old, new)
        assert any(c.breaking for c in changes), changes
        if not reverse:
            assert any(expected in str(c) and c.breaking for c in changes), "\n".join(map(str, changes))


def test_an_unchanged_odd_bound_is_no_change(tmp_path):
    odd = set_options(PREMIUM, "sum_insured_amount", minimum=Decimal("NaN"))
    a = load_contract(_write(tmp_path, "alpine-re", odd, name="a"))
    b = load_contract(_write(tmp_path, "alpine-re", odd, name="b"))
    assert diff_contracts(a, b) == []


# -- the command -------------------------------------------------------------------------------------

def _invoke(args):
    return CliRunner().invoke(contracts, args)


def test_cli_diff_breaking_exits_1(tmp_path):
    new = _write(tmp_path, "alpine-re", set_term("rounding", "half_even"))
    changes = diff_contracts(load_contract(shipped("alpine-re")), load_contract(new))
    result = _invoke(["diff", shipped("alpine-re"), new])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [str(c) for c in changes] + ["2 change(s), 2 breaking"]
    assert result.stdout.splitlines()[0] == "BREAKING  rounding: 'half_up' -> 'half_even'"


def test_cli_diff_non_breaking_exits_0(tmp_path):
    new = _write(tmp_path, "alpine-re", set_term("gracePeriod", 7, section="slaProperties"), "1.0.1")
    result = _invoke(["diff", shipped("alpine-re"), new])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["ok        gracePeriod: 5 -> 7", "1 change(s), 0 breaking"]


def test_cli_diff_identical_exits_0():
    result = _invoke(["diff", shipped("boreal-re"), shipped("boreal-re")])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["no changes"]


def test_cli_diff_a_missing_file(tmp_path):
    result = _invoke(["diff", shipped("boreal-re"), str(tmp_path / "gone.yaml")])
    assert result.exit_code == 1
    assert isinstance(result.exception, RexError)
    assert "gone.yaml" in str(result.exception)


def test_cli_diff_through_rex_main(tmp_path, monkeypatch, capsys):
    from pipelines import cli as rex_cli

    monkeypatch.setitem(rex_cli.cli.commands, "contracts", contracts)
    new = _write(tmp_path, "boreal-re", remove_report(CLAIMS), "3.0.0")
    with pytest.raises(SystemExit) as exit_info:
        rex_cli.main(["contracts", "diff", shipped("boreal-re"), new])
    assert exit_info.value.code == 1
    assert capsys.readouterr().out.splitlines() == [f"BREAKING  {C}: report removed", "1 change(s), 1 breaking"]
    with pytest.raises(SystemExit) as exit_info:
        rex_cli.main(["contracts", "diff", shipped("boreal-re"), str(tmp_path / "gone.yaml")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rex: cannot read contract")


def test_the_settlement_columns_of_version_2_were_a_breaking_change_with_a_major_bump():
    """The contracts went 1.0.0 -> 2.0.0 when rex started settling in the partner's currency."""
    import os

    old = os.path.join(os.path.dirname(__file__), "fixtures", "contracts-v1", "alpine-re.yaml")
    changes = diff_contracts(load_contract(old), load_contract(shipped("alpine-re")))
    added = [c for c in changes if c.what.startswith("new required column")]
    assert {c.where.split(".")[-1] for c in added} >= {"settlement_currency", "rate_of_exchange",
                                                        "final_net_premium_settlement_currency"}
    assert all(c.breaking for c in added)
    assert not [c for c in changes if c.where == "version"]  # 1.0.0 -> 2.0.0: the major moved
