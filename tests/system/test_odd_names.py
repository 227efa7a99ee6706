"""Any name the OS allows: not UTF-8, control characters, 255 bytes. No name crashes a scan or
blocks the others; names that cannot be delivered are refused before a job; logs stay one line per
record; quarantine and error-file names fit the 255-byte limit, and ``retry --all`` finds them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cli_helpers import cli_env, run_cli, write_setup

from ccwatch.emulator import Emulator
from ccwatch.testing import make_image

FORGED = "2026-01-01 00:00:00.000 INFO    forged"


def test_odd_names_in_run_once(tmp_path: Path, emulator: Emulator) -> None:
    s = write_setup(tmp_path, endpoint=emulator.base_url or "")
    env = cli_env(tmp_path, CLOUDCONVERT_API_KEY=emulator.api_key)
    for i in range(10):
        make_image(s.input / f"ok{i}.png")
    not_utf8 = os.fsdecode(b"bad\xff.png")
    newline = f"evil\n{FORGED}.png"
    long_name = "L" * 251 + ".png"  # 255 bytes: converts, then fails in the engine
    for name in (not_utf8, newline, long_name):
        make_image(s.input / name)
    emulator.faults.task_error(glob="L*", message="the engine choked")

    done = run_cli("run", "--once", "-c", str(s.config), cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in s.output.iterdir()) == [f"ok{i}.jpg" for i in range(10)]
    # refused before any job: only the ten and the long name were sent
    assert len(emulator.jobs()) == 11
    assert not any(line.startswith(FORGED) for line in done.stderr.splitlines()), done.stderr
    assert "evil\\n2026" in done.stderr

    names = os.listdir(os.fsencode(s.quarantine))
    assert all(len(n) <= 255 for n in names), names
    assert len(names) == 6, names  # three files, three error files
    for name in names:
        if name.endswith(b".error.json"):
            record = json.loads((s.quarantine / os.fsdecode(name)).read_text(encoding="utf-8"))
            assert record["file"] in (not_utf8, newline, long_name)
            expected = "UNSAFE_NAME" if record["file"] != long_name else "CONVERSION_FAILED"
            assert record["code"] == expected, record

    again = run_cli("retry", "-c", str(s.config), "--all", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    back = {os.fsdecode(n) for n in os.listdir(os.fsencode(s.input))}
    assert {not_utf8, newline, long_name} <= back
    assert os.listdir(s.quarantine) == []
