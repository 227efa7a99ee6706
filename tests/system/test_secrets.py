"""The API key and the webhook secret appear nowhere ccwatch writes: logs, status, error files, state."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Setup, cli_env, free_port, popen_cli, run_cli, write_setup

from ccwatch import config
from ccwatch.emulator import Emulator, serve
from ccwatch.testing import make_image, wait_for

API_KEY = "sk-live-ZZtest-SECRET-key-0123456789"
HOOK_SECRET = "whsec-ZZtest-HOOK-secret-9876543210"


@pytest.fixture
def secret_emulator() -> Iterator[Emulator]:
    with Emulator(api_key=API_KEY, webhook_secret=HOOK_SECRET,
                  webhook_retry_pause_s=0.05) as emu, serve(emu):
        yield emu


def _setup(tmp_path: Path, emulator: Emulator, log_format: str) -> Setup:
    port = free_port()
    hook = (f'[webhook]\nlisten = "127.0.0.1:{port}"\n'
            f'public_url = "http://127.0.0.1:{port}/ccwatch/webhook"\n')
    return write_setup(tmp_path, endpoint=emulator.base_url or "", top_extra=hook,
                       daemon_extra=f'log_format = "{log_format}"')


def _leaks(text: str) -> list[str]:
    return [name for name, secret in (("API key", API_KEY), ("webhook secret", HOOK_SECRET))
            if secret in text]


def test_no_secret_in_any_output(tmp_path: Path, secret_emulator: Emulator) -> None:
    emulator = secret_emulator
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=API_KEY, CLOUDCONVERT_WEBHOOK_SECRET=HOOK_SECRET)
    emulator.faults.task_error(glob="bad*", message="engine failed")
    captured: dict[str, str] = {}

    s = _setup(tmp_path, emulator, "text")
    make_image(s.input / "good.png")
    make_image(s.input / "bad.png")
    once = run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env)
    assert once.returncode == 1, once.stderr  # bad.png quarantined
    captured |= {"run --once stdout": once.stdout, "run --once stderr": once.stderr}

    s = _setup(tmp_path, emulator, "json")  # same folders and state, JSON logs, a new port
    proc = popen_cli("run", "-c", str(s.config), cwd=tmp_path, env=env)
    try:
        make_image(s.input / "good2.png")
        make_image(s.input / "bad2.png")
        wait_for(lambda: (s.output / "good2.jpg").exists()
                 and (s.quarantine / "bad2.png.error.json").exists(),
                 timeout=30, message="the daemon to convert good2 and quarantine bad2")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert '"level": "ERROR"' in err, "the JSON log carries the failure"
    captured |= {"daemon stdout": out, "daemon stderr": err}
    # the secrets were in use: the key was accepted and signed webhooks were delivered
    assert any(d.url.endswith("/ccwatch/webhook") and 200 <= d.status < 300
               for d in emulator.webhook_deliveries())

    for args in (("status", "--json"), ("status",), ("check",)):
        done = run_cli(*args, "-c", str(s.config), cwd=tmp_path, env=env)
        captured[" ".join(args)] = done.stdout + done.stderr
    captured["config.dump"] = config.dump(config.load(s.config, env=env))
    error_files = sorted(s.quarantine.rglob("*.error.json"))
    assert len(error_files) == 2
    state_files = [p for p in s.state.rglob("*") if p.is_file()]
    assert any(p.name.startswith("ledger") for p in state_files)
    for path in [*error_files, *state_files]:
        captured[str(path)] = path.read_bytes().decode("utf-8", "replace")

    leaks = {where: found for where, text in captured.items() if (found := _leaks(text))}
    assert not leaks
