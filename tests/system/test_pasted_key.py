"""An API key pasted into ``api_key_env`` or ``api_key_file`` (or a webhook secret into
``secret_env``) is refused by ``check`` and ``run`` without being printed."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from cli_helpers import cli_env, run_cli, write_setup

from ccwatch.emulator import Emulator


def _jwt_like() -> str:
    # Shaped like a CloudConvert key (a JWT: eyJ…, three dot-separated parts); random each run.
    return "eyJ0eXAiOiJKV1Qi" + "." + secrets.token_urlsafe(48) + "." + secrets.token_urlsafe(32)


def _token() -> str:
    return "Ab1" + secrets.token_hex(24)  # a long random token


@pytest.mark.parametrize(("setting", "value"), [
    ("api_key_env", _jwt_like()),
    ("api_key_env", _token()),
    ("api_key_file", _jwt_like()),
])
def test_key_in_the_wrong_setting_is_refused_unprinted(tmp_path: Path, emulator: Emulator,
                                                       setting: str, value: str) -> None:
    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    text = s.config.read_text()
    endpoint_line = f'endpoint = "{emulator.base_url}"'
    s.config.write_text(text.replace(endpoint_line, f'{endpoint_line}\n{setting} = "{value}"'))
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key)
    for command in (("check",), ("run", "--once")):
        done = run_cli(*command, "-c", str(s.config), cwd=tmp_path, env=env)
        out = done.stdout + done.stderr
        assert done.returncode == 2, out
        assert f"cloudconvert.{setting}" in out and "looks like an API key" in out, out
        assert value[:12] not in out and value[-12:] not in out, "the key was printed"
    assert len(emulator.jobs()) == 0
