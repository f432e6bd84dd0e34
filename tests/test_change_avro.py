import io
import json

import fastavro
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from transforms.change_avro import (
    TEMPLATE_SCHEMA,
    AvroChangeRecordError,
    read_avro_records,
    write_avro_records,
)
from transforms.change_record import ColumnType, DataChangeRecord, Mod
from transforms.errors import LedgerSourceError

BASE_NS = 1_764_720_000 * 1_000_000_000


def _cols():
    return [
        ColumnType("PolicyId", '{"code":"STRING"}', True, 1),
        ColumnType("Premium", '{"code":"NUMERIC"}', False, 2),
        ColumnType("BookedDate", '{"code":"DATE"}', False, 3),
        ColumnType("Limit", '{"code":"INT64"}', False, 4),
    ]


def _metadata(micros_offset=0):
    def ts(s, us):
        return {"seconds": s, "nanos": us * 1000}

    return {
        "partitionToken": "Parent0",
        "recordTimestamp": ts(1_764_720_000, 123_456 + micros_offset),
        "partitionStartTimestamp": ts(1_764_719_000, 0),
        "partitionEndTimestamp": ts(253_402_300_799, 999_999),
        "partitionCreatedAt": ts(1_764_718_000, 1),
        "partitionScheduledAt": ts(1_764_718_001, 2),
        "partitionRunningAt": ts(1_764_718_002, 3),
        "queryStartedAt": ts(1_764_718_003, 4),
        "recordStreamStartedAt": ts(1_764_718_004, 5),
        "recordStreamEndedAt": ts(1_764_718_005, 6),
        "recordReadAt": ts(1_764_718_006, 7),
        "totalStreamTimeMillis": 42,
        "numberOfRecordsRead": 7,
    }


def _record(seq, mod_type="INSERT", mods=None, capture="OLD_AND_NEW_VALUES", ns=BASE_NS,
            metadata=None):
    return DataChangeRecord(
        partition_token="Parent0",
        commit_timestamp_ns=ns,
        server_transaction_id="tx-1",
        is_last_record_in_transaction_in_partition=seq == 2,
        record_sequence=f"{seq:08d}",
        table_name="Policies",
        row_type=_cols(),
        mods=mods or [Mod('{"PolicyId":"P1"}', '{"Premium":"10.5"}', None)],
        mod_type=mod_type,
        value_capture_type=capture,
        number_of_records_in_transaction=3,
        number_of_partitions_in_transaction=1,
        metadata=metadata,
    )


def _sample_records():
    return [
        # INSERT with several mods, null old values, metadata present, microsecond timestamp
        _record(
            0,
            "INSERT",
            [
                Mod('{"PolicyId":"P1"}', '{"Premium":"10.5","BookedDate":"2025-01-02"}', None),
                Mod('{"PolicyId":"P2"}', '{"Premium":"-3","Limit":"9007199254740993"}', None),
                Mod('{"PolicyId":"P3"}', '{"Premium":null,"BookedDate":"2025-12-31"}', None),
            ],
            ns=BASE_NS + 123_456_000,
            metadata=_metadata(),
        ),
        # UPDATE with old and new values, no metadata
        _record(
            1,
            "UPDATE",
            [Mod('{"PolicyId":"P1"}', '{"Premium":"11"}', '{"Premium":"10.5"}')],
            ns=BASE_NS + 999_999_000,
        ),
        # DELETE with empty new values and with absent new values
        _record(
            2,
            "DELETE",
            [
                Mod('{"PolicyId":"P2"}', "{}", '{"Premium":"-3"}'),
                Mod('{"PolicyId":"P3"}', None, '{"Premium":null}'),
            ],
            capture="NEW_ROW",
            metadata=_metadata(1),
        ),
    ]


def _roundtrip(records, **kw):
    buf = io.BytesIO()
    n = write_avro_records(records, buf, **kw)
    assert n == len(records)
    buf.seek(0)
    return list(read_avro_records(buf))


def test_roundtrip_fileobj():
    records = _sample_records()
    assert _roundtrip(records) == records


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_roundtrip_path(tmp_path, codec):
    records = _sample_records()
    path = tmp_path / "output-0-of-1.avro"
    write_avro_records(iter(records), path, codec=codec)
    assert list(read_avro_records(path)) == records
    assert list(read_avro_records(str(path))) == records
    with open(path, "rb") as fo:
        assert fastavro.reader(fo).metadata["avro.codec"] == codec


def test_gson_form_survives_avro():
    records = _sample_records()
    assert [r.to_gson() for r in _roundtrip(records)] == [r.to_gson() for r in records]


def test_nanosecond_timestamps_truncate_to_micros_like_template():
    ns = BASE_NS + 123_456_789
    meta = _metadata()
    meta["recordTimestamp"] = {"seconds": 1_764_720_000, "nanos": 123_456_789}
    (back,) = _roundtrip([_record(0, ns=ns, metadata=meta)])
    assert back.commit_timestamp_ns == BASE_NS + 123_456_000
    assert back.metadata["recordTimestamp"] == {"seconds": 1_764_720_000, "nanos": 123_456_000}
    # exact micro-precision (what Spanner commit timestamps carry) is kept
    (back,) = _roundtrip([_record(0, ns=BASE_NS + 1_000)])
    assert back.commit_timestamp_ns == BASE_NS + 1_000


def test_null_values_are_written_as_empty_strings_and_read_back_as_none():
    rec = _record(0, "DELETE", [Mod('{"PolicyId":"P1"}', None, None)], capture="NEW_ROW")
    buf = io.BytesIO()
    write_avro_records([rec], buf)
    buf.seek(0)
    (raw,) = list(fastavro.reader(buf))
    assert raw["mods"] == [{"keysJson": '{"PolicyId":"P1"}', "oldValuesJson": "", "newValuesJson": ""}]
    buf.seek(0)
    (back,) = list(read_avro_records(buf))
    assert back.mods == [Mod('{"PolicyId":"P1"}', None, None)]


def test_null_values_written_as_avro_null_read_as_none():
    # A Java writer may also leave the union null; that reads as None too.
    raw = _raw_row()
    raw["mods"] = [{"keysJson": '{"PolicyId":"P1"}', "oldValuesJson": None, "newValuesJson": None}]
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(TEMPLATE_SCHEMA), [raw])
    buf.seek(0)
    (back,) = list(read_avro_records(buf))
    assert back.mods == [Mod('{"PolicyId":"P1"}', None, None)]


def test_metadata_absent_and_null_partition_times():
    meta = _metadata()
    del meta["partitionScheduledAt"]
    del meta["partitionRunningAt"]  # null in Java, so Gson omits them
    a, b = _roundtrip([_record(0, metadata=None), _record(1, metadata=meta)])
    assert a.metadata is None
    assert b.metadata == meta


def test_lossy_fields_follow_template_mapping():
    rec = _record(0, capture="NEW_ROW_AND_OLD_VALUES")
    rec.transaction_tag = "seed"
    rec.is_system_transaction = True
    rec.row_type = [
        ColumnType("PolicyId", '{ "code" : "STRING" }', True, 1),
        ColumnType("Tags", '{"array_element_type":{"code":"STRING"},"code":"ARRAY"}', False, 2),
        ColumnType("Ratio", '{"code":"FLOAT32"}', False, 3),
    ]
    (back,) = _roundtrip([rec])
    assert back.value_capture_type == "NEW_VALUES"
    assert back.transaction_tag == "" and back.is_system_transaction is False
    assert [c.type_json for c in back.row_type] == [
        '{"code":"STRING"}',
        '{"code":"TYPE_CODE_UNSPECIFIED"}',
        '{"code":"TYPE_CODE_UNSPECIFIED"}',
    ]


def test_unknown_mod_type_is_refused():
    with pytest.raises(ValueError, match="UNKNOWN"):
        write_avro_records([_record(0, mod_type="UNKNOWN")], io.BytesIO())


def test_written_schema_is_the_template_schema(tmp_path):
    path = tmp_path / "out.avro"
    write_avro_records(_sample_records(), path)
    with open(path, "rb") as fo:
        reader = fastavro.reader(fo)
        header = json.loads(reader.metadata["avro.schema"])
    want = to_parsing_canonical_form(TEMPLATE_SCHEMA)
    assert to_parsing_canonical_form(header) == want
    assert fingerprint(want, "CRC-64-AVRO") == fingerprint(
        to_parsing_canonical_form(header), "CRC-64-AVRO"
    )
    assert header["name"] == "com.google.cloud.teleport.v2.DataChangeRecord"
    # the non-canonical attributes of the .avsc are kept too
    assert header["fields"][1]["logicalType"] == "timestamp-micros"
    assert header["fields"][6]["type"]["java-class"] == "java.util.List"
    assert [f["name"] for f in header["fields"]][-3:] == [
        "spannerDatabaseId", "spannerInstanceId", "outputMessageMetadata",
    ]


def _raw_row():
    return {
        "partitionToken": "Parent0",
        "commitTimestamp": 1_764_720_000_123_456,
        "serverTransactionId": "tx",
        "isLastRecordInTransactionInPartition": True,
        "recordSequence": "00000000",
        "tableName": "Policies",
        "rowType": [{"name": "PolicyId", "Type": "STRING", "isPrimaryKey": True, "ordinalPosition": 1}],
        "mods": [{"keysJson": '{"PolicyId":"P1"}', "oldValuesJson": "", "newValuesJson": "{}"}],
        "modType": "DELETE",
        "valueCaptureType": "NEW_ROW",
        "numberOfRecordsInTransaction": 1,
        "numberOfPartitionsInTransaction": 1,
        "metadata": None,
    }


def test_reads_older_template_schema_without_source_fields():
    old = dict(TEMPLATE_SCHEMA)
    old["fields"] = TEMPLATE_SCHEMA["fields"][:-3]
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(old), [_raw_row()])
    buf.seek(0)
    (rec,) = list(read_avro_records(buf))
    assert rec.commit_timestamp_ns == 1_764_720_000_123_456_000
    assert rec.mods == [Mod('{"PolicyId":"P1"}', "{}", None)]
    assert rec.row_type == [ColumnType("PolicyId", '{"code":"STRING"}', True, 1)]


def _file_bytes(n=50):
    recs = [_record(i % 3, ns=BASE_NS + i * 1000, metadata=_metadata()) for i in range(n)]
    buf = io.BytesIO()
    write_avro_records(recs, buf)
    return buf.getvalue()


def test_truncated_file_raises_with_file_name(tmp_path):
    data = _file_bytes()
    path = tmp_path / "truncated.avro"
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(AvroChangeRecordError, match="truncated.avro") as info:
        list(read_avro_records(path))
    assert isinstance(info.value, LedgerSourceError)
    assert isinstance(info.value, ValueError)
    assert info.value.name == str(path)


def test_corrupt_block_raises(tmp_path):
    data = bytearray(_file_bytes())
    mid = len(data) - 60
    data[mid : mid + 20] = b"\xff" * 20
    path = tmp_path / "corrupt.avro"
    path.write_bytes(bytes(data))
    with pytest.raises(AvroChangeRecordError, match="corrupt.avro"):
        list(read_avro_records(path))


@pytest.mark.parametrize("content", [b"", b"Obj", b"not an avro file at all", b'{"a":1}\n'])
def test_not_avro_raises(tmp_path, content):
    path = tmp_path / "bad.avro"
    path.write_bytes(content)
    with pytest.raises(AvroChangeRecordError, match="bad.avro"):
        list(read_avro_records(path))


def test_other_schema_raises():
    buf = io.BytesIO()
    schema = {"type": "record", "name": "ChangelogEntry", "fields": [{"name": "x", "type": "int"}]}
    fastavro.writer(buf, fastavro.parse_schema(schema), [{"x": 1}])
    buf.seek(0)
    with pytest.raises(AvroChangeRecordError, match="not a DataChangeRecord"):
        list(read_avro_records(buf))


def test_missing_file_raises(tmp_path):
    with pytest.raises(AvroChangeRecordError, match="nope.avro"):
        list(read_avro_records(tmp_path / "nope.avro"))
