"""What a ledger row is, whichever database holds it: states, entries, planned outputs, job tags."""

from __future__ import annotations

import enum
import functools
import json
import secrets
from dataclasses import dataclass
from typing import Any


class State(enum.StrEnum):
    SETTLED = "settled"  # stopped changing and admitted; waits for a submission slot
    SUBMITTING = "submitting"  # job tag written; the job is being created (or found by its tag)
    UPLOADING = "uploading"  # job and upload task ids written; the file is being sent
    PROCESSING = "processing"  # uploaded; the job runs, tracked by webhook or poll
    DELIVERING = "delivering"  # final output paths written; the exports are being downloaded
    DONE = "done"  # every output in place and the originals policy applied
    FAILED = "failed"  # quarantined with its error file; only ``ccwatch retry`` queues it again


# The only state writes allowed: each active state moves one step on or fails (quarantine); an
# upload whose form the storage host refuses goes back to ``submitting`` as a new attempt (a new
# job); a failed row is queued again by ``ccwatch retry`` (``requeue``); ``done`` is final.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.SETTLED: frozenset({State.SUBMITTING, State.FAILED}),
    State.SUBMITTING: frozenset({State.UPLOADING, State.FAILED}),
    State.UPLOADING: frozenset({State.PROCESSING, State.SUBMITTING, State.FAILED}),
    State.PROCESSING: frozenset({State.DELIVERING, State.FAILED}),
    State.DELIVERING: frozenset({State.DONE, State.FAILED}),
    State.DONE: frozenset(),
    State.FAILED: frozenset({State.SETTLED}),
}

TERMINAL = frozenset({State.DONE, State.FAILED})
ACTIVE = tuple(s for s in State if s not in TERMINAL)


def sources(target: State) -> tuple[str, ...]:
    """The states a row may be in to move to ``target``."""
    return tuple(str(s) for s, nexts in TRANSITIONS.items() if target in nexts)


COLUMNS = (
    "id, folder, relpath, size, mtime_ns, state, rule, template, attempt, job_tag, job_id, "
    "upload_task_id, outputs, error, first_seen, updated_at, transient_since, route"
)

UPDATABLE = frozenset({
    "relpath", "state", "rule", "template", "attempt", "job_tag", "job_id", "upload_task_id", "outputs",
    "error", "transient_since",
})

INSTALLATION_KEY = "installation_id"


@dataclass(frozen=True, slots=True)
class PlannedOutput:
    """One export file and, once chosen, the final path it is written to (recorded before the rename).

    The path is relative to the folder's output (absolute in older ledgers), so hosts
    that mount the share at different places agree on it.
    """

    filename: str
    url: str | None
    size: int | None
    final_path: str | None = None
    delivered: bool = False


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    folder: str
    relpath: str
    size: int
    mtime_ns: int
    state: State
    rule: int
    template: str
    attempt: int
    job_tag: str | None
    job_id: str | None
    upload_task_id: str | None
    outputs: tuple[PlannedOutput, ...]
    error: dict[str, Any] | None
    first_seen: float
    updated_at: float
    transient_since: float | None
    # What delivery needs, as configured when the file settled (output_name, on_conflict, export
    # tasks): a config edited across a restart does not re-route it. None in older rows.
    route: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Holder:
    """A host's share of a shared ledger's active files (``ccwatch status``)."""

    host: str
    files: int
    lease_left_s: float  # of its longest-lived claim; negative once expired


def job_tag(installation: str, entry_id: int, attempt: int) -> str:
    """The idempotency key a job is created with and looked up by after a crash.

    The installation id makes it unique across every ledger on one account: another instance, or
    this state dir wiped and started afresh, never shares a tag with us (and so never adopts our job).
    """
    return f"ccwatch-{installation}-{entry_id}-{attempt}"


def new_installation_id() -> str:
    return secrets.token_hex(6)


def row_to_entry(row: tuple[Any, ...]) -> Entry:
    outputs = tuple(PlannedOutput(**o) for o in json.loads(row[12])) if row[12] else ()
    return Entry(
        id=row[0], folder=row[1], relpath=row[2], size=row[3], mtime_ns=row[4],
        state=_STATES.get(row[5]) or State(row[5]), rule=row[6], template=row[7],
        attempt=row[8], job_tag=row[9], job_id=row[10], upload_task_id=row[11], outputs=outputs,
        error=json.loads(row[13]) if row[13] else None,
        first_seen=row[14], updated_at=row[15], transient_since=row[16],
        route=_route(row[17]) if row[17] else None,
    )


_STATES = {str(s): s for s in State}


@functools.lru_cache(maxsize=64)
def _route(text: str) -> dict[str, Any]:
    """Every file of a rule has the same route, read back with each of its rows: decoded once.
    The dict is shared, so nothing may change it (nothing does: a route is only read)."""
    route = json.loads(text)
    assert isinstance(route, dict)
    return route


def encode(field: str, value: Any) -> Any:
    if field == "outputs":
        return json.dumps([
            {"filename": o.filename, "url": o.url, "size": o.size, "final_path": o.final_path,
             "delivered": o.delivered} for o in value
        ])
    if field == "error":
        return None if value is None else json.dumps(value)
    if field == "state":
        return str(value)
    return value


def check_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"not ledger fields: {sorted(unknown)}")
