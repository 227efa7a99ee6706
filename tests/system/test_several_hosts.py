"""Several hosts, one input folder, one PostgreSQL ledger: every file converted exactly once.

Each "host" is a real ``ccwatch run`` process with its own state dir and ``[ledger] host``; the
database is a throwaway PostgreSQL server; the second host sees the share at another mount path
(a bindfs mirror), as hosts mounting one share do.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_helpers import cli_env, run_cli
from proc_harness import Setup, daemon

from ccwatch.testing import TO_JPG, PostgresCluster, config_text, make_image, wait_for

LEASE_S = 2.0
POLL_MAX_S = 0.5
RULE = ('match = ["*.png"]\ntemplate = "to-jpg"',)


def _host(root: Path, name: str, emulator: Any, pg_url: str, *, input_dir: Path, output: Path,
          quarantine: Path) -> Setup:
    home = root / name
    state = home / "state"
    state.mkdir(parents=True)
    config = home / "ccwatch.toml"
    config.write_text(config_text(
        endpoint=emulator.base_url, state_dir=state, input_dir=input_dir, output=output,
        quarantine=quarantine, rules=RULE, templates=TO_JPG, settle_s=0.3,
        top_extra=f'[ledger]\nurl = "{pg_url}"\nhost = "{name}"\nlease_s = {LEASE_S}\n'))
    return Setup(home, input_dir, output, quarantine, state, config)


def _rows(pg_url: str) -> list[tuple[str, str, str | None]]:
    """(relpath, state, owner) of every ledger row; [] before the schema exists."""
    try:
        with psycopg.connect(pg_url) as conn:
            return conn.execute("SELECT relpath, state, owner FROM files ORDER BY relpath").fetchall()
    except (psycopg.errors.UndefinedTable, psycopg.OperationalError):
        return []


def _outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.is_file())


def _all_done(pg_url: str, n: int) -> bool:
    rows = _rows(pg_url)
    return len(rows) == n and all(r[1] == "done" for r in rows)


@pytest.fixture
def share(bindfs_mount: tuple[Path, Path]) -> dict[str, Path]:
    """The share's folders, and the second host's view of them through another mount path."""
    underlying, mirror = bindfs_mount
    paths = {}
    for name in ("in", "out", "failed"):
        (underlying / name).mkdir()
        paths[name], paths[f"b-{name}"] = underlying / name, mirror / name
    return paths


def _two_hosts(tmp_path: Path, emulator: Any, pg_url: str, share: dict[str, Path]) -> tuple[Setup, Setup]:
    a = _host(tmp_path, "host-a", emulator, pg_url, input_dir=share["in"], output=share["out"],
              quarantine=share["failed"])
    b = _host(tmp_path, "host-b", emulator, pg_url, input_dir=share["b-in"], output=share["b-out"],
              quarantine=share["b-failed"])
    return a, b


def _assert_exactly_once(emulator: Any, share: dict[str, Path], names: list[str]) -> None:
    assert _outputs(share["out"]) == sorted(n.replace(".png", ".jpg") for n in names)
    assert len(emulator.jobs()) == len(names), "a file got a second job"
    assert len(emulator.uploads()) == len(names), "a file was uploaded twice"
    assert _outputs(share["failed"]) == []


def test_two_hosts_convert_each_file_once(tmp_path: Path, emulator: Any, api_key: str, pg_url: str,
                                         share: dict[str, Path]) -> None:
    names = [f"f{i:02}.png" for i in range(12)]
    a, b = _two_hosts(tmp_path, emulator, pg_url, share)
    with daemon(a, api_key) as first, daemon(b, api_key) as second:
        for name in names:
            make_image(share["in"] / name)
        wait_for(lambda: _all_done(pg_url, len(names)), timeout=60, message="every file done")
        assert first.terminate() == 0 and second.terminate() == 0
        for host in (first, second):  # one shared ledger: one installation, nothing to warn about
            assert "also watched by another ccwatch" not in host.output()
    _assert_exactly_once(emulator, share, names)
    assert {r[2] for r in _rows(pg_url)} <= {"host-a", "host-b"}


def _hold(state: str, emulator: Any) -> None:
    if state == "uploading":  # the file reached the server; the answer did not reach host-a
        emulator.faults.http_error("POST", "/tasks", status=500, times=None, after_work=True)
        emulator.faults.http_error("GET", "/v2/tasks/*", status=503, times=None)
    else:
        emulator.faults.latency(seconds=8.0)  # outlasts the second host's start and a status call


@pytest.mark.parametrize("state", ["uploading", "processing"])
def test_kill9_of_one_host_the_other_takes_over_once(
        tmp_path: Path, emulator: Any, api_key: str, pg_url: str, share: dict[str, Path],
        state: str) -> None:
    names = [f"f{i}.png" for i in range(4)]
    for name in names:
        make_image(share["in"] / name)
    _hold(state, emulator)
    a, b = _two_hosts(tmp_path, emulator, pg_url, share)
    with daemon(a, api_key) as first:
        wait_for(lambda: [r[1:] for r in _rows(pg_url)] == [(state, "host-a")] * len(names)
                 and (state != "uploading" or len(emulator.uploads()) == len(names)),
                 timeout=30, message=f"host-a holds every file in {state}")
        with daemon(b, api_key) as second:
            second.wait_for_log("startup scan")
            shown = run_cli("status", "-c", str(b.config), "--json", cwd=tmp_path,
                            env=cli_env(tmp_path))
            assert shown.returncode == 0, shown.stderr
            hosts = json.loads(shown.stdout)["hosts"]
            assert [(h["host"], h["files"]) for h in hosts] == [("host-a", len(names))]

            first.kill9()
            killed = time.monotonic()
            emulator.faults.clear()
            wait_for(lambda: {r[2] for r in _rows(pg_url)} == {"host-b"}, timeout=LEASE_S * 3,
                     message="host-b takes the files over")
            taken_after = time.monotonic() - killed
            wait_for(lambda: _all_done(pg_url, len(names)), timeout=30, message="host-b finishes")
            assert second.terminate() == 0
    # Within the lease plus one renewal period (a third of a lease) and some scheduling slack.
    assert taken_after < LEASE_S + LEASE_S / 3 + 1.0, taken_after
    _assert_exactly_once(emulator, share, names)


def test_postgres_restarted_mid_run_loses_and_doubles_nothing(
        tmp_path: Path, emulator: Any, api_key: str, pg_cluster: PostgresCluster, pg_url: str,
        share: dict[str, Path]) -> None:
    names = [f"f{i:02}.png" for i in range(10)]
    emulator.faults.latency(seconds=1.5)
    a, b = _two_hosts(tmp_path, emulator, pg_url, share)
    with daemon(a, api_key) as first, daemon(b, api_key) as second:
        for name in names[:5]:
            make_image(share["in"] / name)
        wait_for(lambda: any(r[1] == "processing" for r in _rows(pg_url)), timeout=30,
                 message="files in flight")
        pg_cluster.stop()
        try:
            for name in names[5:]:  # arriving while the ledger is down: they wait, not vanish
                make_image(share["in"] / name)
            for host in (first, second):
                host.wait_for_log("ledger database is unreachable")
        finally:
            pg_cluster.start()
        wait_for(lambda: _all_done(pg_url, len(names)), timeout=60, message="every file done")
        assert first.terminate() == 0 and second.terminate() == 0
    _assert_exactly_once(emulator, share, names)


def test_a_host_started_before_its_database_waits_for_it(
        tmp_path: Path, emulator: Any, api_key: str, pg_cluster: PostgresCluster, pg_url: str,
        share: dict[str, Path]) -> None:
    """A database still booting (or down) when the host starts is waited for, not a config error."""
    a, _ = _two_hosts(tmp_path, emulator, pg_url, share)
    make_image(share["in"] / "a.png")
    pg_cluster.stop()
    down = True
    try:
        with daemon(a, api_key) as host:
            host.wait_for_log("trying again in")
            pg_cluster.start()
            down = False
            wait_for(lambda: _all_done(pg_url, 1), timeout=60, message="a.png done")
            assert host.terminate() == 0
    finally:
        if down:
            pg_cluster.start()
    _assert_exactly_once(emulator, share, ["a.png"])
