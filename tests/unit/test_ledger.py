"""The ledger: identities, write-ahead transitions, resume queries, concurrent readers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from ccwatch.errors import IllegalTransition
from ccwatch.ledger import ACTIVE, TERMINAL, TRANSITIONS, Ledger, PlannedOutput, State, job_tag

HAPPY_PATH = (State.SUBMITTING, State.UPLOADING, State.PROCESSING, State.DELIVERING, State.DONE)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "state" / "ledger.sqlite3")


def finish(ledger: Ledger, entry_id: int, now: float) -> None:
    """Walk a settled row along the happy path to ``done`` (the only way there)."""
    for state in HAPPY_PATH:
        ledger.update(entry_id, now=now, state=state)


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
        finish(ledger, e.id, now=3.0)
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
    ledger.update(e.id, now=2.0, state=State.SUBMITTING,
                  job_tag=job_tag(ledger.installation_id, e.id, 1))
    ledger.update(e.id, now=3.0, state=State.UPLOADING, job_id="j1", upload_task_id="t1")
    ledger.update(e.id, now=3.5, state=State.PROCESSING)
    out = PlannedOutput("a.jpg", "http://x/a.jpg", 5, final_path="/out/a.jpg")
    ledger.update(e.id, now=4.0, state=State.DELIVERING, outputs=(out,))
    ledger.close()

    reopened = Ledger(ledger.path)
    [active] = reopened.active()
    assert active.state is State.DELIVERING
    assert active.job_tag == f"ccwatch-{reopened.installation_id}-{e.id}-1"
    assert (active.job_id, active.upload_task_id) == ("j1", "t1")
    assert active.outputs == (out,)
    assert active.updated_at == 4.0 and active.first_seen == 1.0


def test_terminal_states_leave_the_active_list(ledger: Ledger) -> None:
    """done and failed entries are not resumed; counts group by state."""
    ids = []
    for name in ("a", "b", "c"):
        e = ledger.add("f", name, 1, 1, rule=0, template="t", now=1.0)
        assert e is not None
        ids.append(e.id)
    finish(ledger, ids[0], now=2)
    ledger.update(ids[1], now=2, state=State.FAILED, error={"code": "X", "message": "m"})
    assert [e.id for e in ledger.active()] == [ids[2]]
    assert ledger.count_by_state("f") == {"done": 1, "failed": 1, "settled": 1}
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
    finish(ledger, e.id, now=2)
    assert reader.count_by_state() == {"done": 1}
    ledger.set_meta("paused", {"reason": "402"})
    assert reader.get_meta("paused") == {"reason": "402"}


def test_updates_work_without_returning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite older than 3.35 (no UPDATE … RETURNING) an update reads the row back instead."""
    import ccwatch.ledger.sqlite

    monkeypatch.setattr(ccwatch.ledger.sqlite, "_HAS_RETURNING", False)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    e = ledger.add("f", "a", 1, 1, rule=0, template="t", now=1.0)
    assert e is not None
    started = ledger.update(e.id, now=2.0, state=State.SUBMITTING, job_id="j")
    assert (started.state, started.job_id, started.updated_at) == (State.SUBMITTING, "j", 2.0)
    with pytest.raises(IllegalTransition, match="submitting → done"):
        ledger.update(e.id, now=3.0, state=State.DONE)
    with pytest.raises(KeyError):
        ledger.update(999, now=3.0, state=State.SUBMITTING)


def at(ledger: Ledger, state: State, name: str = "a") -> int:
    """A new row brought to ``state`` by allowed writes only."""
    e = ledger.add("f", name, 1, 1, rule=0, template="t", now=1.0)
    assert e is not None
    if state is State.FAILED:
        path: tuple[State, ...] = (State.FAILED,)
    elif state is State.SETTLED:
        path = ()
    else:
        path = HAPPY_PATH[: HAPPY_PATH.index(state) + 1]
    for step in path:
        ledger.update(e.id, now=1.0, state=step)
    return e.id


ILLEGAL_CLASSES = [
    pytest.param(State.DONE, State.UPLOADING, id="done is final"),
    pytest.param(State.DONE, State.FAILED, id="done never fails afterwards"),
    pytest.param(State.FAILED, State.PROCESSING, id="failed only goes back to settled"),
    pytest.param(State.SETTLED, State.DONE, id="settled cannot skip ahead"),
    pytest.param(State.UPLOADING, State.DELIVERING, id="uploading cannot skip processing"),
    pytest.param(State.PROCESSING, State.SUBMITTING, id="no step backwards"),
    pytest.param(State.DELIVERING, State.SETTLED, id="only a failed row is queued again"),
    pytest.param(State.PROCESSING, State.PROCESSING, id="no write of the state it is in"),
]


@pytest.mark.parametrize(("current", "target"), ILLEGAL_CLASSES)
def test_illegal_transition_raises_and_writes_nothing(ledger: Ledger, current: State,
                                                      target: State) -> None:
    entry_id = at(ledger, current)
    before = ledger.get(entry_id)
    with pytest.raises(IllegalTransition, match=f"{current} → {target}") as raised:
        ledger.update(entry_id, now=9.0, state=target, job_id="other")
    assert (raised.value.current, raised.value.target) == (current, target)
    assert ledger.get(entry_id) == before  # neither the state nor the other fields were written


def test_every_pair_outside_the_table_is_refused(ledger: Ledger) -> None:
    """The table is the whole truth: every write it lists works, every other one raises."""
    for n, (current, target) in enumerate((c, t) for c in State for t in State):
        entry_id = at(ledger, current, name=f"{n}")
        if target in TRANSITIONS[current]:
            assert ledger.update(entry_id, now=2.0, state=target).state is target
        else:
            with pytest.raises(IllegalTransition):
                ledger.update(entry_id, now=2.0, state=target)


def test_every_active_state_can_fail() -> None:
    """What the docstring diagram draws: any active state can end in ``failed`` (quarantine)."""
    assert ACTIVE == (State.SETTLED, State.SUBMITTING, State.UPLOADING, State.PROCESSING,
                      State.DELIVERING)
    assert all(State.FAILED in TRANSITIONS[s] for s in ACTIVE)
    assert not set(ACTIVE) & TERMINAL


def test_requeue_only_from_failed(ledger: Ledger) -> None:
    """``ccwatch retry`` cannot restart a row that is done or still running."""
    for n, state in enumerate((State.DONE, State.PROCESSING, State.SETTLED)):
        entry_id = at(ledger, state, name=f"{n}")
        with pytest.raises(IllegalTransition, match=f"{state} → settled"):
            ledger.requeue(entry_id, now=2.0)


def test_unrequeue_restores_the_failed_row_unless_started(ledger: Ledger) -> None:
    """The undo of a retry that could not move the file back: the row is failed again, as it was,
    but never once the daemon has started the new attempt."""
    failed = ledger.update(at(ledger, State.SETTLED), now=2.0, state=State.FAILED,
                           job_tag="ccwatch-1-1", job_id="j", error={"code": "X"})
    ledger.requeue(failed.id, now=3.0)
    restored = ledger.unrequeue(failed, now=4.0)
    assert restored == replace(failed, updated_at=4.0)

    ledger.requeue(failed.id, now=5.0)
    ledger.update(failed.id, now=6.0, state=State.SUBMITTING)
    with pytest.raises(IllegalTransition, match="submitting → failed"):
        ledger.unrequeue(failed, now=7.0)
    assert ledger.get(failed.id).state is State.SUBMITTING


def test_architecture_doc_prints_the_transition_table() -> None:
    """docs/architecture.md shows exactly ``TRANSITIONS`` (one row per state, in order)."""
    doc = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if re.match(r"\| `\w+` \|", line)]
    printed = {}
    for row in rows:
        state, _meaning, nexts = (cell.strip() for cell in row.strip("|").split("|"))
        printed[State(state.strip("`"))] = frozenset(State(s) for s in re.findall(r"`(\w+)`", nexts))
    assert [s for s in printed] == list(State)
    assert printed == TRANSITIONS


def test_installation_id_is_made_with_the_ledger_and_kept(tmp_path: Path) -> None:
    """Random per ledger, the same after a reopen, different for a wiped and recreated state dir."""
    first = Ledger(tmp_path / "a" / "ledger.sqlite3")
    kept = first.installation_id
    first.close()
    assert Ledger(tmp_path / "a" / "ledger.sqlite3").installation_id == kept
    assert Ledger(tmp_path / "a" / "ledger.sqlite3", readonly=True).installation_id == kept
    assert Ledger(tmp_path / "b" / "ledger.sqlite3").installation_id != kept
    assert len({job_tag(kept, 1, 1), job_tag(kept, 1, 2), job_tag("other", 1, 1)}) == 3


def test_an_old_ledger_gets_an_installation_id_and_keeps_its_old_tags(tmp_path: Path) -> None:
    """A ledger from before installation ids: opened, it gets one; its in-flight tag is untouched."""
    path = tmp_path / "ledger.sqlite3"
    old = Ledger(path)
    e = old.add("f", "a.png", 1, 1, rule=0, template="t", now=1.0)
    assert e is not None
    old.update(e.id, now=2.0, state=State.SUBMITTING, job_tag=f"ccwatch-{e.id}-1")
    old._db.execute("DELETE FROM meta")  # as written by a version without installation ids
    old.close()
    reopened = Ledger(path)
    assert reopened.installation_id
    [active] = reopened.active()
    assert active.job_tag == f"ccwatch-{e.id}-1"


def _steps(ledger: Ledger, call: Callable[[], object]) -> int:
    """SQLite virtual-machine steps (in thousands) ``call`` takes: a cost that does not depend on
    the machine's speed or load."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    db = ledger._db  # white box: the store's own connection
    db.set_progress_handler(count, 1000)
    try:
        call()
    finally:
        db.set_progress_handler(None, 0)
    return steps[0]


def test_a_deliverys_lookups_cost_the_same_at_any_backlog(ledger: Ledger) -> None:
    """What each delivery asks the ledger (earlier outputs of its path, failed versions, unplanned
    elders) reads an index range, not every done row of the folder: the same number of steps
    with 100 done rows as with 5,000."""
    def lookups(n: int) -> int:
        return _steps(ledger, lambda: (ledger.earlier_outputs("f", f"x{n}.png", 10**9),
                                       ledger.failed_for_path("f", f"x{n}.png"),
                                       ledger.unplanned_before("f", 10**9)))

    def fill(upto: int) -> None:
        start = ledger.count_by_state("f").get("done", 0)
        with ledger._tx() as db:
            db.executemany(
                "INSERT INTO files (folder, relpath, size, mtime_ns, state, rule, template,"
                " outputs, first_seen, updated_at) VALUES ('f', ?, 1, 1, 'done', 0, 't', ?, 1, 1)",
                ((f"d{i}.png", '[{"final_path": "out/d.jpg", "size": 1}]')
                 for i in range(start, upto)))

    fill(100)
    small = lookups(100)
    fill(5000)
    assert lookups(5000) <= small + 1


def test_in_flight_lookups_cost_the_same_at_any_backlog(ledger: Ledger) -> None:
    """What a restart, a rename and the status page ask about the rows in flight reads the
    state index, not every done row: the same steps with 100 done rows as with 5,000."""
    for name in ("a", "b", "c"):
        at(ledger, State.PROCESSING, name)

    def lookups() -> int:
        return _steps(ledger, lambda: (ledger.active(), ledger.oldest_in_flight("f"),
                                       ledger.oldest_in_flight(),
                                       ledger.in_flight_like("f", 1, 1),
                                       ledger.unplanned_before("f", 10**9)))

    def fill(upto: int) -> None:
        with ledger._tx() as db:
            db.executemany(
                "INSERT INTO files (folder, relpath, size, mtime_ns, state, rule, template,"
                " first_seen, updated_at) VALUES ('f', ?, 1, ?, 'done', 0, 't', 1, 1)",
                ((f"d{i}.png", 1000 + i) for i in range(max(0, upto - 100), upto)))

    fill(100)
    small = lookups()
    for upto in range(200, 5001, 100):
        fill(upto)
    assert len(ledger.active()) == 3
    assert lookups() <= small + 1


def test_an_older_ledger_loses_the_indexes_a_state_change_rewrote(tmp_path: Path) -> None:
    """A state change rewrites every index holding the state: (state) and (folder, state, id)
    are one index now, one input's versions are indexed without it, and a ledger made before
    keeps its rows and loses the old ones."""
    import sqlite3

    path = tmp_path / "ledger.sqlite3"
    Ledger(path).add("f", "a.png", 1, 1, rule=0, template="t", now=1.0)
    db = sqlite3.connect(path)
    db.execute("CREATE INDEX files_state ON files (state)")
    db.execute("CREATE INDEX files_queue ON files (folder, state, id)")
    db.execute("CREATE INDEX files_history ON files (folder, relpath, state, id)")
    db.commit()
    db.close()
    reopened = Ledger(path)
    indexes = {r[1] for r in reopened._db.execute("PRAGMA index_list(files)")}
    assert {"files_by_state", "files_by_path"} <= indexes
    assert not indexes & {"files_state", "files_queue", "files_history"}
    assert [e.relpath for e in reopened.active()] == ["a.png"]


def test_a_state_change_writes_few_pages(ledger: Ledger) -> None:
    """Each state change appends the pages it touched to the WAL: the row's and the state
    index's, not those of an index that did not need the state (3.5 a change before, 2.5 now)."""
    ids = []
    for i in range(200):
        entry = ledger.add("f", f"d{i}.png", 1, i, rule=0, template="t", now=1.0)
        assert entry is not None
        ids.append(entry.id)
    ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # white box: count from an empty WAL
    for entry_id in ids:
        ledger.update(entry_id, now=2.0, state=State.SUBMITTING, job_tag="t")
    [(_, frames, _)] = ledger._db.execute("PRAGMA wal_checkpoint")
    assert frames <= 3 * len(ids)


@pytest.mark.parametrize("returning", [True, False])
def test_meta_written_with_a_state_lands_with_it_or_not_at_all(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, returning: bool) -> None:
    """``done`` and the job to delete are one transaction: a refused transition leaves no meta,
    an allowed one writes both; ``set_metas`` sets and removes several keys at once."""
    import ccwatch.ledger.sqlite

    monkeypatch.setattr(ccwatch.ledger.sqlite, "_HAS_RETURNING", returning)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    entry_id = at(ledger, State.PROCESSING)
    with pytest.raises(IllegalTransition):
        ledger.update(entry_id, now=2.0, state=State.DONE, meta={"jobs/j1": True})
    assert ledger.get_meta("jobs/j1") is None
    ledger.update(entry_id, now=2.0, state=State.DELIVERING)
    done = ledger.update(entry_id, now=3.0, state=State.DONE, meta={"jobs/j1": True})
    assert done.state is State.DONE and ledger.get_meta("jobs/j1") is True
    ledger.set_metas({"jobs/j1": None, "jobs/j2": True, "jobs/j3": [1]})
    assert ledger.meta_under("jobs/") == {"jobs/j2": True, "jobs/j3": [1]}
