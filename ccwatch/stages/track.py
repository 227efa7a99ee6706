"""Track stage: read a job's status and decide: still running, finished (plan outputs) or failed.

The pipeline decides when a job is looked at (its poll schedule is :mod:`ccwatch.pipeline.backoff`)
and hands over webhook deliveries; this module is the per-job decision, with no I/O but the one GET
(and the DELETE of a job that ran past ``job_timeout_s``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from loguru import logger

from ccwatch.errors import CcwatchError, FileError
from ccwatch.ledger import Entry, PlannedOutput
from ccwatch.stages import submit
from ccwatch.stages.context import Context

RUNNING = ("waiting", "processing", "queued")


def root_failure(job: dict[str, Any]) -> FileError:
    """The failing task that caused a job error (skipping the INPUT_TASK_FAILED echoes)."""
    tasks = [t for t in job.get("tasks") or [] if isinstance(t, dict)]
    failed = [t for t in tasks if t.get("status") == "error"]
    root = next((t for t in failed if t.get("code") != "INPUT_TASK_FAILED"), None)
    root = root or (failed[0] if failed else None)
    if root is None:
        return FileError("the job failed without a failing task", code="JOB_FAILED",
                         job_id=str(job.get("id")))
    return FileError(str(root.get("message") or "task failed"), code=root.get("code"),
                     job_id=str(job.get("id")), task=root.get("name"))


def outputs_of(job: dict[str, Any], export_tasks: tuple[str, ...]) -> tuple[PlannedOutput, ...]:
    """The files of the template's export/url tasks, in template order."""
    by_name = {t.get("name"): t for t in job.get("tasks") or [] if isinstance(t, dict)}
    planned: list[PlannedOutput] = []
    for name in export_tasks:
        task = by_name.get(name)
        files = ((task or {}).get("result") or {}).get("files") or []
        for f in files:
            if not isinstance(f, dict) or not isinstance(f.get("url"), str):
                raise FileError(f"export task {name} returned a file without a URL",
                                code="BAD_EXPORT", job_id=str(job.get("id")), task=name)
            size = f.get("size")
            planned.append(PlannedOutput(filename=str(f.get("filename") or ""), url=f["url"],
                                         size=size if isinstance(size, int) else None))
    return tuple(planned)


def _created_at(job: dict[str, Any], fallback: float) -> float:
    try:
        return dt.datetime.fromisoformat(str(job["created_at"])).timestamp()
    except (KeyError, ValueError):
        return fallback


def _check_age(ctx: Context, entry: Entry, job: dict[str, Any], status: str) -> None:
    """A job running past ``job_timeout_s`` is deleted and its file failed: a stuck job must not
    hold an in-flight slot for ever."""
    limit = ctx.config.daemon.job_timeout_s
    if ctx.clock.wall() - _created_at(job, entry.first_seen) <= limit:
        return
    assert entry.job_id is not None
    try:
        ctx.api.delete_job(entry.job_id, path=entry.relpath)
    except CcwatchError as exc:
        logger.bind(folder=entry.folder, file=entry.relpath, job=entry.job_id).warning(
            "could not delete the timed-out job: {}", exc)
    raise FileError(f"the job was still {status} after job_timeout_s ({limit:g} s); deleted it",
                    code="JOB_TIMEOUT", job_id=entry.job_id)


def check(ctx: Context, entry: Entry, job: dict[str, Any] | None = None
          ) -> tuple[PlannedOutput, ...] | None:
    """None while the job runs; its outputs once finished; raises FileError when it failed.

    ``job`` may come from a webhook delivery; otherwise it is fetched.
    """
    assert entry.job_id is not None
    if job is None:
        job = ctx.api.get_job(entry.job_id, path=entry.relpath)
    status = job.get("status")
    # A newer version replaced the file meanwhile: this job converts what is gone.
    submit.drop_if_outdated(ctx, entry, vanished_too=False)
    if status in RUNNING or status is None:
        _check_age(ctx, entry, job, str(status))
        return None
    if status == "error":
        raise root_failure(job)
    if status != "finished":
        raise FileError(f"the job ended in an unknown status {status!r}", code="BAD_STATUS",
                        job_id=entry.job_id)
    return outputs_of(job, ctx.exports(entry))
