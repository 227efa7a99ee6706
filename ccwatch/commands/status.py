"""``ccwatch status``: what the ledger says, read-only, while the daemon may be writing it.

The JSON form (:func:`as_json`) is a stable interface for scripts; docs/operations.md documents it.
Bump ``SCHEMA`` when a field changes meaning or goes away (adding fields does not bump it).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ccwatch.clock import Clock, SystemClock, iso
from ccwatch.config import Config
from ccwatch.errors import CcwatchError, ConfigError
from ccwatch.ledger import ACTIVE, LEDGER_NAME, Entry, Holder, Ledger, State, damaged_hint
from ccwatch.stages import cleanup
from ccwatch.stages.context import UNAVAILABLE_META
from ccwatch.stages.quarantine import Quarantined, by_folder
from ccwatch.webhook import BAD_SIGNATURES

SCHEMA = 1
DAY_S = 86400.0
RECENT_FAILURES = 10
_IN_FLIGHT = tuple(str(s) for s in ACTIVE if s is not State.SETTLED)


def ledger_path(config: Config) -> Path:
    """Where the daemon keeps its ledger for this config."""
    return config.daemon.resolved_state_dir() / LEDGER_NAME


@dataclass(frozen=True, slots=True)
class InFlight:
    file: str
    state: str
    job_id: str | None
    since: float  # when the file was first seen


@dataclass(frozen=True, slots=True)
class FolderStatus:
    name: str
    queued: int
    in_flight: int
    done_24h: int
    failed: int
    oldest_in_flight: InFlight | None


@dataclass(frozen=True, slots=True)
class Failure:
    folder: str
    file: str
    failed_at: float
    code: str | None
    message: str
    job_id: str | None


@dataclass(frozen=True, slots=True)
class Pause:
    reason: str
    since: float


@dataclass(frozen=True, slots=True)
class Unavailable:
    path: str
    problem: str
    folders: tuple[str, ...]  # the folders whose input, output, quarantine or archive it is


@dataclass(frozen=True, slots=True)
class BadSignatures:
    """Webhook deliveries refused because their signature did not match our secret."""

    count: int
    since: float  # the daemon's start: counts are per run
    last_at: float


@dataclass(frozen=True, slots=True)
class Status:
    ledger: str  # its file, or the shared database's URL without a password
    ledger_exists: bool
    paused: Pause | None
    folders: tuple[FolderStatus, ...]
    recent_failures: tuple[Failure, ...]
    now: float
    hosts: tuple[Holder, ...] = ()  # a shared ledger: which host holds how many active files
    neighbours: tuple[str, ...] = ()  # other installations found watching our folders
    bad_signatures: BadSignatures | None = None
    jobs_to_delete: int = 0  # finished jobs not yet deleted on CloudConvert (delete_jobs)
    unavailable: tuple[Unavailable, ...] = ()  # configured folders missing or unmounted now


def collect(config: Config, *, clock: Clock | None = None) -> Status:
    """Read the ledger of ``config``; a ledger that does not exist yet means zero of everything."""
    now = (clock or SystemClock()).wall()
    shared = config.ledger.shared
    where = config.ledger.display_url() if shared else str(ledger_path(config))
    quarantine = by_folder(config.folders)
    empty = Status(where, False, None, tuple(FolderStatus(f.name, 0, 0, 0, len(quarantine[f.name]),
                                                          None) for f in config.folders),
                   _failures(quarantine), now)
    if not shared and not ledger_path(config).is_file():
        return empty
    ledger = config.ledger.open(config.daemon.resolved_state_dir(), readonly=True)
    try:
        if not ledger.exists():
            return empty
        return _read(ledger, config, where, now, quarantine)
    except (sqlite3.Error, CcwatchError) as exc:
        key = "ledger.url" if shared else "daemon.state_dir"
        raise ConfigError(key, f"cannot read the ledger {where}: {exc}" + damaged_hint(exc)) from exc
    finally:
        ledger.close()


def _read(ledger: Ledger, config: Config, path: str, now: float,
          quarantine: dict[str, list[Quarantined]]) -> Status:
    folders = []
    for folder in config.folders:
        counts = ledger.count_by_state(folder.name)
        recent = ledger.count_by_state(folder.name, since=now - DAY_S)
        oldest = ledger.oldest_in_flight(folder.name)
        folders.append(FolderStatus(
            name=folder.name,
            queued=counts.get(str(State.SETTLED), 0),
            in_flight=sum(counts.get(s, 0) for s in _IN_FLIGHT),
            done_24h=recent.get(str(State.DONE), 0),
            failed=len(quarantine[folder.name]),
            oldest_in_flight=_in_flight(oldest) if oldest else None,
        ))
    neighbours = ledger.get_meta("neighbours")  # written by the daemon (pipeline/neighbours.py)
    return Status(path, True, _pause(ledger.get_meta("paused")), tuple(folders),
                  _failures(quarantine), now, tuple(ledger.holders()),
                  tuple(str(n) for n in neighbours) if isinstance(neighbours, list) else (),
                  bad_signatures(ledger.get_meta(BAD_SIGNATURES)), len(cleanup.pending_in(ledger)),
                  unavailable=_unavailable(config, ledger.get_meta(UNAVAILABLE_META)))


def _unavailable(config: Config, meta: Any) -> tuple[Unavailable, ...]:
    # The daemon writes {root path: why} while a folder is unavailable, None when all are back.
    if not isinstance(meta, dict):
        return ()
    places = ("input", "output", "quarantine", "archive")
    return tuple(
        Unavailable(str(path), str(problem), tuple(
            f.name for f in config.folders if any(str(getattr(f, p)) == path for p in places)))
        for path, problem in sorted(meta.items()))


def _in_flight(entry: Entry) -> InFlight:
    return InFlight(entry.relpath, str(entry.state), entry.job_id, entry.first_seen)


def _failures(quarantine: dict[str, list[Quarantined]]) -> tuple[Failure, ...]:
    """The newest files in quarantine now, from their error files."""
    failures = [_failure(q) for files in quarantine.values() for q in files]
    failures.sort(key=lambda f: f.failed_at, reverse=True)
    return tuple(failures[:RECENT_FAILURES])


def _failure(q: Quarantined) -> Failure:
    code, job_id = q.record.get("code"), q.record.get("job_id")
    return Failure(folder=q.folder, file=q.relpath, failed_at=_when(q),
                   code=code if isinstance(code, str) else None,
                   message=str(q.record.get("message") or "(no message recorded)"),
                   job_id=job_id if isinstance(job_id, str) else None)


def _when(q: Quarantined) -> float:
    text = q.record.get("failed_at")
    if isinstance(text, str):
        try:
            return dt.datetime.fromisoformat(text).timestamp()
        except ValueError:
            pass
    try:  # a damaged record: when the file landed there is the next best answer
        return q.path.stat().st_mtime
    except OSError:
        return 0.0


def _pause(meta: Any) -> Pause | None:
    # The daemon writes {"reason", "since"} when it pauses and clears it (None) when it resumes.
    if not isinstance(meta, dict) or not meta.get("reason"):
        return None
    since = meta.get("since")
    return Pause(str(meta["reason"]), float(since) if isinstance(since, int | float) else 0.0)


def bad_signatures(meta: Any) -> BadSignatures | None:
    """The daemon's count of webhook deliveries refused for a bad signature (None: none)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("count"), int) or not meta["count"]:
        return None
    since, last = meta.get("since"), meta.get("last_at")
    return BadSignatures(meta["count"], float(since) if isinstance(since, int | float) else 0.0,
                         float(last) if isinstance(last, int | float) else 0.0)


def as_json(status: Status) -> dict[str, Any]:
    """The stable ``status --json`` shape (times as ISO 8601 UTC)."""
    return {
        "schema": SCHEMA,
        "ledger": status.ledger,
        "ledger_exists": status.ledger_exists,
        "other_installations": list(status.neighbours),
        "hosts": [{"host": h.host, "files": h.files, "lease_left_s": round(h.lease_left_s, 1)}
                  for h in status.hosts],
        "jobs_to_delete": status.jobs_to_delete,
        "paused": None if status.paused is None else {
            "reason": status.paused.reason, "since": iso(status.paused.since)},
        "unavailable": [{"path": u.path, "problem": u.problem, "folders": list(u.folders)}
                        for u in status.unavailable],
        "folders": [{
            "name": f.name, "queued": f.queued, "in_flight": f.in_flight,
            "done_24h": f.done_24h, "failed": f.failed,
            "oldest_in_flight": None if f.oldest_in_flight is None else {
                "file": f.oldest_in_flight.file, "state": f.oldest_in_flight.state,
                "job_id": f.oldest_in_flight.job_id, "since": iso(f.oldest_in_flight.since),
                "age_s": round(max(0.0, status.now - f.oldest_in_flight.since), 1)},
        } for f in status.folders],
        "recent_failures": [{
            "folder": x.folder, "file": x.file, "failed_at": iso(x.failed_at), "code": x.code,
            "message": x.message, "job_id": x.job_id,
        } for x in status.recent_failures],
        "webhook_bad_signatures": None if status.bad_signatures is None else {
            "count": status.bad_signatures.count, "since": iso(status.bad_signatures.since),
            "last_at": iso(status.bad_signatures.last_at)},
    }


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _render_unavailable(unavailable: tuple[Unavailable, ...], console: Console) -> None:
    for u in unavailable:
        console.print(f"[bold red]UNAVAILABLE[/] {escape(u.path)} ({escape(', '.join(u.folders))}): "
                      f"{escape(u.problem)}; its files wait and resume when it returns",
                      highlight=False)


def render(status: Status, console: Console) -> None:
    """The people's view: a table per folder, then pauses and recent failures."""
    if not status.ledger_exists:
        console.print(f"No ledger yet at {status.ledger} (ccwatch has not run with this config).",
                      markup=False)
    if status.paused is not None:
        console.print(f"[bold red]Submissions PAUSED[/] since {iso(status.paused.since)}: "
                      f"{escape(status.paused.reason)}", highlight=False)
    for warning in status.neighbours:
        console.print(f"[bold red]WARNING[/] {escape(warning)}", highlight=False)
    _render_unavailable(status.unavailable, console)
    if status.bad_signatures is not None:
        bad = status.bad_signatures
        console.print(f"[bold yellow]Webhook deliveries refused for a bad signature: {bad.count}[/] "
                      f"since {iso(bad.since)} (last {iso(bad.last_at)}). If these are "
                      "CloudConvert's, the webhook secret is not the one it signs with; files "
                      "still move by the safety poll. See `ccwatch check`.", highlight=False)
    table = Table("folder", "queued", "in flight", "done (24 h)", "failed", "oldest in flight")
    for f in status.folders:
        oldest = "-"
        if f.oldest_in_flight is not None:
            o = f.oldest_in_flight
            oldest = f"{o.file} ({o.state}, {_age(status.now - o.since)}, job {o.job_id or '-'})"
        table.add_row(escape(f.name), str(f.queued), str(f.in_flight), str(f.done_24h), str(f.failed),
                      escape(oldest))
    console.print(table)
    if status.hosts:
        hosts = Table("host", "holds (active files)", "lease left")
        for h in status.hosts:
            left = f"{h.lease_left_s:.0f} s" if h.lease_left_s >= 0 else "EXPIRED (taken over next)"
            hosts.add_row(escape(h.host or "(unclaimed)"), str(h.files), left)
        console.print(hosts)
    if status.jobs_to_delete:
        console.print(f"{status.jobs_to_delete} finished job(s) not yet deleted on CloudConvert; "
                      "the daemon keeps trying (its log says why).")
    if status.recent_failures:
        console.print("Last failures (ccwatch retry PATH puts a file back):")
        for x in status.recent_failures:
            code = f" [{x.code}]" if x.code else ""
            console.print(f"  {iso(x.failed_at)}  {x.folder}/{x.file}{code}: {x.message}",
                          highlight=False, markup=False)
