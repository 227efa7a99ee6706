"""Webhooks vs waiting vs polling: latency (file close → output in place) and job GETs per file.

The same run three times against a fresh emulator (0.5 s per job): ``ccwatch run`` as a child
process polling with the default backoff, waiting on the sync host (the default), then with a
``[webhook]`` table, the emulator posting signed ``job.finished`` deliveries to the daemon's
receiver on a loopback port. Files are dropped one at a time at random gaps, so they overlap a
little as they would in a shared inbox; each file's latency is from its close to its output's
final name appearing.
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass

from bench.child import BenchError, Child
from bench.common import (
    Settings,
    Size,
    by_size,
    ccwatch_args,
    ccwatch_env,
    daemon_ready,
    emulator,
    measure_all,
    percentile,
    stage_images,
    wait_until,
    workspace,
    write_config,
)
from bench.report import Result, Target

WEBHOOK_SECRET = "bench-secret"  # what bench.common.emulator signs with
LATENCY_S = 0.5
SETTLE_S = 0.5
GAP_S = (0.1, 0.6)  # random pause between drops
TICK_S = 0.01  # how often the output folder is looked at: the latency's resolution


@dataclass(frozen=True)
class ModeResult:
    mode: str
    latencies: list[float]
    job_gets: int
    deliveries: int  # webhook POSTs the daemon answered 200

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p95(self) -> float:
        return percentile(self.latencies, 95)

    def row(self) -> list[str]:
        n = len(self.latencies)
        return [self.mode, str(n), f"{self.p50:.2f}", f"{self.p95:.2f}",
                f"{max(self.latencies):.2f}", f"{self.job_gets / n:.2f}", str(self.deliveries)]


HEADERS = ("mode", "files", "p50 s", "p95 s", "max s", "job GETs / file", "webhooks accepted")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def webhook_table(port: int) -> str:
    return (f'[webhook]\nlisten = "127.0.0.1:{port}"\n'
            f'public_url = "http://127.0.0.1:{port}/ccwatch/webhook"\n')


def measure(mode: str, files: int, latency_s: float, rng: random.Random) -> ModeResult:
    settings = Settings(settle_s=SETTLE_S, poll_interval_s=2.0, poll_max_s=30.0,
                        tracking="poll" if mode == "poll" else "wait")
    with workspace(f"webhooks-{mode}") as ws, emulator(latency_s=latency_s) as emu:
        assert emu.base_url
        config = write_config(ws, emu.base_url, settings)
        env = ccwatch_env()
        if mode == "webhooks":
            config.write_text(webhook_table(free_port()) + config.read_text())
            env["CLOUDCONVERT_WEBHOOK_SECRET"] = WEBHOOK_SECRET
        staged = stage_images(ws, files)
        outputs = [ws.output / p.with_suffix(".jpg").name for p in staged]
        closed: list[float] = []
        done: dict[int, float] = {}
        with Child(ccwatch_args(config, once=False), ws.root / "daemon.log", env=env,
                   cwd=ws.root) as child:
            wait_until(daemon_ready(child), 60, "the daemon to start watching", child)
            next_drop = time.monotonic()
            deadline = next_drop + 120 + files * 3
            while len(done) < files:
                now = time.monotonic()
                if len(closed) < files and now >= next_drop:
                    source = staged[len(closed)]
                    (ws.input / source.name).write_bytes(source.read_bytes())
                    closed.append(time.monotonic())
                    next_drop = closed[-1] + rng.uniform(*GAP_S)
                for i in range(len(closed)):
                    if i not in done and outputs[i].exists():
                        done[i] = time.monotonic()
                if now > deadline or child.proc.poll() is not None:
                    raise BenchError(f"{mode}: {len(done)} of {files} outputs; the daemon log "
                                     f"ends:\n{child.log_tail()}")
                time.sleep(TICK_S)
            child.terminate()
            child.wait(60)
        gets = emu.count("GET", "/v2/jobs/*")
        accepted = sum(1 for d in emu.webhook_deliveries() if d.status == 200)
        if emu.count("POST", "/v2/jobs") != files:
            raise BenchError(f"{mode}: {emu.count('POST', '/v2/jobs')} jobs for {files} files")
    return ModeResult(mode, [done[i] - closed[i] for i in range(files)], gets, accepted)


def run(size: Size) -> Result:
    files = by_size(size, full=30, quick=6, smoke=1)
    rng = random.Random(5)
    results = measure_all(size, lambda: measure("poll", files, LATENCY_S, rng),
                          lambda: measure("wait", files, LATENCY_S, rng),
                          lambda: measure("webhooks", files, LATENCY_S, rng))
    poll, wait, hooked = results
    summary = (f"webhooks p50 {hooked.p50:.2f} s, wait {wait.p50:.2f} s, poll {poll.p50:.2f} s; "
               f"job GETs per file {hooked.job_gets / files:.2f} / {wait.job_gets / files:.2f} / "
               f"{poll.job_gets / files:.2f}")
    return Result(
        name="webhooks", title="Webhooks vs waiting vs polling", summary=summary, headers=HEADERS,
        rows=[r.row() for r in results],
        settings=[f"{files} PNG → JPG files dropped one at a time ({GAP_S[0]} to {GAP_S[1]} s "
                  f"apart), emulator latency {LATENCY_S} s per job, settle_s {SETTLE_S}",
                  "poll: tracking = \"poll\", poll_interval_s 2 (the default), growing by 1.5; "
                  "wait: tracking = \"wait\" (the default); webhooks: a `[webhook]` table "
                  "(safety_poll_s 60, the default)",
                  "latency = the file's close → its output under its final name; output folder "
                  f"looked at every {TICK_S * 1000:.0f} ms; job GETs = GET /v2/jobs/{{id}} on the "
                  "API host (waits go to the sync host and are not counted)"],
        notes=["Polling pays the first poll interval on every file; a wait or a webhook delivery "
               "is seen the moment the job ends, and the safety poll never fires for jobs this "
               "short."],
        targets=[Target(f"webhooks: fewer job GETs per file than polling ({hooked.job_gets / files:.2f}"
                        f" vs {poll.job_gets / files:.2f})", hooked.job_gets < poll.job_gets),
                 Target(f"webhooks: lower p50 than polling ({hooked.p50:.2f} vs {poll.p50:.2f} s)",
                        hooked.p50 < poll.p50)],
    )
