"""The ledger: one row per file version, written before each side effect it announces.

:mod:`.model` says what a row is; :mod:`.sqlite` is the default store (SQLite in the state dir,
its tables in :mod:`.sqlite_schema`) and holds the queries every store shares; :mod:`.postgres` is
the store several hosts share.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ccwatch.errors import CcwatchError, ConfigError
from ccwatch.ledger.model import (
    ACTIVE,
    INSTALLATION_KEY,
    TERMINAL,
    TRANSITIONS,
    Entry,
    Holder,
    PlannedOutput,
    State,
    job_tag,
    new_installation_id,
)
from ccwatch.ledger.sqlite import Ledger

LEDGER_NAME = "ledger.sqlite3"

__all__ = [
    "ACTIVE", "INSTALLATION_KEY", "LEDGER_NAME", "TERMINAL", "TRANSITIONS", "Entry", "Holder", "Ledger",
    "PlannedOutput", "State", "damaged_hint", "job_tag", "new_installation_id", "open_ledger",
]


def open_ledger(url: str, *, state_dir: Path, host: str, lease_s: float, display_url: str = "",
                readonly: bool = False, folders: Sequence[str] = ()) -> Ledger:
    """The configured ledger: PostgreSQL for a ``[ledger] url``, else SQLite in the state dir.

    Raises ConfigError (naming the key) when it cannot be opened.
    """
    if url:
        shown = display_url or "the [ledger] url"
        try:
            from ccwatch.ledger.postgres import PostgresLedger
        except ImportError as exc:
            raise ConfigError("ledger.url", "a postgresql:// ledger needs psycopg: "
                              "pip install 'cloudconvert-watch[postgres]'") from exc
        try:
            return PostgresLedger(url, host=host, lease_s=lease_s, readonly=readonly,
                                  display_url=shown, folders=folders)
        except CcwatchError as exc:
            raise ConfigError("ledger.url", f"cannot open {shown}: {exc.message}") from exc
    import sqlite3

    try:
        return Ledger(state_dir / LEDGER_NAME, readonly=readonly, host=host)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError("daemon.state_dir", f"cannot open the ledger in {state_dir}: {exc}"
                          + damaged_hint(exc)) from exc


def damaged_hint(exc: Exception) -> str:
    """What to do about a ledger file that will not open, to append to the error ("" if that is
    not the problem)."""
    import sqlite3

    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(exc, sqlite3.OperationalError):
        return ""
    return ("; the file is damaged: stop ccwatch, move ledger.sqlite3 (and its -wal and -shm files) "
            "aside and start again (a new ledger converts the files still in the inputs again; "
            "docs/operations.md, \"Where state lives\")")
