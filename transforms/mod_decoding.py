"""Decode mods (JSON keys and values) into typed ledger columns, vectorised in DuckDB.

Spanner's change stream carries each row as JSON text: NUMERIC, INT64, DATE and TIMESTAMP as
JSON strings, FLOAT64 as a number, BOOL as a boolean. DuckDB's JSON functions extract every
column of a whole Arrow batch at once, and type checks are plain SQL, so one bad value
quarantines one mod with a reason instead of failing the batch or costing Python per row.
"""
from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

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


# How each Spanner type is checked and cast. `v` is the extracted text, `t` its JSON type.
def _typed_expr(col: Column, v: str, t: str) -> tuple[str, str]:
    """(SQL for the typed value, SQL that is true when a present value has the wrong type)."""
    st = col.spanner_type
    if st == "STRING":
        return v, f"{t} <> 'VARCHAR'"
    if st == "BOOL":
        return f"CASE WHEN {t} = 'BOOLEAN' THEN {v} = 'true' END", f"{t} <> 'BOOLEAN'"
    if st == "INT64":
        ok = f"({t} IN ('BIGINT','UBIGINT') OR ({t} = 'VARCHAR' AND regexp_full_match({v}, '-?[0-9]{{1,19}}')))"
        return f"TRY_CAST({v} AS BIGINT)", f"NOT {ok} OR TRY_CAST({v} AS BIGINT) IS NULL"
    if st == "NUMERIC":
        # Exact decimals only: a JSON float (DOUBLE) for money is refused, not rounded.
        ok = (
            f"(({t} = 'VARCHAR' AND regexp_full_match({v}, '-?[0-9]{{1,29}}(\\.[0-9]{{1,9}})?'))"
            f" OR ({t} IN ('BIGINT','UBIGINT') AND length({v}) <= 29))"
        )
        return f"TRY_CAST({v} AS DECIMAL(38,9))", f"NOT {ok}"
    if st == "FLOAT64":
        ok = (
            f"({t} IN ('DOUBLE','BIGINT','UBIGINT') OR "
            f"({t} = 'VARCHAR' AND {v} IN ('NaN','Infinity','-Infinity')))"
        )
        return f"TRY_CAST({v} AS DOUBLE)", f"NOT {ok}"
    if st == "DATE":
        ok = f"({t} = 'VARCHAR' AND regexp_full_match({v}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}'))"
        return f"TRY_CAST({v} AS DATE)", f"NOT {ok} OR TRY_CAST({v} AS DATE) IS NULL"
    if st == "TIMESTAMP":
        return f"TRY_CAST({v} AS TIMESTAMPTZ)", f"{t} <> 'VARCHAR' OR TRY_CAST({v} AS TIMESTAMPTZ) IS NULL"
    raise ValueError(f"unsupported Spanner type {st} for {col.name}")


def decode_sql(table: Table) -> str:
    """SQL turning the mods of one table (relation `mods`) into typed rows plus error columns.

    The result has the table's columns, the metadata columns, and `_error_rule`,
    `_error_reason`, `_error_value` (NULL when the mod decoded cleanly).
    """
    keys = table.key_columns
    values = table.value_columns
    key_paths = "[" + ", ".join(ql(_json_path(c.name)) for c in keys) + "]"
    val_paths = "[" + ", ".join(ql(_json_path(c.name)) for c in values) + "]"
    selects, key_checks, type_checks = [], [], []
    for i, c in enumerate(keys, start=1):
        v, t = f"_kv[{i}]", f"_kt[{i}]"
        typed, wrong = _typed_expr(c, v, t)
        selects.append(f"{typed} AS {qi(c.name)}")
        key_checks.append(
            f"WHEN _kt IS NULL OR {t} IS NULL OR {t} = 'NULL' THEN "
            f"{ql(MISSING_KEY)} || '|' || {ql('key column ' + c.name + ' is missing')} || '|'"
        )
        type_checks.append(
            f"WHEN {wrong} THEN {ql(WRONG_TYPE)} || '|' || "
            f"{ql(f'{c.name} is not a valid {c.spanner_type}: ')} || coalesce({v}, 'null') || '|' || coalesce({v}, 'null')"
        )
    for i, c in enumerate(values, start=1):
        v, t = f"_vv[{i}]", f"_vt[{i}]"
        typed, wrong = _typed_expr(c, v, t)
        selects.append(f"CASE WHEN {t} IS NOT NULL AND {t} <> 'NULL' THEN {typed} END AS {qi(c.name)}")
        type_checks.append(
            f"WHEN {t} IS NOT NULL AND {t} <> 'NULL' AND ({wrong}) THEN {ql(WRONG_TYPE)} || '|' || "
            f"{ql(f'{c.name} is not a valid {c.spanner_type}: ')} || coalesce({v}, 'null') || '|' || coalesce({v}, 'null')"
        )
    meta = [f"{src} AS {qi(name)}" for name, src, _t in METADATA_COLUMNS]
    capture = ", ".join(ql(c) for c in SUPPORTED_CAPTURE)
    error_case = "\n        ".join(
        [
            "WHEN NOT _keys_ok THEN " + ql(MISSING_KEY) + " || '|keys are not a JSON object|' || coalesce(keys_json, 'null')",
            "WHEN NOT _vals_ok THEN " + ql(WRONG_TYPE) + " || '|new values are not a JSON object|' || coalesce(new_values_json, 'null')",
            "WHEN mod_type NOT IN ('INSERT','UPDATE','DELETE') THEN "
            + ql(UNSUPPORTED_MOD) + " || '|unknown mod type ' || coalesce(mod_type, 'null') || '|' || coalesce(mod_type, 'null')",
            f"WHEN mod_type <> 'DELETE' AND value_capture_type NOT IN ({capture}) THEN "
            + ql(UNSUPPORTED_MOD)
            + " || '|value capture type ' || value_capture_type || ' does not carry whole rows; the mirror needs NEW_ROW|' || value_capture_type",
            *key_checks,
            *type_checks,
        ]
    )
    return f"""
    WITH parsed AS (
      SELECT *,
        coalesce(json_valid(keys_json), false) AS _keys_ok,
        (new_values_json IS NULL OR new_values_json = '' OR coalesce(json_valid(new_values_json), false)) AS _vals_ok
      FROM mods
    ), extracted AS (
      SELECT *,
        CASE WHEN _keys_ok THEN json_extract_string(keys_json::JSON, {key_paths}) END AS _kv,
        CASE WHEN _keys_ok THEN json_type(keys_json::JSON, {key_paths}) END AS _kt,
        CASE WHEN _vals_ok AND coalesce(new_values_json, '') <> '' THEN json_extract_string(new_values_json::JSON, {val_paths}) END AS _vv,
        CASE WHEN _vals_ok AND coalesce(new_values_json, '') <> '' THEN json_type(new_values_json::JSON, {val_paths}) END AS _vt
      FROM parsed
    ), checked AS (
      SELECT *, CASE
        {error_case}
      END AS _error
      FROM extracted
    )
    SELECT
      {", ".join(selects)},
      {", ".join(meta)},
      coalesce(split_part(_error, '|', 1), '') AS _error_rule,
      split_part(_error, '|', 2) AS _error_reason,
      nullif(array_to_string(string_split(_error, '|')[3:], '|'), '') AS _error_value,
      commit_timestamp, server_transaction_id, record_sequence, partition_token, mod_index,
      table_name, mod_type, keys_json, new_values_json, old_values_json, value_capture_type
    FROM checked
    """


class ModDecoder:
    """Decodes mixed-table mod batches; holds one in-memory DuckDB connection and its SQL."""

    def __init__(self) -> None:
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET threads TO 1")  # Beam parallelises across bundles already
        self._sql = {name: decode_sql(t) for name, t in ledger_tables().items()}

    def close(self) -> None:
        self._con.close()

    def decode(self, mods: pa.Table, source: str = "") -> tuple[dict[str, pa.Table], pa.Table]:
        """Typed rows per ledger table, and the quarantined mods of this batch."""
        if mods.num_rows == 0:
            return {}, QUARANTINE_SCHEMA.empty_table()
        con = self._con
        con.register("all_mods", mods)
        try:
            out: dict[str, pa.Table] = {}
            rejects = [self._unknown_tables(source)]
            names = pa.compute.unique(mods["table_name"]).to_pylist()
            for name in sorted(n for n in names if n in self._sql):
                con.register("mods", con.sql(f"SELECT * FROM all_mods WHERE table_name = {ql(name)}").to_arrow_table())
                con.register("decoded", con.sql(self._sql[name]).to_arrow_table())
                good = con.sql(f"SELECT * EXCLUDE ({_WORK_COLUMNS}) FROM decoded WHERE _error_rule = ''").to_arrow_table()
                bad = con.sql(_QUARANTINE_FROM_DECODED, params=[source]).to_arrow_table()
                con.unregister("decoded")
                con.unregister("mods")
                if good.num_rows:
                    out[name] = good
                if bad.num_rows:
                    rejects.append(bad.cast(QUARANTINE_SCHEMA))
            return out, pa.concat_tables(rejects)
        finally:
            con.unregister("all_mods")

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


_WORK_COLUMNS = (
    "_error_rule, _error_reason, _error_value, commit_timestamp, server_transaction_id, "
    "record_sequence, partition_token, mod_index, table_name, mod_type, keys_json, "
    "new_values_json, old_values_json, value_capture_type"
)

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

_QUARANTINE_FROM_DECODED = _QUARANTINE_SELECT.format(
    rule="_error_rule", reason="_error_reason", value="_error_value", rel="decoded WHERE _error_rule <> ''"
)
