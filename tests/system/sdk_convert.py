"""Run by test_sdk.py with PYTHONPATH=<repo>/.sdk: the official SDK converts one file end to end.

Usage: python sdk_convert.py BASE_URL API_KEY INPUT OUTPUT_DIR  → prints one JSON summary line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cloudconvert  # type: ignore[import-not-found]


def main(base_url: str, api_key: str, source: str, out_dir: str) -> int:
    cloudconvert.configure(api_key=api_key, sandbox=False, endpoint=base_url,
                           sync_endpoint=f"{base_url}/sync")
    job = cloudconvert.Job.create(payload={"tag": "sdk", "tasks": {
        "upload": {"operation": "import/upload"},
        "convert": {"operation": "convert", "input": "upload", "output_format": "jpg"},
        "export": {"operation": "export/url", "input": "convert"},
    }})
    upload_id = next(t["id"] for t in job["tasks"] if t["name"] == "upload")
    upload_task = cloudconvert.Task.find(id=upload_id)  # as the SDK's README does
    uploaded = cloudconvert.Task.upload(file_name=source, task=upload_task)
    job = cloudconvert.Job.wait(id=job["id"])
    export = next(t for t in job["tasks"]
                  if t["operation"] == "export/url" and t["status"] == "finished")
    saved = [cloudconvert.download(url=f["url"], filename=str(Path(out_dir, f["filename"])))
             for f in export["result"]["files"]]
    print(json.dumps({"uploaded": uploaded, "status": job["status"], "saved": saved}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
