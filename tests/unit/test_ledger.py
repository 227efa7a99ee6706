"""The ledger: identities, write-ahead transitions, resume queries, concurrent readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccwatch.ledger import Ledger, PlannedOutput, State, job_tag


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "state" / "ledger.sqlite3")


def test_identity_is_folder_path_size_mtime(ledger: Ledger) -> None:
    """The same version is added once; a changed size or mtime is a new version."""
    first = ledger.add("f", "a.png", 10, 111, rule=0, template="t", now=1.0)
    assert first is not None and first.state is State.SETTLED
    assert ledger.add("f", "a.png", 10, 111, rule=0, template="t", now=2.0) is None
    assert ledger.add("f", "a.png", 10, 222, rule=0, template="t", now=2.0) is not None
    assert ledger.add("f", "a.png", 11, 111, rule=0, template="t", now=2.0) is not None
    assert ledger.add("g", "a.png", 10, 111, rule=0, template="t", now=2.0) is not None
    assert ledger.known_identities("f") == set()  # settled rows are still to be noted by scans
    for e in ledger.active():
        ledger.update(e.id, now=3.0, state=State.DONE)
    assert ledger.known_identities("f") == {("a.png", 10, 111), ("a.png", 10, 222), ("a.png", 11, 111)}


def test_requeue_makes_a_new_attempt(ledger: Ledger) -> None:
    """``ccwatch retry`` queues a failed version again with a fresh attempt and no old job."""
    e = ledger.add("f", "a.png", 10, 111, rule=0, template="t", now=1.0)
    assert e is not None
    ledger.update(e.id, now=2.0, state=State.FAILED, job_tag="ccwatch-1-1", job_id="j",
                  error={"code": "X"})
    assert ledger.failed_for_path("f", "a.png") is not None
    again = ledger.requeue(e.id, now=3.0)
    assert (again.state, again.attempt, again.job_id, again.job_tag, again.error) == (
        State.SETTLED, 2, None, None, None)
    assert ledger.failed_for_path("f", "a.png") is None
    assert [x.id for x in ledger.active()] == [e.id]


def test_transitions_keep_what_resume_needs(ledger: Ledger) -> None:
    """Tag, job ids and planned outputs survive a reopen (a restart)."""
    e = ledger.add("f", "sub/a.png", 10, 1, rule=1, template="to-jpg", now=1.0)
    assert e is not None
    ledger.update(e.id, now=2.0, state=State.SUBMITTING, job_tag=job_tag(e.id, 1))
    ledger.update(e.id, now=3.0, state=State.UPLOADING, job_id="j1", upload_task_id="t1")
    out = PlannedOutput("a.jpg", "http://x/a.jpg", 5, final_path="/out/a.jpg")
    ledger.update(e.id, now=4.0, state=State.DELIVERING, outputs=(out,))
    ledger.close()

    reopened = Ledger(ledger.path)
    [active] = reopened.active()
    assert active.state is State.DELIVERING
    assert active.job_tag == f"ccwatch-{e.id}-1"
    assert (active.job_id, active.upload_task_id) == ("j1", "t1")
    assert active.outputs == (out,)
    assert active.updated_at == 4.0 and active.first_seen == 1.0


def test_terminal_states_leave_the_active_list(ledger: Ledger) -> None:
    """done, failed and skipped entries are not resumed; counts group by state."""
    ids = []
    for name in ("a", "b", "c", "d"):
        e = ledger.add("f", name, 1, 1, rule=0, template="t", now=1.0)
        assert e is not None
        ids.append(e.id)
    ledger.update(ids[0], now=2, state=State.DONE)
    ledger.update(ids[1], now=2, state=State.FAILED, error={"code": "X", "message": "m"})
    ledger.update(ids[2], now=2, state=State.SKIPPED)
    assert [e.id for e in ledger.active()] == [ids[3]]
    assert ledger.count_by_state("f") == {"done": 1, "failed": 1, "skipped": 1, "settled": 1}
    assert ledger.get(ids[1]).error == {"code": "X", "message": "m"}
    assert [e.id for e in ledger.recent(State.FAILED)] == [ids[1]]


def test_forget_and_unknown_fields(ledger: Ledger) -> None:
    """A vanished file's row can be dropped; a typo in a field name is refused."""
    e = ledger.add("f", "a", 1, 1, rule=0, template="t", now=1.0)
    assert e is not None
    with pytest.raises(ValueError, match="not ledger fields"):
        ledger.update(e.id, now=2, stat="done")
    ledger.forget(e.id)
    with pytest.raises(KeyError):
        ledger.get(e.id)


def test_readonly_reader_sees_writes_while_open(ledger: Ledger) -> None:
    """``ccwatch status`` opens the file read-only while the daemon holds it (WAL)."""
    e = ledger.add("f", "a", 1, 1, rule=0, template="t", now=1.0)
    assert e is not None
    reader = Ledger(ledger.path, readonly=True)
    assert reader.count_by_state() == {"settled": 1}
    ledger.update(e.id, now=2, state=State.DONE)
    assert reader.count_by_state() == {"done": 1}
    ledger.set_meta("paused", {"reason": "402"})
    assert reader.get_meta("paused") == {"reason": "402"}


def test_updates_work_without_returning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite older than 3.35 (no UPDATE … RETURNING) an update reads the row back instead."""
    import ccwatch.ledger

    monkeypatch.setattr(ccwatch.ledger, "_HAS_RETURNING", False)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    e = ledger.add("f", "a", 1, 1, rule=0, template="t", now=1.0)
    assert e is not None
    done = ledger.update(e.id, now=2.0, state=State.DONE, job_id="j")
    assert (done.state, done.job_id, done.updated_at) == (State.DONE, "j", 2.0)
    with pytest.raises(KeyError):
        ledger.update(999, now=3.0, state=State.DONE)
