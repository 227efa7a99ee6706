"""on_done / on_failed: the user's commands run with the file's paths, job id and error in their
environment, with a timeout, never holding up conversions; their failures are logged."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from proc_harness import daemon, make_setup

from ccwatch.testing import make_image, wait_for

# Writes the whole environment to <dir>/<event>-<file name>.json.
RECORD = ("import json, os, sys; e = os.environ; "
          "name = e['CCWATCH_EVENT'] + '-' + os.path.basename(e['CCWATCH_RELPATH']) + '.json'; "
          "json.dump(dict(e), "
          "open(os.path.join(sys.argv[1], name), 'w'))")


def argv(*args: str) -> str:
    return json.dumps([sys.executable, *args])  # a JSON array of strings is a TOML array


def test_hooks_run_with_their_environment(tmp_path: Path, emulator: Any, api_key: str) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    rule = (f'match = ["*.png"]\ntemplate = "to-jpg"\n'
            f'on_done = {argv("-c", RECORD, str(seen))}')
    setup = make_setup(tmp_path, emulator, rules=(rule,),
                       folder_extra=f'on_failed = {argv("-c", RECORD, str(seen))}')
    emulator.faults.task_error(glob="bad*", code="CONVERSION_FAILED", message="the engine choked")
    make_image(setup.input / "sub" / "good.png")
    make_image(setup.input / "bad.png")
    with daemon(setup, api_key) as d:
        done = wait_for(lambda: (seen / "done-good.png.json").is_file() and
                        (seen / "failed-bad.png.json").is_file(), timeout=30, message="both hooks")
        assert done
        assert d.terminate() == 0
    ok = json.loads((seen / "done-good.png.json").read_text())
    assert ok["CCWATCH_EVENT"] == "done" and ok["CCWATCH_FOLDER"] == "inbox"
    assert ok["CCWATCH_RELPATH"] == "sub/good.png"
    assert ok["CCWATCH_INPUT"] == str(setup.input / "sub" / "good.png")
    assert ok["CCWATCH_OUTPUT"] == str(setup.output / "sub" / "good.jpg")
    assert ok["CCWATCH_OUTPUTS"] == ok["CCWATCH_OUTPUT"]
    assert ok["CCWATCH_JOB_ID"] and ok["CCWATCH_TEMPLATE"] == "to-jpg"
    bad = json.loads((seen / "failed-bad.png.json").read_text())
    assert bad["CCWATCH_EVENT"] == "failed"
    assert bad["CCWATCH_ERROR"] == "the engine choked"
    assert bad["CCWATCH_ERROR_CODE"] == "CONVERSION_FAILED"
    assert bad["CCWATCH_QUARANTINED"] == str(setup.quarantine / "bad.png")
    assert bad["CCWATCH_ERROR_FILE"] == str(setup.quarantine / "bad.png.error.json")
    assert Path(bad["CCWATCH_ERROR_FILE"]).is_file()
    assert "CLOUDCONVERT_API_KEY" not in bad and "CLOUDCONVERT_API_KEY" not in ok  # no secrets
    assert api_key not in json.dumps(bad)


def test_slow_and_failing_hooks_never_hold_up_conversions(tmp_path: Path, emulator: Any,
                                                          api_key: str) -> None:
    hang = argv("-c", "import time; time.sleep(60)")
    fail = argv("-c", "import sys; sys.stderr.write('no display'); sys.exit(3)")
    rules = (f'match = ["slow*.png"]\ntemplate = "to-jpg"\non_done = {hang}',
             f'match = ["*.png"]\ntemplate = "to-jpg"\non_done = {fail}')
    setup = make_setup(tmp_path, emulator, rules=rules, daemon_extra="hook_timeout_s = 2")
    with daemon(setup, api_key) as d:
        make_image(setup.input / "slow1.png")
        make_image(setup.input / "slow2.png")
        wait_for(lambda: (setup.output / "slow2.jpg").exists(), timeout=30, message="slow2.jpg")
        # Both hook workers are now busy sleeping: conversions still go on.
        make_image(setup.input / "next.png")
        wait_for(lambda: (setup.output / "next.jpg").exists(), timeout=30, message="next.jpg")
        d.wait_for_log("killed after 2 s (hook_timeout_s)")
        d.wait_for_log("exited with 3: no display")
        assert d.terminate() == 0
        log = d.output()
    assert log.count("killed after 2 s") == 2
    # next.png was delivered while both slow hooks were still running
    assert log.index("next.jpg") < log.index("killed after 2 s")
    assert "ERROR" not in log
