"""The submission gate: 429 holds, account pauses with one probe, and what lifts them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccwatch.errors import AccountError
from ccwatch.ledger import Ledger
from ccwatch.pipeline.gate import SubmissionGate
from ccwatch.pipeline.pacing import CreatePacer


def _gate(tmp_path: Path, pacer: CreatePacer | None = None) -> tuple[SubmissionGate, Ledger]:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    return SubmissionGate(ledger, probe_s=30.0, pacer=pacer or CreatePacer()), ledger


def test_a_429_holds_every_submission_until_it_passes(tmp_path: Path) -> None:
    """Nothing is admitted before the hold ends, queued work is told when to come back."""
    gate, _ = _gate(tmp_path)
    gate.hold(110.0)
    assert not gate.admits(1, 100.0, creates=True)
    assert gate.held_until(1, 100.0, creates=True) == 110.0
    assert gate.admits(1, 110.0, creates=True)
    assert gate.held_until(1, 110.0, creates=True) is None


def test_a_pause_lets_one_probe_through_per_interval(tmp_path: Path) -> None:
    """Paused: nothing until the probe time, then exactly one entry; status sees the reason."""
    gate, ledger = _gate(tmp_path)
    next_probe = gate.paused(AccountError("out of credits", http_status=402), now=100.0, wall=5.0)
    assert next_probe == 130.0
    assert ledger.get_meta("paused") == {"reason": "out of credits", "since": 5.0}
    assert not gate.admits(1, 120.0, creates=True)
    assert gate.admits(7, 130.0, creates=True)  # the probe
    assert not gate.admits(8, 130.5, creates=True)
    assert gate.held_until(7, 130.5, creates=True) is None
    assert gate.held_until(8, 130.5, creates=True) == 160.0


def test_what_lifts_a_pause(tmp_path: Path) -> None:
    """Any successful submission lifts it; a successful status read only lifts a 401's."""
    gate, ledger = _gate(tmp_path)
    gate.paused(AccountError("no credits", http_status=402), now=0.0, wall=0.0)
    gate.succeeded(only_auth=True)
    assert gate.pause is not None
    gate.succeeded()
    assert gate.pause is None and ledger.get_meta("paused") is None
    gate.paused(AccountError("bad key", http_status=401), now=0.0, wall=0.0)
    gate.succeeded(only_auth=True)
    assert gate.pause is None


def test_creation_pacing_holds_only_new_jobs(tmp_path: Path) -> None:
    """The rate window's pacing applies to submissions that create a job, not to uploads being
    resumed; the gate says when it reopens."""
    pacer = CreatePacer()
    gate, _ = _gate(tmp_path, pacer)
    pacer.refused(0.0, 0.0, 5.0)  # the window ends at 5.0
    assert not gate.admits(1, 1.0, creates=True)
    assert gate.admits(1, 1.0, creates=False)
    assert 5.0 <= gate.reopens_at(1.0) <= 5.1
    assert gate.admits(1, 5.1, creates=True)


def test_a_create_queued_before_a_429_waits_its_retry_after_and_is_uncounted(
        tmp_path: Path) -> None:
    """Two creates admitted at once; the first is refused (Retry-After 2) before the worker
    sends the second: the second waits too, and no longer counts as in flight."""
    pacer = CreatePacer()
    gate, _ = _gate(tmp_path, pacer)
    pacer.answered(0.0, 0.0, 2)
    assert gate.admits(1, 0.0, creates=True) and gate.admits(2, 0.0, creates=True)
    pacer.refused(0.0, 0.1, 2.0)  # the first one's answer: another host took the window's last
    with gate.submitting(creates=True):  # the worker's look, just before sending: held
        assert gate.held_until(2, 0.2, creates=True) == pytest.approx(2.1)
    assert gate.held_until(3, 0.2, creates=False) is None  # resuming an upload creates nothing
    assert not gate.admits(2, 2.0, creates=True)
    assert gate.admits(2, 2.2, creates=True)  # opens the next window
    pacer.answered(2.2, 2.3, 4)
    assert sum(gate.admits(n, 2.4, creates=True) for n in range(10, 20)) == 4  # all four left


def test_low_credits_hold_new_jobs_only_and_lift_by_themselves(tmp_path: Path) -> None:
    """Below min_credits no job is created (work already submitted goes on); status sees
    why; enough credits lift it; an account pause keeps its own, more precise reason."""
    gate, ledger = _gate(tmp_path)
    gate.credits(10, 50, wall=5.0)
    assert not gate.admits(1, 100.0, creates=True)
    assert gate.admits(2, 100.0, creates=False)
    why = gate.why_paused()
    assert why is not None and "only 10 credits left, below min_credits = 50" in why[0]
    assert ledger.get_meta("paused") == {"reason": why[0], "since": 5.0}
    gate.credits(20, 50, wall=6.0)  # still low: nothing changes, nothing is written again
    assert gate.why_paused() == why
    gate.credits(50, 50, wall=7.0)
    assert gate.admits(1, 100.0, creates=True)
    assert gate.why_paused() is None and ledger.get_meta("paused") is None


def test_a_pause_probe_that_creates_a_job_keeps_to_the_rate_window(tmp_path: Path) -> None:
    pacer = CreatePacer()
    gate, _ = _gate(tmp_path, pacer)
    pacer.answered(0.0, 0.0, 5)
    pacer.refused(0.0, 0.1, 50.0)  # another create: the window ends 50 s on
    gate.paused(AccountError("out of credits", http_status=402), now=0.0, wall=5.0)
    assert not gate.admits(7, 30.0, creates=True)  # the probe is due, but it would create a job
    assert gate.admits(8, 30.0, creates=False)  # resuming an upload creates none: it probes
    assert gate.held_until(8, 30.1, creates=False) is None
