"""Transfers: one big file up and down through the emulator, ccwatch's client against curl.

Each contender runs as its own process against the same served emulator: ccwatch's API client
(``CloudConvertClient.upload`` from an open file, then ``download`` into ``fs.rooted.staged``, the
code the submit and deliver stages run) and curl posting the same form, then fetching the same URL
to a file that is fsynced once. Upload and download + fsync are timed inside each process, three
times each, who goes first alternating: one transfer of a gigabyte is at the mercy of whatever
else the machine did in those seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.child import BenchError
from bench.common import API_KEY, Size, by_size, emulator, measure_all, workspace
from bench.report import Result, Target

RATIO = 1.2
JOB = {"tasks": {"in": {"operation": "import/upload"},
                 "out": {"operation": "export/url", "input": "in"}}}

# The ccwatch side, run in a child: python -c CHILD base form.json file url out_dir
CHILD = """
import json, sys, time
from pathlib import Path
from ccwatch.client.api import CloudConvertClient
from ccwatch.clock import SystemClock
from ccwatch.fs import rooted
from ccwatch.fs.roots import Root
base, key, form, src, url, out = sys.argv[1:7]
api = CloudConvertClient(base, base + "/sync", key, timeout_s=600, clock=SystemClock())
result = {}
if form != "-":
    t = time.monotonic()
    with open(src, "rb") as source:
        api.upload(json.loads(form), source, "big.bin", job_id="bench", task="in")
    result["upload_s"] = time.monotonic() - t
if url != "-":
    t = time.monotonic()
    with api.download(url, job_id="bench", path="big.bin") as chunks, \
            rooted.staged(Root(Path(out)), ()) as item:
        for chunk in chunks:
            item.write(chunk)
        item.commit("big.out", overwrite=True)  # fsync + rename, as the deliver stage does
    result["download_s"] = time.monotonic() - t
    result["download_bytes"] = (Path(out) / "big.out").stat().st_size
    (Path(out) / "big.out").unlink()
print(json.dumps(result))
"""


def _ccwatch(base: str, form: dict[str, object] | None, src: Path, url: str | None,
             out: Path) -> dict[str, float]:
    args = [sys.executable, "-c", CHILD, base, API_KEY, json.dumps(form) if form else "-", str(src),
            url or "-", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise BenchError(f"the ccwatch client failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _curl_upload(form: dict[str, object], src: Path) -> float:
    fields = [arg for k, v in dict(form["parameters"]).items()  # type: ignore[call-overload]
              for arg in ("-F", f"{k}={v}")]
    started = time.monotonic()
    subprocess.run(["curl", "-sS", "-o", os.devnull, "--fail", *fields, "-F", f"file=@{src}",
                    str(form["url"])], check=True, timeout=900)
    return time.monotonic() - started


def _curl_download(url: str, out: Path) -> float:
    target = out / "curl.bin"
    started = time.monotonic()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(target), url], check=True, timeout=900)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.monotonic() - started
    target.unlink()
    return seconds


def _alternating(rounds: int, ours: Callable[[int], float], curls: Callable[[int], float]
                 ) -> tuple[list[float], list[float]]:
    """Each contender ``rounds`` times (given the round), who goes first alternating so that
    neither is always the one after the other's writeback; sync() before each."""
    mine: list[float] = []
    theirs: list[float] = []
    for i in range(rounds):
        for ccwatch_now in ((True, False) if i % 2 == 0 else (False, True)):
            os.sync()
            if ccwatch_now:
                mine.append(ours(i))
            else:
                theirs.append(curls(i))
    return mine, theirs


def _measure(size_mb: int, rounds: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """Seconds of each round: ccwatch upload, curl upload, ccwatch download + fsync, curl
    download + fsync."""
    if shutil.which("curl") is None:
        raise BenchError("curl is not installed (apt-get install curl)")
    from ccwatch.client.api import CloudConvertClient
    from ccwatch.clock import SystemClock

    with workspace("transfer") as ws, emulator() as emu:
        src = ws.staging / "big.bin"
        block = os.urandom(1 << 20)  # incompressible, written once
        with src.open("wb") as f:
            for _ in range(size_mb):
                f.write(block)
        assert emu.base_url
        base = emu.base_url
        api = CloudConvertClient(base, base + "/sync", API_KEY, timeout_s=600, clock=SystemClock())
        try:
            forms, jobs = [], []
            for _ in range(2 * rounds):  # a fresh upload form for every upload
                job = api.create_job(JOB, path="big.bin")
                jobs.append(job["id"])
                forms.append(next(t for t in job["tasks"] if t["name"] == "in")["result"]["form"])
            # Each timed transfer starts with no dirty pages left by the one before (the writeback
            # of a gigabyte just written would otherwise slow whichever contender runs next).
            ups, curl_ups = _alternating(
                rounds, lambda i: _ccwatch(base, forms[2 * i], src, None, ws.output)["upload_s"],
                lambda i: _curl_upload(forms[2 * i + 1], src))
            deadline = time.monotonic() + 120
            while (job := api.get_job(jobs[0], path="big.bin"))["status"] != "finished":
                if time.monotonic() > deadline:
                    raise BenchError(f"the pass-through job did not finish: {job['status']}")
                time.sleep(0.2)
            url = next(t for t in job["tasks"] if t["name"] == "out")["result"]["files"][0]["url"]
            # The first read of the stored result comes from the disk, later ones from the page
            # cache: one untimed read first, so neither contender is the one that pays for it.
            subprocess.run(["curl", "-sS", "-o", os.devnull, "--fail", url], check=True,
                           timeout=900)

            def download(_: int) -> float:
                got = _ccwatch(base, None, src, url, ws.output)
                if got["download_bytes"] != src.stat().st_size:  # a fast but short one is no win
                    raise BenchError(f"ccwatch downloaded {got['download_bytes']:.0f} of "
                                     f"{src.stat().st_size} bytes")
                return got["download_s"]

            downs, curl_downs = _alternating(rounds, download,
                                             lambda _: _curl_download(url, ws.output))
        finally:
            api.close()
        return ups, curl_ups, downs, curl_downs


def run(size: Size) -> Result:
    size_mb = by_size(size, full=1000, quick=200, smoke=4)
    rounds = by_size(size, full=3, quick=1, smoke=2)
    ((ups, curl_ups, downs, curl_downs),) = measure_all(size, lambda: _measure(size_mb, rounds))
    up, curl_up, down, curl_down = (statistics.median(s) for s in (ups, curl_ups, downs, curl_downs))
    each = "; ".join(f"{what} {', '.join(f'{x:.2f}' for x in xs)} s"
                     for what, xs in (("ccwatch up", ups), ("curl up", curl_ups),
                                      ("ccwatch down", downs), ("curl down", curl_downs)))
    rows = [("upload (POST the form)", f"{up:.2f}", f"{curl_up:.2f}", f"{up / curl_up:.2f}x",
             f"{size_mb / up:.0f}"),
            ("download + fsync", f"{down:.2f}", f"{curl_down:.2f}", f"{down / curl_down:.2f}x",
             f"{size_mb / down:.0f}")]
    summary = (f"{size_mb} MB: upload {up / curl_up:.2f}x curl, download + fsync "
               f"{down / curl_down:.2f}x curl + fsync")
    return Result(
        name="transfer", title="Transfers (one big file, ccwatch's client vs curl)", summary=summary,
        headers=("transfer", "ccwatch s", "curl s", "ccwatch / curl", "ccwatch MB/s"), rows=rows,
        settings=[f"one {size_mb} MB file of random bytes; a pass-through job (import/upload → "
                  "export/url) on the emulator; ccwatch's client and curl each in their own process"],
        notes=[f"Each transfer made {rounds} times, who goes first alternating; the medians are "
               f"shown ({each}).",
               "The emulator serves both in the bench process (waitress buffers an upload to disk "
               "before the app sees it), so the absolute MB/s are the loopback emulator's; the "
               "ratio is the client's cost.",
               "Before each timed transfer the bench calls sync(), so no contender pays for the "
               "writeback of the gigabyte the one before it wrote; the stored result is read once "
               "(untimed) before the downloads, so neither pays for the first read from disk. "
               "Without these, whichever ran first measured 2-3x slower."],
        targets=[Target(f"upload within {RATIO}x of curl ({up / curl_up:.2f}x)", up / curl_up <= RATIO),
                 Target(f"download + fsync within {RATIO}x of curl + fsync ({down / curl_down:.2f}x)",
                        down / curl_down <= RATIO)],
    )
