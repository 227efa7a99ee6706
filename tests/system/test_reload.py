"""SIGHUP (``systemctl reload``) re-reads the config: new rules and folders apply to new files,
work in flight keeps the settings it was submitted with, and an invalid file is refused."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from proc_harness import daemon, make_setup

from ccwatch.testing import TO_JPG, TO_PNG, config_text, make_image, wait_for


def second_folder(root: Path) -> str:
    for name in ("in2", "out2", "failed2"):
        (root / name).mkdir(exist_ok=True)
    return f"""
[[folders]]
name = "second"
input = "{root / 'in2'}"
output = "{root / 'out2'}"
quarantine = "{root / 'failed2'}"
settle_s = 0.3

[[folders.rules]]
match = ["*.jpg"]
template = "to-png"
"""


def test_reload_applies_to_new_files_and_keeps_work_in_flight(tmp_path: Path, emulator: Any,
                                                              api_key: str) -> None:
    setup = make_setup(tmp_path, emulator)
    emulator.faults.latency(2.0, glob="slow.png")
    make_image(setup.input / "slow.png")
    with daemon(setup, api_key) as d:
        d.wait_for_log("uploaded")
        # A new name for png outputs, a new rule for gif, a new folder, and a daemon setting.
        setup.config.write_text(config_text(
            endpoint=emulator.base_url, state_dir=setup.state, input_dir=setup.input,
            output=setup.output, quarantine=setup.quarantine, templates=TO_JPG + TO_PNG,
            daemon_extra="max_in_flight = 3",
            rules=('match = ["*.png", "*.gif"]\ntemplate = "to-jpg"\noutput_name = "{stem}-v2.{ext}"',),
        ) + second_folder(tmp_path))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for_log("configuration reloaded")
        make_image(setup.input / "new.png")
        make_image(setup.input / "pic.gif")
        make_image(tmp_path / "in2" / "photo.jpg")
        wait_for(lambda: all(p.exists() for p in (
            setup.output / "slow.jpg", setup.output / "new-v2.jpg", setup.output / "pic-v2.jpg",
            tmp_path / "out2" / "photo.png")), timeout=30, message="every output")
        log = d.output()
        assert d.terminate() == 0
    # slow.png was in flight: it kept the output_name it was submitted with
    assert not (setup.output / "slow-v2.jpg").exists()
    assert "reload: changes to [daemon] take effect at the next restart" in log
    assert "ERROR" not in log


def test_an_invalid_config_is_refused_and_the_old_one_stays(tmp_path: Path, emulator: Any,
                                                            api_key: str) -> None:
    setup = make_setup(tmp_path, emulator)
    good = setup.config.read_text()
    with daemon(setup, api_key) as d:
        d.wait_for_log("startup scan")
        setup.config.write_text(good.replace('template = "to-jpg"', 'template = "to-nothing"'))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for_log("reload refused")
        make_image(setup.input / "after.png")
        wait_for(lambda: (setup.output / "after.jpg").exists(), timeout=30, message="after.jpg")
        # Fixed, the next reload goes through.
        setup.config.write_text(good.replace('match = ["*.png"]', 'match = ["*.png", "*.bmp"]'))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for_log("configuration reloaded")
        make_image(setup.input / "late.bmp")
        wait_for(lambda: (setup.output / "late.jpg").exists(), timeout=30, message="late.jpg")
        log = d.output()
        assert d.proc.poll() is None, "a bad config must not stop the daemon"
        assert d.terminate() == 0
    line = next(x for x in log.splitlines() if "reload refused" in x)
    assert "folders[0].rules[0].template: no template 'to-nothing'" in line
    assert "still running the previous configuration" in line
