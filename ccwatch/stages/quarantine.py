"""Quarantine stage: move a failed original aside and write ``NAME.error.json`` beside it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from loguru import logger

from ccwatch import __version__, fs
from ccwatch.clock import iso
from ccwatch.config import FolderConfig
from ccwatch.errors import CcwatchError, FolderUnavailable
from ccwatch.fs import FileStat, rooted
from ccwatch.fs.roots import CLOEXEC, Root, SymlinkInPath
from ccwatch.ledger import Entry, State
from ccwatch.stages import hooks
from ccwatch.stages.context import Context, version

ERROR_SUFFIX = ".error.json"
MAX_RECORD = 1 << 20  # an error record is a few hundred bytes; a bigger file is not one


def error_record(ctx: Context, entry: Entry, error: CcwatchError) -> dict[str, Any]:
    """The error file's fields (docs/operations.md lists them); the message is the root task's."""
    return {
        "file": entry.relpath,
        "folder": entry.folder,
        "rule": entry.rule,
        "template": entry.template,
        "job_id": error.job_id or entry.job_id,
        "task": error.task,
        "code": error.code,
        "message": error.message,
        "http_status": error.http_status,
        "attempts": entry.attempt,
        "first_seen": iso(entry.first_seen),
        "failed_at": iso(ctx.clock.wall()),
        "ccwatch_version": __version__,
    }


def quarantine(ctx: Context, entry: Entry, error: CcwatchError) -> Entry:
    """Move the original to ``<quarantine>/<relpath>`` (never overwriting) with its error file.

    The error is recorded in the ledger first; the move tolerates a source that is already gone
    (a restart after the move but before the final state).
    """
    record = error_record(ctx, entry, error)
    entry = ctx.ledger.update(entry.id, now=ctx.clock.wall(), error=record)
    folder = ctx.folder_of(entry)
    source = ctx.source(entry)
    log = logger.bind(folder=entry.folder, file=entry.relpath, job=record["job_id"])
    qroot = ctx.root(folder.quarantine)
    # The name is shortened if need be so that NAME.error.json fits the filesystem's name limit.
    moved = rooted.move_version(ctx.input_root(entry), entry.relpath, version(entry), qroot,
                                entry.relpath, reserve=fs.name_bytes(ERROR_SUFFIX))
    target: Path | None = None
    if moved is not None:
        write_error_file(qroot, moved, record)
        target = folder.quarantine / moved
        log.error("quarantined as {}: {}", target, error.message)
    else:
        log.error("failed ({}); the original is no longer in the input folder", error.message)
    entry = ctx.ledger.update(entry.id, now=ctx.clock.wall(), state=State.FAILED)
    if ctx.cleanup is not None and entry.job_id:
        ctx.cleanup.add(entry.job_id)
    hooks.after_failed(ctx.hooks, ctx.hook(entry, "failed"), entry, source, record, target)
    return entry


def drop_superseded(ctx: Context, entry: Entry) -> None:
    """A newer version of a file converted: its older, failed version leaves the quarantine.

    Only a quarantined file whose error record names this folder and path is removed (with its
    error file): the quarantine lists what still needs a person, and this no longer does. Read
    and removed through the quarantine's folder fds, so a subfolder swapped for a symlink
    meanwhile leads nowhere outside it.
    """
    folder = ctx.folder_of(entry)
    stale = folder.quarantine / PurePosixPath(entry.relpath)
    if not os.path.lexists(error_file_for(stale)):  # the usual case: nothing failed before
        return
    parent, name = rooted.split(entry.relpath)
    try:
        with ctx.root(folder.quarantine).directory(parent) as fd:
            record = _read_record(fd, name + ERROR_SUFFIX)
            if record.get("folder") != entry.folder or record.get("file") != entry.relpath:
                return
            if not rooted.is_regular(fd, name):
                return
            for gone in (name, name + ERROR_SUFFIX):
                with suppress(FileNotFoundError):
                    os.unlink(gone, dir_fd=fd)
    except (FileNotFoundError, SymlinkInPath, FolderUnavailable):
        return
    logger.bind(folder=entry.folder, file=entry.relpath).info(
        "a newer version converted; removed the failed older one from quarantine ({})", stale)


def _read_record(dir_fd: int, name: str) -> dict[str, Any]:
    """The error record ``name`` in ``dir_fd`` (never through a symlink), or {} as
    :func:`read_error_file` would have it."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as fh:
            return _record(fh.read(MAX_RECORD))
    except OSError:
        return {}


def refuse(ctx: Context, folder: FolderConfig, relpath: PurePosixPath, st: FileStat, rule: int,
           problem: str) -> None:
    """Quarantine a settled file whose name cannot be converted and delivered, before any job or
    ledger row exists (no credits spent)."""
    template = folder.rules[rule].template
    record = {
        "file": str(relpath), "folder": folder.name, "rule": rule, "template": template,
        "job_id": None, "task": None, "code": "UNSAFE_NAME", "message": problem,
        "http_status": None, "attempts": 0, "first_seen": iso(ctx.clock.wall()),
        "failed_at": iso(ctx.clock.wall()), "ccwatch_version": __version__,
    }
    qroot = ctx.root(folder.quarantine)
    target = rooted.move_version(ctx.root(folder.input), relpath, st, qroot, relpath,
                                 reserve=fs.name_bytes(ERROR_SUFFIX))
    if target is not None:
        write_error_file(qroot, target, record)
        logger.bind(folder=folder.name, file=str(relpath)).error(
            "not converted, quarantined as {}: {}", folder.quarantine / target, problem)


def write_error_file(root: Root, quarantined: PurePosixPath, record: dict[str, Any]) -> None:
    """``NAME.error.json`` beside the quarantined file, written atomically inside ``root``."""
    # Readable UTF-8; bytes of a name that is not UTF-8 are kept as \udcXX escapes (retry reads
    # them back into the same name).
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    body = text.encode("utf-8", "backslashreplace")
    parent, name = rooted.split(quarantined)
    with rooted.staged(root, parent) as item:
        item.write(body)
        item.commit(name + ERROR_SUFFIX, overwrite=True)


def error_file_for(quarantined: Path) -> Path:
    return quarantined.with_name(quarantined.name + ERROR_SUFFIX)


def in_quarantine(quarantine_dir: Path) -> Iterator[tuple[Path, Path]]:
    """(file, its error file) for each file in a quarantine folder *now*, in name order.

    This, not the ledger's history, is what "failed" means to ``status``, ``retry --all``, the
    status page and the metrics: a file retried, replaced or moved out by hand is no longer in it.
    """
    if not quarantine_dir.is_dir():
        return
    for error_file in sorted(quarantine_dir.rglob("*" + ERROR_SUFFIX)):
        original = error_file.with_name(error_file.name[: -len(ERROR_SUFFIX)])
        if error_file.is_file() and original.is_file() and not original.is_symlink():
            yield original, error_file


def read_error_file(error_file: Path) -> dict[str, Any]:
    """The error record, or {} when it is unreadable or damaged (a person may have edited it)."""
    try:
        return _record(error_file.read_bytes())
    except OSError:
        return {}


def _record(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True, slots=True)
class Quarantined:
    folder: str
    relpath: str  # inside the quarantine folder
    path: Path
    record: dict[str, Any]


def by_folder(folders: Iterable[FolderConfig]) -> dict[str, list[Quarantined]]:
    """What is in quarantine now, per folder. A quarantine shared by several folders is read once;
    each file goes to the folder its error record names (else the first that shares it)."""
    folders = list(folders)
    found: dict[str, list[Quarantined]] = {f.name: [] for f in folders}
    done: set[Path] = set()
    for folder in folders:
        if folder.quarantine in done:
            continue
        done.add(folder.quarantine)
        sharing = {f.name for f in folders if f.quarantine == folder.quarantine}
        for original, error_file in in_quarantine(folder.quarantine):
            record = read_error_file(error_file)
            owner = record.get("folder")
            name = owner if isinstance(owner, str) and owner in sharing else folder.name
            found[name].append(Quarantined(
                name, original.relative_to(folder.quarantine).as_posix(), original, record))
    return found
