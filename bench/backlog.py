"""Backlog: CPU per file as the backlog grows (zero latency), ccwatch against the SDK loop.

``run --once`` over a small and a large folder of PNGs; the scheduler's cost should not grow with
the backlog, so CPU per file should stay flat. The SDK loop's CPU per file (on a subset, one file
at a time) is the reference: ccwatch should cost less per file than the plain loop.
"""

from __future__ import annotations

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

SETTINGS = Settings(settle_s=0.5)  # defaults otherwise: tracking wait, max_in_flight 16
TARGET_MS = 5.0
GROWTH = 1.2


def _once(n: int) -> tuple[float, float]:
    """(CPU s, wall s) of ``run --once`` over ``n`` images."""
    with workspace("backlog") as ws, emulator(in_memory=True) as emu:
        for path in stage_images(ws, n):
            path.rename(ws.input / path.name)
        assert emu.base_url
        usage = run_ccwatch_once(ws, write_config(ws, emu.base_url, SETTINGS), timeout_s=120 + n)
        if count_files(ws.output) != n:
            raise BenchError(f"run --once delivered {count_files(ws.output)} of {n} files")
        return usage.cpu_s, usage.wall_s


def _sdk(n: int) -> tuple[float, float]:
    with workspace("backlog-sdk") as ws, emulator(in_memory=True) as emu:
        for path in stage_images(ws, n):
            path.rename(ws.input / path.name)
        assert emu.base_url
        with sdk_child(ws, "loop", emu.base_url, "to-jpg", n, input_dir=ws.input) as child:
            usage = child.wait(60 + 5 * n)
            if usage.returncode != 0:
                raise BenchError(f"the SDK loop exited {usage.returncode}:\n{child.log_tail()}")
        return usage.cpu_s, usage.wall_s


def run(size: Size) -> Result:
    small = by_size(size, full=500, quick=100, smoke=3)
    large = by_size(size, full=20_000, quick=1000, smoke=6)
    sdk_n = by_size(size, full=100, quick=20, smoke=1)
    (s_cpu, s_wall), (l_cpu, l_wall), (k_cpu, k_wall) = measure_all(
        size, lambda: _once(small), lambda: _once(large), lambda: _sdk(sdk_n))
    s_ms, l_ms, k_ms = s_cpu / small * 1000, l_cpu / large * 1000, k_cpu / sdk_n * 1000
    growth = l_ms / s_ms
    rows = [(f"ccwatch run --once, {small} files", f"{s_wall:.1f}", f"{s_cpu:.2f}", f"{s_ms:.2f}",
             f"{small / s_wall:.1f}"),
            (f"ccwatch run --once, {large} files", f"{l_wall:.1f}", f"{l_cpu:.2f}", f"{l_ms:.2f}",
             f"{large / l_wall:.1f}"),
            (f"SDK loop, {sdk_n} files", f"{k_wall:.1f}", f"{k_cpu:.2f}", f"{k_ms:.2f}",
             f"{sdk_n / k_wall:.1f}")]
    summary = (f"{s_ms:.2f} ms CPU/file at {small} files, {l_ms:.2f} ms at {large} "
               f"({growth:.2f}x); the SDK loop {k_ms:.2f} ms/file")
    return Result(
        name="backlog", title="Backlog (CPU per file as the backlog grows, zero latency)",
        summary=summary, headers=("run", "wall s", "CPU s", "CPU ms/file", "files/s"), rows=rows,
        settings=[f"PNG images of 32x24 px to JPEG, emulator latency 0; ccwatch: {SETTINGS.describe()}"],
        notes=["CPU is user + system time of the contender's process alone (wait4 at exit), "
               "start-up included; the emulator runs in the bench process."],
        targets=[Target(f"growth {small} → {large} files <= {GROWTH}x ({growth:.2f}x)",
                        growth <= GROWTH),
                 Target(f"<= {TARGET_MS} ms CPU per file at {large} files ({l_ms:.2f} ms)",
                        l_ms <= TARGET_MS),
                 Target(f"below the SDK loop's CPU per file ({l_ms:.2f} vs {k_ms:.2f} ms)",
                        l_ms < k_ms)],
    )
