"""Writing a :class:`~ccwatch.config.Config` back as TOML (``config.dump``).

Paths are written absolute, so the text loads the same from anywhere; secrets are never written
(only where they come from: ``api_key_env``, ``api_key_file``, ``secret_env``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tomli_w

if TYPE_CHECKING:
    from ccwatch.config.model import Config, FolderConfig
    from ccwatch.config.templates import Template


def dump_toml(config: Config) -> str:
    """The config as TOML: absolute paths, every key, no secrets."""
    cc = config.cloudconvert
    cloudconvert: dict[str, Any] = {
        "endpoint": cc.endpoint, "region": cc.region, "sync_endpoint": cc.sync_endpoint,
        "api_key_env": cc.api_key_env, "timeout_s": cc.timeout_s,
    }
    if cc.api_key_file is not None:
        cloudconvert["api_key_file"] = str(cc.api_key_file)
    d = config.daemon
    doc: dict[str, Any] = {
        "cloudconvert": cloudconvert,
        "daemon": {
            "state_dir": str(d.state_dir or ""), "max_in_flight": d.max_in_flight,
            "upload_workers": d.upload_workers, "download_workers": d.download_workers,
            "poll_interval_s": d.poll_interval_s, "poll_max_s": d.poll_max_s,
            "give_up_after_s": d.give_up_after_s, "job_timeout_s": d.job_timeout_s,
            "shutdown_grace_s": d.shutdown_grace_s,
            "log_format": d.log_format, "log_level": d.log_level,
            "hook_timeout_s": d.hook_timeout_s, "delete_jobs": d.delete_jobs,
            "min_credits": d.min_credits, "credits_check_s": d.credits_check_s,
        },
        "http": {"listen": config.http.listen},
    }
    ledger = config.ledger
    doc["ledger"] = {"url": ledger.url, "host": ledger.host, "lease_s": ledger.lease_s}
    if config.webhook is not None:
        w = config.webhook
        doc["webhook"] = {"listen": w.listen, "public_url": w.public_url,
                          "secret_env": w.secret_env, "safety_poll_s": w.safety_poll_s}
    doc["templates"] = {name: _dump_template(t) for name, t in config.templates.items()}
    doc["folders"] = [_dump_folder(f) for f in config.folders]
    return tomli_w.dumps(doc)


def _dump_template(template: Template) -> dict[str, Any]:
    if template.file is not None:
        return {"file": str(template.file)}
    entry: dict[str, Any] = {"tasks": template.as_dict()}
    if template.tag is not None:
        entry["tag"] = template.tag
    return entry


def _dump_folder(folder: FolderConfig) -> dict[str, Any]:
    return {
        "name": folder.name, "input": str(folder.input), "output": str(folder.output),
        "quarantine": str(folder.quarantine), "recursive": folder.recursive,
        "watch": folder.watch, "poll_s": folder.poll_s, "rescan_s": folder.rescan_s,
        "settle_s": folder.settle_s, "originals": folder.originals,
        "archive": str(folder.archive or ""), "ignore": list(folder.ignore),
        "max_file_size": folder.max_file_size, "in_place": folder.in_place,
        "on_done": list(folder.on_done), "on_failed": list(folder.on_failed),
        "rules": [
            {"match": list(r.match), "template": r.template, "output_name": r.output_name,
             "on_conflict": r.on_conflict, "on_done": list(r.on_done),
             "on_failed": list(r.on_failed)}
            for r in folder.rules
        ],
    }
