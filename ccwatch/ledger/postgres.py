"""The shared ledger: PostgreSQL, for several hosts watching the same folders.

The identity (folder, relpath, size, mtime_ns) is unique in the database, so each file version has
one row. A settled row is nobody's: every host tracks it, and the first to start it claims it with
its ``submitting`` write, so each version is worked on by exactly one host and a host never hoards
work it has no free slot for. A claim is the row's ``owner`` plus a ``lease_until`` (the server's
clock, so hosts need not agree on the time) that its owner renews; once a lease has expired another
host takes the row over and resumes it from its recorded state, as one host does after a crash.
Every write checks the claim first: a host that lost one (it stalled past its lease) gets
:class:`~ccwatch.errors.ClaimLost` before the side effect the write would announce.

A lost connection is :class:`~ccwatch.errors.LedgerUnavailable` (transient): the pipeline backs
off, and the next call connects again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ccwatch.errors import ClaimLost, IllegalTransition, LedgerUnavailable
from ccwatch.ledger.model import (
    ACTIVE,
    COLUMNS,
    Entry,
    Holder,
    State,
    row_to_entry,
    sources,
)
from ccwatch.ledger.sqlite import Ledger

if TYPE_CHECKING:
    import psycopg

SCHEMA_KEY = "schema_version"
# Append only: each step moves a database from version i to i + 1.
_MIGRATIONS = (
    """
    CREATE TABLE files (
        id BIGSERIAL PRIMARY KEY,
        folder TEXT NOT NULL,
        relpath TEXT NOT NULL,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        state TEXT NOT NULL,
        rule INTEGER NOT NULL DEFAULT 0,
        template TEXT NOT NULL DEFAULT '',
        attempt INTEGER NOT NULL DEFAULT 1,
        job_tag TEXT,
        job_id TEXT,
        upload_task_id TEXT,
        outputs TEXT,
        error TEXT,
        first_seen DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        transient_since DOUBLE PRECISION,
        owner TEXT,
        lease_until DOUBLE PRECISION,
        UNIQUE (folder, relpath, size, mtime_ns)
    );
    CREATE INDEX files_state ON files (state);
    CREATE INDEX files_path ON files (folder, relpath);
    CREATE INDEX files_job ON files (job_id);
    CREATE INDEX files_owner ON files (owner);
    """,
    # What delivery needs as configured when the file settled; the lookup of a renamed file.
    """
    ALTER TABLE files ADD COLUMN route TEXT;
    CREATE INDEX files_version ON files (folder, size, mtime_ns);
    """,
    # The files of a folder settled before another and not planned yet (delivery's name choice).
    """
    CREATE INDEX files_queue ON files (folder, state, id);
    """,
    # One input's versions by state (the earlier outputs a delivery replaces): before autovacuum
    # has analysed a fresh backlog the planner took files_queue and read every done row of the
    # folder (20,000 rows, 7.5 ms a file). It covers what files_path was for.
    """
    CREATE INDEX files_history ON files (folder, relpath, state, id);
    DROP INDEX files_path;
    """,
)
_MIGRATION_LOCK = 0x63637761  # pg_advisory_xact_lock key: one host migrates at a time
_NOW = "EXTRACT(EPOCH FROM clock_timestamp())"
_ACTIVE_SQL = "state IN (" + ", ".join(f"'{s}'" for s in ACTIVE) + ")"
_STARTED_SQL = "state IN (" + ", ".join(f"'{s}'" for s in ACTIVE if s is not State.SETTLED) + ")"
_UPTIME = f"({_NOW} - EXTRACT(EPOCH FROM pg_postmaster_start_time()))"


def _pg(sql: str) -> str:
    """The shared queries use ? placeholders; psycopg wants %s."""
    return sql.replace("?", "%s")


class PostgresLedger(Ledger):
    shared = True

    def __init__(self, url: str, *, host: str, lease_s: float = 60.0, readonly: bool = False,
                 display_url: str = "", folders: Sequence[str] = ()) -> None:
        self.url = url
        self.host = host
        self.lease_s = lease_s
        # Only rows of the folders this host watches are its to queue or take over ("": all).
        self._mine = " AND folder = ANY(%s)" if folders else ""
        self._mine_params: tuple[Any, ...] = (list(folders),) if folders else ()
        self._display = display_url or "postgresql"
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._installation = None
        with self._lock, self._guard():
            self._connection()  # fail now, with the reason, rather than at the first file
        if not readonly:
            try:
                self._migrate()
                self._installation = self._ensure_installation()
            except BaseException:
                self.close()
                raise

    def describe(self) -> str:
        return self._display

    def exists(self) -> bool:
        return bool(self._query("SELECT to_regclass('files') IS NOT NULL")[0][0])

    # -- connection ----------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        import psycopg

        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            # Keepalives notice a dead server (or a cut network) instead of waiting on it forever.
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5,
                                   application_name=f"ccwatch {self.host}"[:63], keepalives=1,
                                   keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                                   options="-c statement_timeout=30000")
            self._conn = conn
        return conn

    @contextmanager
    def _guard(self) -> Iterator[None]:
        import psycopg

        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LedgerUnavailable(f"the ledger database is unreachable: {first_line}",
                                    code="LEDGER_UNAVAILABLE") from exc

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        with self._lock, self._guard():
            conn = self._connection()
            with conn.transaction():
                yield conn

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._guard():
            return self._connection().execute(_pg(sql), tuple(params)).fetchall()

    def _set_of(self, sql: str, params: tuple[Any, ...]) -> set[tuple[Any, ...]]:
        with self._lock, self._guard():
            return set(self._connection().execute(_pg(sql), params))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    def _migrate(self) -> None:
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = conn.execute("SELECT value FROM meta WHERE key = %s", (SCHEMA_KEY,)).fetchone()
            version = json.loads(row[0]) if row else 0
            if version > len(_MIGRATIONS):
                raise LedgerUnavailable(f"the ledger database has schema version {version}, newer "
                                        f"than this ccwatch knows ({len(_MIGRATIONS)}): upgrade it",
                                        code="LEDGER_TOO_NEW")
            for script in _MIGRATIONS[version:]:
                conn.execute(script)
            self._put_meta(conn, SCHEMA_KEY, len(_MIGRATIONS))

    # -- claims --------------------------------------------------------------------------------

    def _lease(self) -> str:
        return f"{_NOW} + {float(self.lease_s)}"

    def _claimable(self) -> str:
        """Nobody's, or its lease has expired. A server that restarted less than a lease ago
        hands nothing over yet: every lease ran out while it was down, and the live hosts need a
        chance to renew theirs before anyone takes work that is still being done."""
        return f"(owner IS NULL OR (lease_until < {_NOW} AND {_UPTIME} > {float(self.lease_s)}))"

    def _queued(self, conn: psycopg.Connection[tuple[Any, ...]]) -> list[Entry]:
        """Settled rows: nobody's until a host starts one (its ``submitting`` write claims it), so
        every host tracks them and whichever has a free slot first takes each. Claiming them at
        admission would let one host hoard work the others could be doing."""
        rows = conn.execute(f"SELECT {COLUMNS} FROM files WHERE state = %s AND owner IS NULL"
                            f"{self._mine}", (str(State.SETTLED), *self._mine_params)).fetchall()
        return [row_to_entry(r) for r in rows]

    def claim_active(self) -> list[Entry]:
        with self._transaction() as conn:
            rows = conn.execute(
                f"UPDATE files SET owner = %s, lease_until = {self._lease()} WHERE {_STARTED_SQL}"
                f" AND (owner = %s OR {self._claimable()}){self._mine} RETURNING {COLUMNS}",
                (self.host, self.host, *self._mine_params)).fetchall()
            queued = self._queued(conn)
        return sorted([*(row_to_entry(r) for r in rows), *queued], key=lambda e: e.id)

    def renew(self) -> list[Entry]:
        with self._transaction() as conn:
            conn.execute(f"UPDATE files SET lease_until = {self._lease()} WHERE owner = %s AND "
                         f"{_ACTIVE_SQL}", (self.host,))
            # SKIP LOCKED: two hosts taking over at once each get different rows, never the same.
            rows = conn.execute(
                f"UPDATE files SET owner = %s, lease_until = {self._lease()} WHERE id IN ("
                f"SELECT id FROM files WHERE {_STARTED_SQL} AND {self._claimable()}{self._mine} "
                f"FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}",
                (self.host, *self._mine_params)).fetchall()
            queued = self._queued(conn)
        return sorted([*(row_to_entry(r) for r in rows), *queued], key=lambda e: e.id)

    def holders(self) -> list[Holder]:
        rows = self._query(
            f"SELECT COALESCE(owner, ''), COUNT(*), MAX(lease_until) - {_NOW} FROM files "
            f"WHERE {_ACTIVE_SQL} GROUP BY owner ORDER BY owner")
        return [Holder(r[0], r[1], float(r[2] or 0.0)) for r in rows]

    # -- writes --------------------------------------------------------------------------------

    def add(self, folder: str, relpath: str, size: int, mtime_ns: int, *, rule: int,
            template: str, now: float, route: dict[str, Any] | None = None) -> Entry | None:
        with self._transaction() as conn:
            row = conn.execute(
                "INSERT INTO files (folder, relpath, size, mtime_ns, state, rule, template,"
                " first_seen, updated_at, route) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                f" ON CONFLICT DO NOTHING RETURNING {COLUMNS}",
                (folder, relpath, size, mtime_ns, str(State.SETTLED), rule, template, now,
                 now, None if route is None else json.dumps(route))).fetchone()
        return row_to_entry(row) if row else None

    def rename_folder(self, old: str, new: str) -> int:
        with self._transaction() as conn:
            return conn.execute("UPDATE files SET folder = %s WHERE folder = %s",
                                (new, old)).rowcount

    def _owned(self, conn: psycopg.Connection[tuple[Any, ...]], entry_id: int) -> State:
        """Lock the row for this transaction; its state, when the claim on it is still ours (or
        nobody's: a row queued again by ``ccwatch retry`` is taken by whoever writes it first)."""
        row = conn.execute("SELECT owner, state FROM files WHERE id = %s FOR UPDATE",
                           (entry_id,)).fetchone()
        if row is None:
            raise KeyError(entry_id)
        if row[0] is not None and row[0] != self.host:
            raise ClaimLost(f"host {row[0]} holds this file", code="CLAIM_LOST")
        return State(row[1])

    def _write(self, entry_id: int, assignments: list[str], values: list[Any], *, now: float,
               state: State | None, allowed: tuple[str, ...] | None = None,
               claimed: bool = True, meta: Mapping[str, Any] | None = None) -> Entry:
        """As the SQLite store's, plus the claim: a claimed write checks that the row is still
        ours and renews its lease; ``ccwatch retry``'s writes leave the row to any host."""
        owner: list[Any] = [self.host] if claimed else []
        owner_sql = f"owner = ?, lease_until = {self._lease()}" if claimed else \
            "owner = NULL, lease_until = NULL"
        with self._transaction() as conn:
            if claimed:
                current = self._owned(conn, entry_id)
            else:
                row = conn.execute("SELECT state FROM files WHERE id = %s FOR UPDATE",
                                   (entry_id,)).fetchone()
                if row is None:
                    raise KeyError(entry_id)
                current = State(row[0])
            if state is not None and str(current) not in (sources(state) if allowed is None
                                                          else allowed):
                raise IllegalTransition(entry_id, current, state)
            row = conn.execute(_pg(
                f"UPDATE files SET {', '.join(assignments)}, updated_at = ?, {owner_sql} "
                f"WHERE id = ? RETURNING {COLUMNS}"), (*values, now, *owner, entry_id)).fetchone()
            self._put_metas(conn, meta or {})
        assert row is not None  # locked above
        return row_to_entry(row)

    def forget(self, entry_id: int) -> None:
        with self._transaction() as conn:
            self._owned(conn, entry_id)
            conn.execute("DELETE FROM files WHERE id = %s", (entry_id,))

    def meta_under(self, prefix: str) -> dict[str, Any]:
        # starts_with, not a range: the database's collation need not order keys by code point.
        rows = self._query("SELECT key, value FROM meta WHERE starts_with(key, ?)", (prefix,))
        return {r[0]: json.loads(r[1]) for r in rows}

    def set_metas(self, items: Mapping[str, Any]) -> None:
        with self._transaction() as conn:
            self._put_metas(conn, items)

    @classmethod
    def _put_metas(cls, conn: psycopg.Connection[tuple[Any, ...]], items: Mapping[str, Any]) -> None:
        for key, value in items.items():
            if value is None:
                conn.execute("DELETE FROM meta WHERE key = %s", (key,))
            else:
                cls._put_meta(conn, key, value)

    @staticmethod
    def _put_meta(conn: psycopg.Connection[tuple[Any, ...]], key: str, value: Any) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                     "SET value = EXCLUDED.value", (key, json.dumps(value)))
