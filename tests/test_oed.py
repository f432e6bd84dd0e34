"""OED files of a seeded book: valid for OED's own validator (ods-tools, default checks), rejected
when broken, deterministic to the byte, and tied out with the exposure report."""
from __future__ import annotations

import csv
import functools
import os
import random
import uuid
from collections import defaultdict
from datetime import date
from decimal import Decimal as D

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from ods_tools.oed import OdsException, OedExposure

from pipelines.capture import run_capture
from pipelines.options import pipeline_options
from pipelines.seeding import seed_files
from transforms.exposure import BOOK_TABLES, exposure_rows
from transforms.ledger_snapshot import read_current_table
from transforms.oed import (
    CENTRAL_COLUMNS,
    OED_VERSION,
    BuildOedAccounts,
    BuildOedLocations,
    empty_oed_accounts,
    empty_oed_locations,
    oed_account_rows,
    oed_location_rows,
    write_oed_csv,
)
from transforms.report_catalog import OED_ACCOUNT, OED_LOCATION

AS_OF = date(2026, 3, 31)
REINSURERS = ("alpine-re", "boreal-re", "coral-re", "meridian-re", "sakura-re")
OED_SPEC_V3 = "OpenExposureData_3.4.1Spec.json"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    d = tmp_path_factory.mktemp("oed")
    seed_files(7, 150, 100, str(d / "changes"))
    uri = "duckdb:///" + str(d / "wh.duckdb")
    run_capture(str(d / "changes"), uri)
    book = [read_current_table(uri, name) for name in BOOK_TABLES]
    return uri, book, oed_location_rows(*book, AS_OF), oed_account_rows(*book, AS_OF)


def _mine(table: pa.Table, reinsurer: str) -> pa.Table:
    return table.filter(pc.equal(table["reinsurer_id"], reinsurer))


def _files(folder, locations: pa.Table, accounts: pa.Table, name: str = "oed"):
    loc = write_oed_csv(locations, str(folder / f"{name}.location.csv"))
    acc = write_oed_csv(accounts, str(folder / f"{name}.account.csv"))
    return loc, acc


def _validate(location, account, **kwargs) -> OedExposure:
    """ods-tools' own validation with its default checks (validation_config None = the package's
    DEFAULT_VALIDATION_CONFIG: required fields, unknown columns, valid values, perils, occupancy
    and construction codes, countries, conditional requirements, dates, OED version); raises
    OdsException on any error."""
    return OedExposure(location=location, account=account, check_oed=True, **kwargs)


def _read(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_every_reinsurers_files_pass_ods_tools(seeded, tmp_path):
    _uri, _book, locations, accounts = seeded
    assert locations.column_names == OED_LOCATION.names and locations.schema == empty_oed_locations().schema
    assert accounts.column_names == OED_ACCOUNT.names and accounts.schema == empty_oed_accounts().schema
    assert sorted(set(locations["reinsurer_id"].to_pylist())) == list(REINSURERS)
    for reinsurer in REINSURERS:
        mine_loc, mine_acc = _mine(locations, reinsurer), _mine(accounts, reinsurer)
        assert mine_loc.num_rows and mine_acc.num_rows
        loc, acc = _files(tmp_path, mine_loc, mine_acc, reinsurer)
        exposure = _validate(loc, acc)  # the files say OEDVersion 3.4.1: validated against OED v3.4.1
        assert os.path.basename(exposure.oed_schema.json_path) == OED_SPEC_V3
        assert len(exposure.location.dataframe) == mine_loc.num_rows
        assert len(exposure.account.dataframe) == mine_acc.num_rows
        # ... and against the package's current default spec, too
        assert os.path.basename(_validate(loc, acc, oed_schema_info="5.0.0").oed_schema.json_path) == \
            "OpenExposureData_5.0.0Spec.json"
        # every location's account is in the account file, and every account has a location
        loc_accounts = {(r["PortNumber"], r["AccNumber"]) for r in _read(loc)}
        assert loc_accounts == {(r["PortNumber"], r["AccNumber"]) for r in _read(acc)}


def _set(table: pa.Table, column: str, row: int, value) -> pa.Table:
    values = table[column].to_pylist()
    values[row] = value
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values, table[column].type))


def test_broken_oed_files_are_rejected(seeded, tmp_path):
    _uri, _book, locations, accounts = seeded
    loc_rows, acc_rows = _mine(locations, "coral-re"), _mine(accounts, "coral-re")
    good_loc, good_acc = _files(tmp_path, loc_rows, acc_rows, "good")
    _validate(good_loc, good_acc)  # the baseline passes ...

    bad_peril = _set(loc_rows, "LocPerilsCovered", 3, "WTC;XYZ")
    with pytest.raises(OdsException, match="LocPerilsCovered has invalid perils"):
        _validate(_files(tmp_path, bad_peril, acc_rows, "peril")[0], good_acc)

    no_currency = loc_rows.drop_columns(["LocCurrency"])
    with pytest.raises(OdsException, match="missing required column LocCurrency"):
        _validate(_files(tmp_path, no_currency, acc_rows, "currency")[0], good_acc)

    negative = _set(loc_rows, "BuildingTIV", 0, D("-1"))
    with pytest.raises(OdsException, match="column 'BuildingTIV' has values outside range"):
        _validate(_files(tmp_path, negative, acc_rows, "negative")[0], good_acc)

    bad_occupancy = _set(loc_rows, "OccupancyCode", 1, 999)
    with pytest.raises(OdsException, match="invalid OccupancyCode"):
        _validate(_files(tmp_path, bad_occupancy, acc_rows, "occupancy")[0], good_acc)

    no_pol_number = acc_rows.drop_columns(["PolNumber"])
    with pytest.raises(OdsException, match="missing required column PolNumber"):
        _validate(good_loc, _files(tmp_path, loc_rows, no_pol_number, "polnumber")[1])


def _write_batches(folder: str, table: pa.Table) -> None:
    pq.write_table(table, os.path.join(folder, f"{uuid.uuid4().hex}.parquet"))


def _collected(folder) -> pa.Table:
    return pa.concat_tables(pq.read_table(os.path.join(folder, f)) for f in sorted(os.listdir(folder)))


def test_files_are_byte_identical_when_written_twice(seeded, tmp_path):
    uri, _book, locations, accounts = seeded
    for kind in ("loc", "acc"):
        (tmp_path / kind).mkdir()
    with beam.Pipeline(options=pipeline_options()) as p:
        built_loc = p | "BuildOedLocations" >> BuildOedLocations(uri, AS_OF, batch_rows=16)
        built_acc = p | "BuildOedAccounts" >> BuildOedAccounts(uri, AS_OF, batch_rows=16)
        _ = built_loc.rows | "KeepLocations" >> beam.Map(functools.partial(_write_batches, str(tmp_path / "loc")))
        _ = built_acc.rows | "KeepAccounts" >> beam.Map(functools.partial(_write_batches, str(tmp_path / "acc")))
    beam_loc, beam_acc = _collected(tmp_path / "loc"), _collected(tmp_path / "acc")
    assert beam_loc.num_rows == locations.num_rows and beam_acc.num_rows == accounts.num_rows
    order = list(range(locations.num_rows))
    random.Random(1).shuffle(order)
    for reinsurer in REINSURERS:
        first = _files(tmp_path, _mine(locations, reinsurer), _mine(accounts, reinsurer), f"{reinsurer}-1")
        again = _files(tmp_path, _mine(locations, reinsurer), _mine(accounts, reinsurer), f"{reinsurer}-2")
        from_beam = _files(tmp_path, _mine(beam_loc, reinsurer), _mine(beam_acc, reinsurer), f"{reinsurer}-3")
        shuffled = _files(tmp_path, _mine(locations.take(order), reinsurer), _mine(accounts, reinsurer),
                          f"{reinsurer}-4")
        for a, b, c, d in zip(first, again, from_beam, shuffled):
            data = open(a, "rb").read()
            assert data == open(b, "rb").read() == open(c, "rb").read() == open(d, "rb").read()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # written to a temp name, renamed


def test_oed_values_are_written_as_oed_expects(seeded, tmp_path):
    _uri, book, locations, accounts = seeded
    loc, acc = _files(tmp_path, _mine(locations, "alpine-re"), _mine(accounts, "alpine-re"))
    with open(loc, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split(",")
    assert header == [c for c in OED_LOCATION.names if c not in CENTRAL_COLUMNS]
    assert "reinsurer_id" not in open(acc, encoding="utf-8").readline()
    ledger = {r["LocationId"]: r for r in book[1].to_pylist()}
    policies = {r["PolicyId"]: r for r in book[0].to_pylist()}
    for r in _read(loc):
        src = ledger[r["LocNumber"]]
        assert r["Latitude"] == repr(src["Latitude"]) and r["Longitude"] == repr(src["Longitude"])  # no float noise
        for col, ledger_col in (("BuildingTIV", "BuildingTiv"), ("ContentsTIV", "ContentsTiv"), ("BITIV", "BiTiv")):
            assert "e" not in r[col].lower() and not r[col].endswith(".000000000")
            assert D(r[col]) == (src[ledger_col] or 0)  # per location, exactly the ledger's sums insured
        assert r["OtherTIV"] == "0" and r["OEDVersion"] == OED_VERSION
        assert (r["GeogScheme1"], r["GeogName1"]) == ("XZONE", src["Zone"])
        assert r["LocPerilsCovered"] == src["PerilsCovered"]
        assert r["LocCurrency"] == policies[r["AccNumber"]]["Currency"]
    for r in _read(acc):
        pol = policies[r["AccNumber"]]
        assert (r["AccName"], r["PolNumber"], r["LOB"]) == (pol["InsuredName"], pol["PolicyNumber"],
                                                          pol["LineOfBusiness"])
        assert (r["PolInceptionDate"], r["PolExpiryDate"]) == (pol["InceptionDate"].isoformat(),
                                                              pol["ExpiryDate"].isoformat())
        assert pol["InceptionDate"] <= AS_OF < pol["ExpiryDate"]
        assert r["PolPerilsCovered"] == ";".join(sorted(r["PolPerilsCovered"].split(";")))


def test_oed_tivs_tie_out_with_the_exposure_report(seeded, tmp_path):
    _uri, book, locations, accounts = seeded
    exposure = exposure_rows(*book, AS_OF)
    for reinsurer in REINSURERS:
        loc, acc = _files(tmp_path, _mine(locations, reinsurer), _mine(accounts, reinsurer), reinsurer)
        lob = {(r["PortNumber"], r["AccNumber"]): r["LOB"] for r in _read(acc)}
        # the exposure report counts a location once per peril it covers: rebuild its groups from
        # the OED locations (one row each), splitting LocPerilsCovered
        from_oed = defaultdict(lambda: [0, D(0), D(0), D(0)])
        for r in _read(loc):
            for peril in set(r["LocPerilsCovered"].split(";")):
                key = (r["PortNumber"], peril, r["CountryCode"], r["GeogName1"], lob[(r["PortNumber"], r["AccNumber"])],
                       r["LocCurrency"])
                g = from_oed[key]
                g[0] += 1
                g[1] += D(r["BuildingTIV"])
                g[2] += D(r["ContentsTIV"])
                g[3] += D(r["BITIV"])
        report = {
            (r["treaty_id"], r["peril"], r["country"], r["zone"], r["line_of_business"], r["currency"]):
                [r["location_count"], r["building_tiv_100"], r["contents_tiv_100"], r["bi_tiv_100"]]
            for r in _mine(exposure, reinsurer).to_pylist()
        }
        assert report and from_oed == report, reinsurer
