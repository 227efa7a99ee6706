"""The contenders ccwatch is measured against, written the way the SDK's README suggests.

Run as a script with ``PYTHONPATH=<repo>/.sdk`` (cloudconvert==2.1.0 lives there, not in our venv)::

    python sdk_client.py loop  BASE_URL API_KEY TEMPLATE INPUT_DIR OUTPUT_DIR COUNT SETTLE_S
    python sdk_client.py watch BASE_URL API_KEY TEMPLATE INPUT_DIR OUTPUT_DIR COUNT SETTLE_S

``loop`` converts the first COUNT files of INPUT_DIR one at a time; ``watch`` is the naive watcher
people write: a watchdog observer whose ``on_created`` sleeps SETTLE_S "so the copy finishes", then
runs the same SDK sequence inline. TEMPLATE is ``to-jpg`` or ``passthrough`` (upload → export).
The last line printed is a JSON summary.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cloudconvert  # type: ignore[import-not-found, unused-ignore]

TASKS: dict[str, dict[str, Any]] = {
    "to-jpg": {
        "upload": {"operation": "import/upload"},
        "convert": {"operation": "convert", "input": "upload", "output_format": "jpg"},
        "export": {"operation": "export/url", "input": "convert"},
    },
    "passthrough": {
        "upload": {"operation": "import/upload"},
        "export": {"operation": "export/url", "input": "upload"},
    },
}


def convert_one(source: str, template: str, out_dir: str) -> None:
    """Create the job, upload, wait on the sync endpoint, download: the SDK's README, verbatim."""
    job = cloudconvert.Job.create(payload={"tasks": TASKS[template]})
    upload_id = next(t["id"] for t in job["tasks"] if t["name"] == "upload")
    upload_task = cloudconvert.Task.find(id=upload_id)
    if not cloudconvert.Task.upload(file_name=source, task=upload_task):
        raise RuntimeError(f"upload of {source} failed")
    job = cloudconvert.Job.wait(id=job["id"])
    if job["status"] != "finished":
        raise RuntimeError(f"job for {source} ended {job['status']}")
    export = next(t for t in job["tasks"] if t["operation"] == "export/url")
    for f in export["result"]["files"]:
        if cloudconvert.download(url=f["url"], filename=str(Path(out_dir, f["filename"]))) is None:
            raise RuntimeError(f"download of {f['filename']} failed")


def loop(template: str, input_dir: str, out_dir: str, count: int) -> dict[str, Any]:
    files = sorted(p for p in Path(input_dir).iterdir() if p.is_file())[:count]
    started = time.monotonic()
    for path in files:
        convert_one(str(path), template, out_dir)
    return {"files": len(files), "elapsed_s": time.monotonic() - started}


def watch(template: str, input_dir: str, out_dir: str, count: int, settle_s: float) -> dict[str, Any]:
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    done = threading.Event()
    converted: list[str] = []
    errors: list[str] = []

    class Handler(FileSystemEventHandler):
        def on_created(self, event: Any) -> None:
            if event.is_directory:
                return
            time.sleep(settle_s)  # "give the copy time to finish"
            try:
                convert_one(str(event.src_path), template, out_dir)
                converted.append(str(event.src_path))
            except Exception as exc:  # the naive script logs and goes on
                errors.append(f"{event.src_path}: {exc}")
            if len(converted) + len(errors) >= count:
                done.set()

    observer = Observer()
    observer.schedule(Handler(), input_dir, recursive=False)
    observer.start()
    print("READY", flush=True)
    finished = done.wait(timeout=3600)
    observer.stop()
    observer.join()
    return {"files": len(converted), "errors": errors, "finished": finished}


def main(argv: list[str]) -> int:
    mode, base_url, api_key, template, input_dir, out_dir, count, settle_s = argv[:8]
    cloudconvert.configure(api_key=api_key, sandbox=False, endpoint=base_url,
                           sync_endpoint=f"{base_url}/sync")
    if mode == "loop":
        summary = loop(template, input_dir, out_dir, int(count))
    else:
        summary = watch(template, input_dir, out_dir, int(count), float(settle_s))
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
