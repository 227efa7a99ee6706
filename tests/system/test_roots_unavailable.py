"""An output share unmounted mid-run: nothing is written to the mount point, originals stay,
one warning, ``status`` says so, and work resumes by itself when the share is mounted again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cli_helpers import cli_env, status_json
from proc_harness import daemon, make_setup

from ccwatch.testing import make_image, wait_for


def test_unmounted_output_makes_the_folder_unavailable_until_it_returns(
        tmp_path: Path, emulator: Any, api_key: str, tmpfs: Any) -> None:
    setup = make_setup(tmp_path, emulator, folder_extra='originals = "delete"')
    tmpfs.mount(setup.output)
    env = cli_env(tmp_path)
    with daemon(setup, api_key) as d:
        make_image(setup.input / "first.png")
        wait_for(lambda: (setup.output / "first.jpg").exists(), timeout=60, message="first output")
        tmpfs.unmount(setup.output)  # the mount point is an empty folder on the disk below again
        make_image(setup.input / "sub" / "second.png")
        make_image(setup.input / "third.png")
        d.wait_for_log("is unavailable", timeout=60)
        wait_for(lambda: {setup.states().get(n) for n in ("sub/second.png", "third.png")}
                 == {"processing"}, timeout=60, message="both converted, waiting to deliver")
        status = status_json(setup.config, cwd=tmp_path, env=env)
        assert [u["path"] for u in status["unavailable"]] == [str(setup.output)]
        assert status["unavailable"][0]["folders"] == ["inbox"]
        # Nothing written into the bare mount point, no folder made there, originals kept.
        assert list(setup.output.iterdir()) == []
        assert (setup.input / "sub" / "second.png").exists()
        assert (setup.input / "third.png").exists()

        tmpfs.mount(setup.output)  # back (a new tmpfs: a new device number)
        wait_for(lambda: (setup.output / "sub" / "second.jpg").exists()
                 and (setup.output / "third.jpg").exists(), timeout=60,
                 message="outputs delivered once the share is back")
        wait_for(lambda: not (setup.input / "third.png").exists(), timeout=30,
                 message="original deleted after delivery")
        d.wait_for_log("is available again", timeout=30)
        assert d.terminate() == 0
        log = d.output()
    assert log.count("is unavailable") == 1, log
    assert status_json(setup.config, cwd=tmp_path, env=env)["unavailable"] == []
    assert len(emulator.jobs()) == 3


def test_missing_output_root_is_never_created(tmp_path: Path, emulator: Any, api_key: str) -> None:
    """An absolute output folder removed while running is not re-created by a delivery."""
    setup = make_setup(tmp_path, emulator)
    with daemon(setup, api_key) as d:
        d.wait_for_log("startup scan")
        setup.output.rmdir()
        make_image(setup.input / "a" / "x.png")
        d.wait_for_log("does not exist", timeout=60)
        wait_for(lambda: setup.states().get("a/x.png") == "processing", timeout=60,
                 message="converted, waiting to deliver")
        assert not setup.output.exists()
        setup.output.mkdir()
        wait_for(lambda: (setup.output / "a" / "x.jpg").exists(), timeout=60,
                 message="delivered once the folder is back")
        assert d.terminate() == 0
