"""``python -m bench --smoke`` runs every benchmark end to end at tiny sizes, in seconds.

Speed is measured by the benchmarks and written to docs/benchmarks.md; it is never asserted here.
What is asserted is what a benchmark checks on the way (every contender delivered every file, a
restart over converted files calls nothing) and that a smoke run leaves the committed figures alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = ("throughput", "tracking", "overhead", "backlog", "transfer", "inflight", "ratelimit",
              "memory", "latency", "webhooks", "restart", "idle", "hosts")


@pytest.mark.timeout(120)
def test_smoke_bench_runs_every_benchmark() -> None:
    doc = REPO / "docs" / "benchmarks.md"
    doc_before = doc.read_text() if doc.exists() else None
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke"], cwd=REPO, capture_output=True,
                          text=True, timeout=110)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    results = {line.split(":", 1)[0].removeprefix("RESULT "): line
               for line in done.stdout.splitlines() if line.startswith("RESULT ")}
    assert sorted(results) == sorted(BENCHMARKS), output[-4000:]
    assert not [line for line in results.values() if ": FAILED" in line]
    # the smoke sizes were used: three images for throughput, 20 converted files for restart
    assert "  3 PNG images of 32x24 px, converted to JPEG" in done.stdout
    assert "20 done files:" in results["restart"] and " 0 new," in results["restart"]
    assert "target met: 0 API calls (0)" in done.stdout, "a restart over done files called the API"
    assert "floor: the work each file needs" in done.stdout  # (it raises unless all 3 delivered)
    assert (doc.read_text() if doc.exists() else None) == doc_before
