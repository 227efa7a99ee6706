"""Memory: peak RSS while one big file goes up and comes back down (ccwatch vs the SDK).

The template uploads the file and exports the upload as it is (``import/upload`` → ``export/url``),
so the emulator does no work and the transfer is all there is. The input is a sparse file.
"""

from __future__ import annotations

from pathlib import Path

from bench.child import BenchError
from bench.common import (
    Settings,
    Size,
    Workspace,
    by_size,
    emulator,
    measure_all,
    run_ccwatch_once,
    sdk_child,
    workspace,
    write_config,
)
from bench.report import Result, Target

SETTINGS = Settings(template="passthrough", match="*.bin", settle_s=0.5, max_file_size="8 GB")
TARGET_MB = 100.0


def _sparse(ws: Workspace, size: int) -> Path:
    path = ws.input / "big.bin"
    with path.open("wb") as f:
        f.truncate(size)
    return path


def _check(ws: Workspace, size: int, who: str) -> None:
    out = ws.output / "big.bin"
    if not out.exists() or out.stat().st_size != size:
        raise BenchError(f"{who} did not deliver big.bin whole ({size} bytes)")


def _ccwatch(size: int) -> tuple[float, float]:
    """(peak RSS MB, wall s) of ``run --once``; size 0 = an empty folder (the start-up baseline)."""
    with workspace("memory") as ws, emulator() as emu:
        if size:
            _sparse(ws, size)
        assert emu.base_url
        usage = run_ccwatch_once(ws, write_config(ws, emu.base_url, SETTINGS), timeout_s=600)
        if size:
            _check(ws, size, "ccwatch")
        return usage.maxrss_mb, usage.wall_s


def _sdk(size: int) -> tuple[float, float]:
    with workspace("memory-sdk") as ws, emulator() as emu:
        _sparse(ws, size)
        assert emu.base_url
        with sdk_child(ws, "loop", emu.base_url, "passthrough", 1, input_dir=ws.input) as child:
            usage = child.wait(600)
            if usage.returncode != 0:
                raise BenchError(f"the SDK loop exited {usage.returncode}:\n{child.log_tail()}")
        _check(ws, size, "the SDK loop")
        return usage.maxrss_mb, usage.wall_s


def run(size: Size) -> Result:
    file_size = by_size(size, full=2048, quick=200, smoke=8) * 2**20
    size_mb = file_size / 2**20
    (base_rss, _), (rss, wall), (sdk_rss, sdk_wall) = measure_all(
        size, lambda: _ccwatch(0), lambda: _ccwatch(file_size), lambda: _sdk(file_size))
    rows = [
        ("ccwatch run --once, empty folder", "0", f"{base_rss:.0f}", ""),
        ("ccwatch run --once", f"{size_mb:.0f}", f"{rss:.0f}", f"{wall:.1f}"),
        ("SDK loop (Task.upload, download)", f"{size_mb:.0f}", f"{sdk_rss:.0f}", f"{sdk_wall:.1f}"),
    ]
    summary = (f"ccwatch peak RSS {rss:.0f} MB for a {size_mb:.0f} MB file "
               f"(start-up alone {base_rss:.0f} MB); SDK loop {sdk_rss:.0f} MB")
    return Result(
        name="memory", title="Memory (one big file)", summary=summary,
        headers=("contender", "file MB", "peak RSS MB", "wall s"), rows=rows,
        settings=[f"one sparse {size_mb:.0f} MiB file, template import/upload -> export/url "
                  "(no conversion), downloaded to the output folder",
                  f"ccwatch: {SETTINGS.describe()}, max_file_size {SETTINGS.max_file_size}"],
        notes=["Peak RSS is the VmHWM of the contender's own process (read from /proc while it "
               "runs), in MiB. The SDK's Task.upload hands the open file to requests, which "
               "builds the whole multipart body in memory; ccwatch streams the upload from disk "
               "and the download to a temp file."],
        targets=[Target(f"ccwatch <= {TARGET_MB:.0f} MB peak RSS ({rss:.0f} MB)", rss <= TARGET_MB)],
    )
