"""Connecting to the ledger database in Cloud Spanner (or the emulator), failing fast and clearly.

The client library retries unreachable endpoints for minutes; a nightly run or a person at the
CLI wants one line within seconds instead. So the checks here use short deadlines and no retry,
and every failure becomes a `LedgerSourceError`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime

from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import spanner
from google.cloud.spanner_v1 import param_types
from google.cloud.spanner_v1.database import Database

from transforms.errors import LedgerSourceError
from transforms.ledger_schema import CHANGE_STREAM_NAME, ddl_statements

EMULATOR_ENV = "SPANNER_EMULATOR_HOST"
PROBE_TIMEOUT_S = 5.0
CREATE_TIMEOUT_S = 120.0

_PATH_RE = re.compile(
    r"^(?:spanner://)?projects/([^/\s]+)/instances/([^/\s]+)/databases/([^/\s]+)$"
)


@dataclass(frozen=True)
class DatabasePath:
    project: str
    instance: str
    database: str

    @classmethod
    def parse(cls, text: str) -> "DatabasePath":
        """Accept `projects/P/instances/I/databases/D`, optionally prefixed by `spanner://`."""
        m = _PATH_RE.match((text or "").strip())
        if not m:
            raise LedgerSourceError(
                f"bad Spanner database path {text!r}: expected "
                "projects/P/instances/I/databases/D (optionally spanner://...)"
            )
        return cls(*m.groups())

    @property
    def instance_name(self) -> str:
        return f"projects/{self.project}/instances/{self.instance}"

    def __str__(self) -> str:
        return f"{self.instance_name}/databases/{self.database}"


def _as_path(path: DatabasePath | str) -> DatabasePath:
    return path if isinstance(path, DatabasePath) else DatabasePath.parse(path)


def emulator_host_in_use(emulator_host: str | None = None) -> str | None:
    """The emulator endpoint to talk to: the explicit one, else $SPANNER_EMULATOR_HOST."""
    return emulator_host or os.environ.get(EMULATOR_ENV) or None


def spanner_client(project: str, emulator_host: str | None = None) -> spanner.Client:
    """A Spanner client: anonymous plaintext for the emulator, default credentials otherwise."""
    host = emulator_host_in_use(emulator_host)
    if not host:
        try:
            return spanner.Client(project=project)
        except DefaultCredentialsError as e:
            raise LedgerSourceError(
                "no Google Cloud credentials for Spanner: set SPANNER_EMULATOR_HOST for the emulator, "
                "or configure Application Default Credentials"
            ) from e
    client = spanner.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=host),
    )
    if os.environ.get(EMULATOR_ENV, host) != host:
        # The library prefers $SPANNER_EMULATOR_HOST over client_options; an explicit host wins.
        client._emulator_host = client._host = host
    return client


def create_ledger_database(
    path: DatabasePath | str,
    emulator_host: str | None = None,
    exist_ok: bool = False,
    instance_config: str | None = None,
) -> Database:
    """Create the ledger database (tables and the `LedgerChanges` change stream).

    The instance is created when missing: on the emulator with `emulator-config`; on real
    Spanner only if `instance_config` names one (creating billable instances by accident is
    worse than a clear error).
    """
    path = _as_path(path)
    client = spanner_client(path.project, emulator_host)
    where = _endpoint_label(emulator_host)
    if not _instance_exists(client, path, where):
        _create_instance(client, path, emulator_host, instance_config, where)
    instance = client.instance(path.instance)
    if _database_exists(client, path, where):
        if not exist_ok:
            raise LedgerSourceError(f"Spanner database {path} already exists")
        return instance.database(path.database)
    database = instance.database(path.database, ddl_statements=ddl_statements())
    try:
        database.create().result(CREATE_TIMEOUT_S)
    except api_exceptions.AlreadyExists:
        if not exist_ok:
            raise LedgerSourceError(f"Spanner database {path} already exists") from None
    except api_exceptions.GoogleAPICallError as e:
        raise LedgerSourceError(f"cannot create Spanner database {path}: {_one_line(e)}") from e
    return instance.database(path.database)


def _create_instance(client, path, emulator_host, instance_config, where) -> None:
    if instance_config is None:
        if not emulator_host_in_use(emulator_host):
            raise LedgerSourceError(
                f"Spanner instance {path.instance_name} does not exist; create it or pass "
                "an instance config"
            )
        instance_config = f"projects/{path.project}/instanceConfigs/emulator-config"
    instance = client.instance(
        path.instance,
        configuration_name=instance_config,
        display_name=path.instance,
        node_count=1,
    )
    try:
        instance.create().result(CREATE_TIMEOUT_S)
    except api_exceptions.AlreadyExists:
        pass  # created concurrently by someone else: fine
    except api_exceptions.GoogleAPICallError as e:
        raise LedgerSourceError(
            f"cannot create Spanner instance {path.instance_name} on {where}: {_one_line(e)}"
        ) from e


def open_ledger_database(
    path: DatabasePath | str,
    emulator_host: str | None = None,
    stream: str = CHANGE_STREAM_NAME,
    timeout: float = PROBE_TIMEOUT_S,
) -> Database:
    """The ledger database, after checking within seconds that it and its change stream exist."""
    path = _as_path(path)
    client = spanner_client(path.project, emulator_host)
    where = _endpoint_label(emulator_host)
    if not _instance_exists(client, path, where, timeout):
        raise LedgerSourceError(f"Spanner instance {path.instance_name} not found on {where}")
    if not _database_exists(client, path, where, timeout):
        raise LedgerSourceError(f"Spanner database {path} not found on {where}")
    database = client.instance(path.instance).database(path.database)
    if not _change_stream_exists(database, stream, where, timeout):
        raise LedgerSourceError(
            f"Spanner database {path} has no change stream {stream} "
            "(create it with the ledger DDL)"
        )
    return database


def database_now(database: Database) -> datetime:
    """The database's own clock: the commit timestamp of an empty transaction.

    Take change-stream windows around fresh writes from this, not from the local clock: the
    emulator's commit timestamps run ahead of the wall clock (about 1 µs per transaction it has
    committed, never caught up), so `datetime.now()` just after a commit can be earlier than the
    commit, and a start taken from it can precede a just-created change stream.
    """
    with database.batch() as batch:
        pass
    return batch.committed


def _instance_exists(client, path: DatabasePath, where: str, timeout=PROBE_TIMEOUT_S) -> bool:
    try:
        client.instance_admin_api.get_instance(
            name=path.instance_name, retry=None, timeout=timeout
        )
        return True
    except api_exceptions.NotFound:
        return False
    except api_exceptions.PermissionDenied:
        return True  # a database-level role may not see the instance; the database check decides
    except api_exceptions.GoogleAPICallError as e:
        raise _unreachable(where, e) from e


def _database_exists(client, path: DatabasePath, where: str, timeout=PROBE_TIMEOUT_S) -> bool:
    try:
        client.database_admin_api.get_database(name=str(path), retry=None, timeout=timeout)
        return True
    except api_exceptions.NotFound:
        return False
    except api_exceptions.GoogleAPICallError as e:
        raise _unreachable(where, e) from e


def _change_stream_exists(database: Database, stream: str, where: str, timeout: float) -> bool:
    sql = (
        "SELECT COUNT(*) FROM INFORMATION_SCHEMA.CHANGE_STREAMS "
        "WHERE CHANGE_STREAM_NAME = @name"
    )
    try:
        with database.snapshot() as snapshot:
            rows = list(
                snapshot.execute_sql(
                    sql,
                    params={"name": stream},
                    param_types={"name": param_types.STRING},
                    retry=None,
                    timeout=timeout,
                )
            )
    except api_exceptions.GoogleAPICallError as e:
        raise _unreachable(where, e) from e
    return rows[0][0] > 0


def _endpoint_label(emulator_host: str | None) -> str:
    host = emulator_host_in_use(emulator_host)
    return f"the Spanner emulator at {host}" if host else "Cloud Spanner"


def _unreachable(where: str, error: Exception) -> LedgerSourceError:
    if isinstance(error, (api_exceptions.ServiceUnavailable, api_exceptions.DeadlineExceeded)):
        return LedgerSourceError(f"cannot reach {where}: {_one_line(error)}")
    return LedgerSourceError(f"cannot use {where}: {_one_line(error)}")


def _one_line(error: Exception, limit: int = 300) -> str:
    """The first line of an API error, without gRPC's multi-line debug details."""
    message = getattr(error, "message", None) or str(error)
    first = str(message).strip().splitlines()[0] if str(message).strip() else type(error).__name__
    return first if len(first) <= limit else first[: limit - 1] + "…"
