"""Fixtures shared by every test directory."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from ccwatch.emulator import Emulator, serve
from ccwatch.testing import PostgresCluster, postgres_cluster

API_KEY = "test-key"
WEBHOOK_SECRET = "test-secret"


@pytest.fixture
def api_key() -> str:
    """The Bearer key the ``emulator`` fixture accepts."""
    return API_KEY


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A CloudConvert emulator served on a free loopback port; ``.base_url`` is set."""
    with Emulator(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET,
                  webhook_retry_pause_s=0.05) as emu, serve(emu):
        yield emu


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL server (initdb + pg_ctl in a temp dir), started once per session."""
    with postgres_cluster() as cluster:
        yield cluster


_databases = itertools.count(1)


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """A fresh, empty database on the throwaway server (a shared ledger's ``url``)."""
    return pg_cluster.create_database(f"test{next(_databases)}")
