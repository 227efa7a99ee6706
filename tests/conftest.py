"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ccwatch.emulator import Emulator, serve

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
