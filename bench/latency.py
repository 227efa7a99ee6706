"""Detection latency: from a file's close to the creation of its job, events and poll mode.

Files are dropped one at a time; the next is dropped only once the previous one's job exists (plus a
random gap, so drops fall at random points of the poll cycle). The k-th ``POST /v2/jobs`` in the
emulator's request log is then the k-th file's, and its ``at`` (wall clock) minus the close time is
the latency.
"""

from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass

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
    percentile,
    png_bytes,
    wait_until,
    workspace,
    write_config,
)
from bench.report import Result, Target
from ccwatch.emulator import Emulator

SETTLE_S = 0.5
POLL_S = 1.0
SLACK_S = 0.3


@dataclass(frozen=True)
class ModeResult:
    mode: str
    latencies: list[float]
    limit_s: float

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p95(self) -> float:
        return percentile(self.latencies, 95)


def _jobs_at_least(emu: Emulator, count: int) -> bool:
    return emu.count("POST", "/v2/jobs") >= count


def _measure(mode: str, files: int, rng: random.Random) -> ModeResult:
    settings = Settings(settle_s=SETTLE_S, watch=mode, poll_s=POLL_S)
    data = png_bytes()
    closed_at: list[float] = []
    with workspace(f"latency-{mode}") as ws, emulator() as emu:
        assert emu.base_url
        config = write_config(ws, emu.base_url, settings)
        with Child(ccwatch_args(config, once=False), ws.root / "daemon.log", env=ccwatch_env(),
                   cwd=ws.root) as child:
            wait_until(daemon_ready(child), 60, "the daemon to start watching", child)
            for i in range(files):
                with (ws.input / f"photo{i:03d}.png").open("wb") as f:
                    f.write(data)
                closed_at.append(time.time())
                wait_until(functools.partial(_jobs_at_least, emu, i + 1), 30,
                           f"the job for file {i}", child, interval_s=0.01)
                time.sleep(rng.uniform(0.1, 0.1 + POLL_S))  # a random phase for the next drop
            child.terminate()
            child.wait(60)
        created = sorted(r.at for r in emu.requests if r.method == "POST" and r.path == "/v2/jobs")
    if len(created) != files:
        raise BenchError(f"{mode}: {len(created)} jobs for {files} files")
    limit = SETTLE_S + SLACK_S + (POLL_S if mode == "poll" else 0.0)
    return ModeResult(mode, [c - d for c, d in zip(created, closed_at, strict=True)], limit)


def run(size: Size) -> Result:
    files = by_size(size, full=20, quick=4, smoke=1)
    rng = random.Random(7)
    results = measure_all(size, lambda: _measure("events", files, rng),
                          lambda: _measure("poll", files, rng))
    rows = [(r.mode, f"{SETTLE_S}", f"{POLL_S}" if r.mode == "poll" else "", str(len(r.latencies)),
             f"{r.p50:.2f}", f"{r.p95:.2f}", f"{max(r.latencies):.2f}", f"{r.limit_s:.1f}")
            for r in results]
    events, poll = results
    summary = (f"events p50 {events.p50:.2f} s / p95 {events.p95:.2f} s; poll p50 {poll.p50:.2f} s / "
               f"p95 {poll.p95:.2f} s (settle_s {SETTLE_S}, poll_s {POLL_S})")
    return Result(
        name="latency", title="Detection latency (file close -> job created)", summary=summary,
        headers=("mode", "settle_s", "poll_s", "files", "p50 s", "p95 s", "max s", "p50 target s"),
        rows=rows,
        settings=[f"{files} PNG files per mode written one at a time into a watched folder, the "
                  f"next after the previous job exists plus a random 0.1-{0.1 + POLL_S:.1f} s gap",
                  "latency = emulator request log time of POST /v2/jobs - time.time() after close()"],
        notes=["A file is ready when two looks settle_s apart see the same size and mtime; the "
               "pipeline turns when a look is due. In poll mode the folder is listed every poll_s, so a "
               "file waits for the next listing (poll_s / 2 on average) before its settle starts."],
        targets=[Target(f"{r.mode} p50 <= {r.limit_s:.1f} s ({r.p50:.2f} s)", r.p50 <= r.limit_s)
                 for r in results],
    )
