"""Track stage: read a job's status and decide: still running, finished (plan outputs) or failed.

The pipeline decides when a job is looked at (its poll schedule is :mod:`ccwatch.pipeline.backoff`)
and hands over webhook deliveries; this module is the per-job decision, with no I/O but the one GET.
"""

from __future__ import annotations

from typing import Any

from ccwatch.errors import FileError
from ccwatch.ledger import Entry, PlannedOutput
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


def check(ctx: Context, entry: Entry, job: dict[str, Any] | None = None
          ) -> tuple[PlannedOutput, ...] | None:
    """None while the job runs; its outputs once finished; raises FileError when it failed.

    ``job`` may come from a webhook delivery; otherwise it is fetched.
    """
    assert entry.job_id is not None
    if job is None:
        job = ctx.api.get_job(entry.job_id, path=entry.relpath)
    status = job.get("status")
    if status in RUNNING or status is None:
        return None
    if status == "error":
        raise root_failure(job)
    if status != "finished":
        raise FileError(f"the job ended in an unknown status {status!r}", code="BAD_STATUS",
                        job_id=entry.job_id)
    return outputs_of(job, ctx.exports(entry))
