"""Files ccwatch cannot read: reported clearly, quarantined, and the daemon keeps converting."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from proc_harness import daemon, make_setup

from ccwatch.testing import make_image, wait_for


def test_unreadable_file_is_reported_not_fatal(tmp_path: Path, emulator: Any, api_key: str) -> None:
    """A mode-000 file goes to quarantine with a permission message; the next file converts."""
    setup = make_setup(tmp_path, emulator)
    locked = make_image(setup.input / "locked.png")
    locked.chmod(0o000)
    wrap = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    with daemon(setup, api_key, wrap=wrap) as d:
        wait_for(lambda: (setup.quarantine / "locked.png.error.json").exists(), timeout=30,
                 message="error file")
        make_image(setup.input / "fine.png")
        wait_for(lambda: (setup.output / "fine.jpg").exists(), timeout=30, message="next file")
        assert d.terminate() == 0
        log = d.output()
    record = json.loads((setup.quarantine / "locked.png.error.json").read_text())
    assert record["code"] == "UNREADABLE"
    assert "Permission denied" in record["message"]
    assert "Permission denied" in log
    assert (setup.quarantine / "locked.png").exists()
    assert len(emulator.jobs()) == 1  # nothing was sent for the unreadable file
