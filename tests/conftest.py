"""Shared fixtures: a real Cloud Spanner emulator and fresh ledger databases in it.

The emulator is started here on a free loopback port and stopped by PID; nothing assumes one is
already running. A missing emulator FAILS the tests instead of skipping them, so CI cannot pass
without having exercised the real change stream.
"""
from __future__ import annotations

import uuid

import pytest

from pipelines.spanner_emulator import SpannerEmulator, find_emulator_binary
from transforms.spanner_ledger import DatabasePath, create_ledger_database

TEST_PROJECT = "rex-test"
TEST_INSTANCE = "rex-test"

# The emulator splits and merges change stream partitions every 20 s by default; every 2 s
# makes short tests walk real partition trees (measured: a split or merge every ~2 s).
FAST_PARTITION_CHURN = (
    "--change_stream_churning_interval=2s",
    "--change_stream_churn_thread_sleep_interval=1s",
)


@pytest.fixture(autouse=True)
def masking_keys(monkeypatch):
    """Contracts that pseudonymise names read their key from the environment (a secret in production)."""
    monkeypatch.setenv("REX_MASKING_KEY_CORAL_RE", "test-masking-key")


@pytest.fixture(scope="session")
def spanner_emulator():
    binary = find_emulator_binary()
    if binary is None:
        pytest.fail(
            "Cloud Spanner emulator not found (install google-cloud-cli-spanner-emulator or "
            "set SPANNER_EMULATOR_BINARY); these tests must not be skipped"
        )
    emulator = SpannerEmulator(binary=binary, extra_args=FAST_PARTITION_CHURN)
    with emulator:
        yield emulator


@pytest.fixture
def ledger_db(spanner_emulator, monkeypatch):
    """A new, empty ledger database with the ledger DDL and change stream: (path, Database)."""
    monkeypatch.setenv("SPANNER_EMULATOR_HOST", spanner_emulator.host_port)
    path = DatabasePath(TEST_PROJECT, TEST_INSTANCE, f"ledger-{uuid.uuid4().hex[:16]}")
    return path, create_ledger_database(path)
