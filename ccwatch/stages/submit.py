"""Submit stage: create the job from its template (tag = idempotency key), then upload the file.

Each step writes its ledger state first, so a run killed anywhere resumes without a second job and
without a second upload:

- ``submitting`` holds the tag; a resumed (or retried) create first looks the job up by tag, since a
  5xx or timeout on create may still have created it.
- ``uploading`` holds the job and upload task ids; a resumed upload re-reads the task and uploads
  only while it is still ``waiting`` for the file.
- An upload form the storage host refuses (403: it expired, 12 h live, 6 h sandbox) is that job's
  problem: the task is read again for a fresh form, else the job is deleted and a new attempt
  (new tag) creates another. The account is never paused for it.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, NoReturn

from loguru import logger

from ccwatch import fs
from ccwatch.config import templates
from ccwatch.errors import CcwatchError, FileError, FileVanished, FormRefused, TransientError
from ccwatch.fs import rooted
from ccwatch.ledger import Entry, State, job_tag
from ccwatch.stages.context import Context, version


def advance(ctx: Context, entry: Entry, *, renew: bool = True) -> Entry:
    """Take an entry from ``settled``/``submitting``/``uploading`` to ``processing``.

    ``renew``: on a refused upload form, renew it once (a second refusal is raised, transient).
    """
    resumed_create = entry.state is State.SUBMITTING
    if entry.state is State.SETTLED:
        _check_source(ctx, entry)
        entry = ctx.ledger.update(entry.id, now=ctx.clock.wall(), state=State.SUBMITTING,
                                  job_tag=job_tag(ctx.ledger.installation_id, entry.id, entry.attempt))
    job: dict[str, Any] | None = None
    if entry.state is State.SUBMITTING:
        job = _create_or_find(ctx, entry, look_up_first=resumed_create)
        upload = _upload_task(ctx, job, entry)
        entry = ctx.ledger.update(entry.id, now=ctx.clock.wall(), state=State.UPLOADING,
                                  job_id=job["id"], upload_task_id=upload["id"])
    if entry.state is State.UPLOADING:
        try:
            _upload(ctx, entry, job)
        except FormRefused as exc:
            if not renew:
                raise
            if not _upload_fresh_form(ctx, entry, exc):
                return advance(ctx, _new_attempt(ctx, entry, exc), renew=False)
        entry = ctx.ledger.update(entry.id, now=ctx.clock.wall(), state=State.PROCESSING,
                                  transient_since=None)
    return entry


def _check_source(ctx: Context, entry: Entry) -> None:
    root = ctx.input_root(entry)
    try:
        with rooted.open_version(root, entry.relpath, version(entry)) as fh:
            if fh is None:
                raise FileVanished("changed or removed before upload; this version is dropped "
                                   "(a newer one is converted)", path=entry.relpath)
    except PermissionError as exc:
        raise FileError(f"cannot read the file: {exc.strerror}", code="UNREADABLE",
                        path=entry.relpath) from exc
    limit = ctx.folder_of(entry).max_file_size
    if entry.size > limit:
        raise FileError(f"file is {entry.size} bytes, larger than max_file_size ({limit})",
                        code="FILE_TOO_LARGE", path=entry.relpath)


def _payload(ctx: Context, entry: Entry) -> dict[str, Any]:
    template = ctx.template(entry)
    payload: dict[str, Any] = {
        "tasks": templates.render(template, PurePosixPath(entry.relpath)),
        "tag": entry.job_tag,
    }
    if ctx.webhook_url:
        payload["webhook_url"] = ctx.webhook_url
    return payload


def _create_or_find(ctx: Context, entry: Entry, *, look_up_first: bool) -> dict[str, Any]:
    assert entry.job_tag is not None
    if look_up_first:
        # Only a job whose tag is exactly ours: never another installation's or another attempt's.
        found = [j for j in ctx.api.find_jobs_by_tag(entry.job_tag, path=entry.relpath)
                 if j.get("tag") == entry.job_tag]
        if found:
            logger.bind(folder=entry.folder, file=entry.relpath, job=found[0]["id"]).info(
                "found the job created before the interruption; not creating another")
            if "tasks" not in found[0]:
                return ctx.api.get_job(found[0]["id"], path=entry.relpath)
            return found[0]
    job = ctx.api.create_job(_payload(ctx, entry), path=entry.relpath)
    ctx.metrics.jobs_created.inc()
    logger.bind(folder=entry.folder, file=entry.relpath, job=job["id"]).info("job created")
    return job


def _upload_task(ctx: Context, job: dict[str, Any], entry: Entry) -> dict[str, Any]:
    name = ctx.template(entry).upload_task
    for task in job.get("tasks") or []:
        if isinstance(task, dict) and task.get("name") == name:
            return task
    raise FileError(f"the job has no task {name!r} to upload the file to", code="NO_UPLOAD_TASK",
                    job_id=str(job.get("id")), path=entry.relpath)


def _upload(ctx: Context, entry: Entry, job: dict[str, Any] | None) -> None:
    assert entry.job_id is not None and entry.upload_task_id is not None
    task: dict[str, Any] | None = None
    if job is not None:
        task = next((t for t in job.get("tasks") or [] if t.get("id") == entry.upload_task_id),
                    None)
    if task is None:  # resumed: the task may already have the file
        task = ctx.api.get_task(entry.upload_task_id, job_id=entry.job_id, path=entry.relpath)
    if task.get("status") != "waiting":
        logger.bind(folder=entry.folder, file=entry.relpath, job=entry.job_id).info(
            "upload task is already {}; not uploading again", task.get("status"))
        return
    form = (task.get("result") or {}).get("form")
    if not isinstance(form, dict):
        # A task listed without its form: read it once more before giving up on this attempt.
        task = ctx.api.get_task(entry.upload_task_id, job_id=entry.job_id, path=entry.relpath)
        form = (task.get("result") or {}).get("form")
        if not isinstance(form, dict):
            raise TransientError("upload task has no form yet", code="NO_UPLOAD_FORM",
                                 job_id=entry.job_id, path=entry.relpath)
    _send(ctx, entry, form, str(task.get("name")))
    logger.bind(folder=entry.folder, file=entry.relpath, job=entry.job_id).info(
        "uploaded {} bytes", entry.size)


def _send(ctx: Context, entry: Entry, form: dict[str, Any], task_name: str) -> None:
    """Upload this version of the file, unless it changed or went away (then drop the job)."""
    assert entry.job_id is not None
    root = ctx.input_root(entry)
    with rooted.open_version(root, entry.relpath, version(entry)) as fh:
        if fh is None:
            _outdated(ctx, entry)
        # Sent from the handle that was checked: a symlink swapped in meanwhile is not followed.
        try:
            ctx.api.upload(form, fh, PurePosixPath(entry.relpath).name, job_id=entry.job_id,
                           task=task_name)
        finally:
            # Rewritten during the upload (or breaking it): the job may hold a mix of old and
            # new bytes, so it goes, and the new version is converted as a file of its own.
            if not rooted.unchanged(fh, root, entry.relpath, version(entry)):
                _outdated(ctx, entry)
    ctx.metrics.uploaded_bytes.inc(entry.size)


def _upload_fresh_form(ctx: Context, entry: Entry, refused: FormRefused) -> bool:
    """Read the task again; upload with its form if that one is new. False: no fresh form."""
    assert entry.job_id is not None and entry.upload_task_id is not None
    task = ctx.api.get_task(entry.upload_task_id, job_id=entry.job_id, path=entry.relpath)
    form = (task.get("result") or {}).get("form")
    if task.get("status") != "waiting" or not isinstance(form, dict) or form == refused.form:
        return False
    _send(ctx, entry, form, str(task.get("name")))
    logger.bind(folder=entry.folder, file=entry.relpath, job=entry.job_id).info(
        "uploaded {} bytes with a renewed form", entry.size)
    return True


def _new_attempt(ctx: Context, entry: Entry, refused: FormRefused) -> Entry:
    """The job's form cannot be renewed: delete the job, record a new attempt to create another."""
    logger.bind(folder=entry.folder, file=entry.relpath, job=entry.job_id).warning(
        "{}; creating a new job for this file", refused.message)
    _delete_unused_job(ctx, entry)
    attempt = entry.attempt + 1
    tag = job_tag(ctx.ledger.installation_id, entry.id, attempt)
    return ctx.ledger.update(entry.id, now=ctx.clock.wall(), state=State.SUBMITTING,
                             attempt=attempt, job_tag=tag, job_id=None, upload_task_id=None)


def _outdated(ctx: Context, entry: Entry) -> NoReturn:
    """The file read for this upload is not (or no longer) the version that settled."""
    _delete_unused_job(ctx, entry)
    raise FileVanished("changed or removed during the upload; its job was deleted and the newest "
                       "version is converted instead", job_id=entry.job_id, path=entry.relpath)


def drop_if_outdated(ctx: Context, entry: Entry, *, vanished_too: bool = True) -> None:
    """Raise FileVanished, after deleting its job, when the file is no longer this version.

    A file that changes after it settled (still being written, or replaced) is not an error: its
    job converts content that no longer exists, so the job is deleted and the newer version,
    noted by the watcher, is converted as a file of its own. ``vanished_too=False`` leaves a
    file that was merely removed (its conversion is still delivered).
    """
    st = fs.stat_regular(ctx.source(entry))
    if st == fs.FileStat(entry.size, entry.mtime_ns) or (st is None and not vanished_too):
        return
    if entry.job_id is not None:
        _delete_unused_job(ctx, entry)
    what = "removed" if st is None else "changed"
    raise FileVanished(f"{what} while being converted; its outdated job was deleted"
                       + ("" if st is None else " and the newest version is converted instead"),
                       job_id=entry.job_id, path=entry.relpath)


def _delete_unused_job(ctx: Context, entry: Entry) -> None:
    """A job that will not be used (its file changed or went away, or a new attempt replaces
    it): delete it rather than leave it waiting; it expires by itself if that fails."""
    assert entry.job_id is not None
    try:
        ctx.api.delete_job(entry.job_id, path=entry.relpath)
    except CcwatchError as exc:
        logger.bind(folder=entry.folder, file=entry.relpath).warning(
            "could not delete the unused job {}: {}", entry.job_id, exc)
