"""The ledger: one SQLite row per file version, written *before* each side effect it announces.

A file version's identity is (folder, relpath, size, mtime_ns). States, as ``TRANSITIONS`` allows::

    settled → submitting → uploading → processing → delivering → done
       │           │            │            │             │
       └───────────┴────────────┴─────┬──────┴─────────────┘
                                      ▼
                              failed (quarantined) ──ccwatch retry──→ settled

Every write of ``state`` is checked against ``TRANSITIONS`` in the same transaction; a write the
table forbids raises :class:`~ccwatch.errors.IllegalTransition`. A row whose file vanished before
anything was sent for it is deleted (``forget``), not moved to a state.

WAL mode lets ``ccwatch status`` read while the daemon writes.
"""

from __future__ import annotations

import enum
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccwatch.errors import IllegalTransition


class State(enum.StrEnum):
    SETTLED = "settled"  # stopped changing and admitted; waits for a submission slot
    SUBMITTING = "submitting"  # job tag written; the job is being created (or found by its tag)
    UPLOADING = "uploading"  # job and upload task ids written; the file is being sent
    PROCESSING = "processing"  # uploaded; the job runs, tracked by webhook or poll
    DELIVERING = "delivering"  # final output paths written; the exports are being downloaded
    DONE = "done"  # every output in place and the originals policy applied
    FAILED = "failed"  # quarantined with its error file; only ``ccwatch retry`` queues it again


# The only state writes allowed: each active state moves one step on or fails (quarantine); a
# failed row is queued again by ``ccwatch retry`` (``requeue``); ``done`` is final.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.SETTLED: frozenset({State.SUBMITTING, State.FAILED}),
    State.SUBMITTING: frozenset({State.UPLOADING, State.FAILED}),
    State.UPLOADING: frozenset({State.PROCESSING, State.FAILED}),
    State.PROCESSING: frozenset({State.DELIVERING, State.FAILED}),
    State.DELIVERING: frozenset({State.DONE, State.FAILED}),
    State.DONE: frozenset(),
    State.FAILED: frozenset({State.SETTLED}),
}

TERMINAL = frozenset({State.DONE, State.FAILED})
ACTIVE = tuple(s for s in State if s not in TERMINAL)


def _sources(target: State) -> tuple[str, ...]:
    """The states a row may be in to move to ``target``."""
    return tuple(str(s) for s, nexts in TRANSITIONS.items() if target in nexts)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    folder TEXT NOT NULL,
    relpath TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    state TEXT NOT NULL,
    rule INTEGER NOT NULL DEFAULT 0,
    template TEXT NOT NULL DEFAULT '',
    attempt INTEGER NOT NULL DEFAULT 1,
    job_tag TEXT,
    job_id TEXT,
    upload_task_id TEXT,
    outputs TEXT,
    error TEXT,
    first_seen REAL NOT NULL,
    updated_at REAL NOT NULL,
    transient_since REAL,
    UNIQUE (folder, relpath, size, mtime_ns)
);
CREATE INDEX IF NOT EXISTS files_state ON files (state);
CREATE INDEX IF NOT EXISTS files_path ON files (folder, relpath);
CREATE INDEX IF NOT EXISTS files_job ON files (job_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# UPDATE … RETURNING needs SQLite 3.35 (2021); older system libraries still run, one query slower.
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)

_COLUMNS = (
    "id, folder, relpath, size, mtime_ns, state, rule, template, attempt, job_tag, job_id, "
    "upload_task_id, outputs, error, first_seen, updated_at, transient_since"
)


@dataclass(frozen=True, slots=True)
class PlannedOutput:
    """One export file and, once chosen, the final path it is written to (recorded before the rename)."""

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


def job_tag(installation: str, entry_id: int, attempt: int) -> str:
    """The idempotency key a job is created with and looked up by after a crash.

    The installation id makes it unique across every ledger on one account: another instance, or
    this state dir wiped and started afresh, never shares a tag with us (and so never adopts our job).
    """
    return f"ccwatch-{installation}-{entry_id}-{attempt}"


def new_installation_id() -> str:
    return secrets.token_hex(6)


def _row_to_entry(row: sqlite3.Row | tuple[Any, ...]) -> Entry:
    outputs = tuple(PlannedOutput(**o) for o in json.loads(row[12])) if row[12] else ()
    return Entry(
        id=row[0], folder=row[1], relpath=row[2], size=row[3], mtime_ns=row[4],
        state=State(row[5]), rule=row[6], template=row[7], attempt=row[8], job_tag=row[9],
        job_id=row[10], upload_task_id=row[11], outputs=outputs,
        error=json.loads(row[13]) if row[13] else None,
        first_seen=row[14], updated_at=row[15], transient_since=row[16],
    )


def _encode(field: str, value: Any) -> Any:
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


INSTALLATION_KEY = "installation_id"

_UPDATABLE = frozenset({
    "state", "rule", "template", "attempt", "job_tag", "job_id", "upload_task_id", "outputs",
    "error", "transient_since",
})


class Ledger:
    """Thread-safe access to the ledger database (one connection behind a lock)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            uri = f"file:{path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=10,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode (only power loss can drop the tail).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._installation: str | None = None
        if not readonly:
            self._installation = self.get_meta(INSTALLATION_KEY)
            if self._installation is None:
                # Made with the ledger; a ledger from before it gets one now (its in-flight rows
                # keep the tags they were written with, so their resume still finds their jobs).
                self._installation = new_installation_id()
                self.set_meta(INSTALLATION_KEY, self._installation)

    @property
    def installation_id(self) -> str:
        """The random id in every job tag this ledger writes."""
        value = self._installation or self.get_meta(INSTALLATION_KEY)
        if not isinstance(value, str):
            raise KeyError(INSTALLATION_KEY)
        return value

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, tuple(params)))

    # -- reads ---------------------------------------------------------------------------------

    def get(self, entry_id: int) -> Entry:
        rows = self._query(f"SELECT {_COLUMNS} FROM files WHERE id = ?", (entry_id,))
        if not rows:
            raise KeyError(entry_id)
        return _row_to_entry(rows[0])

    def lookup(self, folder: str, relpath: str, size: int, mtime_ns: int) -> Entry | None:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM files WHERE folder = ? AND relpath = ? AND size = ? "
            "AND mtime_ns = ?", (folder, relpath, size, mtime_ns))
        return _row_to_entry(rows[0]) if rows else None

    def by_job_id(self, job_id: str) -> Entry | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM files WHERE job_id = ?", (job_id,))
        return _row_to_entry(rows[0]) if rows else None

    def known_identities(self, folder: str) -> set[tuple[str, int, int]]:
        """The (relpath, size, mtime_ns) a scan may skip: one query for a whole folder.

        Rows queued again (``settled``, e.g. by ``ccwatch retry``) are left out so a scan notes them.
        """
        rows = self._query("SELECT relpath, size, mtime_ns FROM files WHERE folder = ? AND state != ?",
                           (folder, str(State.SETTLED)))
        return {(r[0], r[1], r[2]) for r in rows}

    def active(self) -> list[Entry]:
        marks = ",".join("?" * len(ACTIVE))
        rows = self._query(
            f"SELECT {_COLUMNS} FROM files WHERE state IN ({marks}) ORDER BY id", ACTIVE)
        return [_row_to_entry(r) for r in rows]

    def is_output(self, folder: str, path: str) -> bool:
        """``path`` is an output a delivery of ``folder`` chose (recorded before its rename), so an
        in-place folder never takes it for a new input."""
        needle = json.dumps(path)  # as _encode stores it; LIKE narrows, the JSON decides
        pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._query("SELECT outputs FROM files WHERE folder = ? AND outputs LIKE ? ESCAPE '\\'",
                           (folder, pattern))
        return any(o.get("final_path") == path for r in rows for o in json.loads(r[0]))

    def count_by_state(self, folder: str | None = None, *, since: float | None = None) -> dict[str, int]:
        """Rows per state (for one folder; only those updated at or after ``since``)."""
        clauses: list[str] = []
        params: list[Any] = []
        if folder is not None:
            clauses.append("folder = ?")
            params.append(folder)
        if since is not None:
            clauses.append("updated_at >= ?")
            params.append(since)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._query(f"SELECT state, COUNT(*) FROM files{where} GROUP BY state", params)
        return {r[0]: r[1] for r in rows}

    def oldest_in_flight(self, folder: str | None = None) -> Entry | None:
        """The active entry waiting longest past ``settled`` (its job is the one to look at)."""
        states = [str(s) for s in ACTIVE if s is not State.SETTLED]
        marks = ",".join("?" * len(states))
        sql = f"SELECT {_COLUMNS} FROM files WHERE state IN ({marks})"
        params: list[Any] = list(states)
        if folder is not None:
            sql += " AND folder = ?"
            params.append(folder)
        rows = self._query(sql + " ORDER BY first_seen LIMIT 1", params)
        return _row_to_entry(rows[0]) if rows else None

    def failed_for_path(self, folder: str, relpath: str) -> Entry | None:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM files WHERE folder = ? AND relpath = ? AND state = ? "
            "ORDER BY id DESC LIMIT 1", (folder, relpath, str(State.FAILED)))
        return _row_to_entry(rows[0]) if rows else None

    def recent(self, state: State, *, since: float = 0.0, limit: int = 1000) -> list[Entry]:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM files WHERE state = ? AND updated_at >= ? "
            "ORDER BY updated_at DESC LIMIT ?", (str(state), since, limit))
        return [_row_to_entry(r) for r in rows]

    # -- writes --------------------------------------------------------------------------------

    def add(self, folder: str, relpath: str, size: int, mtime_ns: int, *, rule: int,
            template: str, now: float) -> Entry | None:
        """Record a settled file version; None when that exact version is already known."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO files (folder, relpath, size, mtime_ns, state, rule, template,"
                " first_seen, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (folder, relpath, size, mtime_ns, str(State.SETTLED), rule, template, now, now))
            if cur.rowcount == 0:
                return None
            new_id = cur.lastrowid
        assert new_id is not None
        return self.get(new_id)

    def update(self, entry_id: int, *, now: float, **fields: Any) -> Entry:
        """Write fields (typically a new ``state`` plus what a resumed run needs) in one transaction.

        A new ``state`` must be one ``TRANSITIONS`` allows from the row's current state.
        """
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not ledger fields: {sorted(unknown)}")
        state = State(fields["state"]) if "state" in fields else None
        names = sorted(fields)
        return self._write(entry_id, [f"{n} = ?" for n in names],
                           [_encode(n, fields[n]) for n in names], now=now, state=state)

    def requeue(self, entry_id: int, *, now: float) -> Entry:
        """Queue a failed version again (``ccwatch retry``): a new attempt, so a new job tag."""
        cleared = ("job_tag", "job_id", "upload_task_id", "outputs", "error", "transient_since")
        return self._write(entry_id, ["state = ?", "attempt = attempt + 1",
                                      *(f"{n} = NULL" for n in cleared)],
                           [str(State.SETTLED)], now=now, state=State.SETTLED)

    def unrequeue(self, failed: Entry, *, now: float) -> Entry:
        """Undo ``requeue`` (``ccwatch retry`` could not put the file back where it was): the row
        returns to ``failed`` exactly as it was, provided nothing has started it since."""
        assert failed.state is State.FAILED
        names = sorted(_UPDATABLE)
        return self._write(failed.id, [f"{n} = ?" for n in names],
                           [_encode(n, getattr(failed, n)) for n in names], now=now,
                           state=State.FAILED, sources=(State.SETTLED,))

    def _write(self, entry_id: int, assignments: list[str], values: list[Any], *, now: float,
               state: State | None, sources: tuple[State, ...] | None = None) -> Entry:
        """UPDATE one row; with a new ``state``, only from ``sources`` (default: what
        ``TRANSITIONS`` allows), else raise IllegalTransition and write nothing."""
        sql = f"UPDATE files SET {', '.join(assignments)}, updated_at = ? WHERE id = ?"
        params: list[Any] = [*values, now, entry_id]
        if state is not None:
            allowed = _sources(state) if sources is None else tuple(str(s) for s in sources)
            sql += f" AND state IN ({','.join('?' * len(allowed))})"
            params.extend(allowed)
        with self._tx() as db:
            if _HAS_RETURNING:  # one round trip instead of two
                rows = list(db.execute(f"{sql} RETURNING {_COLUMNS}", params))
            elif db.execute(sql, params).rowcount:
                rows = list(db.execute(f"SELECT {_COLUMNS} FROM files WHERE id = ?", (entry_id,)))
            else:
                rows = []
            if not rows:
                current = list(db.execute("SELECT state FROM files WHERE id = ?", (entry_id,)))
                if not current:
                    raise KeyError(entry_id)
                assert state is not None  # without a state change only a missing row matches nothing
                raise IllegalTransition(entry_id, State(current[0][0]), state)
        return _row_to_entry(rows[0])

    def forget(self, entry_id: int) -> None:
        """Drop a row: the file vanished before anything was sent for it."""
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE id = ?", (entry_id,))

    def set_meta(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                       (key, json.dumps(value)))

    def get_meta(self, key: str) -> Any:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None
