"""Changes to existing jobs and tasks: uploads arriving, deletes, cancel, retry, sync waits."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ccwatch.emulator.store import TERMINAL, Job, Task, Upload, new_id
from ccwatch.emulator.validation import Invalid
from ccwatch.emulator.work import Outcome, safe_name, stored

if TYPE_CHECKING:
    from ccwatch.emulator.core import Emulator

_Item = TypeVar("_Item", Job, Task)


def complete_upload(emu: Emulator, task_id: str, filename: str, received: Path, md5: str) -> bool:
    """Move the received file to its task's folder and finish the task; False if it moved on."""
    name = safe_name(filename)
    with emu.store.lock:
        task = emu.store.tasks.get(task_id)
        if task is None or task.operation != "import/upload" or task.status != "waiting" \
                or task.result is None:
            received.unlink(missing_ok=True)
            return False
        final = emu.storage_folder(task_id) / name
        received.replace(final)
        file = stored(final, name)
        file.md5 = md5
        emu.store.uploads.append(Upload(task_id, name, file.size, md5))
        task.started_at = emu.clock.wall()
        emu.finish_task(task, Outcome([file]))
        return True


def form_expired(emu: Emulator, task_id: str) -> bool:
    """The task's upload form was expired by the ``expire_forms`` fault."""
    with emu.store.lock:
        task = emu.store.tasks.get(task_id)
        serial = task.form_serial if task is not None else 0
    return emu.faults.form_expired(serial)


def renew_form_if_expired(emu: Emulator, task: Task) -> None:
    """(Store lock held.) With the ``renew_forms`` fault, reading a waiting upload task whose
    form expired gives a newly signed form; without it the stored form comes back, as the
    recorded reads show (whether the real API re-signs late forms is not recorded)."""
    if task.operation != "import/upload" or task.status != "waiting" or not task.result:
        return
    parameters = task.result["form"]["parameters"]
    expired = emu.faults.form_expired(task.form_serial) or \
        bool(emu.signer.check_form(parameters, emu.clock.wall())[1])
    if expired and emu.faults.take("renew_forms"):
        emu.start_task(task)


def fail_upload(emu: Emulator, task_id: str) -> None:
    with emu.store.lock:
        task = emu.store.tasks.get(task_id)
        if task is not None and task.status == "waiting":
            emu.fail_task(task, "UPLOAD_FAILED", "Upload failed: no files to process")


def _drop_task_files(emu: Emulator, task_ids: list[str]) -> None:
    for task_id in task_ids:
        shutil.rmtree(emu.storage / task_id, ignore_errors=True)


def delete_job(emu: Emulator, job_id: str) -> bool:
    with emu.store.lock:
        job = emu.store.jobs.pop(job_id, None)
        if job is None:
            return False
        for task_id in job.task_ids:
            emu.store.remove_task(task_id)
        emu.store.wake(job_id, *job.task_ids)
    _drop_task_files(emu, job.task_ids)
    return True


def delete_task(emu: Emulator, task_id: str) -> bool:
    with emu.store.lock:
        task = emu.store.remove_task(task_id)
        if task is None:
            return False
        job = emu.store.jobs.get(task.job_id) if task.job_id else None
        if job is not None and task_id in job.task_ids:
            job.task_ids.remove(task_id)
        emu.store.wake(task_id, task.job_id)
    _drop_task_files(emu, [task_id])
    return True


def cancel_task(emu: Emulator, task_id: str) -> dict[str, Any] | None:
    with emu.store.lock:
        task = emu.store.tasks.get(task_id)
        if task is None:
            return None
        if task.status in TERMINAL:
            raise Invalid({"status": ["Cannot change status: task already completed."]})
        emu.fail_task(task, "CANCELLED", "Task has been cancelled")
        return emu.shapes().task(task)


def retry_task(emu: Emulator, task_id: str) -> dict[str, Any] | None:
    """A new task with the original's payload and inputs (``retry_of_task_id`` names the original)."""
    with emu.store.lock:
        original = emu.store.tasks.get(task_id)
        if original is None:
            return None
        if original.status not in TERMINAL:
            raise Invalid({"status": ["Only finished or failed tasks can be retried."]})
        task = Task(id=new_id(), name=original.name, job_id=original.job_id,
                    operation=original.operation, payload=dict(original.payload),
                    depends_on=list(original.depends_on), created_at=emu.clock.wall(),
                    retry_of_task_id=original.id)
        emu.store.add_task(task)
        job = emu.store.jobs.get(task.job_id) if task.job_id else None
        if job is not None:
            job.task_ids.append(task.id)
            job.latency_applied = False
        deps = [emu.store.tasks.get(d) for d in task.depends_on]
        if any(d is None or d.status == "error" for d in deps):
            emu.fail_task(task, "INPUT_TASK_FAILED", "Input task has failed")
        elif all(d is not None and d.status == "finished" for d in deps):
            emu.start_task(task)
        emu.settle_job(task.job_id)
        return emu.shapes().task(task)


def wait_job(emu: Emulator, job_id: str) -> dict[str, Any] | None:
    """Block (condition wait) until the job ends or the cap passes; then its current state."""
    return _wait_ended(emu, emu.store.jobs, job_id, lambda job: emu.shapes().job(job))


def wait_task(emu: Emulator, task_id: str) -> dict[str, Any] | None:
    return _wait_ended(emu, emu.store.tasks, task_id, lambda task: emu.shapes().task(task))


def _wait_ended(emu: Emulator, items: Mapping[str, _Item], item_id: str,
                shape: Callable[[_Item], dict[str, Any]]) -> dict[str, Any] | None:
    def ended() -> bool:
        item = items.get(item_id)
        return item is None or item.status in TERMINAL

    emu.store.wait_until(ended, emu.sync_wait_cap_s, key=item_id)
    with emu.store.lock:
        item = items.get(item_id)
        return None if item is None else shape(item)
