"""ccwatch runs where the POSIX-only modules do not exist (Windows): ``run --once`` and the daemon
with pwd, grp and fcntl made unimportable and no AF_UNIX sockets still convert files; and
``run --log-file``, which the macOS and Windows services use for their log."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from cli_helpers import cli_env

from ccwatch.testing import TO_JPG, make_image, wait_for

# Runs before ccwatch is imported: the blocked modules raise ImportError as on Windows, and
# socket loses AF_UNIX as Windows builds of Python do. Then the CLI runs as `ccwatch`.
BLOCKER = """
import importlib.abc, socket, sys
BLOCKED = {"pwd", "grp", "fcntl"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED:
            raise ImportError(f"No module named {name!r} (blocked: not on this platform)")
        return None

for name in BLOCKED:
    sys.modules.pop(name, None)
sys.meta_path.insert(0, Block())
del socket.AF_UNIX
for name in BLOCKED:
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{name} was not blocked")

from ccwatch.commands.cli import main
used = sorted(BLOCKED & set(sys.modules))
assert not used, used
sys.argv = ["ccwatch", *sys.argv[1:]]
try:
    main()
finally:
    leaked = sorted(BLOCKED & set(sys.modules))
    print(f"blocked modules imported: {leaked}", file=sys.stderr)
"""


def _setup(tmp_path: Path) -> Path:
    for name in ("in", "out", "failed", "state"):
        (tmp_path / name).mkdir()
    config = tmp_path / "ccwatch.toml"
    config.write_text(f"""
[cloudconvert]
endpoint = "embedded"
[daemon]
state_dir = "state"
poll_interval_s = 0.1
poll_max_s = 0.5
{TO_JPG}
[[folders]]
input = "in"
output = "out"
quarantine = "failed"
watch = "poll"
settle_s = 0.2
[[folders.rules]]
match = ["*.png"]
template = "to-jpg"
""")
    make_image(tmp_path / "in" / "photo.png")
    return config


def test_run_once_in_poll_mode_without_posix_modules(tmp_path: Path) -> None:
    """Start, settle, submit, deliver on the embedded engine with pwd/grp/fcntl/AF_UNIX gone."""
    config = _setup(tmp_path)
    env = cli_env(tmp_path)

    done = subprocess.run([sys.executable, "-c", BLOCKER, "run", "--once", "-c", str(config)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert "1 converted, 0 failed" in done.stderr
    assert "blocked modules imported: []" in done.stderr
    assert (tmp_path / "out" / "photo.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


def test_daemon_without_posix_modules_converts_and_skips_sd_notify(tmp_path: Path) -> None:
    """The daemon (poll watcher, scheduler, signals) too; with NOTIFY_SOCKET set it says that
    sd_notify is not on this platform instead of failing, and drains on SIGTERM."""
    config = _setup(tmp_path)
    env = cli_env(tmp_path, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    proc = subprocess.Popen([sys.executable, "-c", BLOCKER, "run", "-c", str(config)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "out" / "photo.jpg").exists(), timeout=60,
                 message="photo.jpg delivered")
        make_image(tmp_path / "in" / "later.png")  # seen by the poll watcher, not the start scan
        wait_for(lambda: (tmp_path / "out" / "later.jpg").exists(), timeout=60,
                 message="later.jpg delivered")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "sd_notify needs AF_UNIX sockets: not on this platform" in stderr
    assert "blocked modules imported: []" in stderr


def test_log_file_takes_the_log_instead_of_stderr(tmp_path: Path) -> None:
    """``run --log-file`` (the macOS and Windows services): the log lands in the file, created
    with its folder; stderr keeps only the summary."""
    config = _setup(tmp_path)
    log = tmp_path / "logs" / "ccwatch.log"
    done = subprocess.run([sys.executable, "-m", "ccwatch", "run", "--once", "--log-file", str(log),
                           "-c", str(config)], cwd=tmp_path, env=cli_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = log.read_text(encoding="utf-8")
    assert "delivered" in text and "photo.png" in text
    assert "delivered" not in done.stderr and "1 converted, 0 failed" in done.stderr
