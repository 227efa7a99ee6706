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
from ccwatch.stages import hooks, quarantine, track
from ccwatch.stages.context import Context, version

MAX_PREDICTED = 4096  # elders whose predicted paths are remembered (~0.5 KB each)


class Reservations:
    """Final output paths chosen by unfinished deliveries, behind their own lock: planning a job
    with thousands of outputs never holds the pipeline's lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._paths: set[Path] = set()
        # (id, relpath, date) of a file not planned yet → the paths it is expected to take: every
        # later file's plan asks again while it waits (see _expected_by_elders).
        self.predicted: dict[tuple[int, str, str], frozenset[Path]] = {}

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

    Names are predictable: an earlier version's output of this same input is replaced (never
    ``name (1).pdf`` beside a stale ``name.pdf``; ``on_conflict`` is for files that are not ours),
    and when two inputs want one name, the one that settled first (lower ledger id) keeps it
    whichever finishes first: the later one leaves the names the earlier is expected to take.
    """
    folder = ctx.folder_of(entry)
    rule = ctx.rule(entry)
    root = ctx.root(folder.output)
    root.check()  # an unmounted output share: wait, and choose no names in its mount point
    relpath = PurePosixPath(entry.relpath)
    dest_dir = folder.output / relpath.parent
    date = dt.datetime.fromtimestamp(ctx.clock.wall(), dt.UTC).strftime("%Y-%m-%d")
    own = _own_earlier_outputs(ctx, entry)
    elders = (_expected_by_elders(ctx, entry, date, reserved) if rule.on_conflict == "rename"
              else set())
    planned: list[PlannedOutput] = []
    # Outputs often share a name (page.png, 4,000 times): each base's numbering resumes where it
    # stopped, so choosing is linear, not a search from "(1)" every time.
    next_n: dict[Path, int] = {}

    def taken(path: Path, *, expected: bool = True) -> bool:
        # Looked at from the output root without following a symlink (SymlinkInPath if one is
        # on the way: nothing is delivered through it).
        return (path in reserved or (expected and path in elders)
                or rooted.exists(root, path.relative_to(folder.output).as_posix()))

    with reserved.lock:
        for n, out in enumerate(outputs, start=1):
            server_name = fs.sanitize_filename(out.filename)
            name = templates.format_output_name(rule.output_name, input_relpath=relpath,
                                                output_filename=server_name, n=n, date=date)
            final = dest_dir / fs.sanitize_filename(name)
            if final in own and final not in reserved:
                pass  # our previous version's output: replace it
            elif rule.on_conflict == "skip" and taken(final, expected=False):
                logger.bind(folder=entry.folder, file=entry.relpath).info(
                    "{} exists; skipped (on_conflict = skip)", final)
                planned.append(replace(out, final_path=None, delivered=True))
                continue
            elif rule.on_conflict == "rename" or final == ctx.source(entry):
                # In place, an output named like its input (jpg → jpg) never replaces the input.
                base, used = final, next_n.get(final, 0)
                final = base.with_name(fs.fit_name(fs.numbered(base.name, used)))
                while taken(final):
                    used += 1
                    final = base.with_name(fs.fit_name(fs.numbered(base.name, used)))
                next_n[base] = used + 1
            reserved.add(final)
            planned.append(replace(out, final_path=final.relative_to(folder.output).as_posix()))
    return tuple(planned)


def _own_earlier_outputs(ctx: Context, entry: Entry) -> set[Path]:
    """Outputs of this input's earlier versions still as we wrote them (same size): a file
    someone put in their place since is not ours to replace."""
    own = set()
    for recorded, size in ctx.ledger.earlier_outputs(entry.folder, entry.relpath, entry.id).items():
        path = ctx.output_path(entry, recorded)
        st = fs.stat_regular(path)
        if size is not None and st is not None and st.size == size:
            own.add(path)
    return own


def _expected_by_elders(ctx: Context, entry: Entry, date: str, reserved: Reservations
                        ) -> set[Path]:
    """The output paths that files of this folder settled before ``entry`` and not yet planned
    are expected to take (predicted from their templates; each file's once a date, as a file's
    folder, rule and template are those it settled under)."""
    expected: set[Path] = set()
    for elder in ctx.ledger.unplanned_before(entry.folder, entry.id):
        if elder.relpath == entry.relpath:
            continue  # an older version of this same input: this one supersedes it
        key = (elder.id, elder.relpath, date)
        paths = reserved.predicted.get(key)
        if paths is None:
            if len(reserved.predicted) >= MAX_PREDICTED:
                reserved.predicted.clear()
            paths = reserved.predicted[key] = _predicted(ctx, elder, date)
        expected.update(paths)
    return expected


def _predicted(ctx: Context, elder: Entry, date: str) -> frozenset[Path]:
    try:
        folder, rule, template = ctx.folder_of(elder), ctx.rule(elder), ctx.template(elder)
    except (KeyError, IndexError):  # a folder or rule no configuration has any more
        return frozenset()
    rel = PurePosixPath(elder.relpath)
    return frozenset(
        folder.output / rel.parent / fs.sanitize_filename(templates.format_output_name(
            rule.output_name, input_relpath=rel, n=n, date=date,
            output_filename=fs.sanitize_filename(server_name)))
        for n, server_name in enumerate(templates.predicted_filenames(template, rel), start=1))


def deliver(ctx: Context, entry: Entry) -> Entry:
    """Write every planned, undelivered output; then apply the originals policy and finish."""
    outputs = list(entry.outputs)
    todo = [i for i, out in enumerate(outputs) if not out.delivered and out.final_path is not None]
    keep = ctx.folder_of(entry).originals == "keep"
    for i in todo:
        out = outputs[i]
        try:
            _fetch(ctx, entry, out)
        except OutputGone:
            # Download URLs expire; the job may still list a fresh one. One more try, then quarantine.
            out = _refreshed(ctx, entry, i, out)
            _fetch(ctx, entry, out)
        outputs[i] = replace(out, delivered=True)
        if i != todo[-1] or not keep:  # the last one is recorded with ``done`` when nothing is between
            entry = ctx.ledger.update(entry.id, now=ctx.clock.wall(), outputs=tuple(outputs))
    _originals(ctx, entry)
    # The job to delete is recorded with ``done``: one transaction, and a restart still deletes it.
    cleanup, job_id = ctx.cleanup, entry.job_id
    entry = ctx.ledger.update(entry.id, now=ctx.clock.wall(), state=State.DONE,
                              outputs=tuple(outputs), transient_since=None, error=None,
                              meta=cleanup.record(job_id) if cleanup and job_id else None)
    if cleanup is not None and job_id:
        cleanup.add(job_id, recorded=True)
    try:
        quarantine.drop_superseded(ctx, entry)
    except OSError as exc:  # the new version is delivered; a stale copy only lingers
        logger.bind(folder=entry.folder, file=entry.relpath).warning(
            "could not remove the failed older version from quarantine: {}", exc)
    written = [ctx.output_path(entry, o.final_path) for o in entry.outputs if o.final_path]
    hooks.after_done(ctx.hooks, ctx.hook(entry, "done"), entry, ctx.source(entry), written)
    return entry


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
    output = ctx.folder_of(entry).output
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
            # already hold our own earlier copy, or an earlier version's output: only "skip"
            # refuses to replace a file that is not ours.
            committed = item.commit(name, overwrite=rule.on_conflict != "skip"
                                    or final in _own_earlier_outputs(ctx, entry))
    except SymlinkInPath as exc:
        raise _symlinked(entry, exc) from exc
    except OSError as exc:
        # Disk full, permissions, a vanished share: the output is still on the server; try later.
        raise TransientError(f"cannot write {final}: {exc.strerror or exc}", code="WRITE_FAILED",
                             job_id=entry.job_id, path=entry.relpath) from exc
    ctx.metrics.delivered_bytes.inc(item.written)
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
    folder = ctx.folder_of(entry)
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
