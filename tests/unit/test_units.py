"""The per-user service definitions for Linux, macOS and Windows, generated and validated here."""

from __future__ import annotations

import plistlib
import shlex
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ccwatch.commands import service, units
from ccwatch.commands.units import PLATFORMS, ServiceSpec

REPO = Path(__file__).resolve().parents[2]
NS = {"t": units.TASK_NAMESPACE}
AWKWARD = "/home/me/My Files/50% & <more> $HOME \"q\"/ccwatch.toml"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_repository_copies_are_what_the_code_generates(platform: units.Platform) -> None:
    """systemd/user/, packaging/macos/ and packaging/windows/ hold exactly the generated files."""
    path = REPO / units.REPOSITORY_FILES[platform]
    generated = units.render(platform, units.repository_spec(platform))
    assert path.read_bytes() == generated, "regenerate: python -m ccwatch.commands.units"


def test_systemd_exec_start_escapes_specifiers_and_quotes_spaces() -> None:
    """Paths under the home folder become %h/…; a literal % or $ cannot expand; spaces are quoted."""
    spec = ServiceSpec(program=("/opt/cc watch/bin/ccwatch",), home="/home/me", config=AWKWARD)
    [line] = [x for x in units.systemd_user_unit(spec).splitlines() if x.startswith("ExecStart=")]
    words = shlex.split(line.removeprefix("ExecStart="))  # systemd's quoting is shell-like here
    assert words == ["/opt/cc watch/bin/ccwatch", "run", "--config",
                     '%h/My Files/50%% & <more> $$HOME "q"/ccwatch.toml']


def test_launchd_agent_is_a_valid_plist() -> None:
    """plistlib reads it back; it starts at login, restarts after a crash, logs to a file."""
    spec = ServiceSpec(program=("/Users/me/.local/bin/ccwatch",), home="/Users/me", config=AWKWARD,
                       log_file="/Users/me/Library/Logs/ccwatch/ccwatch.log")
    agent = plistlib.loads(units.launchd_plist(spec))
    assert agent["Label"] == units.LAUNCHD_LABEL
    assert agent["ProgramArguments"] == ["/Users/me/.local/bin/ccwatch", "run", "--log-file",
                                         "/Users/me/Library/Logs/ccwatch/ccwatch.log",
                                         "--config", AWKWARD]
    assert agent["RunAtLoad"] is True and agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["ThrottleInterval"] >= 10  # a config error must not restart in a tight loop
    assert agent["StandardErrorPath"].startswith("/Users/me/Library/Logs/ccwatch/")
    assert all(Path(p).is_absolute() for p in (agent["WorkingDirectory"], agent["StandardErrorPath"]))


# The Task Scheduler schema (taskschd.xsd) for the elements we use: each element's allowed
# children, and the children it must have. No XSD ships in any package we could install, so the
# structure is checked against this transcription of the documented schema.
_TASK_CHILDREN = {
    "Task": {"RegistrationInfo", "Triggers", "Settings", "Data", "Principals", "Actions"},
    "RegistrationInfo": {"URI", "SecurityDescriptor", "Source", "Date", "Author", "Version",
                         "Description", "Documentation"},
    "Triggers": {"BootTrigger", "RegistrationTrigger", "IdleTrigger", "TimeTrigger",
                 "EventTrigger", "LogonTrigger", "SessionStateChangeTrigger", "CalendarTrigger"},
    "LogonTrigger": {"StartBoundary", "EndBoundary", "Enabled", "Repetition", "ExecutionTimeLimit",
                     "Delay", "UserId"},
    "Principals": {"Principal"},
    "Principal": {"UserId", "LogonType", "GroupId", "DisplayName", "RunLevel", "ProcessTokenSidType",
                  "RequiredPrivileges"},
    "Settings": {"AllowStartOnDemand", "RestartOnFailure", "MultipleInstancesPolicy",
                 "DisallowStartIfOnBatteries", "StopIfGoingOnBatteries", "AllowHardTerminate",
                 "StartWhenAvailable", "NetworkProfileName", "RunOnlyIfNetworkAvailable",
                 "WakeToRun", "Enabled", "Hidden", "DeleteExpiredTaskAfter", "IdleSettings",
                 "NetworkSettings", "ExecutionTimeLimit", "Priority", "RunOnlyIfIdle",
                 "UseUnifiedSchedulingEngine", "DisallowStartOnRemoteAppSession"},
    "IdleSettings": {"Duration", "WaitTimeout", "StopOnIdleEnd", "RestartOnIdle"},
    "RestartOnFailure": {"Interval", "Count"},
    "Actions": {"Exec", "ComHandler", "SendEmail", "ShowMessage"},
    "Exec": {"Command", "Arguments", "WorkingDirectory"},
}
_TASK_REQUIRED = {"Task": {"Actions"}, "Actions": {"Exec"}, "Exec": {"Command"},
                  "RestartOnFailure": {"Interval", "Count"}, "Principals": {"Principal"}}
_ENUMS = {"LogonType": {"S4U", "Password", "InteractiveToken", "InteractiveTokenOrPassword",
                        "ServiceForUser", "None"},
          "RunLevel": {"LeastPrivilege", "HighestAvailable"},
          "MultipleInstancesPolicy": {"Parallel", "Queue", "IgnoreNew", "StopExisting"}}
_BOOLEANS = {"Enabled", "DisallowStartIfOnBatteries", "StopIfGoingOnBatteries", "AllowHardTerminate",
             "StartWhenAvailable", "RunOnlyIfNetworkAvailable", "AllowStartOnDemand", "Hidden",
             "RunOnlyIfIdle", "WakeToRun", "StopOnIdleEnd", "RestartOnIdle"}


def _check_task_structure(element: ET.Element) -> None:
    name = element.tag.removeprefix("{" + units.TASK_NAMESPACE + "}")
    assert element.tag == f"{{{units.TASK_NAMESPACE}}}{name}", f"{element.tag}: wrong namespace"
    children = [c.tag.removeprefix("{" + units.TASK_NAMESPACE + "}") for c in element]
    if name in _TASK_CHILDREN:
        assert set(children) <= _TASK_CHILDREN[name], f"{name}: {set(children) - _TASK_CHILDREN[name]}"
        assert len(children) == len(set(children)) or name in ("Triggers", "Principals", "Actions")
    assert _TASK_REQUIRED.get(name, set()) <= set(children), f"{name} lacks {_TASK_REQUIRED[name]}"
    if name in _ENUMS:
        assert element.text in _ENUMS[name], f"{name} = {element.text}"
    if name in _BOOLEANS:
        assert element.text in ("true", "false"), f"{name} = {element.text}"
    for child in element:
        _check_task_structure(child)


def test_task_xml_is_a_well_formed_logon_task_of_the_task_scheduler_schema() -> None:
    """Namespace, version, the schema's elements only, a logon trigger for the user, and the
    command line Windows will split back into exactly our arguments."""
    spec = ServiceSpec(program=("C:\\Users\\me\\pipx\\venvs\\cloudconvert-watch\\Scripts\\pythonw.exe",
                                "-m", "ccwatch"), home="C:\\Users\\me", config="C:\\My Files\\a&b.toml",
                       log_file="C:\\Users\\me\\AppData\\Local\\ccwatch\\Logs\\ccwatch.log",
                       user="PC\\me")
    root = ET.fromstring(units.task_xml(spec).encode("utf-8"))
    assert root.tag == f"{{{units.TASK_NAMESPACE}}}Task" and root.get("version") == "1.2"
    _check_task_structure(root)
    assert root.findtext("t:Triggers/t:LogonTrigger/t:UserId", namespaces=NS) == "PC\\me"
    principal = root.find("t:Principals/t:Principal", NS)
    assert principal is not None and principal.get("id") == root.find("t:Actions", NS).get("Context")  # type: ignore[union-attr]
    assert principal.findtext("t:LogonType", namespaces=NS) == "InteractiveToken"
    assert root.findtext("t:Settings/t:ExecutionTimeLimit", namespaces=NS) == "PT0S"  # runs for good
    command = root.findtext("t:Actions/t:Exec/t:Command", namespaces=NS)
    arguments = root.findtext("t:Actions/t:Exec/t:Arguments", namespaces=NS)
    assert command is not None and command.endswith("pythonw.exe")  # no console window
    assert arguments == subprocess.list2cmdline(spec.run_args()[1:])
    assert '"C:\\My Files\\a&b.toml"' in arguments


def test_install_steps_per_platform(tmp_path: Path) -> None:
    """Which tool enables the service where: systemctl --user, launchctl, schtasks."""
    path = tmp_path / "def"
    assert [s.argv[:3] for s in service.install_steps("linux", path)] == [
        ("systemctl", "--user", "daemon-reload"), ("systemctl", "--user", "enable")]
    mac = service.install_steps("darwin", path)
    assert mac[-1].argv[:2] == ("launchctl", "bootstrap") and mac[-1].argv[-1] == str(path)
    win = service.install_steps("win32", path)
    assert win[0].argv == ("schtasks", "/Create", "/TN", "ccwatch", "/XML", str(path), "/F")


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_install_without_the_platform_tool_writes_the_file_and_says_how(
        platform: units.Platform, tmp_path: Path) -> None:
    """On this Linux machine launchctl and schtasks do not exist: the definition is still written
    (UTF-16 for schtasks) and the output gives the commands that enable it."""
    spec = units.repository_spec(platform)
    spec = ServiceSpec(program=spec.program, home=spec.home, user=spec.user,
                       log_file=str(tmp_path / "logs" / "ccwatch.log"))
    path = tmp_path / "defs" / "service-file"
    outcome = service.install(platform, spec, path=path)
    assert not outcome.ok
    text = "\n".join(outcome.lines)
    assert f"wrote {path}" in text and "not enabled" in text
    assert str(service.install_steps(platform, path)[-1]) in text
    if platform == "win32":
        assert path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")  # a UTF-16 byte order mark
        root = ET.fromstring(path.read_bytes())
        assert root.tag == f"{{{units.TASK_NAMESPACE}}}Task"
    else:
        assert plistlib.loads(path.read_bytes())["Label"] == units.LAUNCHD_LABEL
    assert (tmp_path / "logs").is_dir()
    assert service.uninstall(platform, path=path).ok and not path.exists()
