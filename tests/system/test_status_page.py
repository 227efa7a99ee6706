"""``[http] listen``: /healthz, /metrics and the status page of a running daemon, over plain HTTP and
in a real headless Chromium (screenshot and rendered DOM)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_helpers import free_port
from proc_harness import Daemon, Setup, daemon, make_setup

from ccwatch.testing import make_image, wait_for

# A name a page that forgets to escape would render as markup.
EVIL = "bad <img src=x onerror=alert(1)> & co.png"
MESSAGE = "the engine choked on <this> file"


@dataclass
class Running:
    setup: Setup
    daemon: Daemon
    url: str


@pytest.fixture
def running(tmp_path: Path, emulator: Any, api_key: str) -> Iterator[Running]:
    """A daemon with one converted file and one quarantined one, its HTTP endpoint up."""
    port = free_port()
    setup = make_setup(tmp_path, emulator)
    text = setup.config.read_text()
    setup.config.write_text(f'[http]\nlisten = "127.0.0.1:{port}"\n' + text)
    emulator.faults.task_error(glob="bad*", code="CONVERSION_FAILED", message=MESSAGE)
    make_image(setup.input / "good.png")
    make_image(setup.input / EVIL, fmt="PNG")
    with daemon(setup, api_key) as d:
        wait_for(lambda: (setup.output / "good.jpg").exists(), timeout=30, message="good.jpg")
        wait_for(lambda: (setup.quarantine / (EVIL + ".error.json")).exists(), timeout=30,
                 message="quarantined file")
        yield Running(setup, d, f"http://127.0.0.1:{port}")
        assert d.terminate() == 0


def test_healthz_metrics_and_page_over_http(running: Running, api_key: str) -> None:
    health = httpx.get(running.url + "/healthz", timeout=10)
    assert health.status_code == 200
    assert health.text.startswith("ok")

    def metrics_with_failure() -> str | None:
        text = httpx.get(running.url + "/metrics", timeout=10).text
        return text if 'state="failed"} 1.0' in text else None

    # The failed state reaches the ledger just after the error file is written: wait for it.
    text = wait_for(metrics_with_failure, timeout=10, message="metrics with the failed file")
    assert 'ccwatch_files{folder="inbox",state="done"} 1.0' in text
    assert 'ccwatch_files_finished_total{folder="inbox",outcome="done"} 1.0' in text
    assert 'ccwatch_files_finished_total{folder="inbox",outcome="failed"} 1.0' in text
    assert 'ccwatch_quarantined{folder="inbox"} 1.0' in text
    assert "ccwatch_jobs_created_total 2.0" in text
    assert 'ccwatch_api_errors_total{class="file"} 1.0' in text
    assert "ccwatch_paused 0.0" in text
    uploaded = re.search(r"^ccwatch_uploaded_bytes_total (\S+)$", text, re.MULTILINE)
    assert uploaded is not None and float(uploaded.group(1)) > 0
    delivered = re.search(r"^ccwatch_delivered_bytes_total (\S+)$", text, re.MULTILINE)
    assert delivered is not None and float(delivered.group(1)) > 0

    page = httpx.get(running.url + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "bad &lt;img src=x onerror=alert(1)&gt; &amp; co.png" in html
    assert "<img" not in html
    assert "the engine choked on &lt;this&gt; file" in html
    assert "good.jpg" in html  # recent outputs
    assert "inbox" in html and str(running.setup.input) in html
    assert api_key not in html
    assert httpx.post(running.url + "/", timeout=10).status_code == 405
    assert httpx.get(running.url + "/nope", timeout=10).status_code == 404


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install chromium; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _browser(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    # Its own profile and HOME: a headless run must not touch (or need) a user's browser state.
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={home / 'profile'}", *args],
        capture_output=True, text=True, timeout=90, env={**os.environ, "HOME": str(home)},
        check=False)


def test_status_page_in_a_real_browser(running: Running, tmp_path: Path) -> None:
    from PIL import Image

    home = tmp_path / "browser"
    home.mkdir()
    dom = _browser("--dump-dom", running.url + "/", home=home)
    assert dom.returncode == 0, dom.stderr
    assert "inbox" in dom.stdout
    assert MESSAGE.replace("<", "&lt;").replace(">", "&gt;") in dom.stdout
    assert "<img" not in dom.stdout  # the file name stayed text, never markup

    shot = tmp_path / "status.png"
    done = _browser(f"--screenshot={shot}", "--window-size=1200,900", running.url + "/", home=home)
    assert done.returncode == 0, done.stderr
    assert shot.is_file()
    with Image.open(shot) as image:
        assert image.size == (1200, 900)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    # None means more colours than counted: certainly not blank.
    assert colours is None or len(colours) > 10


def test_a_paused_account_shows_on_the_page_and_in_metrics(tmp_path: Path, emulator: Any,
                                                           api_key: str) -> None:
    port = free_port()
    setup = make_setup(tmp_path, emulator)
    setup.config.write_text(f'[http]\nlisten = "127.0.0.1:{port}"\n' + setup.config.read_text())
    emulator.faults.credits_exceeded()
    make_image(setup.input / "a.png")
    url = f"http://127.0.0.1:{port}"
    with daemon(setup, api_key) as d:
        d.wait_for_log("submissions paused")
        page = httpx.get(url + "/", timeout=10).text
        assert 'id="paused"' in page and "run out of conversion minutes" in page
        metrics = httpx.get(url + "/metrics", timeout=10).text
        assert "ccwatch_paused 1.0" in metrics
        assert "ccwatch_pauses_total 1.0" in metrics
        assert 'ccwatch_api_errors_total{class="account"}' in metrics
        health = httpx.get(url + "/healthz", timeout=10)
        assert health.status_code == 200 and "paused" in health.text
        assert d.terminate() == 0


def test_http_listen_that_cannot_bind_is_a_config_error(tmp_path: Path, emulator: Any,
                                                        api_key: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        setup = make_setup(tmp_path, emulator)
        setup.config.write_text(f'[http]\nlisten = "127.0.0.1:{port}"\n' + setup.config.read_text())
        with daemon(setup, api_key) as d:
            assert d.proc.wait(30) == 2
            assert "http.listen: cannot listen on" in d.output()
