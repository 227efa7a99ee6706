"""``ccwatch init`` and ``ccwatch check`` as a user runs them: output and exit codes."""

from __future__ import annotations

import socket
from pathlib import Path

from cli_helpers import cli_env, run_cli, write_setup

from ccwatch import config
from ccwatch.emulator import Emulator
from ccwatch.mounts import choose_mode
from ccwatch.testing import make_image


def test_init_then_check_then_run_once_converts(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    done = run_cli("init", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    cfg_path = tmp_path / "ccwatch.toml"
    text = cfg_path.read_text()
    assert text.count("\n# ") > 5, "the starter config explains itself in comments"
    loaded = config.load(cfg_path)
    assert loaded.cloudconvert.endpoint == "embedded"
    assert [f.input for f in loaded.folders] == [tmp_path / "inbox"]

    checked = run_cli("check", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "embedded engine: no account needed" in checked.stdout
    assert "daemon.tracking: wait: each job is waited on through the sync host" in checked.stdout
    mode, _ = choose_mode(loaded.folders[0].input, loaded.folders[0].watch)
    assert f"'{loaded.folders[0].name}' will use {mode}:" in checked.stdout

    make_image(tmp_path / "inbox" / "photo.png")
    ran = run_cli("run", "--once", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "outbox" / "photo.pdf").read_bytes().startswith(b"%PDF")


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "mine.toml"
    target.write_text("# my own settings\n")
    done = run_cli("init", str(target), cwd=tmp_path, env=cli_env(tmp_path))
    assert done.returncode == 2
    assert "already exists" in done.stderr
    assert target.read_text() == "# my own settings\n"


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    s = write_setup(tmp_path, endpoint="embedded")
    s.config.write_text(s.config.read_text().replace('template = "to-jpg"', 'template = "pdf2"'))
    env = cli_env(tmp_path)
    for args in (("check", "-c", str(s.config)), ("run", "--once", "-c", str(s.config))):
        done = run_cli(*args, cwd=tmp_path, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert "folders[0].rules[0].template: no template 'pdf2'" in done.stderr


def test_check_reports_every_folder_problem_with_exit_2(tmp_path: Path) -> None:
    s = write_setup(tmp_path, endpoint="embedded")
    s.output.rmdir()
    s.quarantine.rmdir()
    done = run_cli("check", "-c", str(s.config), cwd=tmp_path, env=cli_env(tmp_path))
    assert done.returncode == 2
    assert f"folders[0].output: {s.output} does not exist" in done.stdout
    assert f"folders[0].quarantine: {s.quarantine} does not exist" in done.stdout
    assert "configuration problems (exit 2)" in done.stdout


def test_check_shows_credits_of_the_account(tmp_path: Path, emulator: Emulator) -> None:
    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    done = run_cli("check", "-c", str(s.config), cwd=tmp_path,
                   env=cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{emulator.credits} credits left" in done.stdout
    assert "ready to run" in done.stdout


def test_check_exits_3_when_the_key_is_refused_or_missing(tmp_path: Path,
                                                          emulator: Emulator) -> None:
    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    emulator.faults.unauthorized()
    refused = run_cli("check", "-c", str(s.config), cwd=tmp_path,
                      env=cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key))
    assert refused.returncode == 3, refused.stdout
    assert "API key rejected (401)" in refused.stdout
    missing = run_cli("check", "-c", str(s.config), cwd=tmp_path, env=cli_env(tmp_path))
    assert missing.returncode == 3, missing.stdout
    assert "no API key: set $CLOUDCONVERT_API_KEY" in missing.stdout


def test_check_webhook_port_taken_and_plain_http_url(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        hook = (f'[webhook]\nlisten = "127.0.0.1:{port}"\n'
                'public_url = "http://convert.example.org/ccwatch/webhook"\n')
        s = write_setup(tmp_path, endpoint="embedded", top_extra=hook)
        done = run_cli("check", "-c", str(s.config), cwd=tmp_path,
                       env=cli_env(tmp_path, CLOUDCONVERT_WEBHOOK_SECRET="whsec-x"))
    assert done.returncode == 2, done.stdout
    assert f"webhook.listen: cannot listen on 127.0.0.1:{port}" in done.stdout
    assert "warn webhook.public_url" in done.stdout and "is not https" in done.stdout
    assert "daemon.tracking: webhook: CloudConvert posts each job's end" in done.stdout


def test_check_says_a_proxy_for_the_sync_host_means_polling(tmp_path: Path,
                                                            emulator: Emulator) -> None:
    """Waits do not go through proxies: behind one, check says jobs are polled, and how to
    wait instead; exempted with NO_PROXY, it says they are waited on."""
    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    proxy = {"HTTP_PROXY": "http://proxy.invalid:3128", "HTTPS_PROXY": "http://proxy.invalid:3128"}
    behind = run_cli("check", "-c", str(s.config), cwd=tmp_path,
                     env=cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key, **proxy))
    assert ("daemon.tracking: poll: an HTTP proxy (proxy.invalid:3128) is set for the sync host"
            in behind.stdout), behind.stdout
    assert "NO_PROXY" in behind.stdout
    exempt = run_cli("check", "-c", str(s.config), cwd=tmp_path,
                     env=cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key,
                                 NO_PROXY="127.0.0.1,localhost", **proxy))
    assert exempt.returncode == 0, exempt.stdout + exempt.stderr
    assert "daemon.tracking: wait: each job is waited on" in exempt.stdout
