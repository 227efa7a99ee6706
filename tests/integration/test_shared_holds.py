"""Hosts sharing a PostgreSQL ledger share the account-wide holds: a 429's wait and an account pause
seen by one host hold the other's submissions; the first host whose call goes through resumes all.

Two hosts' gates and claim keepers over one real database (the pipeline's own parts, no daemon):
``tend`` is what each host's pipeline runs every third of a lease.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ccwatch.errors import AccountError
from ccwatch.ledger.postgres import PostgresLedger
from ccwatch.pipeline.claims import ClaimKeeper
from ccwatch.pipeline.gate import SubmissionGate
from ccwatch.pipeline.pacing import CreatePacer

LEASE_S = 3.0
PROBE_S = 30.0


class Host:
    def __init__(self, url: str, name: str) -> None:
        self.ledger = PostgresLedger(url, host=name, lease_s=LEASE_S)
        self.gate = SubmissionGate(self.ledger, probe_s=PROBE_S, pacer=CreatePacer())
        self.keeper = ClaimKeeper(self.ledger, self.gate, lease_s=LEASE_S, now=0.0)
        self._turn = 0.0

    def tend(self, now: float, wall: float) -> None:
        """One renewal turn (each call is a renewal period later, so it is always due)."""
        self._turn += LEASE_S
        self.keeper.tend(now + self._turn, wall)


@pytest.fixture
def hosts(pg_url: str) -> Iterator[tuple[Host, Host]]:
    a, b = Host(pg_url, "a"), Host(pg_url, "b")
    yield a, b
    a.ledger.close()
    b.ledger.close()


def test_a_429_on_one_host_holds_the_others(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    wall = 1_000.0
    a.keeper.share_hold(wall + 20.0)  # a got a 429 with Retry-After 20 s
    b.tend(0.0, wall)
    now = LEASE_S  # b's monotonic time at that turn
    assert not b.gate.admits(1, now + 5.0, creates=True)
    assert b.gate.held_until(1, now + 5.0, creates=True) == pytest.approx(now + 20.0)
    assert b.gate.admits(1, now + 20.5, creates=True)


def test_an_account_pause_is_followed_and_lifted_by_the_other_host(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    a.gate.paused(AccountError("credits exceeded", http_status=402), now=0.0, wall=1_000.0)
    b.tend(0.0, 1_000.0)
    assert b.gate.pause is not None and b.gate.pause.reason == "credits exceeded"
    assert not b.gate.admits(1, LEASE_S + 1.0, creates=True)  # no probe of its own before probe_s
    a.gate.succeeded()  # a's probe went through
    b.tend(0.0, 1_010.0)
    assert b.gate.pause is None
    assert b.gate.admits(1, 2 * LEASE_S + 1.0, creates=True)
