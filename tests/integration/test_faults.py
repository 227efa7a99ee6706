"""Faults from the emulator during real runs: rate limits, 5xx, dropped connections, account errors,
lost events, vanished and replaced files. Nothing is lost, nothing is converted twice."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from daemon_harness import Dirs, MakeConfig, files_under, once, running

from ccwatch.errors import ExitCode
from ccwatch.ledger import State
from ccwatch.testing import make_image, wait_for


def test_429_503_and_dropped_connections_during_a_50_file_run(dirs: Dirs, make_config: MakeConfig,
                                                              emulator: Any) -> None:
    """All 50 delivered once, none quarantined; after each 429 the next create waits Retry-After."""
    for i in range(50):
        make_image(dirs.input / f"f{i:02}.png")
    f = emulator.faults
    f.rate_limit(times=4, retry_after_s=1.0, method="POST", path="/v2/jobs")
    f.http_error("GET", "/v2/jobs/*", status=503, times=10)
    f.drop_connection("POST", "/tasks", times=3)
    f.drop_connection("GET", "/tasks/*", times=2)

    # Polled: the 503s are on the status reads (waits on the sync host: test_wait_tracking.py).
    code, delivered, failed = once(make_config(daemon_extra='upload_workers = 1\ntracking = "poll"'))

    assert (code, delivered, failed) == (ExitCode.OK, 50, 0)
    assert files_under(dirs.output) == [f"f{i:02}.jpg" for i in range(50)]
    assert files_under(dirs.quarantine) == []
    creates = [r for r in emulator.requests if r.method == "POST" and r.path == "/v2/jobs"]
    assert sum(r.status == 429 for r in creates) == 4
    assert sum(r.status == 201 for r in creates) == 50
    for before, after in itertools.pairwise(creates):
        if before.status == 429:
            assert after.at - before.at >= 0.95, "a create did not honour Retry-After"
    assert sum(r.status == 503 for r in emulator.requests) == 10
    assert sum(r.status == 0 for r in emulator.requests) == 5  # the dropped connections


def test_a_backlog_over_the_rate_window_is_paced_with_few_429s(dirs: Dirs, make_config: MakeConfig,
                                                               emulator: Any) -> None:
    """41 files, 8 creates per 2 s window (the emulator's real limiter, whole-second Retry-After):
    all delivered once; a few 429s while the window is learnt; after each, the next create
    waits for the window's end as Retry-After said, so it is never refused too (nor is a burst
    sent before the first answer says how many are left)."""
    emulator.rate_limit_per_minute, emulator.rate_window_s = 8, 2.0
    for i in range(41):
        make_image(dirs.input / f"f{i:02}.png")

    code, delivered, failed = once(make_config(daemon_extra="max_in_flight = 32"))

    assert (code, delivered, failed) == (ExitCode.OK, 41, 0)
    assert len(emulator.jobs()) == 41
    creates = sorted((r for r in emulator.requests if r.method == "POST" and r.path == "/v2/jobs"),
                     key=lambda r: r.at)
    statuses = [r.status for r in creates]
    assert statuses.count(201) == 41
    assert 1 <= statuses.count(429) <= 4, statuses
    timeline = [(round(r.at - creates[0].at, 3), r.status) for r in creates]
    assert all(after == 201 for before, after in itertools.pairwise(statuses) if before == 429), \
        str(timeline)


def test_500_after_create_leaves_exactly_one_job_per_file(dirs: Dirs, make_config: MakeConfig,
                                                          emulator: Any) -> None:
    """A 500 that arrives after the server created the job: the retry finds it by tag."""
    for name in ("a.png", "b.png", "c.png"):
        make_image(dirs.input / name)
    emulator.faults.http_error("POST", "/v2/jobs", status=500, times=2, after_work=True)

    code, delivered, _ = once(make_config())

    assert (code, delivered) == (ExitCode.OK, 3)
    assert len(emulator.jobs()) == 3
    assert len({j["tag"] for j in emulator.jobs()}) == 3
    assert emulator.count("POST", "/v2/jobs") == 3
    assert emulator.count("GET", "/v2/jobs") >= 2  # the lookups by tag


def _account_fault_pauses_then_resumes(dirs: Dirs, make_config: MakeConfig, emulator: Any,
                                       set_fault: Any) -> None:
    cfg = make_config(daemon_extra="")
    with running(cfg) as daemon:
        make_image(dirs.input / "first.png")
        wait_for(lambda: files_under(dirs.output) == ["first.jpg"], timeout=20, message="first")
        set_fault()
        for i in range(4):
            make_image(dirs.input / f"later{i}.png")
        pipeline = daemon.runtime.pipeline
        wait_for(lambda: pipeline.gate.pause is not None, timeout=20, message="submissions paused")
        assert daemon.runtime.ctx.ledger.get_meta("paused")["reason"]
        assert files_under(dirs.quarantine) == []
        emulator.faults.clear()
        wait_for(lambda: len(files_under(dirs.output)) == 5, timeout=30,
                 message="all delivered after the fault cleared")
        assert pipeline.gate.pause is None
        assert daemon.runtime.ctx.ledger.get_meta("paused") is None
    assert files_under(dirs.quarantine) == []
    assert len(emulator.jobs()) == 5


def test_402_mid_run_pauses_and_resumes_without_restart(dirs: Dirs, make_config: MakeConfig,
                                                        emulator: Any) -> None:
    """Credits run out: submissions pause for all, no file is quarantined, the probe resumes."""
    _account_fault_pauses_then_resumes(dirs, make_config, emulator,
                                       lambda: emulator.faults.credits_exceeded())


def test_401_mid_run_pauses_and_resumes_without_restart(dirs: Dirs, make_config: MakeConfig,
                                                        emulator: Any) -> None:
    """The key is refused for a while: same pause, same resume."""
    _account_fault_pauses_then_resumes(dirs, make_config, emulator,
                                       lambda: emulator.faults.unauthorized())


def test_file_created_while_the_observer_was_down_is_caught_by_the_rescan(
        dirs: Dirs, make_config: MakeConfig) -> None:
    """A lost event (watcher stopped) strands nothing: the periodic rescan finds the file."""
    with running(make_config(folder_extra="rescan_s = 1")) as daemon:
        wait_for(lambda: daemon.watchers(), timeout=10, message="watchers started")
        for watcher in daemon.watchers():
            watcher.stop()
        make_image(dirs.input / "missed.png")
        wait_for(lambda: files_under(dirs.output) == ["missed.jpg"], timeout=20,
                 message="rescan picks up the file")


def test_file_vanishing_before_upload_is_dropped_quietly(dirs: Dirs, make_config: MakeConfig,
                                                         emulator: Any) -> None:
    """Deleted between job creation and upload: the job is deleted, nothing quarantined, no row."""
    emulator.faults.delay("POST", "/v2/jobs", seconds=1.0, times=1)
    with running(make_config()) as daemon:
        make_image(dirs.input / "gone.png")
        ledger = daemon.runtime.ctx.ledger
        wait_for(lambda: ledger.count_by_state().get("submitting") == 1, timeout=20,
                 message="create in flight")
        (dirs.input / "gone.png").unlink()
        wait_for(lambda: ledger.count_by_state() == {}, timeout=20, message="row forgotten")
        make_image(dirs.input / "after.png")
        wait_for(lambda: files_under(dirs.output) == ["after.jpg"], timeout=20,
                 message="daemon still converts")
    assert files_under(dirs.quarantine) == []
    assert emulator.count("DELETE", "/v2/jobs/*") == 1


def test_file_replaced_while_its_job_runs_is_converted_again(dirs: Dirs, make_config: MakeConfig,
                                                             emulator: Any) -> None:
    """A new version written while the first converts: the outdated job is deleted and only the
    newest version is delivered, under the plain name."""
    from PIL import Image

    emulator.faults.latency(seconds=1.0)
    with running(make_config()) as daemon:
        make_image(dirs.input / "doc.png", size=(10, 10))
        ledger = daemon.runtime.ctx.ledger
        wait_for(lambda: ledger.count_by_state().get("processing") == 1, timeout=20,
                 message="first version processing")
        make_image(dirs.input / "doc.png", size=(20, 20))
        wait_for(lambda: ledger.count_by_state().get("done") == 1, timeout=30,
                 message="the newest version done")
        assert ledger.count_by_state() == {"done": 1}  # the outdated version is forgotten
    assert files_under(dirs.output) == ["doc.jpg"]
    with Image.open(dirs.output / "doc.jpg") as image:
        assert image.size == (20, 20)
    assert emulator.count("DELETE", "/v2/jobs/*") == 1


def test_write_error_on_delivery_is_retried_until_the_disk_has_room(
        dirs: Dirs, make_config: MakeConfig, tmp_path: Path) -> None:
    """ENOSPC while writing an output: logged, retried, the daemon keeps running, nothing lost."""
    import random
    import subprocess

    from PIL import Image

    out = dirs.output
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(out)], check=True)
    try:
        rng = random.Random(7)
        noisy = Image.frombytes("RGB", (300, 300), bytes(rng.randrange(256) for _ in range(270000)))
        noisy.save(dirs.input / "big.png")
        cfg = make_config()
        with running(cfg) as daemon:
            ledger = daemon.runtime.ctx.ledger
            wait_for(lambda: any(e.transient_since for e in ledger.active()), timeout=20,
                     message="a failed write")
            assert [e.state for e in ledger.active()] == [State.DELIVERING]
            assert (dirs.input / "big.png").exists()
            subprocess.run(["mount", "-o", "remount,size=10m", str(out)], check=True)
            wait_for(lambda: files_under(out) == ["big.jpg"], timeout=30, message="delivered")
        assert not [p for p in os.listdir(out) if p.startswith(".ccwatch-")]
    finally:
        subprocess.run(["umount", str(out)], check=True)
    assert files_under(dirs.quarantine) == []


def test_401_while_only_tracking_resumes_once_the_key_works(dirs: Dirs, make_config: MakeConfig,
                                                            emulator: Any) -> None:
    """A key refused while jobs are only polled: paused, then resumed by the next good poll.

    Polled, not waited on: a wait sent before the key was refused would see the job end."""
    emulator.faults.latency(seconds=1.5)
    with running(make_config(daemon_extra='tracking = "poll"')) as daemon:
        make_image(dirs.input / "a.png")
        pipeline = daemon.runtime.pipeline
        ledger = daemon.runtime.ctx.ledger
        wait_for(lambda: ledger.count_by_state().get("processing") == 1, timeout=20,
                 message="processing")
        emulator.faults.unauthorized()
        wait_for(lambda: pipeline.gate.pause is not None, timeout=20, message="paused by a 401 poll")
        emulator.faults.clear()
        wait_for(lambda: files_under(dirs.output) == ["a.jpg"], timeout=30, message="delivered")
        wait_for(lambda: pipeline.gate.pause is None, timeout=10, message="pause lifted")
        assert ledger.get_meta("paused") is None
    assert files_under(dirs.quarantine) == []


def test_a_dead_watcher_is_restarted_and_the_gap_scanned(dirs: Dirs, make_config: MakeConfig,
                                                         monkeypatch: Any) -> None:
    """A watcher whose thread died comes back at the next health check; files from the gap and
    after it are converted without waiting for the (hourly) rescan."""
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # health checks every 0.2 s
    with running(make_config(folder_extra="rescan_s = 3600")) as daemon:
        wait_for(lambda: daemon.watchers(), timeout=10, message="watchers started")
        [first] = daemon.watchers()
        first.stop()
        make_image(dirs.input / "in-the-gap.png")
        wait_for(lambda: files_under(dirs.output) == ["in-the-gap.jpg"], timeout=20,
                 message="the gap scanned")
        [second] = daemon.watchers()
        assert second is not first and second.alive()
        make_image(dirs.input / "after.png")
        wait_for(lambda: "after.jpg" in files_under(dirs.output), timeout=20,
                 message="events again")
