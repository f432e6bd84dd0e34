"""`rex contracts lint`: the shipped contracts are clean; every lint rule catches its own defect.

The corpus below holds, for every rule id contracts/lint.py can report, at least one broken
contract (a mutation of a shipped one) with the field path the problem must point at and a
word its message must contain. `test_every_lint_rule_has_a_corpus_case` reads the rule ids out
of lint.py, so a new rule without a case here fails.
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from types import SimpleNamespace
from typing import Callable

import pytest
import yaml
from click.testing import CliRunner

import contracts.lint as lint_module
from contracts.lint import LedgerFacts, ledger_facts, lint_paths
from contracts.model import PARTNERS_DIR, contract_files, load_contract, read_yaml
from pipelines.capture import run_capture
from pipelines.contracts_cli import contracts
from pipelines.seeding import seed_files
from transforms.errors import RexError

SHIPPED = ("alpine-re", "boreal-re", "coral-re", "meridian-re", "sakura-re")


# -- writing contracts --------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    """Dumps the Decimals `read_yaml` produces back as YAML floats (read again as Decimals)."""


def _represent_decimal(dumper, value: Decimal):
    if value.is_nan():
        text = ".nan"
    elif value.is_infinite():
        text = "-.inf" if value < 0 else ".inf"
    else:
        text = str(value)
    return dumper.represent_scalar("tag:yaml.org,2002:float", text)


_Dumper.add_representer(Decimal, _represent_decimal)


def base_doc(partner: str) -> dict:
    doc, _lines = read_yaml(os.path.join(PARTNERS_DIR, f"{partner}.yaml"))
    return copy.deepcopy(doc)


def write_contract(directory, stem: str, doc_or_text) -> str:
    path = os.path.join(str(directory), f"{stem}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        if isinstance(doc_or_text, str):
            f.write(doc_or_text)
        else:
            yaml.dump(doc_or_text, f, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    return path


# -- finding things in a contract document ------------------------------------------------------

def _index(items: list, key: str, value) -> int:
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get(key) == value:
            return i
    raise KeyError(f"no item with {key}={value!r}")


def term(doc: dict, name: str, section: str = "customProperties") -> dict:
    return doc[section][_index(doc[section], "property", name)]


def report_index(doc: dict, kind: str) -> int:
    return _index(doc["schema"], "name", kind)


def prop(doc: dict, kind: str, physical: str) -> dict:
    props = doc["schema"][report_index(doc, kind)]["properties"]
    return props[_index(props, "physicalName", physical)]


def quality(doc: dict, kind: str, rule_id: str) -> dict:
    rules = doc["schema"][report_index(doc, kind)]["quality"]
    return rules[_index(rules, "id", rule_id)]


# expected field paths, computed from the unmutated document (so a reordered contract still works)
def term_path(name: str, *rest, section: str = "customProperties") -> Callable[[dict], str]:
    def path(doc):
        tail = "".join(f"[{r}]" if isinstance(r, int) else f".{r}" for r in rest)
        return f"{section}[{_index(doc[section], 'property', name)}].value{tail}"
    return path


def prop_path(kind: str, physical: str, *rest) -> Callable[[dict], str]:
    def path(doc):
        r = report_index(doc, kind)
        i = _index(doc["schema"][r]["properties"], "physicalName", physical)
        tail = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in rest)
        return f"schema[{r}].properties[{i}]{tail}"
    return path


def quality_path(kind: str, rule_id: str, *rest) -> Callable[[dict], str]:
    def path(doc):
        r = report_index(doc, kind)
        j = _index(doc["schema"][r]["quality"], "id", rule_id)
        tail = "".join(f".{x}" for x in rest)
        return f"schema[{r}].quality[{j}]{tail}"
    return path


def fixed(text: str) -> Callable[[dict], str]:
    return lambda _doc: text


# -- mutations ------------------------------------------------------------------------------------

def set_term(name: str, value, section: str = "customProperties"):
    def mutate(doc):
        term(doc, name, section)["value"] = value
    return mutate


def set_prop(kind: str, physical: str, **fields):
    def mutate(doc):
        p = prop(doc, kind, physical)
        for key, value in fields.items():
            if value is _DELETE:
                p.pop(key, None)
            else:
                p[key] = value
    return mutate


def set_options(kind: str, physical: str, **options):
    def mutate(doc):
        prop(doc, kind, physical).setdefault("logicalTypeOptions", {}).update(options)
    return mutate


def set_quality(kind: str, rule_id: str, **fields):
    def mutate(doc):
        q = quality(doc, kind, rule_id)
        for key, value in fields.items():
            if value is _DELETE:
                q.pop(key, None)
            else:
                q[key] = value
    return mutate


_DELETE = object()


def copy_name_of_first_column(doc):
    props = doc["schema"][0]["properties"]
    props[1]["name"] = props[0]["name"]


def copy_physical_name_of_first_column(doc):
    props = doc["schema"][0]["properties"]
    props[1]["physicalName"] = props[0]["physicalName"]


def declare_premium_twice(doc):
    doc["schema"].append(copy.deepcopy(doc["schema"][0]))


def add_treaty(pattern: str):
    def mutate(doc):
        term(doc, "coveredTreaties")["value"].append(pattern)
    return mutate


def rename_partner(new_id: str):
    def mutate(doc):
        term(doc, "partnerId")["value"] = new_id
    return mutate


def set_masking_entry(index: int, **fields):
    def mutate(doc):
        entry = term(doc, "masking")["value"][index]
        for key, value in fields.items():
            if value is _DELETE:
                entry.pop(key, None)
            else:
                entry[key] = value
    return mutate


def scalar_then_bad_method(doc):
    """A scalar entry first: the problems of the entries after it keep their own index."""
    entries = term(doc, "masking")["value"]
    entries.insert(0, "insured_name")
    entries[2]["method"] = "md5"


def add_property_key(kind: str, physical: str, key: str, value):
    def mutate(doc):
        prop(doc, kind, physical)[key] = value
    return mutate


# -- the corpus -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    rule: str
    partner: str  # the shipped contract mutated
    mutate: Callable[[dict], object]  # edits the loaded YAML dict in place; a str return is the file text
    path: Callable[[dict], str]  # the problem's field path must contain this
    mentions: str  # ... and its message this
    stem: str | None = None  # the file name, if not the partner's
    ledger: bool = False  # checked against the captured ledger's facts


PREMIUM, CLAIMS, EXPOSURE = "premium_bordereau", "claims_bordereau", "exposure"

CORPUS = [
    # 1. ODCS v3 schema
    Case("odcs_unexpected_key", "odcs_schema", "alpine-re",
         add_property_key(PREMIUM, "agreement_number", "colour", "red"),
         prop_path(PREMIUM, "agreement_number"), "'colour'"),
    Case("odcs_wrong_type", "odcs_schema", "alpine-re",
         set_prop(PREMIUM, "agreement_number", required="yes"),
         prop_path(PREMIUM, "agreement_number", "required"), "'yes'"),
    # 2. rex terms
    Case("partner_not_file_name", "partner_id", "alpine-re", rename_partner("alpine-reinsurance"),
         term_path("partnerId"), "alpine-reinsurance"),
    Case("partner_missing", "partner_id", "alpine-re", set_term("partnerId", ""),
         term_path("partnerId"), "partnerId"),
    Case("partner_not_a_string", "partner_id", "alpine-re", set_term("partnerId", ["alpine-re"]),
         term_path("partnerId"), "partnerId"),
    Case("partner_not_a_reinsurer", "partner_id", "alpine-re", rename_partner("zeta-re"),
         term_path("partnerId"), "zeta-re is not a reinsurer", stem="zeta-re", ledger=True),
    Case("version_not_semantic", "contract_version", "alpine-re", lambda doc: doc.update(version="1.0"),
         fixed("version"), "version '1.0'"),
    Case("treaties_empty", "covered_treaties", "alpine-re", set_term("coveredTreaties", []),
         term_path("coveredTreaties"), "coveredTreaties"),
    Case("treaty_not_in_ledger", "covered_treaties", "alpine-re", add_treaty("QS-NONE-XYZ-*"),
         term_path("coveredTreaties", 3), "treaty QS-NONE-XYZ-* is not in the ledger", ledger=True),
    Case("treaty_without_participation", "covered_treaties", "coral-re", add_treaty("QS-ENG-JPY-*"),
         term_path("coveredTreaties", 2), "coral-re has no participation in treaty QS-ENG-JPY-*", ledger=True),
    Case("settlement_currency", "currency_code", "alpine-re", set_term("settlementCurrency", "EURO"),
         term_path("settlementCurrency"), "settlementCurrency 'EURO'"),
    Case("settlement_currency_not_a_string", "currency_code", "alpine-re", set_term("settlementCurrency", ["EUR"]),
         term_path("settlementCurrency"), "settlementCurrency"),
    Case("enum_currency", "currency_code", "alpine-re",
         lambda doc: prop(doc, PREMIUM, "original_currency")["enum"].append({"value": "EUX"}),
         prop_path(PREMIUM, "original_currency", "enum", 3, "value"), "Original Currency: 'EUX'"),
    Case("fx_rate_date", "fx_rate_date", "alpine-re", set_term("fxRateDate", "trade_date"),
         term_path("fxRateDate"), "fxRateDate 'trade_date'"),
    Case("rounding", "rounding_mode", "alpine-re", set_term("rounding", "bankers"),
         term_path("rounding"), "rounding 'bankers'"),
    Case("late_changes", "late_changes", "coral-re", set_term("lateChanges", "ignore"),
         term_path("lateChanges"), "lateChanges 'ignore'"),
    Case("export_format_unknown", "export_format", "coral-re", set_term("exportFormats", ["xlsx", "json"]),
         term_path("exportFormats", 1), "export format 'json'"),
    Case("export_formats_empty", "export_format", "alpine-re", set_term("exportFormats", []),
         term_path("exportFormats"), "exportFormats"),
    Case("sla_frequency", "sla", "alpine-re", set_term("frequency", "weekly", section="slaProperties"),
         term_path("frequency", section="slaProperties"), "frequency 'weekly'"),
    Case("sla_cut_off", "sla", "alpine-re", set_term("cutOff", "month_end", section="slaProperties"),
         term_path("cutOff", section="slaProperties"), "cutOff 'month_end'"),
    Case("sla_grace_negative", "sla", "coral-re", set_term("gracePeriod", -1, section="slaProperties"),
         term_path("gracePeriod", section="slaProperties"), "gracePeriod -1"),
    Case("sla_time_of_availability", "sla", "alpine-re", set_term("timeOfAvailability", "6am", section="slaProperties"),
         term_path("timeOfAvailability", section="slaProperties"), "timeOfAvailability '6am'"),
    Case("masking_unknown_column", "masking", "coral-re", set_masking_entry(0, column="insured_nickname"),
         term_path("masking", 0, "column"), "masking names insured_nickname"),
    Case("masking_method", "masking", "coral-re", set_masking_entry(1, method="md5"),
         term_path("masking", 1, "method"), "masking method 'md5'"),
    Case("masking_key_env", "masking", "coral-re", set_masking_entry(0, keyEnv=_DELETE),
         term_path("masking", 0, "keyEnv"), "keyEnv"),
    Case("masking_entry_not_a_mapping", "masking", "coral-re",
         lambda doc: term(doc, "masking")["value"].insert(0, "insured_name"),
         term_path("masking", 0), "masking entry 'insured_name'"),
    Case("masking_entry_after_a_scalar", "masking", "coral-re", scalar_then_bad_method,
         term_path("masking", 2, "method"), "masking method 'md5'"),
    Case("masking_not_a_list", "masking", "alpine-re", set_term("masking", "insured_name"),
         term_path("masking"), "masking must be a list"),
    # 3. reports and columns
    Case("unknown_report", "unknown_report", "alpine-re", lambda doc: doc["schema"][1].update(name="claims"),
         fixed("schema[1].name"), "'claims' is not a rex report"),
    Case("no_report", "unknown_report", "alpine-re", lambda doc: doc.update(schema=[]),
         fixed("schema"), "declares no report"),
    Case("report_declared_twice", "duplicate_report", "alpine-re", declare_premium_twice,
         fixed("schema[2].name"), "'premium_bordereau' is declared twice"),
    Case("duplicate_export_name", "duplicate_column", "alpine-re", copy_name_of_first_column,
         fixed("schema[0].properties[1].name"), "column 'Unique Market Reference (UMR)' appears twice"),
    Case("duplicate_physical_name", "duplicate_column", "coral-re", copy_physical_name_of_first_column,
         fixed("schema[0].properties[1].physicalName"), "physicalName 'treaty_id' appears twice"),
    Case("physical_name", "physical_name", "alpine-re", set_prop(PREMIUM, "agreement_number", physicalName="Agreement No."),
         prop_path(PREMIUM, "agreement_number", "physicalName"), "physicalName 'Agreement No.'"),
    Case("unknown_column", "unknown_column", "alpine-re", set_prop(PREMIUM, "agreement_number", transformLogic="agreement_no"),
         prop_path(PREMIUM, "agreement_number", "transformLogic"), "transformLogic 'agreement_no'"),
    Case("unknown_column_not_a_string", "unknown_column", "coral-re",
         set_prop(PREMIUM, "insured_name", transformLogic=["insured_name"]),
         prop_path(PREMIUM, "insured_name", "transformLogic"), "transformLogic ['insured_name']"),
    Case("logical_type_mismatch", "type_mismatch", "alpine-re", set_prop(PREMIUM, "signed_line", logicalType="integer",
                                                                          physicalType="INT64"),
         prop_path(PREMIUM, "signed_line", "logicalType"), "Signed Line %: logicalType 'integer'"),
    Case("physical_type_mismatch", "type_mismatch", "coral-re", set_prop(EXPOSURE, "location_count", physicalType="NUMERIC"),
         prop_path(EXPOSURE, "location_count", "physicalType"), "location_count: physicalType NUMERIC"),
    Case("enum_value_type", "enum_values", "alpine-re",
         lambda doc: prop(doc, PREMIUM, "class_of_business")["enum"].append({"value": 5}),
         prop_path(PREMIUM, "class_of_business", "enum", 2, "value"), "Class of Business: allowed value 5"),
    Case("range_empty", "range", "alpine-re", set_options(PREMIUM, "commission_percent", minimum=Decimal("0.5"),
                                                          maximum=Decimal("0.25")),
         prop_path(PREMIUM, "commission_percent", "logicalTypeOptions"), "Commission %: the range is empty"),
    Case("range_bad_date", "range", "alpine-re", set_options(PREMIUM, "date_booked", minimum="2000-13-01"),
         prop_path(PREMIUM, "date_booked", "logicalTypeOptions", "minimum"), "Date Booked: minimum '2000-13-01'"),
    Case("range_nan", "range", "alpine-re", set_options(PREMIUM, "sum_insured_amount", minimum=Decimal("NaN")),
         prop_path(PREMIUM, "sum_insured_amount", "logicalTypeOptions", "minimum"), "Sum Insured Amount: minimum"),
    Case("range_on_a_string", "range", "alpine-re", set_options(PREMIUM, "agreement_number", maximum=9),
         prop_path(PREMIUM, "agreement_number", "logicalTypeOptions", "maximum"), "Agreement Number: a string column"),
    Case("length_range_empty", "range", "coral-re", set_options(PREMIUM, "policy_number", minLength=10, maxLength=5),
         prop_path(PREMIUM, "policy_number", "logicalTypeOptions"), "policy_number: minLength is above maxLength"),
    Case("pattern_does_not_compile", "pattern", "alpine-re", set_options(PREMIUM, "insured_country", pattern="^[A-Z{2}$"),
         prop_path(PREMIUM, "insured_country", "logicalTypeOptions", "pattern"), "Insured Country: pattern does not compile"),
    Case("pattern_not_a_string", "pattern", "coral-re", set_options(PREMIUM, "risk_country", pattern=5),
         prop_path(PREMIUM, "risk_country", "logicalTypeOptions", "pattern"), "risk_country: pattern 5"),
    Case("quality_unknown_column", "quality_rule", "alpine-re",
         set_quality(PREMIUM, "premium_one_row_per_transaction",
                     arguments={"properties": ["transaction_ref", "agreement_number"]}),
         quality_path(PREMIUM, "premium_one_row_per_transaction", "arguments", "properties"),
         "premium_one_row_per_transaction names 'transaction_ref'"),
    Case("quality_sql_without_table", "quality_rule", "alpine-re",
         set_quality(PREMIUM, "premium_net_ties_out", query="SELECT count(*) FROM premium_bordereau"),
         quality_path(PREMIUM, "premium_net_ties_out", "query"), "premium_net_ties_out: the query must read ${table}"),
    Case("quality_sql_not_a_select", "quality_rule", "coral-re",
         set_quality(CLAIMS, "claims_incurred_ties_out", query="DELETE FROM ${table}"),
         quality_path(CLAIMS, "claims_incurred_ties_out", "query"), "claims_incurred_ties_out: the query must be one SELECT"),
    Case("quality_sql_query_not_a_string", "quality_rule", "alpine-re",
         set_quality(PREMIUM, "premium_net_ties_out", query=5),
         quality_path(PREMIUM, "premium_net_ties_out", "query"), "premium_net_ties_out"),
    Case("quality_without_operator", "quality_rule", "alpine-re",
         set_quality(CLAIMS, "claims_one_row_per_claim_and_period", mustBe=_DELETE),
         quality_path(CLAIMS, "claims_one_row_per_claim_and_period"), "has no mustBe"),
    Case("quality_invalid_values_without_values", "quality_rule", "coral-re",
         lambda doc: prop(doc, PREMIUM, "transaction_type").setdefault("quality", []).append(
             {"id": "known_transaction_types", "type": "library", "metric": "invalidValues", "mustBe": 0}),
         prop_path(PREMIUM, "transaction_type", "quality", 0, "arguments"),
         "known_transaction_types: invalidValues needs validValues or pattern"),
    # the file itself
    Case("yaml_syntax", "yaml", "alpine-re", lambda doc: "apiVersion: v3.1.0\nschema: [unclosed\n",
         fixed("(document)"), "not valid YAML"),
    Case("yaml_not_a_mapping", "yaml", "alpine-re", lambda doc: "- a list\n- not a contract\n",
         fixed("(document)"), "a contract is a YAML mapping"),
]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    """A real captured warehouse: a small seeded book mirrored into DuckDB, and its facts."""
    root = tmp_path_factory.mktemp("ledger")
    changes = str(root / "changes")
    seed_files(11, 25, 15, changes)
    uri = "duckdb:///" + str(root / "wh.duckdb")
    run_capture(changes, uri)
    facts = ledger_facts(uri)
    assert isinstance(facts, LedgerFacts)
    return SimpleNamespace(uri=uri, facts=facts)


# -- the shipped contracts ------------------------------------------------------------------------

def test_the_five_shipped_contracts_are_clean_without_a_ledger():
    files = contract_files()
    assert [os.path.basename(f) for f in files] == [f"{p}.yaml" for p in SHIPPED]
    assert lint_paths(files) == []


def test_the_five_shipped_contracts_are_clean_against_the_ledger(ledger):
    facts = ledger.facts
    assert set(SHIPPED) <= facts.reinsurers
    for partner in SHIPPED:  # the facts are rich enough to have checked something
        contract = load_contract(os.path.join(PARTNERS_DIR, f"{partner}.yaml"))
        assert any(contract.covers(t) and (t, partner) in facts.participations for t in facts.treaties), partner
    assert lint_paths(contract_files(), facts) == []


# -- the corpus --------------------------------------------------------------------------------------

def _rules_in_lint_source() -> set[str]:
    """Rule ids as contracts/lint.py passes them to self.add(...), LintProblem(...) and _choice(...)."""
    with open(lint_module.__file__, encoding="utf-8") as f:
        source = f.read()
    # self.add(path, "rule", reason) / LintProblem(file, line, path, "rule", reason): the rule is the
    # snake_case literal argument followed by the reason (a string, an f-string or str(...))
    rules = set(re.findall(r'(?:self\.add|LintProblem)\(.*?,\s*"([a-z][a-z0-9_]*)",\s*(?:f?"|str\()', source, re.S))
    # self._choice(term, value, allowed, "rule")
    rules |= set(re.findall(r'self\._choice\([^()]*"([a-z][a-z0-9_]*)"\)', source))
    return rules


def test_every_lint_rule_has_a_corpus_case():
    rules = _rules_in_lint_source()
    # the parse itself must work: rules from each way lint.py reports one
    assert {"odcs_schema", "partner_id", "fx_rate_date", "rounding_mode", "late_changes", "yaml",
            "quality_rule", "pattern"} <= rules, rules
    covered = {case.rule for case in CORPUS}
    assert rules - covered == set(), f"lint rules without a corpus case: {sorted(rules - covered)}"
    assert covered - rules == set(), f"corpus cases for rules lint.py does not have: {sorted(covered - rules)}"


def test_corpus_case_ids_are_unique():
    ids = [case.id for case in CORPUS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_broken_contract_is_reported_under_its_rule(case: Case, tmp_path, request):
    doc = base_doc(case.partner)
    expected_path = case.path(copy.deepcopy(doc))
    text = case.mutate(doc)
    path = write_contract(tmp_path, case.stem or case.partner, text if isinstance(text, str) else doc)
    facts = request.getfixturevalue("ledger").facts if case.ledger else None

    problems = lint_paths([path], facts)

    hits = [p for p in problems if p.rule == case.rule and expected_path in p.path]
    assert hits, f"no [{case.rule}] problem at {expected_path}; got:\n" + "\n".join(map(str, problems))
    assert any(case.mentions in p.reason for p in hits), "\n".join(map(str, hits))
    for p in hits:
        assert p.severity == "error"
        assert p.file == path
        assert str(p).startswith(f"{path}:") and str(p).endswith(f"[{case.rule}]")
        if case.id != "yaml_not_a_mapping":
            assert isinstance(p.line, int) and p.line >= 1, p


def test_ledger_cases_pass_without_the_ledger(tmp_path):
    """The ledger rules fire only given facts: without them the same files are clean of those rules."""
    for case in [c for c in CORPUS if c.ledger]:
        doc = base_doc(case.partner)
        case.mutate(doc)
        path = write_contract(tmp_path, case.stem or case.partner, doc)
        assert [p for p in lint_paths([path]) if p.rule == case.rule] == [], case.id


def test_problem_lines_point_at_the_field(tmp_path):
    doc = base_doc("alpine-re")
    set_term("settlementCurrency", "EURO")(doc)
    path = write_contract(tmp_path, "alpine-re", doc)
    [problem] = lint_paths([path])
    with open(path, encoding="utf-8") as f:
        line = f.read().splitlines()[problem.line - 1]
    assert "EURO" in line


def test_a_yaml_error_keeps_its_line(tmp_path):
    path = write_contract(tmp_path, "alpine-re", "apiVersion: v3.1.0\nkind: DataContract\nschema: [unclosed\n")
    [problem] = lint_paths([path])
    assert problem.rule == "yaml" and problem.line in (3, 4), problem


def test_a_missing_file_is_one_problem(tmp_path):
    missing = str(tmp_path / "nobody-re.yaml")
    [problem] = lint_paths([missing])
    assert (problem.rule, problem.file, problem.path) == ("yaml", missing, "(document)")
    assert "No such file" in problem.reason


def test_two_contracts_for_one_partner(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_contract(tmp_path / "a", "alpine-re", base_doc("alpine-re"))
    second = write_contract(tmp_path / "b", "alpine-re", base_doc("alpine-re"))
    problems = lint_paths([first, second])
    assert len(problems) == 1, problems
    [p] = problems
    assert p.rule == "partner_id" and p.file == second and p.path == "customProperties[0].value"
    assert f"alpine-re already has a contract in {first}" in p.reason


# -- the command ------------------------------------------------------------------------------------

def _invoke(args):
    return CliRunner().invoke(contracts, args)


def test_cli_lint_shipped_contracts_without_a_warehouse(tmp_path):
    wh = tmp_path / "none.duckdb"
    result = _invoke(["lint", "--warehouse", f"duckdb:///{wh}"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines() == ["5 contract(s), 0 problem(s)"]
    assert "treaties and partners were not checked against a ledger" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not wh.exists()  # linting never creates a warehouse


def test_cli_lint_relative_warehouse_uri_is_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke(["lint"])  # default duckdb:///rex.duckdb, relative to the working folder
    assert result.exit_code == 0, result.output
    assert "not checked against a ledger" in result.stderr
    assert not (tmp_path / "rex.duckdb").exists()


def test_cli_lint_against_the_ledger(ledger):
    result = _invoke(["lint", PARTNERS_DIR, "--warehouse", ledger.uri])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines() == ["5 contract(s), 0 problem(s)"]
    assert result.stderr == ""


def test_cli_lint_checks_partners_against_the_ledger(ledger, tmp_path):
    doc = base_doc("coral-re")
    add_treaty("QS-ENG-JPY-*")(doc)
    path = write_contract(tmp_path, "coral-re", doc)
    without = _invoke(["lint", path, "--warehouse", f"duckdb:///{tmp_path / 'none.duckdb'}"])
    assert without.exit_code == 0, without.output
    result = _invoke(["lint", path, "--warehouse", ledger.uri])
    assert result.exit_code == 1
    assert "coral-re has no participation in treaty QS-ENG-JPY-* [covered_treaties]" in result.stdout


def test_cli_lint_a_broken_file(tmp_path):
    doc = base_doc("alpine-re")
    set_term("settlementCurrency", "EURO")(doc)
    path = write_contract(tmp_path, "alpine-re", doc)
    [problem] = lint_paths([path])
    result = _invoke(["lint", path, "--warehouse", f"duckdb:///{tmp_path / 'none.duckdb'}"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [str(problem), "1 contract(s), 1 problem(s)"]
    assert str(problem).startswith(f"{path}:{problem.line}: customProperties[3].value: settlementCurrency 'EURO'")


def test_cli_lint_a_folder(tmp_path):
    write_contract(tmp_path, "alpine-re", base_doc("alpine-re"))
    doc = base_doc("boreal-re")
    set_term("rounding", "bankers")(doc)
    broken = write_contract(tmp_path, "boreal-re", doc)
    (tmp_path / "notes.txt").write_text("not a contract")
    result = _invoke(["lint", str(tmp_path), "--warehouse", f"duckdb:///{tmp_path / 'none.duckdb'}"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[-1] == "2 contract(s), 1 problem(s)"
    assert lines[0].startswith(f"{broken}:") and lines[0].endswith("[rounding_mode]")


def test_cli_lint_a_missing_path(tmp_path):
    result = _invoke(["lint", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert isinstance(result.exception, RexError)
    assert "nope.yaml does not exist" in str(result.exception)


def test_cli_lint_through_rex_main(tmp_path, monkeypatch, capsys):
    """As `rex contracts lint` runs: problems exit 1 (not swallowed by standalone_mode=False), errors are one line."""
    from pipelines import cli as rex_cli

    monkeypatch.setitem(rex_cli.cli.commands, "contracts", contracts)
    doc = base_doc("alpine-re")
    set_term("lateChanges", "ignore")(doc)
    path = write_contract(tmp_path, "alpine-re", doc)
    with pytest.raises(SystemExit) as exit_info:
        rex_cli.main(["contracts", "lint", path, "--warehouse", f"duckdb:///{tmp_path / 'none.duckdb'}"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "lateChanges 'ignore' is not one of next_period, restate [late_changes]" in out

    with pytest.raises(SystemExit) as exit_info:
        rex_cli.main(["contracts", "lint", str(tmp_path / "nope")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rex: ") and "does not exist" in err[0]

    rex_cli.main(["contracts", "lint", "--warehouse", f"duckdb:///{tmp_path / 'none.duckdb'}"])  # clean: returns
    assert "5 contract(s), 0 problem(s)" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["empty_duckdb", "not_duckdb", "bigquery", "memory"])
def test_cli_lint_with_a_warehouse_that_holds_no_ledger(tmp_path, kind):
    import duckdb

    path = tmp_path / "wh.duckdb"
    if kind == "empty_duckdb":
        duckdb.connect(str(path)).close()
        uri, why = f"duckdb:///{path}", "holds no ledger yet"
    elif kind == "not_duckdb":
        path.write_text("not a database")
        uri, why = f"duckdb:///{path}", "cannot open warehouse"
    elif kind == "bigquery":
        uri, why = "bigquery://some-project", "BigQuery"
    else:
        uri, why = "duckdb:///:memory:", "in-memory"
    result = _invoke(["lint", "--warehouse", uri])
    assert result.exit_code == 0, result.output
    [note] = result.stderr.strip().splitlines()
    assert "treaties and partners were not checked against a ledger" in note and why in note, note
    assert result.stdout.strip().splitlines() == ["5 contract(s), 0 problem(s)"]
