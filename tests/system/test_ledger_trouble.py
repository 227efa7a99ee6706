"""Errors inside error handling: the ledger cannot be written (its disk is full, another process
holds it) while a file is being handled. The daemon backs off quietly and resumes; nothing is
misnamed."""

from __future__ import annotations

import errno
import sqlite3
import time
from pathlib import Path
from typing import Any

from proc_harness import daemon, make_setup

from ccwatch.testing import make_image, wait_for

WINDOW_S = 5.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks (USER_HZ)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def _window_passed(start: float) -> bool:
    return time.monotonic() - start >= WINDOW_S


def test_full_state_disk_backs_off_with_one_message(tmp_path: Path, emulator: Any, api_key: str,
                                                    tmpfs: Any) -> None:
    setup = make_setup(tmp_path, emulator)
    tmpfs.mount(setup.state, size="1m")
    emulator.faults.latency(seconds=3.0, glob="a*")
    with daemon(setup, api_key) as d:
        make_image(setup.input / "a.png")
        wait_for(lambda: setup.states().get("a.png") == "processing", timeout=60,
                 message="the job running")
        filler = _fill(setup.state)
        d.wait_for_log("database or disk is full", timeout=60)
        lines, cpu, start = len(d.output().splitlines()), _cpu_s(d.proc.pid), time.monotonic()
        wait_for(lambda: _window_passed(start), timeout=WINDOW_S + 5, message="a window")
        added = len(d.output().splitlines()) - lines
        busy = (_cpu_s(d.proc.pid) - cpu) / WINDOW_S
        assert added <= 5, d.output()[-3000:]
        assert busy < 0.05, f"{busy:.0%} of a core while waiting for the ledger"
        filler.unlink()
        wait_for(lambda: (setup.output / "a.jpg").exists(), timeout=90,
                 message="delivered once the disk has room")
        d.wait_for_log("the ledger can be written again", timeout=30)
        assert d.terminate() == 0
        log = d.output()
    assert log.count("cannot record progress in the ledger") == 1


def test_ledger_locked_by_another_process_misnames_nothing(tmp_path: Path, emulator: Any,
                                                           api_key: str) -> None:
    setup = make_setup(tmp_path, emulator)
    emulator.faults.latency(seconds=3.0, glob="x*")
    with daemon(setup, api_key) as d:
        make_image(setup.input / "x.png")
        wait_for(lambda: setup.states().get("x.png") == "processing", timeout=60,
                 message="the job running")
        holder = sqlite3.connect(setup.state / "ledger.sqlite3", timeout=30, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the write lock, held past the ledger's 10 s wait
            wait_for(lambda: emulator.status_counts().get("finished") == 1, timeout=60,
                     message="the job finished while the ledger is locked")
            start = time.monotonic()
            wait_for(lambda: time.monotonic() - start >= 14, timeout=30, message="lock held")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        wait_for(lambda: setup.states().get("x.png") == "done", timeout=90, message="done")
        assert d.terminate() == 0
    assert sorted(p.name for p in setup.output.iterdir()) == ["x.jpg"]
