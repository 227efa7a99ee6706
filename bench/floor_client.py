"""The floor under ccwatch's CPU per file: the work every file needs, done with ccwatch's own parts,
one file after another, and nothing else: no watcher, no settling, no pipeline, no threads.

    python -m bench.floor_client CONFIG COUNT

CONFIG is a ccwatch config; COUNT files of its first folder's input are converted by its first
rule, into that folder's output. Per file, as ccwatch does it: the ledger row and its five state
writes (the last with the job's deletion record, removed once the job is deleted), the job
created, the file uploaded from the handle its version was checked on, the ended job read from the
sync host, the output streamed to a temp file that is fsynced and renamed into place (its folder
fsynced), the job deleted, and ccwatch's four log lines for a file. The last line printed is a
JSON summary.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path, PurePosixPath

from loguru import logger

from ccwatch import logs
from ccwatch.client.api import CloudConvertClient
from ccwatch.clock import SystemClock
from ccwatch.config import loader, templates
from ccwatch.fs import rooted
from ccwatch.fs.roots import Root
from ccwatch.ledger import State, job_tag, open_ledger
from ccwatch.stages import track


def convert_all(config_path: Path, count: int) -> dict[str, float]:
    config = loader.load(config_path)
    folder, cc = config.folders[0], config.cloudconvert
    template = config.templates[folder.rules[0].template]
    key = cc.api_key.reveal() if cc.api_key else None
    clock = SystemClock()
    api = CloudConvertClient(cc.base_url(), cc.sync_base_url(), key, timeout_s=cc.timeout_s,
                             clock=clock)
    sync = CloudConvertClient(cc.sync_base_url(), cc.sync_base_url(), key,
                              timeout_s=cc.timeout_s, clock=clock)
    ledger = open_ledger("", state_dir=config.daemon.resolved_state_dir(), host="",
                         lease_s=config.ledger.lease_s)
    source, output = Root(folder.input), Root(folder.output)
    names = sorted(p.name for p in folder.input.iterdir() if p.is_file())[:count]
    started = time.monotonic()
    for name in names:
        st = (folder.input / name).stat()
        entry = ledger.add(folder.name, name, st.st_size, st.st_mtime_ns, rule=0,
                           template=folder.rules[0].template, now=clock.wall())
        assert entry is not None
        log = logger.bind(folder=folder.name, file=name)
        log.info("settled ({} bytes)", entry.size)
        entry = ledger.update(entry.id, now=clock.wall(), state=State.SUBMITTING,
                              job_tag=job_tag(ledger.installation_id, entry.id, entry.attempt))
        job = api.create_job({"tasks": templates.render(template, PurePosixPath(name)),
                              "tag": entry.job_tag}, path=name)
        log = log.bind(job=job["id"])
        log.info("job created")
        task = next(t for t in job["tasks"] if t["name"] == template.upload_task)
        entry = ledger.update(entry.id, now=clock.wall(), state=State.UPLOADING,
                              job_id=job["id"], upload_task_id=task["id"])
        with rooted.open_version(source, name, rooted.Version(entry.size, entry.mtime_ns)) as fh:
            assert fh is not None
            api.upload(task["result"]["form"], fh, name, job_id=job["id"], task=task["name"])
        log.info("uploaded {} bytes", entry.size)
        entry = ledger.update(entry.id, now=clock.wall(), state=State.PROCESSING)
        ended = sync.get_job(job["id"], path=name)
        outputs = track.outputs_of(ended, template.export_url_tasks)
        entry = ledger.update(entry.id, now=clock.wall(), state=State.DELIVERING, outputs=outputs)
        for out in outputs:
            assert out.url is not None
            with api.download(out.url, job_id=job["id"], path=name) as chunks, \
                    rooted.staged(output, ()) as item:
                for chunk in chunks:
                    item.write(chunk)
                item.commit(out.filename, overwrite=True)
            log.info("delivered {}", folder.output / out.filename)
        recorded = f"jobs_to_delete/{job['id']}"
        ledger.update(entry.id, now=clock.wall(), state=State.DONE, meta={recorded: True})
        api.delete_job(job["id"], path=name)
        ledger.set_metas({recorded: None})
    elapsed = time.monotonic() - started
    api.close()
    sync.close()
    ledger.close()
    return {"files": len(names), "elapsed_s": elapsed}


def main(argv: list[str]) -> int:
    logs.setup("text")
    print(json.dumps(convert_all(Path(argv[0]), int(argv[1]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
