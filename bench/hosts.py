"""Several hosts: one ccwatch against two sharing a PostgreSQL ledger, on the same workload.

Each "host" is a ``ccwatch run`` process with its own state dir and ``[ledger] host``, all watching
one input folder, with one shared ledger in a throwaway PostgreSQL server. A host is limited to a
few files in flight, as a host's uplink or worker pools limit it: the second host's worth is the
work it takes over, which is what splitting the transfer load between hosts is for.
"""

from __future__ import annotations

import itertools
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from bench.child import BenchError, Child
from bench.common import (
    Settings,
    Size,
    Workspace,
    by_size,
    ccwatch_args,
    ccwatch_env,
    count_files,
    daemon_ready,
    drop,
    emulator,
    measure_all,
    stage_images,
    wait_until,
    workspace,
    write_config,
)
from bench.report import Result, Target
from ccwatch.testing import PostgresCluster, postgres_cluster

LATENCY_S = 0.5
SETTINGS = replace(Settings(settle_s=0.5, poll_interval_s=0.25, poll_max_s=1.0), max_in_flight=4)
LEASE_S = 10.0
_databases = itertools.count(1)


@dataclass(frozen=True)
class Measure:
    hosts: int
    files: int
    seconds: float
    cpu_s: float
    jobs: int
    split: str  # files converted by each host

    @property
    def rate(self) -> float:
        return self.files / self.seconds


def _config(ws: Workspace, base_url: str, url: str, host: int) -> Path:
    """The benchmark config, with this host's state dir and the shared ledger."""
    text = write_config(ws, base_url, SETTINGS).read_text()
    state = ws.root / f"state-{host}"
    state.mkdir()
    text = text.replace(f'state_dir = "{ws.state}"', f'state_dir = "{state}"')
    path = ws.root / f"host-{host}.toml"
    path.write_text(f'[ledger]\nurl = "{url}"\nhost = "host-{host}"\nlease_s = {LEASE_S}\n{text}')
    return path


def _measure(cluster: PostgresCluster, hosts: int, n: int) -> Measure:
    url = cluster.create_database(f"bench{next(_databases)}")
    with workspace(f"hosts-{hosts}") as ws, emulator(LATENCY_S) as emu, ExitStack() as stack:
        paths = stage_images(ws, n)
        assert emu.base_url
        children = [stack.enter_context(Child(
            ccwatch_args(_config(ws, emu.base_url, url, i), once=False), ws.root / f"host-{i}.log",
            env=ccwatch_env(), cwd=ws.root)) for i in range(hosts)]
        for child in children:
            wait_until(daemon_ready(child), 60, "the daemon to start watching", child)
        procs = [psutil.Process(c.pid) for c in children]
        cpu_before = sum(sum(p.cpu_times()[:2]) for p in procs)
        started = time.monotonic()
        drop(paths, ws.input)
        finished = wait_until(lambda: count_files(ws.output) >= n, 60 + n, f"{n} outputs",
                              children[0], interval_s=0.05)
        cpu_s = sum(sum(p.cpu_times()[:2]) for p in procs) - cpu_before
        for child in children:
            child.terminate()
        for child in children:
            if child.wait(60).returncode != 0:
                raise BenchError(f"a host exited {child.usage}:\n{child.log_tail()}")
        # Jobs created (finished ones are deleted: delete_jobs is on by default).
        jobs, outputs = emu.count("POST", "/v2/jobs"), count_files(ws.output)
        split = _split(url)
    if jobs != n or outputs != n:
        raise BenchError(f"{hosts} host(s): {jobs} jobs and {outputs} outputs for {n} files")
    return Measure(hosts, n, finished - started, cpu_s, jobs, split)


def _split(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT COUNT(*) FROM files GROUP BY owner ORDER BY owner").fetchall()
    return " / ".join(str(r[0]) for r in rows)


def run(size: Size) -> Result:
    n = by_size(size, full=200, quick=40, smoke=4)
    with postgres_cluster() as cluster:
        one, two = measure_all(size, lambda: _measure(cluster, 1, n), lambda: _measure(cluster, 2, n))
    per_host = SETTINGS.max_in_flight / LATENCY_S
    rows = [(f"{m.hosts}", str(m.files), str(m.jobs), m.split, f"{m.seconds:.1f}", f"{m.rate:.2f}",
             f"{m.rate / one.rate:.2f}x", f"{m.hosts * per_host:.0f}", f"{m.cpu_s:.1f}")
            for m in (one, two)]
    speedup = two.rate / one.rate
    summary = (f"{n} files: one host {one.rate:.2f} files/s, two hosts {two.rate:.2f} files/s "
               f"({speedup:.2f}x); {one.jobs} and {two.jobs} jobs")
    return Result(
        name="hosts", title="Several hosts (shared PostgreSQL ledger)", summary=summary,
        headers=("hosts", "files", "jobs", "files per host", "seconds", "files/s", "vs one host",
                 "ideal files/s", "CPU s (all hosts)"),
        rows=rows,
        settings=[
            f"{n} PNG images of 32x24 px dropped at once into one input folder watched by every "
            f"host; emulator latency {LATENCY_S} s per job",
            f"each host: {SETTINGS.describe()}; [ledger] url = a throwaway PostgreSQL server (a "
            f"fresh database per run), lease_s {LEASE_S:g}",
            f"ideal = hosts x max_in_flight / latency = hosts x {per_host:.0f} files/s",
        ],
        notes=[
            "Timed from the drop until the last output exists, the hosts already watching. All "
            "hosts, the emulator and PostgreSQL share this machine: a second host adds transfer "
            "slots, not CPU. jobs = the jobs created on the emulator (one per file, whichever host "
            "converted it); files per host = the ledger's owner of each row. A settled file is "
            "nobody's until a host with a free slot starts it, so the split follows free capacity.",
        ],
        targets=[Target(f"every file converted once ({one.jobs}, {two.jobs} jobs for {n} files)",
                        one.jobs == two.jobs == n),
                 Target(f"two hosts faster than one ({speedup:.2f}x)", speedup > 1.0)],
    )
