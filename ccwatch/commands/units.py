"""The per-user service definitions ``ccwatch service install`` writes, for every platform.

Pure text generation, so all three are built and checked on any machine (the platform is an
argument): a systemd user unit (Linux), a launchd agent plist (macOS), a Task Scheduler task
(Windows). The copies in the repository (``systemd/user/``, ``packaging/``) are these same
functions applied to :func:`repository_spec`; a test keeps them equal.
"""

from __future__ import annotations

import plistlib
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal
from xml.sax.saxutils import escape

Platform = Literal["linux", "darwin", "win32"]
PLATFORMS: tuple[Platform, ...] = ("linux", "darwin", "win32")
UNIT_NAME = "ccwatch.service"
LAUNCHD_LABEL = "com.github.ccwatch"
TASK_NAME = "ccwatch"
TASK_NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"
# Where the repository keeps each generated file (relative to the checkout).
REPOSITORY_FILES: dict[Platform, str] = {
    "linux": "systemd/user/ccwatch.service",
    "darwin": f"packaging/macos/{LAUNCHD_LABEL}.plist",
    "win32": "packaging/windows/ccwatch-task.xml",
}
_DOCS = "https://github.com/ccwatch/ccwatch/blob/main/README.md#desktop"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """What a service needs to start ccwatch for one user."""

    program: tuple[str, ...]  # argv that starts ccwatch: its console script, or python -m ccwatch
    home: str  # the user's home folder (systemd's %h)
    config: str | None = None  # the config the service runs (absolute); None = ccwatch's lookup
    log_file: str | None = None  # macOS and Windows: the rotated log (systemd has the journal)
    user: str = ""  # Windows: the account whose logon starts the task (DOMAIN\name)

    def run_args(self) -> list[str]:
        args = [*self.program, "run"]
        if self.log_file:
            args += ["--log-file", self.log_file]
        if self.config:
            args += ["--config", self.config]
        return args


def repository_spec(platform: Platform) -> ServiceSpec:
    """The spec of the repository copies: a `pipx install` for a user called YOU."""
    if platform == "linux":
        return ServiceSpec(program=("/home/YOU/.local/bin/ccwatch",), home="/home/YOU")
    if platform == "darwin":
        return ServiceSpec(program=("/Users/YOU/.local/bin/ccwatch",), home="/Users/YOU",
                           log_file="/Users/YOU/Library/Logs/ccwatch/ccwatch.log")
    home = "C:\\Users\\YOU"
    return ServiceSpec(program=(f"{home}\\pipx\\venvs\\cloudconvert-watch\\Scripts\\pythonw.exe",
                                "-m", "ccwatch"),
                       home=home, log_file=f"{home}\\AppData\\Local\\ccwatch\\Logs\\ccwatch.log",
                       user="YOU")


def write_repository_copies(checkout: Path) -> None:
    """Regenerate the repository copies (``python -m ccwatch.commands.units`` in the checkout)."""
    for platform in PLATFORMS:
        (checkout / REPOSITORY_FILES[platform]).write_bytes(render(platform, repository_spec(platform)))


def render(platform: Platform, spec: ServiceSpec) -> bytes:
    """The file for ``platform``, as bytes ready to write."""
    if platform == "linux":
        return systemd_user_unit(spec).encode("utf-8")
    if platform == "darwin":
        return launchd_plist(spec)
    return task_xml(spec).encode("utf-8")


# -- systemd ----------------------------------------------------------------------------------

def _systemd_arg(arg: str, home: str) -> str:
    """One ExecStart word: a path under the home folder as %h/…, % and $ escaped, quoted when it
    holds spaces, quotes or backslashes."""
    prefix = ""
    home_path, path = PurePosixPath(home), PurePosixPath(arg)
    if arg.startswith("/") and path.is_relative_to(home_path) and path != home_path:
        prefix, arg = "%h/", path.relative_to(home_path).as_posix()
    word = prefix + arg.replace("%", "%%").replace("$", "$$")
    if any(ch in word for ch in " \t\"\\'"):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def systemd_user_unit(spec: ServiceSpec) -> str:
    exec_start = " ".join(_systemd_arg(a, spec.home) for a in spec.run_args())
    return f"""\
# ccwatch for one desktop user: converts what lands in the watched folders through CloudConvert.
# Written by `ccwatch service install --user` to ~/.config/systemd/user/ccwatch.service.
# The system-wide units (a service account, /etc/ccwatch) are ../ccwatch.service and ../ccwatch@.service.
[Unit]
Description=ccwatch watch-folder converter (CloudConvert)
Documentation={_DOCS}

[Service]
# READY=1 once the folders are watched; WATCHDOG=1 and STATUS= (counts) follow.
Type=notify
NotifyAccess=main
ExecStart={exec_start}
# A daemon that stops sending WATCHDOG=1 for a minute is hung: systemd restarts it.
WatchdogSec=60
Restart=on-failure
RestartSec=10
# Exit 2 is a configuration error: restarting cannot fix it (see: journalctl --user -u ccwatch).
RestartPreventExitStatus=2
# SIGTERM drains running transfers for shutdown_grace_s (30 s) before the rest waits in the ledger.
KillMode=mixed
TimeoutStopSec=45
# Nothing ccwatch runs may gain privileges; conversions are background work.
NoNewPrivileges=yes
Nice=5

[Install]
# Started with the user's session (login), stopped at logout unless lingering is enabled.
WantedBy=default.target
"""


# -- launchd ----------------------------------------------------------------------------------

def launchd_plist(spec: ServiceSpec) -> bytes:
    assert spec.log_file, "launchd keeps no journal: the agent needs a log file"
    stderr_log = str(PurePosixPath(spec.log_file).with_name("ccwatch.stderr.log"))
    agent = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": spec.run_args(),
        # Start at login, and again after a crash (not after a clean stop).
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        # A config error (exit 2) restarts at most every 60 s instead of looping.
        "ThrottleInterval": 60,
        "ProcessType": "Background",
        "WorkingDirectory": spec.home,
        # The log goes to --log-file (rotated); this catches what precedes it (config errors).
        "StandardErrorPath": stderr_log,
        "ExitTimeOut": 45,
    }
    return plistlib.dumps(agent, fmt=plistlib.FMT_XML, sort_keys=False)


# -- Task Scheduler ---------------------------------------------------------------------------

def task_xml(spec: ServiceSpec) -> str:
    """A logon task for ``spec.user``: no console window (pythonw), restarts after a failure."""
    argv = spec.run_args()
    command, arguments = argv[0], subprocess.list2cmdline(argv[1:])
    user = escape(spec.user)
    workdir = str(PureWindowsPath(spec.home))
    return f"""\
<?xml version="1.0" encoding="UTF-8"?>
<!-- ccwatch for one Windows user, registered by `ccwatch service install` (which runs
     schtasks /Create /TN {TASK_NAME} /XML FILE). It starts at logon, without a console window. -->
<Task version="1.2" xmlns="{TASK_NAMESPACE}">
  <RegistrationInfo>
    <Description>ccwatch: converts what lands in the watched folders through CloudConvert.</Description>
    <URI>\\{TASK_NAME}</URI>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>
      <UserId>{user}</UserId>
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{user}</UserId>
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>false</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <WakeToRun>false</WakeToRun>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <Priority>7</Priority>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>3</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{escape(command)}</Command>
      <Arguments>{escape(arguments)}</Arguments>
      <WorkingDirectory>{escape(workdir)}</WorkingDirectory>
    </Exec>
  </Actions>
</Task>
"""


def log_hint(platform: Platform, spec: ServiceSpec) -> str:
    """Where the service's log goes, for messages."""
    if platform == "linux" or not spec.log_file:
        return "journalctl --user -u ccwatch -f"
    return spec.log_file


if __name__ == "__main__":
    write_repository_copies(Path.cwd())
