"""Partner contracts for tests, derived from a shipped one (boreal-re: snake_case = rex's names)."""
from __future__ import annotations

import copy
import os
from decimal import Decimal

import yaml

from contracts.model import PARTNERS_DIR, read_yaml


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def contract_doc(partner: str, treaties: list[str], currencies: list[str], frequency: str = "monthly",
                 formats=("csv",), base: str = "boreal-re", settlement: str | None = None) -> dict:
    """A contract for `partner`; it settles in `settlement` (default: the first currency, so a
    book without FX rates converts at exactly 1)."""
    doc, _lines = read_yaml(os.path.join(PARTNERS_DIR, f"{base}.yaml"))
    doc = copy.deepcopy(doc)
    doc["id"] = f"urn:test:{partner}"
    doc["tenant"] = partner
    terms = {"partnerId": partner, "coveredTreaties": list(treaties), "exportFormats": list(formats),
             "masking": [], "settlementCurrency": settlement or currencies[0]}
    for p in doc["customProperties"]:
        if p["property"] in terms:
            p["value"] = terms[p["property"]]
    for p in doc["slaProperties"]:
        if p["property"] == "frequency":
            p["value"] = frequency
    pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$" if frequency == "monthly" else "^[0-9]{4}-Q[1-4]$"
    for report in doc["schema"]:
        for prop in report["properties"]:
            if prop.get("transformLogic") == "period":
                prop["logicalTypeOptions"] = {"pattern": pattern}
            if prop.get("transformLogic") == "original_currency":
                prop["enum"] = [{"value": c} for c in currencies]
            if prop.get("transformLogic") == "settlement_currency":
                prop["enum"] = [{"value": settlement or currencies[0]}]
    return doc


def write_contract(directory, doc: dict) -> str:
    os.makedirs(directory, exist_ok=True)
    partner = next(p["value"] for p in doc["customProperties"] if p["property"] == "partnerId")
    path = os.path.join(str(directory), f"{partner}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(_plain(doc), f, sort_keys=False, allow_unicode=True)
    return path


def set_terms(doc: dict, **terms) -> dict:
    """Set a contract's custom terms in place (e.g. rounding="half_up", fxRateDate="booked_date")
    and return the document; terms it does not declare are added."""
    for prop, value in terms.items():
        for p in doc["customProperties"]:
            if p["property"] == prop:
                p["value"] = value
                break
        else:
            doc["customProperties"].append({"property": prop, "value": value})
    return doc
