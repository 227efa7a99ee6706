"""The ledger: one row per file version, written *before* each side effect it announces.

A file version's identity is (folder, relpath, size, mtime_ns). States, as ``TRANSITIONS`` allows::

    settled → submitting → uploading → processing → delivering → done
       │           │   ↖────────┤            │             │
       │           │ (new attempt: the upload form expired)│
       └───────────┴────────────┴─────┬──────┴─────────────┘
                                      ▼
                              failed (quarantined) ──ccwatch retry──→ settled

Every write of ``state`` is checked against ``TRANSITIONS`` in the same transaction; a write the
table forbids raises :class:`~ccwatch.errors.IllegalTransition`. A row whose file vanished before
anything was sent for it is deleted (``forget``), not moved to a state.

This is the default store, SQLite in the state dir; WAL mode lets ``ccwatch status`` read while the
daemon writes. Its queries are the shared ones: the PostgreSQL store (:mod:`.postgres`) subclasses
it and replaces the connection, the writes and the claims that only several hosts need.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ccwatch.errors import IllegalTransition
from ccwatch.ledger.model import (
    ACTIVE,
    COLUMNS,
    INSTALLATION_KEY,
    UPDATABLE,
    Entry,
    Holder,
    State,
    check_fields,
    encode,
    new_installation_id,
    row_to_entry,
    sources,
)
from ccwatch.ledger.sqlite_schema import SCHEMA

# The state of one input's versions, as an expression: no index can serve it, so the planner
# reads that input's versions (files_by_path) instead of a folder's done rows (files_by_state).
_BY_PATH = "state || ''"

# UPDATE … RETURNING needs SQLite 3.35 (2021); older system libraries still run, one query slower.
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)


class Ledger:
    """Thread-safe access to the ledger database (one connection behind a lock)."""

    shared = False  # only this host's daemon writes it (the state dir lock sees to that)

    def __init__(self, path: Path, *, readonly: bool = False, host: str = "") -> None:
        self.path = path
        self.host = host
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
            self._db.executescript(SCHEMA)
        if "route" not in {r[1] for r in self._db.execute("PRAGMA table_info(files)")}:
            # A ledger from before routes were kept: add the column (read-only: a view adds it).
            self._db.execute("CREATE TEMP VIEW files AS SELECT *, NULL AS route FROM main.files"
                             if readonly else "ALTER TABLE files ADD COLUMN route TEXT")
        self._lock = threading.Lock()
        self._installation: str | None = None
        if not readonly:
            self._installation = self._ensure_installation()

    def _ensure_installation(self) -> str:
        """Made with the ledger; a ledger from before it gets one now (its in-flight rows keep the
        tags they were written with, so their resume still finds their jobs)."""
        value = self.get_meta(INSTALLATION_KEY)
        if isinstance(value, str):
            return value
        value = new_installation_id()
        self.set_meta(INSTALLATION_KEY, value)
        return value

    @property
    def installation_id(self) -> str:
        """The random id in every job tag this ledger writes."""
        value = self._installation or self.get_meta(INSTALLATION_KEY)
        if not isinstance(value, str):
            raise KeyError(INSTALLATION_KEY)
        return value

    def describe(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        """Whether ccwatch has created its tables here yet (``status`` before the first run)."""
        return bool(self._query("SELECT COUNT(*) FROM sqlite_master WHERE name = 'files'")[0][0])

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

    # -- reads (shared by every store: plain SQL with ? placeholders) ---------------------------

    def get(self, entry_id: int) -> Entry:
        rows = self._query(f"SELECT {COLUMNS} FROM files WHERE id = ?", (entry_id,))
        if not rows:
            raise KeyError(entry_id)
        return row_to_entry(rows[0])

    def lookup(self, folder: str, relpath: str, size: int, mtime_ns: int) -> Entry | None:
        rows = self._query(
            f"SELECT {COLUMNS} FROM files WHERE folder = ? AND relpath = ? AND size = ? "
            "AND mtime_ns = ?", (folder, relpath, size, mtime_ns))
        return row_to_entry(rows[0]) if rows else None

    def by_job_id(self, job_id: str) -> Entry | None:
        rows = self._query(f"SELECT {COLUMNS} FROM files WHERE job_id = ?", (job_id,))
        return row_to_entry(rows[0]) if rows else None

    def known_identities(self, folder: str) -> set[tuple[str, int, int]]:
        """The (relpath, size, mtime_ns) a scan may skip: one query for a whole folder.

        Rows queued again (``settled``, e.g. by ``ccwatch retry``) are left out so a scan notes them.
        """
        return self._set_of("SELECT relpath, size, mtime_ns FROM files WHERE folder = ? AND state != ?",
                            (folder, str(State.SETTLED)))

    def _set_of(self, sql: str, params: tuple[Any, ...]) -> set[tuple[Any, ...]]:
        # Straight from the cursor: a list of every row first would double a big scan's memory.
        with self._lock:
            return set(self._db.execute(sql, params))

    def active(self) -> list[Entry]:
        marks = ",".join("?" * len(ACTIVE))
        rows = self._query(
            f"SELECT {COLUMNS} FROM files WHERE state IN ({marks}) ORDER BY id", ACTIVE)
        return [row_to_entry(r) for r in rows]

    def unplanned_before(self, folder: str, before_id: int) -> list[Entry]:
        """Active rows of ``folder`` older than ``before_id`` whose outputs are not chosen yet: a
        range per state on an index, so a backlog of later files costs nothing here."""
        marks = ",".join("?" * len(ACTIVE))
        rows = self._query(
            f"SELECT {COLUMNS} FROM files WHERE folder = ? AND state IN ({marks}) AND id < ? "
            "AND outputs IS NULL ORDER BY id", (folder, *ACTIVE, before_id))
        return [row_to_entry(r) for r in rows]

    def is_output(self, folder: str, *paths: str) -> bool:
        """One of ``paths`` is an output a delivery of ``folder`` chose (recorded before its
        rename), so an in-place folder never takes it for a new input."""
        for path in paths:
            needle = json.dumps(path)  # as encode stores it; LIKE narrows, the JSON decides
            pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._query("SELECT outputs FROM files WHERE folder = ? AND outputs LIKE ? "
                               "ESCAPE '\\'", (folder, pattern))
            if any(o.get("final_path") == path for r in rows for o in json.loads(r[0])):
                return True
        return False

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
        sql = f"SELECT {COLUMNS} FROM files WHERE state IN ({marks})"
        params: list[Any] = list(states)
        if folder is not None:
            sql += " AND folder = ?"
            params.append(folder)
        rows = self._query(sql + " ORDER BY first_seen LIMIT 1", params)
        return row_to_entry(rows[0]) if rows else None

    def in_flight_like(self, folder: str, size: int, mtime_ns: int) -> list[Entry]:
        """Active rows of a folder with this size and mtime: a file that settles under a new
        name may be one of them, renamed (a rename keeps both)."""
        marks = ",".join("?" * len(ACTIVE))
        rows = self._query(
            f"SELECT {COLUMNS} FROM files WHERE folder = ? AND size = ? AND mtime_ns = ? "
            f"AND state IN ({marks}) ORDER BY id", (folder, size, mtime_ns, *ACTIVE))
        return [row_to_entry(r) for r in rows]

    def failed_for_path(self, folder: str, relpath: str) -> Entry | None:
        rows = self._query(
            f"SELECT {COLUMNS} FROM files WHERE folder = ? AND relpath = ? AND {_BY_PATH} = ? "
            "ORDER BY id DESC LIMIT 1", (folder, relpath, str(State.FAILED)))
        return row_to_entry(rows[0]) if rows else None

    def earlier_outputs(self, folder: str, relpath: str, before_id: int) -> dict[str, int | None]:
        """Final path → size of the outputs delivered for earlier versions of one input."""
        rows = self._query("SELECT outputs FROM files WHERE folder = ? AND relpath = ? AND id < ? "
                           f"AND {_BY_PATH} = ? AND outputs IS NOT NULL ORDER BY id",
                           (folder, relpath, before_id, str(State.DONE)))
        return {o["final_path"]: o.get("size") for r in rows for o in json.loads(r[0])
                if o.get("final_path")}

    def recent(self, state: State, *, since: float = 0.0, limit: int = 1000) -> list[Entry]:
        rows = self._query(
            f"SELECT {COLUMNS} FROM files WHERE state = ? AND updated_at >= ? "
            "ORDER BY updated_at DESC LIMIT ?", (str(state), since, limit))
        return [row_to_entry(r) for r in rows]

    def get_meta(self, key: str) -> Any:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def meta_under(self, prefix: str) -> dict[str, Any]:
        """Every meta key that starts with ``prefix`` and its value (a range on the primary key)."""
        rows = self._query("SELECT key, value FROM meta WHERE key >= ? AND key < ?",
                           (prefix, prefix + "\U0010ffff"))
        return {r[0]: json.loads(r[1]) for r in rows}

    # -- claims: one host owns everything here; the shared store overrides these ----------------

    def claim_active(self) -> list[Entry]:
        """The unfinished entries this daemon resumes at start (claimed for it)."""
        return self.active()

    def renew(self) -> list[Entry]:
        """Renew this host's claims; return the entries taken over from hosts whose lease expired
        and the settled ones nobody has started (any host may)."""
        return []

    def holders(self) -> list[Holder]:
        return []

    # -- writes --------------------------------------------------------------------------------

    def add(self, folder: str, relpath: str, size: int, mtime_ns: int, *, rule: int,
            template: str, now: float, route: dict[str, Any] | None = None) -> Entry | None:
        """Record a settled file version; None when that exact version is already known."""
        sql = ("INSERT OR IGNORE INTO files (folder, relpath, size, mtime_ns, state, rule, "
               "template, first_seen, updated_at, route) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        params = (folder, relpath, size, mtime_ns, str(State.SETTLED), rule, template, now, now,
                  None if route is None else json.dumps(route))
        if _HAS_RETURNING:  # one statement is its own transaction
            rows = self._query(f"{sql} RETURNING {COLUMNS}", params)
            return row_to_entry(rows[0]) if rows else None
        with self._tx() as db:
            cur = db.execute(sql, params)
            if cur.rowcount == 0:
                return None
            new_id = cur.lastrowid
        assert new_id is not None
        return self.get(new_id)

    def update(self, entry_id: int, *, now: float, meta: Mapping[str, Any] | None = None,
               **fields: Any) -> Entry:
        """Write fields (typically a new ``state`` plus what a resumed run needs) in one transaction,
        with ``meta`` keys set (as :meth:`set_meta`) in the same one.

        A new ``state`` must be one ``TRANSITIONS`` allows from the row's current state.
        """
        check_fields(fields)
        state = State(fields["state"]) if "state" in fields else None
        names = sorted(fields)
        return self._write(entry_id, [f"{n} = ?" for n in names],
                           [encode(n, fields[n]) for n in names], now=now, state=state,
                           meta=meta)

    def requeue(self, entry_id: int, *, now: float) -> Entry:
        """Queue a failed version again (``ccwatch retry``): a new attempt, so a new job tag."""
        cleared = ("job_tag", "job_id", "upload_task_id", "outputs", "error", "transient_since")
        return self._write(entry_id, ["state = ?", "attempt = attempt + 1",
                                      *(f"{n} = NULL" for n in cleared)],
                           [str(State.SETTLED)], now=now, state=State.SETTLED, claimed=False)

    def unrequeue(self, failed: Entry, *, now: float) -> Entry:
        """Undo ``requeue`` (``ccwatch retry`` could not put the file back where it was): the row
        returns to ``failed`` exactly as it was, provided nothing has started it since."""
        assert failed.state is State.FAILED
        names = sorted(UPDATABLE)
        return self._write(failed.id, [f"{n} = ?" for n in names],
                           [encode(n, getattr(failed, n)) for n in names], now=now,
                           state=State.FAILED, allowed=(str(State.SETTLED),), claimed=False)

    def _write(self, entry_id: int, assignments: list[str], values: list[Any], *, now: float,
               state: State | None, allowed: tuple[str, ...] | None = None,
               claimed: bool = True, meta: Mapping[str, Any] | None = None) -> Entry:
        """UPDATE one row; with a new ``state``, only from ``allowed`` (default: what
        ``TRANSITIONS`` allows), else raise IllegalTransition and write nothing. ``claimed``: a
        write by the host working on the row (False: ``ccwatch retry``; only a shared store cares)."""
        sql = f"UPDATE files SET {', '.join(assignments)}, updated_at = ? WHERE id = ?"
        params: list[Any] = [*values, now, entry_id]
        if state is not None:
            allowed = sources(state) if allowed is None else allowed
            sql += f" AND state IN ({','.join('?' * len(allowed))})"
            params.extend(allowed)
        if _HAS_RETURNING and not meta:  # one statement is its own transaction
            rows = self._query(f"{sql} RETURNING {COLUMNS}", params)
        else:
            with self._tx() as db:
                if _HAS_RETURNING:
                    rows = list(db.execute(f"{sql} RETURNING {COLUMNS}", params))
                elif db.execute(sql, params).rowcount:
                    rows = list(db.execute(f"SELECT {COLUMNS} FROM files WHERE id = ?",
                                           (entry_id,)))
                else:
                    rows = []
                if rows and meta:
                    _put_meta(db, meta)
        if not rows:
            current = self._query("SELECT state FROM files WHERE id = ?", (entry_id,))
            if not current:
                raise KeyError(entry_id)
            assert state is not None  # without a state change only a missing row matches nothing
            raise IllegalTransition(entry_id, State(current[0][0]), state)
        return row_to_entry(rows[0])

    def rename_folder(self, old: str, new: str) -> int:
        """Rows of folder ``old`` belong to ``new`` (renamed in the config, same input path)."""
        with self._tx() as db:
            return db.execute("UPDATE files SET folder = ? WHERE folder = ?", (new, old)).rowcount

    def forget(self, entry_id: int) -> None:
        """Drop a row: the file vanished, or changed before its outputs were delivered."""
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE id = ?", (entry_id,))

    def set_meta(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``; None removes the key (a reader sees None either way)."""
        self.set_metas({key: value})

    def set_metas(self, items: Mapping[str, Any]) -> None:
        """:meth:`set_meta` for several keys, in one transaction."""
        with self._tx() as db:
            _put_meta(db, items)


def _put_meta(db: sqlite3.Connection, items: Mapping[str, Any]) -> None:
    gone = [(key,) for key, value in items.items() if value is None]
    kept = [(key, json.dumps(value)) for key, value in items.items() if value is not None]
    if gone:
        db.executemany("DELETE FROM meta WHERE key = ?", gone)
    if kept:
        db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", kept)
