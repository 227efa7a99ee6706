"""In flight: the daemon's memory and threads while thousands of long jobs run at once.

``ccwatch run`` (default tracking: wait) with ``max_in_flight`` above the file count; the emulator
holds every job for an hour. Once every file is uploaded (all jobs processing), the daemon's RSS and
thread count are sampled for a few seconds, then it is stopped (the jobs resume on a next start).
"""

from __future__ import annotations

import time

import psutil

from bench.child import BenchError, Child
from bench.common import (
    Settings,
    Size,
    by_size,
    ccwatch_args,
    ccwatch_env,
    daemon_ready,
    drop,
    emulator,
    measure_all,
    stage_images,
    wait_until,
    workspace,
    write_config,
)
from bench.report import Result, Target

LATENCY_S = 3600.0
RSS_MB = 150.0
THREADS = 50


def _measure(count: int, sample_s: float) -> tuple[float, int, float, int]:
    """(peak RSS MB, peak threads, seconds to get every job processing, waits held by the emulator)."""
    settings = Settings(settle_s=0.5, max_in_flight=count + 1, poll_interval_s=2.0, poll_max_s=30.0)
    with workspace("inflight") as ws, emulator(LATENCY_S) as emu:
        paths = stage_images(ws, count)
        assert emu.base_url
        config = write_config(ws, emu.base_url, settings)
        with Child(ccwatch_args(config, once=False), ws.root / "daemon.log", env=ccwatch_env(),
                   cwd=ws.root) as child:
            wait_until(daemon_ready(child), 60, "the daemon to start watching", child)
            proc = psutil.Process(child.pid)
            started = time.monotonic()
            drop(paths, ws.input)
            wait_until(lambda: emu.count("POST", "/tasks") >= count, 120 + count / 10,
                       f"{count} uploads", child, interval_s=0.5)
            ramp_s = time.monotonic() - started
            rss, threads = 0.0, 0
            end = time.monotonic() + sample_s
            while time.monotonic() < end:
                rss = max(rss, proc.memory_info().rss / 2**20)
                threads = max(threads, proc.num_threads())
                time.sleep(0.2)
            waits = emu.store.waits
            child.terminate()
            usage = child.wait(120)
            if usage.returncode != 0:
                raise BenchError(f"ccwatch run exited {usage.returncode}:\n{child.log_tail()}")
        return rss, threads, ramp_s, waits


def run(size: Size) -> Result:
    count = by_size(size, full=10_000, quick=1_000, smoke=20)
    sample_s = by_size(size, full=20.0, quick=5.0, smoke=0.5)
    ((rss, threads, ramp_s, waits),) = measure_all(size, lambda: _measure(count, sample_s))
    rows = [(f"{count:,}", f"{ramp_s:.0f}", f"{rss:.0f}", str(threads), str(waits))]
    summary = f"{count:,} jobs in flight: {rss:.0f} MB RSS, {threads} threads"
    return Result(
        name="inflight", title="Thousands of jobs in flight", summary=summary,
        headers=("jobs in flight", "s to get all processing", "peak RSS MB", "peak threads",
                 "waits held by the emulator"), rows=rows,
        settings=[f"{count:,} PNGs dropped at once; emulator latency {LATENCY_S:.0f} s per job; "
                  f"ccwatch: settle_s 0.5, max_in_flight {count + 1}, tracking wait (defaults "
                  "otherwise)", f"RSS and threads of the daemon (psutil) sampled every 0.2 s for "
                  f"{sample_s:.0f} s once every file was uploaded"],
        notes=["Waits: the client holds up to 512 at once, each a socket on one event-loop thread; "
               "the emulator holds at most half its 48 server threads in waits and answers the "
               "others at once, so most jobs here fall back to the poll schedule."],
        targets=[Target(f"RSS <= {RSS_MB:.0f} MB ({rss:.0f} MB)", rss <= RSS_MB),
                 Target(f"threads <= {THREADS} ({threads})", threads <= THREADS)],
    )
