"""``ccwatch service install|status|uninstall --user`` on Linux, as a user runs them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cli_helpers import REPO, cli_env, run_cli

UNIT = "ccwatch.service"


def _env(tmp_path: Path) -> dict[str, str]:
    # No user bus here (CI runs as root; a bus for a throwaway HOME does not exist): a real
    # `systemctl --user` fails to connect, the way it does over ssh or in a container.
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return cli_env(tmp_path, HOME=str(tmp_path / "home"), XDG_RUNTIME_DIR=str(runtime),
                   DBUS_SESSION_BUS_ADDRESS=f"unix:path={runtime}/no-bus")


def _starter(tmp_path: Path, env: dict[str, str]) -> Path:
    config = tmp_path / "home" / "my config" / "ccwatch.toml"
    config.parent.mkdir(parents=True)
    assert run_cli("init", str(config), cwd=tmp_path, env=env).returncode == 0
    return config


def test_install_writes_a_user_unit_that_verifies_and_says_how_to_enable_it(tmp_path: Path) -> None:
    """Without a reachable user bus the unit is still written, verified clean by
    ``systemd-analyze verify --user``, and the output names the commands that enable it."""
    env = _env(tmp_path)
    config = _starter(tmp_path, env)

    done = run_cli("service", "install", "--user", "-c", str(config), cwd=tmp_path, env=env)

    assert done.returncode == 0, done.stderr
    unit = tmp_path / "xdg-config" / "systemd" / "user" / UNIT  # $XDG_CONFIG_HOME from cli_env
    assert f"wrote {unit}" in done.stdout
    assert "not enabled" in done.stdout and "systemctl --user enable --now ccwatch.service" in done.stdout
    assert "journalctl --user -u ccwatch" in done.stdout
    text = unit.read_text()
    # the config is under HOME: written with systemd's %h, quoted for the space
    assert 'run --config "%h/my config/ccwatch.toml"' in text

    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: apt-get install systemd (.ci/run does it)"
    verify = subprocess.run([analyze, "verify", "--user", str(unit)], capture_output=True, text=True,
                            timeout=60, env=env, cwd=tmp_path)
    ours = [line for line in verify.stderr.splitlines() if str(unit) in line or UNIT in line]
    assert verify.returncode == 0 and not ours, verify.stderr

    status = run_cli("service", "status", "--user", cwd=tmp_path, env=env)
    assert status.returncode == 0 and f"installed: {unit}" in status.stdout

    removed = run_cli("service", "uninstall", "--user", cwd=tmp_path, env=env)
    assert removed.returncode == 0 and f"removed {unit}" in removed.stdout
    assert not unit.exists()
    status = run_cli("service", "status", "--user", cwd=tmp_path, env=env)
    assert f"not installed: {unit}" in status.stdout


def test_linux_without_user_points_to_the_system_units(tmp_path: Path) -> None:
    """The system-wide service is set up by hand (service account, credentials): exit 2, say where."""
    env = _env(tmp_path)
    config = _starter(tmp_path, env)
    done = run_cli("service", "install", "-c", str(config), cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "systemd/README.md" in done.stderr and "--user" in done.stderr
    assert not (tmp_path / "xdg-config" / "systemd").exists()


def test_the_repository_user_unit_verifies(tmp_path: Path) -> None:
    """systemd/user/ccwatch.service, with its ExecStart pointed at an existing ccwatch."""
    analyze = shutil.which("systemd-analyze")
    assert analyze
    env = _env(tmp_path)
    home = Path(env["HOME"])
    script = home / ".local" / "bin" / "ccwatch"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    unit = tmp_path / UNIT
    unit.write_text((REPO / "systemd" / "user" / UNIT).read_text().replace("%h", str(home)))
    verify = subprocess.run([analyze, "verify", "--user", str(unit)], capture_output=True, text=True,
                            timeout=60, env=env, cwd=tmp_path)
    ours = [line for line in verify.stderr.splitlines() if str(unit) in line or UNIT in line]
    assert verify.returncode == 0 and not ours, verify.stderr
