"""The operator's endpoint of a running pipeline: what the status page shows, gathered in one go
(read-only), the live metrics and the health answer.

The quarantine is read from disk (the ``.error.json`` files), not the ledger: a file someone moved
out by hand is no longer shown. Nothing here holds a secret: no keys, no download URLs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from ccwatch.config import Config
from ccwatch.http.app import StatusApp
from ccwatch.http.metrics import LiveCollector
from ccwatch.http.page import FileRow, FolderRow, OutputRow, QuarantineRow, Snapshot, render
from ccwatch.ledger import ACTIVE, Ledger, State
from ccwatch.pipeline.dispatch import Pipeline
from ccwatch.stages.quarantine import Quarantined, by_folder

DAY_S = 86400.0
MAX_ROWS = 50


def status_app(pipeline: Pipeline, *, watch_modes: Mapping[str, str], stall_s: float) -> StatusApp:
    """The WSGI app for ``[http] listen``; registers the live gauges with the pipeline's metrics.
    ``ctx.config`` is read at each request: a reload may change the folders."""
    ctx = pipeline.ctx

    pause = pipeline.gate.why_paused

    def health() -> tuple[bool, str]:
        age = pipeline.seconds_since_step()
        if age >= stall_s:
            return False, f"stalled: the pipeline has not turned for {age:.0f} s"
        return True, "ok" + (f" (submissions paused: {held[0]})" if (held := pause()) else "")

    ctx.metrics.add_live(LiveCollector(
        files=lambda: {f.name: ctx.ledger.count_by_state(f.name) for f in ctx.config.folders},
        quarantined=lambda: {k: len(v) for k, v in by_folder(ctx.config.folders).items()},
        in_flight=pipeline.active_count, paused=lambda: pause() is not None,
        jobs_to_delete=lambda: ctx.cleanup.pending() if ctx.cleanup else 0))
    return StatusApp(
        page=lambda: render(gather(ctx.config, ctx.ledger, now=ctx.clock.wall(),
                                   watch_modes=watch_modes, pause=pause)),
        metrics=ctx.metrics.exposition, health=health)


def gather(config: Config, ledger: Ledger, *, now: float, watch_modes: Mapping[str, str],
           pause: Callable[[], tuple[str, float] | None]) -> Snapshot:
    quarantine = by_folder(config.folders)
    folders = []
    for f in config.folders:
        counts = ledger.count_by_state(f.name)
        recent = ledger.count_by_state(f.name, since=now - DAY_S)
        in_flight = sum(counts.get(str(s), 0) for s in ACTIVE if s is not State.SETTLED)
        folders.append(FolderRow(f.name, str(f.input), str(f.output),
                                 watch_modes.get(f.name, f.watch), counts.get(str(State.SETTLED), 0),
                                 in_flight, recent.get(str(State.DONE), 0),
                                 len(quarantine[f.name])))
    active = tuple(FileRow(e.folder, e.relpath, str(e.state), e.job_id or "", e.first_seen)
                   for e in ledger.active()[:MAX_ROWS])
    outputs = []
    for e in ledger.recent(State.DONE, limit=MAX_ROWS // 2):
        base = _output_of(config, e.folder)
        paths = tuple(_relative(Path(o.final_path), base) for o in e.outputs if o.final_path)
        outputs.append(OutputRow(e.folder, e.relpath, paths, e.updated_at))
    held = pause()
    return Snapshot(now, tuple(folders), active, tuple(outputs), _quarantine(quarantine),
                    held[0] if held else None, held[1] if held else None)


def _output_of(config: Config, folder: str) -> Path | None:
    return next((f.output for f in config.folders if f.name == folder), None)


def _relative(path: Path, base: Path | None) -> str:
    """An output's path below its folder's output (recorded relative; absolute in older ledgers)."""
    if not path.is_absolute():
        return path.as_posix()
    if base is not None:
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            pass
    return path.name


def _quarantine(found: dict[str, list[Quarantined]]) -> tuple[QuarantineRow, ...]:
    rows = [QuarantineRow(q.folder, q.relpath, str(q.record.get("code") or ""),
                          str(q.record.get("message") or "(no message)"),
                          str(q.record.get("failed_at") or ""))
            for files in found.values() for q in files]
    return tuple(rows[:MAX_ROWS])
