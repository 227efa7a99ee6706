"""Tracking: how soon each job's end is seen, with the default settings (no webhook).

Two loads, each against a fresh emulator, ``ccwatch run --once`` timed from start to exit:

- mixed: 48 jobs taking 1.2, 3.1 and 6.3 s (16 of each) at max_in_flight 16, waited on (the
  default) and polled (``tracking = "poll"``), against the ideal Σ latency / max_in_flight;
- short: 40 jobs of 0.3 s, waited on, against the official SDK's one-at-a-time loop (which waits on
  the sync host too).

An empty-folder ``run --once`` gives the fixed start-up and exit; settle_s is the fixed settle.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.child import BenchError
from bench.common import (
    Settings,
    Size,
    by_size,
    count_files,
    emulator,
    measure_all,
    run_ccwatch_once,
    sdk_child,
    stage_images,
    workspace,
    write_config,
)
from bench.report import Result, Target

MIXED_S = (1.2, 3.1, 6.3)
SHORT_S = 0.3
# The defaults (poll_interval_s 2, poll_max_s 30, tracking wait, max_in_flight 16); settle 0.5 s.
DEFAULTS = Settings(settle_s=0.5, poll_interval_s=2.0, poll_max_s=30.0)


@dataclass(frozen=True)
class Run:
    contender: str
    files: int
    seconds: float
    cpu_s: float


def _ccwatch(name: str, settings: Settings, latencies: list[float]) -> Run:
    """run --once over one PNG per latency (an empty list: start-up and exit only)."""
    with workspace(f"tracking-{name}") as ws, emulator() as emu:
        paths = stage_images(ws, len(latencies))
        for i, (path, latency) in enumerate(zip(paths, latencies, strict=True)):
            target = ws.input / f"l{i:03d}.png"
            path.rename(target)
            emu.faults.latency(latency, glob=target.name)
        assert emu.base_url
        usage = run_ccwatch_once(ws, write_config(ws, emu.base_url, settings), timeout_s=300)
        if count_files(ws.output) != len(latencies):
            raise BenchError(f"{name}: {count_files(ws.output)} of {len(latencies)} delivered")
        return Run(name, len(latencies), usage.wall_s, usage.cpu_s)


def _sdk(n: int) -> Run:
    with workspace("tracking-sdk") as ws, emulator(SHORT_S) as emu:
        for path in stage_images(ws, n):
            path.rename(ws.input / path.name)
        assert emu.base_url
        with sdk_child(ws, "loop", emu.base_url, "to-jpg", n, input_dir=ws.input) as child:
            usage = child.wait(60 + 5 * n)
            if usage.returncode != 0:
                raise BenchError(f"the SDK loop exited {usage.returncode}:\n{child.log_tail()}")
        if count_files(ws.output) != n:
            raise BenchError(f"the SDK loop delivered {count_files(ws.output)} of {n}")
        return Run("SDK loop (one at a time)", n, usage.wall_s, usage.cpu_s)


def run(size: Size) -> Result:
    per = by_size(size, full=16, quick=4, smoke=1)
    short_n = by_size(size, full=40, quick=10, smoke=2)
    mixed = [lat for lat in MIXED_S for _ in range(per)]
    mif = DEFAULTS.max_in_flight
    polled = Settings(**{**DEFAULTS.__dict__, "tracking": "poll"})
    base, wait, poll, short, sdk = measure_all(
        size, lambda: _ccwatch("start-up + exit", DEFAULTS, []),
        lambda: _ccwatch("mixed, wait (default)", DEFAULTS, mixed),
        lambda: _ccwatch("mixed, poll", polled, mixed),
        lambda: _ccwatch("short, wait (default)", DEFAULTS, [SHORT_S] * short_n),
        lambda: _sdk(short_n))
    ideal = sum(mixed) / mif
    fixed = base.seconds + DEFAULTS.settle_s

    def vs_ideal(r: Run) -> float:
        return (r.seconds - fixed) / ideal

    rows = [(r.contender, str(r.files), f"{r.seconds:.2f}", f"{r.cpu_s:.2f}",
             f"{vs_ideal(r):.2f}x" if r in (wait, poll) else "",
             f"{sdk.seconds / r.seconds:.1f}x" if r in (short, sdk) else "")
            for r in (base, wait, poll, short, sdk)]
    speedup = sdk.seconds / short.seconds
    summary = (f"mixed jobs: wait {vs_ideal(wait):.2f}x ideal, poll {vs_ideal(poll):.2f}x (after "
               f"{fixed:.2f} s start-up + settle); {short_n} short jobs: {speedup:.1f}x the SDK loop")
    return Result(
        name="tracking", title="Tracking (default settings: wait vs poll vs the SDK)",
        summary=summary,
        headers=("run --once", "files", "seconds", "CPU s", "vs ideal", "SDK loop / this"),
        rows=rows,
        settings=[f"mixed: {len(mixed)} PNG → JPEG jobs taking {', '.join(map(str, MIXED_S))} s "
                  f"({per} of each); ideal = Σ latency / max_in_flight = {ideal:.2f} s",
                  f"short: {short_n} jobs of {SHORT_S} s",
                  f"ccwatch: {DEFAULTS.describe()} (poll row: tracking poll)"],
        notes=["vs ideal = (seconds - start-up + exit of an empty run - settle_s) / ideal. Both "
               "ccwatch and the SDK loop are timed from process start to exit."],
        targets=[Target(f"wait <= 1.1x ideal plus start-up and settle ({vs_ideal(wait):.2f}x)",
                        vs_ideal(wait) <= 1.1),
                 Target(f">= 6x the SDK loop on {short_n} short jobs ({speedup:.1f}x)",
                        speedup >= 6)],
    )
