"""A large tree of tiny files that the ledger already records as converted (``done``, keep mode).

Converting 100,000 files for real would take hours, so the state a long-running install reaches is
built directly: the files are written, then one ledger row per file (state ``done``, the file's own
size and mtime_ns) is inserted in one transaction into the schema ``ccwatch.ledger.Ledger`` creates.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from bench.common import Workspace
from ccwatch.ledger import Ledger, State, job_tag

FOLDER = "inbox"  # the folder name common.write_config uses
LEDGER_NAME = "ledger.sqlite3"  # as ccwatch.daemon opens it under state_dir


def build_done_tree(ws: Workspace, count: int, per_dir: int = 1000) -> float:
    """Write ``count`` files under ``ws.input`` (``per_dir`` per subfolder) and mark them done;
    returns the seconds it took."""
    started = time.monotonic()
    rows: list[tuple[object, ...]] = []
    now = time.time()
    for i in range(count):
        folder = ws.input / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            folder.mkdir()
        path = folder / f"f{i:06d}.png"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"x")
        os.close(fd)
        st = os.stat(path)
        entry_id = i + 1
        rows.append((entry_id, FOLDER, path.relative_to(ws.input).as_posix(), st.st_size,
                     st.st_mtime_ns, str(State.DONE), 0, "to-jpg", 1, job_tag("bench", entry_id, 1),
                     f"job-{entry_id}", now, now))
    ledger_path = ws.state / LEDGER_NAME
    Ledger(ledger_path).close()  # the real schema, created by the real class
    with sqlite3.connect(ledger_path) as db:
        db.executemany(
            "INSERT INTO files (id, folder, relpath, size, mtime_ns, state, rule, template, attempt,"
            " job_tag, job_id, first_seen, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows)
    ledger = Ledger(ledger_path, readonly=True)
    try:
        done = ledger.count_by_state(FOLDER).get(str(State.DONE), 0)
    finally:
        ledger.close()
    if done != count:
        raise RuntimeError(f"the ledger holds {done} done rows, expected {count}")
    return time.monotonic() - started


def ledger_bytes(ws: Workspace) -> int:
    """The ledger's size on disk: the database plus its WAL and shared-memory files."""
    return sum(p.stat().st_size for p in ws.state.glob(LEDGER_NAME + "*"))


def tree_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))
