"""Deliver stage: stream each export to a temp name in the destination, then rename it into place.

Final paths are chosen (collisions resolved) and written to the ledger *before* any rename, so a
delivery resumed after a crash writes exactly those paths: never a ``name (1).pdf`` duplicate.
Then the originals policy runs (keep, delete, move to archive), only after every output is in place.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path, PurePosixPath

from loguru import logger

from ccwatch import fs
from ccwatch.config import templates
from ccwatch.errors import FileError, OutputGone, TransientError
from ccwatch.fs import rooted
from ccwatch.fs.roots import SymlinkInPath
from ccwatch.ledger import Entry, PlannedOutput, State
from ccwatch.stages import track
from ccwatch.stages.context import Context, version


class Reservations:
    """Final output paths chosen by unfinished deliveries, behind their own lock: planning a job
    with thousands of outputs never holds the pipeline's lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._paths: set[Path] = set()

    def update(self, paths: Iterable[Path]) -> None:
        with self.lock:
            self._paths.update(paths)

    def difference_update(self, paths: Iterable[Path]) -> None:
        with self.lock:
            self._paths.difference_update(paths)

    def __contains__(self, path: object) -> bool:
        return path in self._paths

    def add(self, path: Path) -> None:
        """Only with ``lock`` held (``_plan`` holds it while it chooses)."""
        self._paths.add(path)


def begin(ctx: Context, entry: Entry, outputs: tuple[PlannedOutput, ...], *,
          reserved: Reservations) -> Entry:
    """A finished job: plan its outputs and record them with ``delivering`` before any download."""
    entry = ctx.ledger.get(entry.id)  # the file may have been renamed while the job ran
    try:
        planned = _plan(ctx, entry, outputs, reserved=reserved)
    except SymlinkInPath as exc:
        raise _symlinked(entry, exc) from exc
    try:
        return ctx.ledger.update(entry.id, now=ctx.clock.wall(), state=State.DELIVERING,
                                 outputs=planned)
    except BaseException:
        # Not recorded, so not ours: the next plan must not see its own names as taken
        # (a ledger locked for a while would otherwise give ``x (1).jpg`` beside nothing).
        reserved.difference_update(ctx.output_path(entry, o.final_path)
                                   for o in planned if o.final_path)
        raise


def _plan(ctx: Context, entry: Entry, outputs: tuple[PlannedOutput, ...], *,
          reserved: Reservations) -> tuple[PlannedOutput, ...]:
    """Give every output its final path (or mark it skipped) under the folder's output tree.

    ``reserved`` holds the paths other in-flight files already chose: two versions of one file
    finishing together must not both pick ``name.jpg``. Chosen paths are added to it under its
    lock; the caller releases them once the file is finished.
    """
    rule = ctx.rule(entry)
    output = ctx.folder(entry.folder).output
    root = ctx.root(output)
    root.check()  # an unmounted output share: wait, and choose no names in its mount point
    relpath = PurePosixPath(entry.relpath)
    date = dt.datetime.fromtimestamp(ctx.clock.wall(), dt.UTC).strftime("%Y-%m-%d")
    planned: list[PlannedOutput] = []
    # Outputs often share a name (page.png, 4,000 times): each base's numbering resumes where it
    # stopped, so choosing is linear, not a search from "(1)" every time.
    next_n: dict[PurePosixPath, int] = {}

    def taken(rel: PurePosixPath) -> bool:
        return output / rel in reserved or rooted.exists(root, rel)

    with reserved.lock:
        for n, out in enumerate(outputs, start=1):
            server_name = fs.sanitize_filename(out.filename)
            name = templates.format_output_name(rule.output_name, input_relpath=relpath,
                                                output_filename=server_name, n=n, date=date)
            base = relpath.parent / fs.sanitize_filename(name)
            rel = base
            if rule.on_conflict == "skip" and taken(rel):
                logger.bind(folder=entry.folder, file=entry.relpath).info(
                    "{} exists; skipped (on_conflict = skip)", output / rel)
                planned.append(replace(out, final_path=None, delivered=True))
                continue
            if rule.on_conflict == "rename" or output / rel == ctx.source(entry):
                # In place, an output named like its input (jpg → jpg) never replaces the input.
                used = next_n.get(base, 0)
                rel = base.with_name(fs.fit_name(fs.numbered(base.name, used)))
                while taken(rel):
                    used += 1
                    rel = base.with_name(fs.fit_name(fs.numbered(base.name, used)))
                next_n[base] = used + 1
            reserved.add(output / rel)
            planned.append(replace(out, final_path=rel.as_posix()))
    return tuple(planned)


def deliver(ctx: Context, entry: Entry) -> Entry:
    """Write every planned, undelivered output; then apply the originals policy and finish."""
    outputs = list(entry.outputs)
    for i, out in enumerate(outputs):
        if out.delivered or out.final_path is None:
            continue
        try:
            _fetch(ctx, entry, out)
        except OutputGone:
            # Download URLs expire; the job may still list a fresh one. One more try, then quarantine.
            out = _refreshed(ctx, entry, i, out)
            _fetch(ctx, entry, out)
        outputs[i] = replace(out, delivered=True)
        entry = ctx.ledger.update(entry.id, now=ctx.clock.wall(), outputs=tuple(outputs))
    _originals(ctx, entry)
    return ctx.ledger.update(entry.id, now=ctx.clock.wall(), state=State.DONE,
                             transient_since=None, error=None)


def _refreshed(ctx: Context, entry: Entry, index: int, out: PlannedOutput) -> PlannedOutput:
    assert entry.job_id is not None
    job = ctx.api.get_job(entry.job_id, path=entry.relpath)
    fresh = track.outputs_of(job, ctx.exports(entry))
    if index >= len(fresh):
        raise FileError("the job no longer lists this output", code="OUTPUT_GONE",
                        job_id=entry.job_id, path=entry.relpath)
    return replace(out, url=fresh[index].url)


def _fetch(ctx: Context, entry: Entry, out: PlannedOutput) -> None:
    assert out.final_path is not None and out.url is not None and entry.job_id is not None
    output = ctx.folder(entry.folder).output
    final = ctx.output_path(entry, out.final_path)
    parent, name = rooted.split(final.relative_to(output).as_posix())
    rule = ctx.rule(entry)
    log = logger.bind(folder=entry.folder, file=entry.relpath, job=entry.job_id)
    try:
        with ctx.api.download(out.url, job_id=entry.job_id, path=entry.relpath) as chunks, \
                rooted.staged(ctx.root(output), parent) as item:
            for chunk in chunks:
                item.write(chunk)
            if out.size is not None and item.written != out.size:
                raise TransientError(f"download of {out.filename} was {item.written} of "
                                     f"{out.size} bytes", code="SHORT_DOWNLOAD",
                                     job_id=entry.job_id, path=entry.relpath)
            # The path was chosen as ours (and recorded) before this rename; on resume it may
            # already hold our own earlier copy, so only "skip" refuses to replace it.
            committed = item.commit(name, overwrite=rule.on_conflict != "skip")
    except SymlinkInPath as exc:
        raise _symlinked(entry, exc) from exc
    except OSError as exc:
        # Disk full, permissions, a vanished share: the output is still on the server; try later.
        raise TransientError(f"cannot write {final}: {exc.strerror or exc}", code="WRITE_FAILED",
                             job_id=entry.job_id, path=entry.relpath) from exc
    if not committed:
        log.info("{} appeared meanwhile; skipped", final)
        return
    log.info("delivered {}", final)


def _symlinked(entry: Entry, exc: SymlinkInPath) -> FileError:
    return FileError(f"cannot deliver: a folder on the way is a symlink ({exc.strerror})",
                     code="SYMLINK_IN_OUTPUT", job_id=entry.job_id, path=entry.relpath)


def _originals(ctx: Context, entry: Entry) -> None:
    """Apply the originals policy to the exact version that was converted, and only inside the
    input (a newer version, or a symlink swapped in, is left alone)."""
    folder = ctx.folder(entry.folder)
    source = ctx.input_root(entry)
    if folder.originals == "delete":
        rooted.unlink_version(source, entry.relpath, version(entry))
    elif folder.originals == "move":
        assert folder.archive is not None
        try:
            rooted.move_version(source, entry.relpath, version(entry), ctx.root(folder.archive),
                                entry.relpath)
        except SymlinkInPath as exc:
            logger.bind(folder=entry.folder, file=entry.relpath).error(
                "not archived, left in the input: {}", exc.strerror)
