"""The SQLite ledger's tables and indexes, applied (idempotently) each time a ledger opens."""

SCHEMA = """
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
    route TEXT,
    UNIQUE (folder, relpath, size, mtime_ns)
);
-- Only files_by_state holds the state, so a state change rewrites no other index (the dropped
-- files_history, files_state and files_queue held it too: each a quarter of a write's cost).
-- One input's versions (its earlier outputs): a range, never a folder's done rows per delivery.
DROP INDEX IF EXISTS files_path;
DROP INDEX IF EXISTS files_history;
CREATE INDEX IF NOT EXISTS files_by_path ON files (folder, relpath, id);
CREATE INDEX IF NOT EXISTS files_job ON files (job_id);
CREATE INDEX IF NOT EXISTS files_version ON files (folder, size, mtime_ns);
-- Rows by state, then folder and age: a folder's queue, what is in flight, the oldest of it.
DROP INDEX IF EXISTS files_state;
DROP INDEX IF EXISTS files_queue;
CREATE INDEX IF NOT EXISTS files_by_state ON files (state, folder, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
