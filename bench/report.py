"""Results: the machine they were taken on, tables for the terminal and docs/benchmarks.md sections."""

from __future__ import annotations

import datetime
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.common import REPO

DOC = REPO / "docs" / "benchmarks.md"
ORDER = ("throughput", "tracking", "overhead", "backlog", "transfer", "inflight", "ratelimit", "memory",
         "latency", "webhooks", "restart", "idle", "hosts")

DOC_HEADER = """# Benchmarks

Measured by `python -m bench` (all of them, full size) or `python -m bench NAME` (one); each run
rewrites its own section below, with the machine, its load, the command and the date it was taken on.
`python -m bench --quick` is a look at small sizes that writes nothing unless given `--write`;
`--smoke` (tiny sizes, measurements side by side, figures meaningless; the test suite runs it) never
writes.

Every contender runs against a fresh emulator (`ccwatch.emulator`) served in the bench process on a
loopback port; ccwatch and the SDK scripts run as child processes, and their CPU time and peak RSS
are their own (CPU from `wait4`; peak RSS the child's VmHWM read from /proc while it runs, since
wait4's ru_maxrss also counts the bench process it was spawned from), never the bench's or the
emulator's. ccwatch is byte-compiled before the first run, as installing it does; workspaces
are removed only when the bench exits, so no run pays for an earlier one's deletions (ext4 scans
recently freed inodes when it creates a file). The figures come from a shared 2-core machine
where other work (test suites) may run at the same time: read them as orders of magnitude and
ratios, not as exact timings.
"""


@dataclass(frozen=True)
class Target:
    what: str
    met: bool

    def __str__(self) -> str:
        return f"{'met' if self.met else 'MISSED'}: {self.what}"


@dataclass
class Result:
    name: str
    title: str
    summary: str  # the one RESULT line
    headers: tuple[str, ...]
    rows: Sequence[Sequence[str]]
    settings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} CPU ({model}), {ram_gb:.1f} GiB RAM, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def print_result(result: Result) -> None:
    print(f"\n== {result.title} ==")
    for setting in result.settings:
        print(f"  {setting}")
    print(text_table(result.headers, result.rows))
    for note in result.notes:
        print(f"  note: {note}")
    for target in result.targets:
        print(f"  target {target}")
    print(f"RESULT {result.name}: {result.summary}", flush=True)


def section(result: Result, command: str, quick: bool) -> str:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    parts = [f"## {result.title}", "",
             f"Measured {now} on {machine()}{' (quick mode: small sizes)' if quick else ''}, "
             f"load average (uptime) {load} at the end.  ",
             f"Command: `{command}`", ""]
    parts += [f"- {s}" for s in result.settings]
    parts += ["", markdown_table(result.headers, result.rows), ""]
    if result.targets:
        parts += [f"- Target {t}" for t in result.targets] + [""]
    parts += [f"{n}\n" for n in result.notes]
    parts.append(f"Result: {result.summary}")
    return "\n".join(parts).rstrip() + "\n"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def update_doc(result: Result, command: str, quick: bool, doc: Path = DOC) -> None:
    """Replace this benchmark's section of docs/benchmarks.md (creating the file when missing)."""
    text = doc.read_text() if doc.exists() else DOC_HEADER
    for name in ORDER:  # every section has its place, filled or not, in a fixed order
        start, end = _markers(name)
        if start not in text:
            text = text.rstrip() + f"\n\n{start}\n_not measured yet: `python -m bench {name}`_\n{end}\n"
    start, end = _markers(result.name)
    body = f"{start}\n{section(result, command, quick)}{end}"
    text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: body, text, flags=re.S)
    doc.write_text(text)
