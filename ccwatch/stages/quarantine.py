"""Quarantine stage: move a failed original aside and write ``NAME.error.json`` beside it."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from loguru import logger

from ccwatch import __version__, fs
from ccwatch.clock import iso
from ccwatch.config import FolderConfig
from ccwatch.errors import CcwatchError
from ccwatch.fs import FileStat, rooted
from ccwatch.fs.roots import Root
from ccwatch.ledger import Entry, State
from ccwatch.stages.context import Context, version

ERROR_SUFFIX = ".error.json"


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
    folder = ctx.folder(entry.folder)
    log = logger.bind(folder=entry.folder, file=entry.relpath, job=record["job_id"])
    qroot = ctx.root(folder.quarantine)
    # The name is shortened if need be so that NAME.error.json fits the filesystem's name limit.
    target = rooted.move_version(ctx.input_root(entry), entry.relpath, version(entry), qroot,
                                 entry.relpath, reserve=fs.name_bytes(ERROR_SUFFIX))
    if target is not None:
        write_error_file(qroot, target, record)
        log.error("quarantined as {}: {}", folder.quarantine / target, error.message)
    else:
        log.error("failed ({}); the original is no longer in the input folder", error.message)
    return ctx.ledger.update(entry.id, now=ctx.clock.wall(), state=State.FAILED)


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
