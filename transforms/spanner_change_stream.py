"""Reading the ledger's Spanner change stream over a time window, in pure Python.

Spanner serves a change stream as a tree of partitions: the first query (partition token NULL)
only names child partitions; each partition query returns data change records, heartbeats and
further child partitions (splits and merges). A child may be read only after *all* of its
parents have finished, or records of one key could arrive out of order; a merge child is
announced by every parent and must still be read once. `read_change_stream` follows that tree
with a few threads and yields `DataChangeRecord`s; `ReadSpannerChangeStream` wraps it for Beam.
"""
from __future__ import annotations

import json
import queue
import re
import threading
from contextlib import closing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from google.api_core import exceptions as api_exceptions
from google.cloud.spanner_v1 import JsonObject, param_types

from transforms.change_batches import records_to_mods_table
from transforms.change_record import ColumnType, DataChangeRecord, Mod, timestamp_to_ns
from transforms.errors import LedgerSourceError
from transforms.ledger_schema import CHANGE_STREAM_NAME
from transforms.spanner_ledger import DatabasePath, emulator_host_in_use, open_ledger_database

DEFAULT_HEARTBEAT_MS = 2000
_EVENT_QUEUE_SIZE = 256  # bounded, so fast partitions wait for the consumer instead of piling up
_PUT_POLL_S = 0.1
_IDENTIFIER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")


@dataclass
class ReadStats:
    """Counts of what one read saw; updated as records are yielded (for metrics and tests)."""

    partitions_read: int = 0  # partition queries completed, the initial NULL-token query excluded
    records_read: int = 0
    mods_read: int = 0
    heartbeats_seen: int = 0


@dataclass(frozen=True)
class _Heartbeat:
    timestamp: datetime


@dataclass(frozen=True)
class _ChildPartition:
    token: str
    parent_tokens: tuple[str, ...]
    start: datetime


@dataclass(frozen=True)
class _Done:
    pass


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _Stopped(Exception):
    """The consumer went away: a partition reader thread should quit quietly."""


def read_change_stream(
    database,
    stream_name: str,
    start: datetime,
    end: datetime,
    heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
    max_workers: int = 4,
    on_progress: Callable[[datetime], None] | None = None,
    stats: ReadStats | None = None,
) -> Iterator[DataChangeRecord]:
    """Every data change record committed in [start, end], each exactly once.

    Records of one partition come in order; partitions interleave, so consumers order by
    (commit timestamp, record sequence) per key. `on_progress(t)` is called (in the caller's
    thread) whenever the low watermark advances: no record committed at or before `t` is still
    to come. It ends at `end`.
    """
    _check_window(stream_name, start, end)
    sql = _partition_query_sql(stream_name)

    def query(token: str | None, partition_start: datetime):
        return _query_partition(database, sql, token, partition_start, end, heartbeat_ms)

    return _follow_partitions(
        query, stream_name, start, end, max_workers, on_progress, stats or ReadStats()
    )


def _check_window(stream_name: str, start: datetime, end: datetime) -> None:
    if not _IDENTIFIER_RE.match(stream_name or ""):
        raise LedgerSourceError(f"bad change stream name {stream_name!r}")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes")
    if start > end:
        raise LedgerSourceError(f"change stream window starts after it ends: {start} > {end}")


def _partition_query_sql(stream_name: str) -> str:
    # The stream name cannot be a bound parameter; it was checked to be a plain identifier.
    return (
        f"SELECT ChangeRecord FROM READ_{stream_name}("
        "start_timestamp => @start, end_timestamp => @end, "
        "partition_token => @token, heartbeat_milliseconds => @heartbeat)"
    )


def _query_partition(database, sql, token, start, end, heartbeat_ms) -> Iterator:
    """Run one partition query and yield its records, heartbeats and child partitions."""
    params = {"start": start, "end": end, "token": token, "heartbeat": heartbeat_ms}
    types = {
        "start": param_types.TIMESTAMP,
        "end": param_types.TIMESTAMP,
        "token": param_types.STRING,
        "heartbeat": param_types.INT64,
    }
    with database.snapshot() as snapshot:
        results = snapshot.execute_sql(sql, params=params, param_types=types)
        layout = None
        for row in results:
            if layout is None:
                layout = _Layout(results.fields[0].type_)
            for change_record in row[0]:
                yield from layout.events(change_record, token or "")


# ---------------------------------------------------------------------------------------------
# Following the partition tree


class _PartitionTree:
    """Which partitions may be read now: a child only once every one of its parents finished."""

    def __init__(self):
        self.known: set[str] = set()
        self.waiting: dict[str, tuple[_ChildPartition, set[str]]] = {}
        self.finished: set[str] = set()

    def announce(self, child: _ChildPartition) -> list[_ChildPartition]:
        """Note a child (merge children are announced by each parent); return it if ready."""
        if child.token in self.known:
            return []
        self.known.add(child.token)
        pending = set(child.parent_tokens) - self.finished
        if not pending:
            return [child]
        self.waiting[child.token] = (child, pending)
        return []

    def finish(self, token: str | None) -> list[_ChildPartition]:
        """Mark a partition finished; return the children that no longer wait for anything."""
        if token is None:
            return []
        self.finished.add(token)
        ready = []
        for child_token, (child, pending) in list(self.waiting.items()):
            pending.discard(token)
            if not pending:
                del self.waiting[child_token]
                ready.append(child)
        return ready


class _Watermark:
    """The low watermark over partitions in flight, reported only when it moves forward."""

    def __init__(self, on_progress: Callable[[datetime], None] | None):
        self.on_progress = on_progress
        self.positions: dict[str | None, datetime] = {}
        self.reported: datetime | None = None

    def track(self, token: str | None, at: datetime) -> None:
        self.positions[token] = at

    def advance(self, token: str | None, at: datetime) -> None:
        if token in self.positions and at > self.positions[token]:
            self.positions[token] = at
            self._report()

    def finish(self, token: str | None) -> None:
        self.positions.pop(token, None)
        self._report()

    def complete(self, end: datetime) -> None:
        self._report(end)

    def _report(self, at: datetime | None = None) -> None:
        if at is None:
            if not self.positions:
                return
            at = min(self.positions.values())
        if self.on_progress and (self.reported is None or at > self.reported):
            self.reported = at
            self.on_progress(at)


def _follow_partitions(query, stream_name, start, end, max_workers, on_progress, stats):
    """Read the root query and every descendant partition with up to `max_workers` threads."""
    events: queue.Queue = queue.Queue(maxsize=_EVENT_QUEUE_SIZE)
    stop = threading.Event()
    tree = _PartitionTree()
    watermark = _Watermark(on_progress)
    in_flight: set[str | None] = set()
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rex-change-stream")

    def launch(token: str | None, at: datetime) -> None:
        if at > end:  # a partition that starts after the window holds nothing for us
            tree.finish(token)
            return
        in_flight.add(token)
        watermark.track(token, at)
        pool.submit(_pump, query, token, at, events, stop)

    try:
        launch(None, start)
        while in_flight:
            token, event = events.get()
            if isinstance(event, DataChangeRecord):
                stats.records_read += 1
                stats.mods_read += len(event.mods)
                yield event
                watermark.advance(token, event.commit_timestamp)
            elif isinstance(event, _Heartbeat):
                stats.heartbeats_seen += 1
                watermark.advance(token, event.timestamp)
            elif isinstance(event, _ChildPartition):
                for child in tree.announce(event):
                    launch(child.token, child.start)
            elif isinstance(event, _Done):
                in_flight.discard(token)
                if token is not None:
                    stats.partitions_read += 1
                watermark.finish(token)
                for child in tree.finish(token):
                    launch(child.token, child.start)
            else:
                raise _read_error(stream_name, start, event.error) from event.error
        if tree.waiting:
            raise LedgerSourceError(
                f"change stream {stream_name}: {len(tree.waiting)} child partition(s) wait "
                "for parent partitions that were never announced"
            )
        watermark.complete(end)
    finally:
        stop.set()
        _drain(events)
        pool.shutdown(wait=True, cancel_futures=True)


def _pump(query, token, at, events: queue.Queue, stop: threading.Event) -> None:
    """Worker thread: run one partition query and hand its events to the consumer."""
    try:
        if stop.is_set():
            return
        with closing(query(token, at)) as partition_events:
            for event in partition_events:
                _put(events, (token, event), stop)
        _put(events, (token, _Done()), stop)
    except _Stopped:
        return
    except Exception as error:  # handed to the consumer thread, which raises it
        try:
            _put(events, (token, _Failed(error)), stop)
        except _Stopped:
            return


def _put(events: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stopped()
        try:
            events.put(item, timeout=_PUT_POLL_S)
            return
        except queue.Full:
            continue


def _drain(events: queue.Queue) -> None:
    while True:
        try:
            events.get_nowait()
        except queue.Empty:
            return


def _read_error(stream_name: str, start: datetime, error: BaseException) -> LedgerSourceError:
    if isinstance(error, LedgerSourceError):
        return error
    if isinstance(error, api_exceptions.GoogleAPICallError):
        detail = _first_line(getattr(error, "message", None) or str(error))
    else:
        detail = f"{type(error).__name__}: {_first_line(str(error))}"
    return LedgerSourceError(
        f"cannot read change stream {stream_name} from {start.isoformat()}: {detail}"
    )


def _first_line(text: str) -> str:
    text = str(text).strip()
    return text.splitlines()[0] if text else ""


# ---------------------------------------------------------------------------------------------
# Decoding ChangeRecord rows


def _struct_index(type_) -> dict[str, tuple[int, object]]:
    """Field name -> (position, type) of an ARRAY<STRUCT<...>> type from the result metadata."""
    fields = type_.array_element_type.struct_type.fields
    return {f.name: (i, f.type_) for i, f in enumerate(fields)}


class _Layout:
    """Field positions of the ChangeRecord column, read by name from the query's metadata.

    The client returns STRUCTs as plain lists; going by name keeps decoding right if Spanner
    adds or reorders fields.
    """

    def __init__(self, change_record_type):
        try:
            top = _struct_index(change_record_type)
            self.data_i, data_type = top["data_change_record"]
            self.heartbeat_i, heartbeat_type = top["heartbeat_record"]
            self.children_i, children_type = top["child_partitions_record"]
            data = _struct_index(data_type)
            self.data = {name: i for name, (i, _) in data.items()}
            self.column = {n: i for n, (i, _) in _struct_index(data["column_types"][1]).items()}
            self.mod = {n: i for n, (i, _) in _struct_index(data["mods"][1]).items()}
            self.heartbeat_ts_i = _struct_index(heartbeat_type)["timestamp"][0]
            children = _struct_index(children_type)
            self.children = {name: i for name, (i, _) in children.items()}
            partition = _struct_index(children["child_partitions"][1])
            self.child_token_i = partition["token"][0]
            self.child_parents_i = partition["parent_partition_tokens"][0]
        except KeyError as e:
            raise LedgerSourceError(f"unexpected change stream record layout: no field {e}")

    def events(self, change_record: list, partition_token: str) -> Iterable:
        for record in change_record[self.data_i] or ():
            yield self.data_change_record(record, partition_token)
        for heartbeat in change_record[self.heartbeat_i] or ():
            yield _Heartbeat(heartbeat[self.heartbeat_ts_i])
        for children in change_record[self.children_i] or ():
            start = children[self.children["start_timestamp"]]
            for child in children[self.children["child_partitions"]] or ():
                yield _ChildPartition(
                    token=child[self.child_token_i],
                    parent_tokens=tuple(child[self.child_parents_i] or ()),
                    start=start,
                )

    def data_change_record(self, r: list, partition_token: str) -> DataChangeRecord:
        d, c, m = self.data, self.column, self.mod
        return DataChangeRecord(
            partition_token=partition_token,
            commit_timestamp_ns=timestamp_to_ns(r[d["commit_timestamp"]]),
            server_transaction_id=r[d["server_transaction_id"]],
            is_last_record_in_transaction_in_partition=bool(
                r[d["is_last_record_in_transaction_in_partition"]]
            ),
            record_sequence=r[d["record_sequence"]],
            table_name=r[d["table_name"]],
            row_type=[
                ColumnType(
                    name=col[c["name"]],
                    type_json=_json_text(col[c["type"]]),
                    is_primary_key=bool(col[c["is_primary_key"]]),
                    ordinal_position=int(col[c["ordinal_position"]]),
                )
                for col in r[d["column_types"]] or ()
            ],
            mods=[
                Mod(
                    keys_json=_json_text(mod[m["keys"]]),
                    new_values_json=_json_text(mod[m["new_values"]]),
                    old_values_json=_json_text(mod[m["old_values"]]),
                )
                for mod in r[d["mods"]] or ()
            ],
            mod_type=r[d["mod_type"]],
            value_capture_type=r[d["value_capture_type"]],
            number_of_records_in_transaction=int(r[d["number_of_records_in_transaction"]]),
            number_of_partitions_in_transaction=int(r[d["number_of_partitions_in_transaction"]]),
            transaction_tag=r[d["transaction_tag"]] or "",
            is_system_transaction=bool(r[d["is_system_transaction"]]),
        )


def _json_text(value) -> str | None:
    """A JSON column as compact text with sorted keys (as Spanner itself orders JSON keys).

    The client parses JSON columns into `JsonObject` (a dict); its `serialize()` is the
    canonical form and gives None for JSON null. Numbers stay exact: INT64 and NUMERIC arrive
    as JSON strings, FLOAT64 as JSON numbers that Python's float round-trips.
    """
    if value is None:
        return None
    if isinstance(value, JsonObject):
        return value.serialize()
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# Beam


class ReadSpannerChangeStream(beam.PTransform):
    """Batch-read the ledger's change stream over [start, end] into Arrow tables of mods.

    Output elements are `pyarrow.Table`s in `MODS_SCHEMA`, about `batch_mods` mods each (whole
    records, so a big record can make a table larger). This is the pure-Python path and runs
    the partition tree from one DoFn with a few threads: enough for a nightly window and runs
    on any runner, the local FnApiRunner included. To scale the read itself out on Dataflow,
    Beam's Java `ReadChangeStreamFromSpanner` (cross-language, needs its expansion jar from
    Maven) distributes partitions over workers and emits the same record model.
    """

    def __init__(
        self,
        database_path: str,
        start: datetime,
        end: datetime,
        emulator_host: str | None = None,
        batch_mods: int = 50_000,
        *,
        stream: str = CHANGE_STREAM_NAME,
        heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
        max_workers: int = 4,
        validate: bool = True,
    ):
        super().__init__()
        _check_window(stream, start, end)
        self._validate = validate
        self._fn = _ReadChangeStreamFn(
            database_path=str(DatabasePath.parse(str(database_path))),
            start=start,
            end=end,
            # Resolved now: workers should read where the launching process was pointed.
            emulator_host=emulator_host_in_use(emulator_host),
            batch_mods=max(1, batch_mods),
            stream=stream,
            heartbeat_ms=heartbeat_ms,
            max_workers=max_workers,
        )

    def expand(self, pbegin):
        if self._validate:
            # At pipeline construction, so a wrong path or a dead emulator is one line, not a
            # failed pipeline run. Not closed: Database.close() in google-cloud-spanner 3.71
            # joins a session maintenance thread that sleeps for up to 10 minutes.
            fn = self._fn
            open_ledger_database(fn.database_path, fn.emulator_host, fn.stream)
        return (
            pbegin
            | "Seed" >> beam.Create([None])
            | "ReadPartitions" >> beam.ParDo(self._fn).with_output_types(pa.Table)
        )


_COUNTED = ("records_read", "mods_read", "partitions_read", "heartbeats_seen")


class _ReadChangeStreamFn(beam.DoFn):
    """Reads the whole window for its one seed element, emitting mods tables as it goes."""

    def __init__(self, database_path, start, end, emulator_host, batch_mods, stream,
                 heartbeat_ms, max_workers):
        self.database_path = database_path
        self.start = start
        self.end = end
        self.emulator_host = emulator_host
        self.batch_mods = batch_mods
        self.stream = stream
        self.heartbeat_ms = heartbeat_ms
        self.max_workers = max_workers

    def setup(self):
        self.counters = {name: Metrics.counter("rex", name) for name in _COUNTED}

    def process(self, _seed):
        database = open_ledger_database(self.database_path, self.emulator_host, self.stream)
        stats, published = ReadStats(), ReadStats()
        chunk: list[DataChangeRecord] = []
        chunk_mods = 0
        records = read_change_stream(
            database, self.stream, self.start, self.end,
            heartbeat_ms=self.heartbeat_ms, max_workers=self.max_workers, stats=stats,
        )
        for record in records:
            chunk.append(record)
            chunk_mods += len(record.mods)
            if chunk_mods >= self.batch_mods:
                yield records_to_mods_table(chunk)
                self._publish(stats, published)
                chunk, chunk_mods = [], 0
        if chunk:
            yield records_to_mods_table(chunk)
        self._publish(stats, published)

    def _publish(self, stats: ReadStats, published: ReadStats) -> None:
        """Move the counters on by what was read since the last call."""
        for name, counter in self.counters.items():
            delta = getattr(stats, name) - getattr(published, name)
            if delta:
                counter.inc(delta)
                setattr(published, name, getattr(stats, name))
