"""Idle cost: the daemon's CPU while it watches a tree of converted files and nothing happens."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from bench.child import BenchError, Child
from bench.common import (
    Settings,
    Size,
    by_size,
    ccwatch_args,
    ccwatch_env,
    daemon_ready,
    emulator,
    measure_all,
    wait_until,
    workspace,
    write_config,
)
from bench.report import Result, Target
from bench.tree import build_done_tree

POLL_S = 5.0  # the default poll interval
TARGET_PCT = 0.2


@dataclass(frozen=True)
class Idle:
    mode: str
    percent: float
    calls: int


def _measure(mode: str, count: int, window_s: float, warm_up_s: float) -> Idle:
    settings = Settings(watch=mode, poll_s=POLL_S)
    with workspace(f"idle-{mode}") as ws, emulator() as emu:
        build_done_tree(ws, count)
        assert emu.base_url
        config = write_config(ws, emu.base_url, settings)
        with Child(ccwatch_args(config, once=False), ws.root / "daemon.log", env=ccwatch_env(),
                   cwd=ws.root) as child:
            wait_until(daemon_ready(child), 60, "the start-up scan", child)
            time.sleep(warm_up_s)  # let start-up work (imports, first scan) finish
            proc = psutil.Process(child.pid)
            before, started = sum(proc.cpu_times()[:2]), time.monotonic()
            time.sleep(window_s)
            used, elapsed = sum(proc.cpu_times()[:2]) - before, time.monotonic() - started
            calls = len(emu.requests)
            child.terminate()
            if child.wait(60).returncode != 0:
                raise BenchError(f"ccwatch run ({mode}) failed:\n{child.log_tail()}")
    return Idle(mode, used / elapsed * 100, calls)


def run(size: Size) -> Result:
    count = by_size(size, full=10_000, quick=1_000, smoke=20)
    window_s = by_size(size, full=60.0, quick=5.0, smoke=0.5)
    warm_up_s = by_size(size, full=1.0, quick=1.0, smoke=0.2)
    events, poll = measure_all(size, lambda: _measure("events", count, window_s, warm_up_s),
                               lambda: _measure("poll", count, window_s, warm_up_s))
    rows = [(r.mode, f"{POLL_S}" if r.mode == "poll" else "", f"{count:,}", f"{window_s:.0f}",
             f"{r.percent:.2f}", str(r.calls)) for r in (events, poll)]
    summary = (f"{count:,} files watched: events {events.percent:.2f} % of a core, "
               f"poll (poll_s {POLL_S}) {poll.percent:.2f} %")
    return Result(
        name="idle", title="Idle cost", summary=summary,
        headers=("mode", "poll_s", "files", "window s", "CPU % of a core", "API calls"), rows=rows,
        settings=[f"{count:,} one-byte files in folders of 1,000, all done in the ledger (built as "
                  "for the restart benchmark); rescan_s 300 (no rescan falls in the window)",
                  f"CPU = the daemon's user + system time over {window_s:.0f} s (psutil), measured "
                  f"from {warm_up_s} s after its start-up scan"],
        notes=["Poll mode lists the whole tree every poll_s; events mode only wakes for the 5 s "
               "health check (which also turns the pipeline once): nothing ticks in between."],
        targets=[Target(f"events < {TARGET_PCT} % of a core ({events.percent:.2f} %)",
                        events.percent < TARGET_PCT)],
    )
