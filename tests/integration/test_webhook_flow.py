"""Webhooks end to end: the emulator posts signed deliveries to the running daemon's receiver."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_harness import Dirs, files_under, running
from loguru import logger

from ccwatch import config as config_mod
from ccwatch.config import Config
from ccwatch.emulator import Emulator, sign
from ccwatch.testing import TO_JPG, config_text, make_image, wait_for

SECRET = "test-secret"  # what the shared ``emulator`` fixture signs with
HOOK_PATH = "/hook"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_dirs(root: Path) -> Dirs:
    d = Dirs(root, root / "in", root / "out", root / "failed", root / "state")
    for p in (d.input, d.output, d.quarantine, d.state):
        p.mkdir(parents=True)
    return d


def build_config(dirs: Dirs, emulator: Emulator, *, webhook_port: int | None,
                 safety_poll_s: float = 60, daemon_extra: str = "") -> Config:
    """A one-folder config; with ``webhook_port`` a ``[webhook]`` table and its secret in env."""
    top = ""
    env = {"CLOUDCONVERT_API_KEY": emulator.api_key}
    if webhook_port is not None:
        top = (f'[webhook]\nlisten = "127.0.0.1:{webhook_port}"\n'
               f'public_url = "http://127.0.0.1:{webhook_port}{HOOK_PATH}"\n'
               f"safety_poll_s = {safety_poll_s}\n")
        env["CLOUDCONVERT_WEBHOOK_SECRET"] = SECRET
    text = config_text(endpoint=str(emulator.base_url), state_dir=dirs.state,
                       input_dir=dirs.input, output=dirs.output, quarantine=dirs.quarantine,
                       rules=('match = ["*.png"]\ntemplate = "to-jpg"',), templates=TO_JPG,
                       daemon_extra=daemon_extra, top_extra=top)
    return config_mod.loads(text, base_dir=dirs.root, env=env)


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every loguru line (message and bound context) written during the test."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG",
                      format="{level} {message} {extra}")
    yield lines
    logger.remove(sink)


def job_gets(emulator: Emulator) -> int:
    return emulator.count("GET", "/v2/jobs/*")


def convert_batch(dirs: Dirs, cfg: Config, count: int) -> int:
    """Run the daemon until ``count`` images are converted; returns the pipeline's delivered."""
    for i in range(count):
        make_image(dirs.input / f"img{i:03}.png", size=(8 + i % 5, 8))
    with running(cfg) as daemon:
        wait_for(lambda: daemon.runtime.pipeline.delivered >= count, timeout=40,
                 message=f"{count} deliveries")
        return daemon.runtime.pipeline.delivered


def test_webhooks_replace_most_polls(tmp_path: Path, emulator: Emulator) -> None:
    """100 files per mode, 0.3 s per job: webhooks finish them all with a fraction of the GETs."""
    emulator.latency_s = 0.3
    expected = [f"img{i:03}.jpg" for i in range(100)]
    extra = "max_in_flight = 50"

    polling = make_dirs(tmp_path / "polling")
    before = job_gets(emulator)
    assert convert_batch(polling, build_config(polling, emulator, webhook_port=None,
                                               daemon_extra=extra + '\ntracking = "poll"'),
                         100) == 100
    polling_gets = job_gets(emulator) - before

    hooked = make_dirs(tmp_path / "webhooks")
    before = job_gets(emulator)
    deliveries_before = len(emulator.webhook_deliveries())
    assert convert_batch(hooked, build_config(hooked, emulator, webhook_port=free_port(),
                                              daemon_extra=extra), 100) == 100
    webhook_gets = job_gets(emulator) - before

    assert files_under(polling.output) == expected
    assert files_under(hooked.output) == expected
    assert emulator.count("POST", "/v2/jobs") == 200  # one job per file per mode
    accepted = [d for d in emulator.webhook_deliveries()[deliveries_before:] if d.status == 200]
    assert len(accepted) == 100
    assert polling_gets > 100, polling_gets  # 0.3 s jobs need more than one poll each
    assert webhook_gets < polling_gets / 3, (webhook_gets, polling_gets)


def test_fast_jobs_webhooks_are_all_accepted(tmp_path: Path, emulator: Emulator) -> None:
    """Instant jobs: a delivery may beat the end of its own upload step; it must still count.

    Were one refused, its file would wait for the 60 s safety poll and miss the deadline.
    """
    dirs = make_dirs(tmp_path)
    cfg = build_config(dirs, emulator, webhook_port=free_port(), daemon_extra="max_in_flight = 50")
    assert convert_batch(dirs, cfg, 50) == 50
    assert [d.status for d in emulator.webhook_deliveries()] == [200] * 50
    assert job_gets(emulator) == 0


def post(url: str, body: bytes, *, signature: str | None = None,
         method: str = "POST") -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["CloudConvert-Signature"] = signature
    with httpx.Client(timeout=10) as client:
        return client.request(method, url, content=body, headers=headers)


def event_body(job: dict[str, Any], event: str = "job.finished") -> bytes:
    return json.dumps({"event": event, "job": job}, separators=(",", ":")).encode()


def test_bad_deliveries_are_refused_and_change_nothing(tmp_path: Path, emulator: Emulator,
                                                      log_lines: list[str]) -> None:
    """Forged, unsigned, replayed, oversized, garbage, wrong method/path, unknown job: refused."""
    dirs = make_dirs(tmp_path)
    port = free_port()
    hook_url = f"http://127.0.0.1:{port}{HOOK_PATH}"
    cfg = build_config(dirs, emulator, webhook_port=port)
    make_image(dirs.input / "first.png")

    with running(cfg) as daemon:
        wait_for(lambda: daemon.runtime.pipeline.delivered == 1, timeout=20, message="first.jpg")
        [job] = emulator.jobs()
        finished = event_body(job)
        unknown = event_body({**job, "id": "not-one-of-ours"})
        big = b'{"event": "job.finished", "pad": "' + b"x" * (2 << 20) + b'"}'
        garbage = b"{not json"
        answers = {
            "forged": post(hook_url, finished, signature=sign(finished, "wrong-secret")).status_code,
            "unsigned": post(hook_url, finished).status_code,
            "replayed": post(hook_url, finished, signature=sign(finished, SECRET)).status_code,
            "too big": post(hook_url, big, signature=sign(big, SECRET)).status_code,
            "garbage": post(hook_url, garbage, signature=sign(garbage, SECRET)).status_code,
            "wrong method": post(hook_url, b"", method="GET").status_code,
            "wrong path": post(hook_url + "-other", finished,
                               signature=sign(finished, SECRET)).status_code,
            "unknown job": post(hook_url, unknown, signature=sign(unknown, SECRET)).status_code,
        }
        assert answers == {"forged": 401, "unsigned": 401, "replayed": 409, "too big": 413,
                           "garbage": 400, "wrong method": 405, "wrong path": 404,
                           "unknown job": 404}

        # The daemon is unaffected: a later file still converts through its webhook.
        make_image(dirs.input / "second.png")
        wait_for(lambda: daemon.runtime.pipeline.delivered == 2, timeout=20, message="second.jpg")

    assert files_under(dirs.output) == ["first.jpg", "second.jpg"]
    assert emulator.count("POST", "/v2/jobs") == 2
    assert [d.status for d in emulator.webhook_deliveries()] == [200, 200]
    refusals = [line for line in log_lines if "webhook refused" in line]
    assert len(refusals) == len(answers)
    for status in ("401", "409", "413", "400", "405", "404"):
        assert any(f"refused ({status})" in line for line in refusals), status


def test_dropped_deliveries_are_caught_by_the_safety_poll(tmp_path: Path, emulator: Emulator,
                                                         log_lines: list[str]) -> None:
    """Every delivery is lost: files still complete, found by the 1 s safety sweep."""
    emulator.faults.drop_webhooks(times=None)
    dirs = make_dirs(tmp_path)
    cfg = build_config(dirs, emulator, webhook_port=free_port(), safety_poll_s=1)
    for i in range(5):
        make_image(dirs.input / f"lost{i}.png")

    with running(cfg) as daemon:
        wait_for(lambda: daemon.runtime.pipeline.delivered == 5, timeout=20, message="5 deliveries")

    assert files_under(dirs.output) == [f"lost{i}.jpg" for i in range(5)]
    assert [d.status for d in emulator.webhook_deliveries()] == [-1] * 5  # all dropped
    assert job_gets(emulator) >= 5  # the safety poll found them
    assert not any("webhook:" in line for line in log_lines)  # none arrived


def test_secret_stays_out_of_logs_and_reprs(tmp_path: Path, emulator: Emulator,
                                           log_lines: list[str]) -> None:
    """A full run with accepted and refused deliveries never writes the secret anywhere."""
    dirs = make_dirs(tmp_path)
    port = free_port()
    cfg = build_config(dirs, emulator, webhook_port=port)
    make_image(dirs.input / "a.png")

    with running(cfg) as daemon:
        wait_for(lambda: daemon.runtime.pipeline.delivered == 1, timeout=20, message="a.jpg")
        forged = post(f"http://127.0.0.1:{port}{HOOK_PATH}", b"{}", signature=SECRET)
        assert forged.status_code == 401
        assert SECRET not in forged.text

    assert cfg.webhook is not None
    assert SECRET not in repr(cfg.webhook) and SECRET not in repr(cfg)
    assert any("webhook: finished" in line for line in log_lines)
    assert any("webhook refused" in line for line in log_lines)
    assert not [line for line in log_lines if SECRET in line]
