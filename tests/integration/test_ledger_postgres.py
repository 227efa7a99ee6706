"""The shared ledger on a real PostgreSQL server: one claim per file version, leases, takeover,
schema migration and a lost connection. No mock: a throwaway cluster (see ``pg_cluster``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from ccwatch.errors import ClaimLost, IllegalTransition, LedgerUnavailable
from ccwatch.ledger import State, job_tag
from ccwatch.ledger.postgres import PostgresLedger
from ccwatch.testing import PostgresCluster, wait_for

LEASE_S = 0.6


@pytest.fixture
def hosts(pg_url: str) -> Iterator[tuple[PostgresLedger, PostgresLedger]]:
    a = PostgresLedger(pg_url, host="host-a", lease_s=LEASE_S)
    b = PostgresLedger(pg_url, host="host-b", lease_s=LEASE_S)
    yield a, b
    a.close()
    b.close()


def test_schema_is_created_once_and_hosts_share_one_installation_id(pg_url: str) -> None:
    first = PostgresLedger(pg_url, host="a")
    second = PostgresLedger(pg_url, host="b")  # migrates nothing: the schema is there
    assert first.installation_id == second.installation_id
    assert first.get_meta("schema_version") == 4  # files; routes and the version index; queue
    # index; history index
    reader = PostgresLedger(pg_url, host="c", readonly=True)
    assert reader.exists() and reader.installation_id == first.installation_id
    for ledger in (first, second, reader):
        ledger.close()


def test_meta_rows_under_a_prefix_and_none_removes_a_key(pg_url: str) -> None:
    ledger = PostgresLedger(pg_url, host="a")
    for key in ("jobs@a/1", "jobs@a/2", "jobs@b/3", "jobs@a"):
        ledger.set_meta(key, True)
    ledger.set_meta("jobs@a/2", None)
    assert ledger.meta_under("jobs@a/") == {"jobs@a/1": True}
    assert ledger.get_meta("jobs@a/2") is None
    ledger.close()


def test_the_unplanned_files_before_one_are_found_on_the_index(pg_url: str) -> None:
    ledger = PostgresLedger(pg_url, host="a")
    ids = []
    for name in ("a", "b", "c"):
        entry = ledger.add("inbox", f"{name}.png", 10, 1, rule=0, template="t", now=1.0)
        assert entry is not None
        ids.append(entry.id)
    assert [e.relpath for e in ledger.unplanned_before("inbox", ids[2])] == ["a.png", "b.png"]
    assert ledger.unplanned_before("other", ids[2]) == []
    ledger.close()


def test_a_database_from_a_newer_ccwatch_is_refused(pg_url: str) -> None:
    ledger = PostgresLedger(pg_url, host="a")
    ledger.set_meta("schema_version", 99)
    ledger.close()
    with pytest.raises(LedgerUnavailable, match="newer"):
        PostgresLedger(pg_url, host="a")


def test_each_version_is_added_once_and_claimed_by_the_host_that_starts_it(
        hosts: tuple[PostgresLedger, PostgresLedger]) -> None:
    """A settled row is every host's to start; the first ``submitting`` write claims it."""
    a, b = hosts
    entry = a.add("inbox", "x.png", 10, 1, rule=0, template="t", now=1.0)
    assert entry is not None
    assert b.add("inbox", "x.png", 10, 1, rule=0, template="t", now=1.0) is None
    assert [e.id for e in b.claim_active()] == [entry.id]  # queued: b may start it too
    assert [e.id for e in b.renew()] == [entry.id]
    assert a.update(entry.id, now=2.0, state=State.SUBMITTING,
                    job_tag=job_tag(a.installation_id, entry.id, 1)).state is State.SUBMITTING
    with pytest.raises(ClaimLost, match="host-a"):
        b.update(entry.id, now=2.0, state=State.SUBMITTING)
    assert b.claim_active() == [] and b.renew() == []  # started, and a's lease is fresh
    [holder] = b.holders()
    assert (holder.host, holder.files) == ("host-a", 1) and holder.lease_left_s > 0


def test_an_expired_lease_is_taken_over_and_the_old_owner_is_refused(
        hosts: tuple[PostgresLedger, PostgresLedger]) -> None:
    a, b = hosts
    entry = a.add("inbox", "x.png", 10, 1, rule=0, template="t", now=1.0)
    assert entry is not None
    a.update(entry.id, now=2.0, state=State.SUBMITTING, job_tag="t")
    a.update(entry.id, now=2.0, state=State.UPLOADING, job_id="j1", upload_task_id="t1")
    # a stops renewing (it died); b's renewals find the row once the lease ran out.
    taken = wait_for(b.renew, timeout=10, message="b takes the row over")
    assert [(e.id, e.state, e.job_id) for e in taken] == [(entry.id, State.UPLOADING, "j1")]
    with pytest.raises(ClaimLost, match="host-b"):
        a.update(entry.id, now=3.0, state=State.PROCESSING)
    with pytest.raises(ClaimLost):
        a.forget(entry.id)
    assert b.update(entry.id, now=3.0, state=State.PROCESSING).state is State.PROCESSING
    assert a.renew() == []  # b keeps renewing: nothing for a


def test_renewals_keep_a_claim_past_its_first_lease(hosts: tuple[PostgresLedger, PostgresLedger]) -> None:
    a, b = hosts
    entry = a.add("inbox", "x.png", 10, 1, rule=0, template="t", now=1.0)
    assert entry is not None
    a.update(entry.id, now=2.0, state=State.SUBMITTING)  # started: a's claim
    deadline = time.monotonic() + 3 * LEASE_S
    while time.monotonic() < deadline:  # three leases long, a renewing every third of one
        a.renew()
        assert b.renew() == []
        time.sleep(LEASE_S / 3)  # the renewal cadence itself, not a wait for a result


def test_retry_leaves_a_row_to_whichever_host_takes_it(hosts: tuple[PostgresLedger, PostgresLedger]) -> None:
    a, b = hosts
    entry = a.add("inbox", "x.png", 10, 1, rule=0, template="t", now=1.0)
    assert entry is not None
    a.update(entry.id, now=2.0, state=State.SUBMITTING)  # a's now
    a.update(entry.id, now=2.0, state=State.FAILED, error={"code": "X"})
    again = b.requeue(entry.id, now=3.0)  # `ccwatch retry` on host b
    assert (again.state, again.attempt) == (State.SETTLED, 2)
    assert [e.id for e in a.renew()] == [entry.id]  # nobody's: both hosts track it
    assert b.update(entry.id, now=4.0, state=State.SUBMITTING).state is State.SUBMITTING
    with pytest.raises(ClaimLost):
        a.update(entry.id, now=4.0, state=State.SUBMITTING)


def test_a_lost_connection_is_transient(pg_cluster: PostgresCluster, pg_url: str) -> None:
    ledger = PostgresLedger(pg_url, host="a", lease_s=LEASE_S)
    entry = ledger.add("inbox", "x.png", 10, 1, rule=0, template="t", now=1.0)
    assert entry is not None
    pg_cluster.stop()
    try:
        with pytest.raises(LedgerUnavailable):
            ledger.get(entry.id)
        with pytest.raises(LedgerUnavailable):
            ledger.update(entry.id, now=2.0, state=State.SUBMITTING)
    finally:
        pg_cluster.start()
    # The next call connects again; the failed write did not land.
    assert ledger.get(entry.id).state is State.SETTLED
    assert ledger.update(entry.id, now=3.0, state=State.SUBMITTING).state is State.SUBMITTING
    ledger.close()


def test_transitions_are_checked_in_the_shared_store_too(pg_url: str) -> None:
    """The same table as SQLite's: a forbidden state write raises and writes nothing."""
    ledger = PostgresLedger(pg_url, host="a")
    entry = ledger.add("inbox", "x.png", 10, 1, rule=0, template="t", now=1.0)
    assert entry is not None
    with pytest.raises(IllegalTransition, match="settled → done"):
        ledger.update(entry.id, now=2.0, state=State.DONE, job_id="j")
    assert ledger.get(entry.id).job_id is None
    failed = ledger.update(entry.id, now=3.0, state=State.FAILED, error={"code": "X"})
    ledger.requeue(entry.id, now=4.0)
    assert ledger.unrequeue(failed, now=5.0).state is State.FAILED
    ledger.close()


def test_a_host_queues_and_takes_over_only_the_folders_it_watches(pg_url: str) -> None:
    """A host that does not watch a folder never tracks its rows: it could not convert them."""
    office = PostgresLedger(pg_url, host="a", lease_s=LEASE_S, folders=["office"])
    scans = PostgresLedger(pg_url, host="b", lease_s=LEASE_S, folders=["scans"])
    queued = scans.add("scans", "s.png", 1, 1, rule=0, template="t", now=1.0)
    started = scans.add("scans", "t.png", 1, 1, rule=0, template="t", now=1.0)
    assert queued is not None and started is not None
    scans.update(started.id, now=2.0, state=State.SUBMITTING)
    scans.close()  # host b dies; its lease runs out
    wait_for(lambda: all(h.lease_left_s < 0 for h in office.holders() if h.host == "b"),
             timeout=10, message="b's lease expired")  # so only the folder filter keeps a off
    assert office.claim_active() == [] and office.renew() == []
    everyone = PostgresLedger(pg_url, host="c", lease_s=LEASE_S)
    assert sorted(e.id for e in everyone.renew()) == [queued.id, started.id]
    office.close()
    everyone.close()


def test_routes_renamed_files_and_renamed_folders(hosts: tuple[PostgresLedger, PostgresLedger]) -> None:
    """What issue 11 keeps in the ledger works on the shared store too: a row's route, a file
    renamed in flight (its relpath follows), a folder renamed in the config (its rows follow)."""
    a, b = hosts
    route = {"output_name": "{stem}.{ext}", "on_conflict": "rename", "exports": ["out"]}
    entry = a.add("inbox", "a.png", 10, 7, rule=0, template="t", now=1.0, route=route)
    assert entry is not None and entry.route == route
    assert [e.id for e in b.in_flight_like("inbox", 10, 7)] == [entry.id]
    moved = a.update(entry.id, now=2.0, relpath="sub/b.png")
    assert moved.relpath == "sub/b.png" and moved.route == route
    assert a.rename_folder("inbox", "office") == 1
    assert b.get(entry.id).folder == "office" and b.in_flight_like("inbox", 10, 7) == []


def test_meta_written_with_a_state_lands_with_it_or_not_at_all(pg_url: str) -> None:
    ledger = PostgresLedger(pg_url, host="a")
    entry = ledger.add("inbox", "m.png", 10, 1, rule=0, template="t", now=1.0)
    assert entry is not None
    with pytest.raises(IllegalTransition):
        ledger.update(entry.id, now=2.0, state=State.DONE, meta={"jobs@a/j1": True})
    assert ledger.get_meta("jobs@a/j1") is None
    for state in (State.SUBMITTING, State.UPLOADING, State.PROCESSING, State.DELIVERING):
        ledger.update(entry.id, now=2.0, state=state)
    assert ledger.update(entry.id, now=3.0, state=State.DONE,
                         meta={"jobs@a/j1": True}).state is State.DONE
    assert ledger.get_meta("jobs@a/j1") is True
    ledger.set_metas({"jobs@a/j1": None, "jobs@a/j2": True})
    assert ledger.meta_under("jobs@a/") == {"jobs@a/j2": True}
    ledger.close()


@pytest.mark.parametrize("analysed", [False, True])
def test_a_deliverys_lookups_use_an_index_at_any_backlog(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, analysed: bool) -> None:
    """Delivery's per-file queries (earlier outputs of one input, the unplanned files before one)
    over 20,000 done rows of one folder: each plan reads an index, never the whole folder, with
    or without the statistics autovacuum gathers later."""
    ledger = PostgresLedger(pg_url, host="a")
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO files (folder, relpath, size, mtime_ns, state, outputs, "
                     "first_seen, updated_at) SELECT 'big', 'f' || n || '.png', 10, n, 'done', "
                     "'[{\"final_path\": \"f' || n || '.jpg\", \"size\": 5}]', 1, 1 "
                     "FROM generate_series(1, 20000) AS n")
        if analysed:
            conn.execute("ANALYZE files")
    queries: list[tuple[str, tuple[object, ...]]] = []
    query = ledger._query

    def spy(sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        queries.append((sql, tuple(params)))
        return query(sql, params)

    monkeypatch.setattr(ledger, "_query", spy)
    assert ledger.earlier_outputs("big", "f77.png", 10**9) == {"f77.jpg": 5}
    assert ledger.unplanned_before("big", 10**9) == []
    for sql, params in queries:
        plan = query("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)[0][0]
        nodes = list(_plan_nodes(plan[0]["Plan"]))  # type: ignore[index]
        assert all("Index" in n["Node Type"] for n in nodes if "Scan" in n["Node Type"]), plan
        read = sum(n["Actual Rows"] + n.get("Rows Removed by Filter", 0) for n in nodes)
        assert read < 50, (sql, plan)  # not the folder's 20,000 rows
    ledger.close()


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def test_a_database_of_an_older_ccwatch_is_migrated_and_keeps_its_rows(pg_url: str) -> None:
    """A database at schema 3 (before the history index) is brought to the current version when
    a host opens it: the index replaces files_path, and every row is still there."""
    import psycopg

    from ccwatch.ledger import postgres

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for script in postgres._MIGRATIONS[:3]:
            conn.execute(script)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '3')")
        conn.execute("INSERT INTO files (folder, relpath, size, mtime_ns, state, first_seen, "
                     "updated_at) VALUES ('inbox', 'old.png', 1, 1, 'done', 1, 1)")
    ledger = PostgresLedger(pg_url, host="a")
    assert ledger.get_meta("schema_version") == len(postgres._MIGRATIONS)
    indexes = {r[0] for r in ledger._query("SELECT indexname FROM pg_indexes "
                                           "WHERE tablename = 'files'")}
    assert "files_history" in indexes and "files_path" not in indexes
    assert ledger.lookup("inbox", "old.png", 1, 1) is not None
    ledger.close()
