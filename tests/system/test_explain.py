"""Every file explained: ``ccwatch explain`` predicts without converting, and the daemon says once
why each file it does not convert is left alone."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from cli_helpers import cli_env, run_cli, write_setup
from proc_harness import daemon, make_setup

from ccwatch.testing import make_image, wait_for


def test_explain_predicts_rules_outputs_and_reasons(tmp_path: Path) -> None:
    s = write_setup(tmp_path, endpoint="embedded", folder_extra='ignore = ["draft-*"]')
    make_image(s.input / "a.png")
    make_image(s.input / "sub" / "b.png")
    make_image(s.input / "draft-c.png")
    (s.input / "notes.txt").write_text("hello")
    (s.input / ".hidden.png").write_bytes(b"x")
    (s.input / "empty.png").touch()
    (s.output / "a.jpg").write_bytes(b"older")
    env = cli_env(tmp_path)

    done = run_cli("explain", "-c", str(s.config), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"inbox: {s.input / 'a.png'}\n    rule 0 (*.png) → template to-jpg\n" \
           f"    → {s.output / 'a.jpg'} (exists; on_conflict = rename)" in out
    assert f"    → {s.output / 'sub' / 'b.jpg'}\n" in out
    assert f"{s.input / 'notes.txt'}\n    ignored: no rule matches" in out
    assert f"{s.input / '.hidden.png'}\n    ignored: junk" in out
    assert f"{s.input / 'draft-c.png'}\n    ignored: matches the folder's ignore list" in out
    assert f"{s.input / 'empty.png'}\n    rule 0 (*.png) → template to-jpg\n" \
           "    empty file: waits for content" in out
    # Nothing converted, nothing recorded.
    assert sorted(p.name for p in s.output.rglob("*")) == ["a.jpg"]
    assert not s.state.exists() or not (s.state / "ledger.sqlite3").exists()

    one = run_cli("explain", "-c", str(s.config), str(s.input / "sub" / "b.png"),
                  str(tmp_path / "elsewhere.png"), cwd=tmp_path, env=env)
    assert one.returncode == 0, one.stderr
    assert one.stdout.count("\n    ") == 3  # rule line, output line, the outsider's reason
    assert "not inside any watched input folder" in one.stdout


def test_explain_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[daemon]\nnope = 1\n")
    done = run_cli("explain", "-c", str(tmp_path / "bad.toml"), cwd=tmp_path, env=cli_env(tmp_path))
    assert done.returncode == 2
    assert "daemon.nope" in done.stderr


def test_each_file_not_converted_is_explained_once(tmp_path: Path, emulator: Any,
                                                   api_key: str) -> None:
    setup = make_setup(tmp_path, emulator, daemon_extra='log_level = "debug"',
                       folder_extra="rescan_s = 0.5")
    (setup.input / "notes.txt").write_text("hello")
    (setup.input / "empty.png").touch()
    with daemon(setup, api_key) as d:
        d.wait_for_log("startup scan")
        (setup.input / "download.part").write_bytes(b"partial")
        # A file written slowly, for longer than settle_s (0.3 s): said once, then converted.
        image = make_image(tmp_path / "source.png", size=(64, 64))
        data = image.read_bytes()
        growing = setup.input / "growing.png"
        done = threading.Event()

        def write_slowly() -> None:
            with growing.open("wb") as fh:
                for i in range(0, len(data), max(1, len(data) // 10)):
                    fh.write(data[i:i + max(1, len(data) // 10)])
                    fh.flush()
                    done.wait(0.15)
        writer = threading.Thread(target=write_slowly)
        writer.start()
        writer.join()
        wait_for(lambda: (setup.output / "growing.jpg").exists(), timeout=30, message="growing.jpg")
        # Several rescans later, each reason still appears once.
        scans = d.output().count(" scan: ")
        wait_for(lambda: d.output().count(" scan: ") >= scans + 5, timeout=30,
                 message="five more rescans")
        log = d.output()
        assert d.terminate() == 0
    assert log.count("ignored: no rule matches [folder=inbox file=notes.txt]") == 1
    assert log.count("empty file: waiting for content [folder=inbox file=empty.png]") == 1
    assert log.count("ignored: junk (hidden, temporary or system file; built-in list) "
                     "[folder=inbox file=download.part]") == 1
    assert log.count("still being written: waiting until it stops changing "
                     "[folder=inbox file=growing.png]") == 1
    assert ".ccwatch-" not in log.split("startup scan")[1]  # our own markers are not news
    assert "ERROR" not in log
