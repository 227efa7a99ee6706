"""``ccwatch run --once`` exit codes with a real emulator: 0 all done, 1 some quarantined, 3 account."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from proc_harness import daemon, make_setup

from ccwatch.testing import make_image


def _run_once(setup: Any, api_key: str) -> tuple[int, str]:
    with daemon(setup, api_key, once=True) as d:
        code = d.proc.wait(60)
        return code, d.output()


def test_exit_1_when_a_file_is_quarantined(tmp_path: Path, emulator: Any, api_key: str) -> None:
    """One good file, one the engine rejects: exit 1, the summary says so."""
    setup = make_setup(tmp_path, emulator)
    make_image(setup.input / "good.png")
    make_image(setup.input / "bad.png")
    emulator.faults.task_error(glob="bad*", code="CONVERSION_FAILED", message="broken")
    code, log = _run_once(setup, api_key)
    assert code == 1
    assert "1 converted, 1 failed" in log
    assert (setup.quarantine / "bad.png.error.json").exists()


def test_exit_3_on_an_account_error_and_nothing_is_quarantined(tmp_path: Path, emulator: Any,
                                                               api_key: str) -> None:
    """The key is refused: exit 3 with the reason; the file stays in the input for next time."""
    setup = make_setup(tmp_path, emulator)
    make_image(setup.input / "a.png")
    emulator.faults.unauthorized()
    code, log = _run_once(setup, api_key)
    assert code == 3
    assert "401" in log
    assert (setup.input / "a.png").exists()
    assert list(setup.quarantine.iterdir()) == []

    emulator.faults.clear()
    code, _ = _run_once(setup, api_key)
    assert code == 0
    assert (setup.output / "a.jpg").exists()


def test_the_heap_is_frozen_for_the_exit_and_the_run_is_complete(tmp_path: Path, emulator: Any,
                                                                   api_key: str) -> None:
    """The interpreter's exit would collect the whole heap again and again (~0.1 s of every
    command); ccwatch freezes it once the runtime is closed. Nothing is lost: the output is
    delivered, the ledger closed cleanly (no WAL left) and the log complete."""
    probe = tmp_path / "probe"
    probe.mkdir()
    # Registered before ccwatch starts, so it runs after ccwatch's own exit hooks.
    (probe / "sitecustomize.py").write_text(
        "import atexit, gc, sys\n"
        "atexit.register(lambda: sys.stderr.write(f'frozen at exit: {gc.get_freeze_count()}\\n'))\n")
    setup = make_setup(tmp_path / "run", emulator)
    make_image(setup.input / "a.png")
    path = os.pathsep.join(filter(None, [str(probe), os.environ.get("PYTHONPATH")]))
    with daemon(setup, api_key, once=True, env={"PYTHONPATH": path}) as d:
        assert d.proc.wait(60) == 0, d.output()
        log = d.output()
    frozen = re.search(r"frozen at exit: (\d+)", log)
    assert frozen is not None, log
    assert int(frozen.group(1)) > 10_000  # ccwatch's modules, config, pipeline: all of it
    assert "1 converted, 0 failed" in log
    assert (setup.output / "a.jpg").exists()
    assert not list(setup.state.glob("*-wal")), "the ledger was not closed"
