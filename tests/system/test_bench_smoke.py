"""``python -m bench --quick`` runs every benchmark end to end and reports each one's result.

Speed is measured by the benchmarks and written to docs/benchmarks.md; it is never asserted here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = ("throughput", "overhead", "memory", "latency", "restart", "idle")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_bench_measures_every_benchmark() -> None:
    doc = REPO / "docs" / "benchmarks.md"
    doc_before = doc.read_text() if doc.exists() else None
    done = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=REPO, capture_output=True,
                          text=True, timeout=280)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    results = {line.split(":", 1)[0].removeprefix("RESULT "): line
               for line in done.stdout.splitlines() if line.startswith("RESULT ")}
    assert sorted(results) == sorted(BENCHMARKS), output[-4000:]
    assert not [line for line in results.values() if ": FAILED" in line]
    # a quick run is a smoke run: it must leave the committed figures alone
    assert (doc.read_text() if doc.exists() else None) == doc_before
