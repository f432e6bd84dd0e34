"""Decode mods (JSON keys and values) into typed ledger columns, vectorised in DuckDB.

Spanner's change stream carries each row as JSON text: NUMERIC, INT64, DATE and TIMESTAMP as
JSON strings, FLOAT64 as a number, BOOL as a boolean. DuckDB's JSON functions extract every
column of a whole Arrow batch at once, and type checks are plain SQL, so one bad value
quarantines one mod with a reason instead of failing the batch or costing Python per row.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from transforms import duck
from transforms.ledger_schema import Column, Table, ledger_tables
from transforms.quarantine import (
    MISSING_KEY,
    QUARANTINE_SCHEMA,
    UNKNOWN_TABLE,
    UNSUPPORTED_MOD,
    WRONG_TYPE,
)

# The change-stream metadata columns, named as in Google's change-streams-to-BigQuery template.
METADATA_COLUMNS = [
    ("_metadata_spanner_mod_type", "mod_type", "VARCHAR"),
    ("_metadata_spanner_table_name", "table_name", "VARCHAR"),
    ("_metadata_spanner_commit_timestamp", "commit_timestamp", "TIMESTAMPTZ"),
    ("_metadata_spanner_server_transaction_id", "server_transaction_id", "VARCHAR"),
    ("_metadata_spanner_record_sequence", "record_sequence", "VARCHAR"),
    (
        "_metadata_spanner_is_last_record_in_transaction_in_partition",
        "is_last_record_in_transaction_in_partition",
        "BOOLEAN",
    ),
    ("_metadata_spanner_number_of_records_in_transaction", "number_of_records_in_transaction", "BIGINT"),
    (
        "_metadata_spanner_number_of_partitions_in_transaction",
        "number_of_partitions_in_transaction",
        "BIGINT",
    ),
    ("_metadata_spanner_transaction_tag", "transaction_tag", "VARCHAR"),
]
METADATA_NAMES = [m[0] for m in METADATA_COLUMNS]
SUPPORTED_CAPTURE = ("NEW_ROW", "NEW_ROW_AND_OLD_VALUES")


def qi(name: str) -> str:
    """Quote an identifier for DuckDB/BigQuery-style SQL."""
    return '"' + name.replace('"', '""') + '"'


def ql(text: str) -> str:
    """Quote a string literal (for SQL built from the checked-in schema, never from input)."""
    return "'" + text.replace("'", "''") + "'"


def _json_path(name: str) -> str:
    return f'$."{name}"'


# How each Spanner type is cast and checked. `v` is the extracted text, `t` its JSON type and
# `x` the already-cast value; checks lean on the cast (cheap) instead of regular expressions.
def _cast(col: Column, v: str, t: str) -> str:
    st = col.spanner_type
    if st == "STRING":
        return v
    if st == "BOOL":
        return f"CASE WHEN {t} = 'BOOLEAN' THEN {v} = 'true' END"
    if st == "INT64":
        return f"TRY_CAST({v} AS BIGINT)"
    if st == "NUMERIC":
        return f"TRY_CAST({v} AS DECIMAL(38,9))"
    if st == "FLOAT64":
        return f"TRY_CAST({v} AS DOUBLE)"
    if st == "DATE":
        return f"TRY_CAST({v} AS DATE)"
    if st == "TIMESTAMP":
        return f"TRY_CAST({v} AS TIMESTAMPTZ)"
    raise ValueError(f"unsupported Spanner type {st} for {col.name}")


def _valid(col: Column, v: str, t: str, x: str) -> str:
    """SQL that is true when a present value is a valid encoding of the column's type."""
    st = col.spanner_type
    if st == "STRING":
        return f"{t} = 'VARCHAR'"
    if st == "BOOL":
        return f"{t} = 'BOOLEAN'"
    if st == "INT64":  # '1.5' casts to 2; the round trip catches it
        return f"{x} IS NOT NULL AND ({t} IN ('BIGINT','UBIGINT') OR CAST({x} AS VARCHAR) = ltrim({v}, '+'))"
    if st == "NUMERIC":  # exact decimals only: a JSON float (DOUBLE) for money is refused
        return f"{x} IS NOT NULL AND {t} IN ('VARCHAR','BIGINT','UBIGINT')"
    if st == "FLOAT64":
        return f"{x} IS NOT NULL AND ({t} IN ('DOUBLE','BIGINT','UBIGINT') OR {v} IN ('NaN','Infinity','-Infinity'))"
    if st == "DATE":
        return f"{x} IS NOT NULL AND {t} = 'VARCHAR' AND length({v}) = 10"
    return f"{x} IS NOT NULL AND {t} = 'VARCHAR'"


def decode_sql(table: Table) -> str:
    """SQL turning the mods of one table (relation `mods`) into typed rows.

    The result has the table's columns, the metadata columns, the raw mod columns, the
    extracted text and JSON types (`_kv`, `_kt`, `_vv`, `_vt`) and `_ok`, true when the mod
    decoded cleanly; `reason_sql` explains the others.
    """
    keys = table.key_columns
    values = table.value_columns
    key_paths = "[" + ", ".join(ql(_json_path(c.name)) for c in keys) + "]"
    val_paths = "[" + ", ".join(ql(_json_path(c.name)) for c in values) + "]"
    casts, checks = [], ["_keys_ok", "_vals_ok", "mod_type IN ('INSERT','UPDATE','DELETE')",
                         f"(mod_type = 'DELETE' OR value_capture_type IN ({_capture_list()}))"]
    for c, v, t in _slots(table):
        present = f"{t} IS NOT NULL AND {t} <> 'NULL'"
        cast = _cast(c, v, t)
        casts.append(f"{cast if c.name in table.primary_key else f'CASE WHEN {present} THEN {cast} END'} AS {qi(c.name)}")
        valid = _valid(c, v, t, qi(c.name))
        checks.append(f"({present} AND {valid})" if c.name in table.primary_key else f"(NOT ({present}) OR ({valid}))")
    meta = [f"{src} AS {qi(name)}" for name, src, _t in METADATA_COLUMNS]
    return f"""
    WITH parsed AS (
      SELECT *,
        coalesce(json_valid(keys_json), false) AS _keys_ok,
        (new_values_json IS NULL OR new_values_json = '' OR coalesce(json_valid(new_values_json), false)) AS _vals_ok
      FROM mods
    ), extracted AS (
      SELECT *,
        CASE WHEN _keys_ok THEN json_extract_string(keys_json, {key_paths}) END AS _kv,
        CASE WHEN _keys_ok THEN json_type(keys_json, {key_paths}) END AS _kt,
        CASE WHEN _vals_ok AND coalesce(new_values_json, '') <> '' THEN json_extract_string(new_values_json, {val_paths}) END AS _vv,
        CASE WHEN _vals_ok AND coalesce(new_values_json, '') <> '' THEN json_type(new_values_json, {val_paths}) END AS _vt
      FROM parsed
    ), typed AS (
      SELECT *, {", ".join(casts)} FROM extracted
    )
    SELECT {", ".join(qi(c.name) for c in table.columns)}, {", ".join(meta)},
      coalesce({" AND ".join(checks)}, false) AS _ok,
      _keys_ok, _vals_ok, _kv, _kt, _vv, _vt,
      commit_timestamp, server_transaction_id, record_sequence, partition_token, mod_index,
      table_name, mod_type, keys_json, new_values_json, old_values_json, value_capture_type
    FROM typed
    """


def reason_sql(table: Table) -> str:
    """For rows of `decoded` that are not `_ok`: rule|reason|offending value, first failure wins."""
    whens = [
        f"WHEN NOT _keys_ok THEN {ql(MISSING_KEY)} || '|keys are not a JSON object|' || coalesce(keys_json, 'null')",
        f"WHEN NOT _vals_ok THEN {ql(WRONG_TYPE)} || '|new values are not a JSON object|' || coalesce(new_values_json, 'null')",
        f"WHEN mod_type IS NULL OR mod_type NOT IN ('INSERT','UPDATE','DELETE') THEN {ql(UNSUPPORTED_MOD)}"
        " || '|unknown mod type ' || coalesce(mod_type, 'null') || '|' || coalesce(mod_type, 'null')",
        f"WHEN mod_type <> 'DELETE' AND value_capture_type NOT IN ({_capture_list()}) THEN {ql(UNSUPPORTED_MOD)}"
        " || '|value capture type ' || value_capture_type || ' does not carry whole rows; the mirror needs NEW_ROW|'"
        " || value_capture_type",
    ]
    for c, v, t in _slots(table):
        if c.name in table.primary_key:
            whens.append(
                f"WHEN _kt IS NULL OR {t} IS NULL OR {t} = 'NULL' THEN "
                f"{ql(MISSING_KEY + '|key column ' + c.name + ' is missing|')}"
            )
    for c, v, t in _slots(table):
        present = f"{t} IS NOT NULL AND {t} <> 'NULL'"
        whens.append(
            f"WHEN {present} AND NOT coalesce({_valid(c, v, t, qi(c.name))}, false) THEN "
            f"{ql(WRONG_TYPE + '|' + c.name + ' is not a valid ' + c.spanner_type + ': ')} || coalesce({v}, 'null')"
            f" || '|' || coalesce({v}, 'null')"
        )
    return f"""
    SELECT *,
      split_part(_error, '|', 1) AS _error_rule,
      split_part(_error, '|', 2) AS _error_reason,
      nullif(array_to_string(string_split(_error, '|')[3:], '|'), '') AS _error_value
    FROM (SELECT *, CASE {" ".join(whens)} ELSE {ql(WRONG_TYPE + '|mod cannot be decoded|')} END AS _error
          FROM decoded WHERE NOT _ok)
    """


def _slots(table: Table):
    """(column, extracted-text SQL, JSON-type SQL) for keys then values, in list positions."""
    for i, c in enumerate(table.key_columns, start=1):
        yield c, f"_kv[{i}]", f"_kt[{i}]"
    for i, c in enumerate(table.value_columns, start=1):
        yield c, f"_vv[{i}]", f"_vt[{i}]"


def _capture_list() -> str:
    return ", ".join(ql(c) for c in SUPPORTED_CAPTURE)


class ModDecoder:
    """Decodes mixed-table mod batches; holds one in-memory DuckDB connection and its SQL."""

    def __init__(self) -> None:
        self._con = duck.connect()
        self._sql = {name: decode_sql(t) for name, t in ledger_tables().items()}
        self._reasons = {name: reason_sql(t) for name, t in ledger_tables().items()}
        self._out_cols = {
            name: ", ".join([qi(c.name) for c in t.columns] + [qi(m) for m in METADATA_NAMES])
            for name, t in ledger_tables().items()
        }

    def close(self) -> None:
        self._con.close()

    def decode(self, mods: pa.Table, source: str = "") -> tuple[dict[str, pa.Table], pa.Table]:
        """Typed rows per ledger table, and the quarantined mods of this batch.

        The typed columns go straight to Arrow with an `_ok` flag; only a table with a bad
        mod in this batch pays for materialising the work columns to explain it (3x faster
        on clean batches, which are nearly all of them)."""
        if mods.num_rows == 0:
            return {}, QUARANTINE_SCHEMA.empty_table()
        con = self._con
        con.register("all_mods", mods)
        try:
            out: dict[str, pa.Table] = {}
            rejects = [self._unknown_tables(source)]
            names = pa.compute.unique(mods["table_name"]).to_pylist()
            for name in sorted(n for n in names if n in self._sql):
                con.execute(f"CREATE OR REPLACE TEMP VIEW mods AS SELECT * FROM all_mods WHERE table_name = {ql(name)}")
                typed = con.sql(f"SELECT {self._out_cols[name]}, _ok FROM ({self._sql[name]})").to_arrow_table()
                ok = typed["_ok"]
                if pa.compute.all(ok).as_py():
                    good = typed.drop_columns(["_ok"])
                else:
                    good = typed.filter(ok).drop_columns(["_ok"])
                    rejects.append(self._explain(name, source))
                con.execute("DROP VIEW mods")
                if good.num_rows:
                    out[name] = good
            return out, pa.concat_tables(rejects)
        finally:
            con.unregister("all_mods")

    def _explain(self, name: str, source: str) -> pa.Table:
        """Quarantine rows (rule, reason, offending value, raw record) for the bad mods of `mods`."""
        con = self._con
        con.execute(f"CREATE OR REPLACE TEMP TABLE decoded AS {self._sql[name]}")
        try:
            return con.sql(
                _QUARANTINE_FROM_REASONS.format(reasons=self._reasons[name]), params=[source]
            ).to_arrow_table().cast(QUARANTINE_SCHEMA)
        finally:
            con.execute("DROP TABLE decoded")

    def _unknown_tables(self, source: str) -> pa.Table:
        known = ", ".join(ql(n) for n in self._sql)
        return self._con.sql(
            _QUARANTINE_SELECT.format(
                rule=ql(UNKNOWN_TABLE),
                reason="'table ' || coalesce(table_name, 'null') || ' is not in the ledger schema'",
                value="table_name",
                rel=f"all_mods WHERE table_name IS NULL OR table_name NOT IN ({known})",
            ),
            params=[source],
        ).to_arrow_table().cast(QUARANTINE_SCHEMA)


_RAW_RECORD = """json_object(
      'commitTimestamp', strftime(commit_timestamp, '%Y-%m-%dT%H:%M:%S.%fZ'),
      'serverTransactionId', server_transaction_id, 'recordSequence', record_sequence,
      'tableName', table_name, 'modType', mod_type, 'valueCaptureType', value_capture_type,
      'partitionToken', partition_token, 'modIndex', mod_index,
      'mod', json_object('keysJson', keys_json, 'newValuesJson', new_values_json,
                         'oldValuesJson', old_values_json))::VARCHAR"""

_QUARANTINE_SELECT = (
    "SELECT sha256('capture' || chr(31) || {rule} || chr(31) || " + _RAW_RECORD + ") AS quarantine_id, "
    "'capture' AS stage, NULL::VARCHAR AS partner, NULL::VARCHAR AS report, table_name, "
    "{rule} AS rule, {reason} AS reason, {value} AS offending_value, commit_timestamp, "
    "server_transaction_id, record_sequence, " + _RAW_RECORD + " AS raw_record, "
    "coalesce(nullif(?, ''), partition_token) AS source FROM {rel}"
)

_QUARANTINE_FROM_REASONS = _QUARANTINE_SELECT.format(
    rule="_error_rule", reason="_error_reason", value="_error_value", rel="({reasons})"
)
