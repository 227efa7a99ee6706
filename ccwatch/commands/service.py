"""``ccwatch service install|uninstall|status``: the per-user service for this platform.

The definitions come from :mod:`ccwatch.commands.units`; this module decides where they go and
which tool enables them (``systemctl --user``, ``launchctl``, ``schtasks``). The steps are plain
data, so what each platform would run is testable anywhere. Where the tool is missing or cannot
reach the session (``systemctl --user`` as root in CI, over ssh without a user bus), install still
writes the file and prints the commands that enable it.
"""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from ccwatch.commands.units import (
    LAUNCHD_LABEL,
    TASK_NAME,
    UNIT_NAME,
    Platform,
    ServiceSpec,
    log_hint,
    render,
)
from ccwatch.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Step:
    argv: tuple[str, ...]
    may_fail: bool = False  # e.g. stopping a service that is not running

    def __str__(self) -> str:
        if self.argv[0] == "schtasks":  # a Windows command line
            return subprocess.list2cmdline(self.argv)
        return shlex.join(self.argv)


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool  # every step ran (or nothing was needed)
    lines: tuple[str, ...]  # what to tell the user, in order


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def this_platform(name: str = sys.platform) -> Platform:
    if name.startswith("linux"):
        return "linux"
    if name == "darwin":
        return "darwin"
    if name == "win32":
        return "win32"
    raise ConfigError("service", f"no per-user service support on {name}: run "
                      "`ccwatch run` from the system's own autostart instead")


def local_spec(platform: Platform, config: Path | None) -> ServiceSpec:
    """The spec for this machine: this installation of ccwatch, this user, these folders."""
    home = str(Path.home())
    bin_dir = Path(sys.executable).parent  # a venv's (pipx's) bin or Scripts folder
    if platform == "win32":
        # pythonw: no console window pops up at logon; then the log file is the only output.
        pythonw = bin_dir / "pythonw.exe"
        program: tuple[str, ...] = (str(pythonw if pythonw.exists() else sys.executable),
                                    "-m", "ccwatch")
    else:
        script = bin_dir / "ccwatch"
        program = (str(script),) if script.is_file() else (sys.executable, "-m", "ccwatch")
    log_file = None if platform == "linux" else str(
        platformdirs.user_log_path("ccwatch", appauthor=False) / "ccwatch.log")
    domain = os.environ.get("USERDOMAIN", "")
    user = f"{domain}\\{getpass.getuser()}" if domain else getpass.getuser()
    return ServiceSpec(program=program, home=home, log_file=log_file,
                       config=str(config.absolute()) if config else None,
                       user=user if platform == "win32" else "")


def definition_path(platform: Platform) -> Path:
    """Where the service definition is written for the current user."""
    if platform == "linux":
        return platformdirs.user_config_path() / "systemd" / "user" / UNIT_NAME
    if platform == "darwin":
        return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    return platformdirs.user_data_path("ccwatch", appauthor=False) / "ccwatch-task.xml"


def _launchd_target() -> str:
    return f"gui/{os.getuid()}"  # only reached on macOS


def install_steps(platform: Platform, path: Path) -> list[Step]:
    if platform == "linux":
        return [Step(("systemctl", "--user", "daemon-reload")),
                Step(("systemctl", "--user", "enable", "--now", UNIT_NAME))]
    if platform == "darwin":
        target = _launchd_target()
        return [Step(("launchctl", "bootout", f"{target}/{LAUNCHD_LABEL}"), may_fail=True),
                Step(("launchctl", "bootstrap", target, str(path)))]
    return [Step(("schtasks", "/Create", "/TN", TASK_NAME, "/XML", str(path), "/F")),
            Step(("schtasks", "/Run", "/TN", TASK_NAME))]


def uninstall_steps(platform: Platform) -> list[Step]:
    if platform == "linux":
        return [Step(("systemctl", "--user", "disable", "--now", UNIT_NAME), may_fail=True)]
    if platform == "darwin":
        return [Step(("launchctl", "bootout", f"{_launchd_target()}/{LAUNCHD_LABEL}"), may_fail=True)]
    return [Step(("schtasks", "/End", "/TN", TASK_NAME), may_fail=True),
            Step(("schtasks", "/Delete", "/TN", TASK_NAME, "/F"), may_fail=True)]


def status_steps(platform: Platform) -> list[Step]:
    if platform == "linux":
        return [Step(("systemctl", "--user", "status", "--no-pager", UNIT_NAME), may_fail=True)]
    if platform == "darwin":
        return [Step(("launchctl", "print", f"{_launchd_target()}/{LAUNCHD_LABEL}"), may_fail=True)]
    return [Step(("schtasks", "/Query", "/TN", TASK_NAME, "/V", "/FO", "LIST"), may_fail=True)]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)


def _execute(steps: Sequence[Step], runner: Runner) -> tuple[bool, str]:
    """Run ``steps`` in order; stop at the first required one that fails: (all ran, why not)."""
    for step in steps:
        try:
            done = runner(step.argv)
        except (OSError, subprocess.SubprocessError) as exc:
            if step.may_fail:
                continue
            return False, f"`{step}` could not run: {exc}"
        if done.returncode != 0 and not step.may_fail:
            text = (done.stdout + done.stderr).strip()
            return False, f"`{step}` failed: {text or f'exit {done.returncode}'}"
    return True, ""


def install(platform: Platform, spec: ServiceSpec, *, path: Path | None = None,
            runner: Runner = _run) -> Outcome:
    """Write the definition (replacing an older one) and enable it; say how when that fails."""
    path = path or definition_path(platform)
    data = render(platform, spec)
    if platform == "win32":  # schtasks reads UTF-16 reliably, whatever the system code page
        data = data.decode("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    path.parent.mkdir(parents=True, exist_ok=True)
    if spec.log_file:
        Path(spec.log_file).parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    lines = [f"wrote {path}"]
    steps = install_steps(platform, path)
    ok, why = _execute(steps, runner)
    if ok:
        lines.append("enabled and started; it starts again at every login")
    else:
        manual = [str(s) for s in steps if not s.may_fail]
        lines += [f"not enabled: {why}",
                  "enable it from your desktop session (where this tool reaches the session) with:",
                  *(f"    {cmd}" for cmd in manual)]
    lines.append(f"logs: {log_hint(platform, spec)}")
    return Outcome(ok=ok, lines=tuple(lines))


def uninstall(platform: Platform, *, path: Path | None = None, runner: Runner = _run) -> Outcome:
    """Stop and disable the service, then remove its definition."""
    path = path or definition_path(platform)
    _execute(uninstall_steps(platform), runner)
    if not path.exists():
        return Outcome(ok=True, lines=(f"not installed ({path} does not exist)",))
    path.unlink()
    if platform == "linux":
        _execute([Step(("systemctl", "--user", "daemon-reload"), may_fail=True)], runner)
    return Outcome(ok=True, lines=(f"stopped, disabled and removed {path}",))


def status(platform: Platform, *, path: Path | None = None, runner: Runner = _run) -> Outcome:
    """Whether the definition is installed, and what the service manager says about it."""
    path = path or definition_path(platform)
    lines = [f"{'installed' if path.exists() else 'not installed'}: {path}"]
    for step in status_steps(platform):
        try:
            done = runner(step.argv)
        except (OSError, subprocess.SubprocessError) as exc:
            lines.append(f"`{step}` could not run: {exc}")
            continue
        lines.append((done.stdout + done.stderr).strip() or f"`{step}`: exit {done.returncode}")
    return Outcome(ok=path.exists(), lines=tuple(lines))
