"""Throughput: N small images dropped at once, 0.5 s of processing per job.

Contenders, each against a fresh emulator: ``ccwatch run --once``, the ccwatch daemon, the SDK loop
(one file at a time, as the SDK's README shows) and a naive watchdog + SDK script.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from bench.child import BenchError
from bench.common import (
    Settings,
    Size,
    by_size,
    count_files,
    daemon_drop,
    drop,
    emulator,
    measure_all,
    place_images,
    run_ccwatch_once,
    sdk_child,
    stage_images,
    wait_until,
    workspace,
    write_config,
)
from bench.report import Result, Target

LATENCY_S = 0.5
SETTINGS = Settings(settle_s=0.5, poll_interval_s=0.25, poll_max_s=1.0)


@dataclass(frozen=True)
class Measure:
    contender: str
    files: int
    seconds: float
    cpu_s: float | None = None

    @property
    def rate(self) -> float:
        return self.files / self.seconds

    def vs_ideal(self, max_in_flight: int) -> float:
        return self.seconds / (self.files * LATENCY_S / max_in_flight)


def _once(n: int) -> Measure:
    with workspace("once") as ws, emulator(LATENCY_S) as emu:
        place_images(ws, n)
        assert emu.base_url
        usage = run_ccwatch_once(ws, write_config(ws, emu.base_url, SETTINGS), timeout_s=60 + n)
        _check_outputs(ws.output, n, "run --once")
        return Measure("ccwatch run --once", n, usage.wall_s, usage.cpu_s)


def _daemon(n: int) -> Measure:
    with workspace("daemon") as ws, emulator(LATENCY_S) as emu:
        paths = stage_images(ws, n)
        assert emu.base_url
        run = daemon_drop(ws, write_config(ws, emu.base_url, SETTINGS), paths, timeout_s=60 + n)
        return Measure("ccwatch run (daemon)", n, run.seconds, run.cpu_s)


def _sdk_loop(n: int) -> Measure:
    with workspace("sdk") as ws, emulator(LATENCY_S) as emu:
        place_images(ws, n)
        assert emu.base_url
        with sdk_child(ws, "loop", emu.base_url, "to-jpg", n, input_dir=ws.input) as child:
            usage = child.wait(60 + 5 * n)
            if usage.returncode != 0:
                raise BenchError(f"the SDK loop exited {usage.returncode}:\n{child.log_tail()}")
        _check_outputs(ws.output, n, "the SDK loop")
        return Measure("SDK loop (one at a time)", n, usage.wall_s, usage.cpu_s)


def _naive(n: int) -> Measure:
    with workspace("naive") as ws, emulator(LATENCY_S) as emu:
        paths = stage_images(ws, n)
        assert emu.base_url
        with sdk_child(ws, "watch", emu.base_url, "to-jpg", n, input_dir=ws.input,
                       settle_s=SETTINGS.settle_s) as child:
            wait_until(lambda: "READY" in child.log_text(), 30, "the naive watcher to start", child)
            started = time.monotonic()
            drop(paths, ws.input)
            finished = wait_until(lambda: count_files(ws.output) >= n, 60 + 5 * n,
                                  f"{n} outputs from the naive watcher", child, interval_s=0.05)
            usage = child.wait(30)
            summary = json.loads(child.log_text().strip().splitlines()[-1])
            if usage.returncode != 0 or summary.get("errors"):
                raise BenchError(f"the naive watcher failed:\n{child.log_tail()}")
        return Measure("naive watchdog + SDK", n, finished - started, usage.cpu_s)


def _check_outputs(output: Path, expected: int, who: str) -> None:
    found = count_files(output)
    if found != expected:
        raise BenchError(f"{who} delivered {found} of {expected} files")


def run(size: Size) -> Result:
    n = by_size(size, full=500, quick=40, smoke=3)
    # the SDK contenders take ~0.6 s a file: a subset, rates per file
    sdk_n = by_size(size, full=100, quick=4, smoke=1)
    mif = SETTINGS.max_in_flight
    measures = measure_all(size, lambda: _once(n), lambda: _daemon(n), lambda: _sdk_loop(sdk_n),
                           lambda: _naive(sdk_n))
    once, daemon, sdk, naive = measures
    ideal_s = n * LATENCY_S / mif
    rows = [(m.contender, str(m.files), f"{m.seconds:.1f}", f"{m.rate:.2f}", f"{m.rate / sdk.rate:.1f}x",
             f"{m.vs_ideal(mif):.2f}x", f"{m.cpu_s:.1f}" if m.cpu_s is not None else "")
            for m in measures]
    targets = []
    for m in (once, daemon):
        targets.append(Target(f"{m.contender} >= 10x the SDK loop ({m.rate / sdk.rate:.1f}x)",
                              m.rate / sdk.rate >= 10))
        targets.append(Target(f"{m.contender} within 1.5x of ideal ({m.vs_ideal(mif):.2f}x)",
                              m.vs_ideal(mif) <= 1.5))
    summary = (f"run --once {once.rate:.1f} files/s = {once.rate / sdk.rate:.1f}x the SDK loop "
               f"({sdk.rate:.2f} files/s), {once.vs_ideal(mif):.2f}x ideal; daemon {daemon.rate:.1f} "
               f"files/s = {daemon.rate / sdk.rate:.1f}x, {daemon.vs_ideal(mif):.2f}x ideal; naive "
               f"watcher {naive.rate:.2f} files/s")
    return Result(
        name="throughput", title="Throughput", summary=summary,
        headers=("contender", "files", "seconds", "files/s", "vs SDK loop", "vs ideal", "CPU s"),
        rows=rows,
        settings=[
            f"{n} PNG images of 32x24 px, converted to JPEG; emulator latency {LATENCY_S} s per job",
            f"ccwatch: {SETTINGS.describe()}",
            f"ideal = N x latency / max_in_flight = {n} x {LATENCY_S} / {mif} = {ideal_s:.1f} s "
            f"({n / ideal_s:.1f} files/s)",
        ],
        notes=[
            f"The SDK contenders ran on a subset of {sdk_n} files (one at a time they need about "
            f"{1 / sdk.rate:.2f} s a file); rates and ratios are per file.",
            "run --once and the SDK loop are timed from process start to exit (interpreter start-up "
            "included); the daemon and the naive watcher from the drop until the last output exists "
            "(already running). Files are dropped by copying them into the input, one create event "
            f"each. The naive watcher sleeps {SETTINGS.settle_s} s per file in on_created to let the "
            "copy finish, as such scripts do, then runs the SDK sequence inline. CPU s is the "
            "contender's own process (the daemon's: from the drop until all outputs exist).",
        ],
        targets=targets,
    )
