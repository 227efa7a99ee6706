"""A folder on a filesystem that sends no change events (bindfs FUSE mirror, like an NFS/SMB share)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proc_harness import daemon, make_setup

from ccwatch.testing import make_image, wait_for


def test_share_without_events_is_polled_and_converted(tmp_path: Path, emulator: Any, api_key: str,
                                                      bindfs_mount: tuple[Path, Path]) -> None:
    """``watch = auto`` picks polling on the FUSE mount; files written underneath are converted."""
    underlying, mirror = bindfs_mount
    setup = make_setup(tmp_path, emulator, input_dir=mirror,
                       folder_extra='watch = "auto"\nrescan_s = 3600')
    with daemon(setup, api_key) as d:
        d.wait_for_log("startup scan")
        assert "with poll (fuse" in d.output()
        make_image(underlying / "from-another-machine.png")
        make_image(underlying / "sub" / "nested.png")
        wait_for(lambda: (setup.output / "from-another-machine.jpg").exists()
                 and (setup.output / "sub" / "nested.jpg").exists(), timeout=30,
                 message="outputs of files written under the mount")
        assert d.terminate() == 0
    assert len(emulator.jobs()) == 2
