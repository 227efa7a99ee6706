"""Webhooks vs polling: completion latency (file close → output in place) and job GETs per file.

``python -m bench.webhooks [--files N] [--latency-s S] [--write]``

The same run twice against a fresh emulator (0.5 s per job by default): ``ccwatch run`` as a child
process polling with the default backoff (poll_interval_s 2, poll_max_s 30), then with a
``[webhook]`` table, the emulator posting signed ``job.finished`` deliveries to the daemon's
receiver on a loopback port. Files are dropped one at a time at random gaps, so they overlap a little
as they would in a shared inbox; each file's latency is from its close to its output's final name
appearing. ``--write`` replaces the "Webhooks vs polling" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import random
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BenchError,
    Child,
    Settings,
    ccwatch_args,
    ccwatch_env,
    daemon_ready,
    emulator,
    percentile,
    stage_images,
    wait_until,
    workspace,
    write_config,
)
from bench.report import DOC, DOC_HEADER, machine, markdown_table, text_table

WEBHOOK_SECRET = "bench-secret"  # what bench.common.emulator signs with
START, END = "<!-- bench:webhooks -->", "<!-- /bench:webhooks -->"
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
    settings = Settings(settle_s=SETTLE_S, poll_interval_s=2.0, poll_max_s=30.0)
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


def section(results: list[ModeResult], files: int, latency_s: float, command: str) -> str:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    polling, hooked = results
    return "\n".join([
        "## Webhooks vs polling", "",
        f"Measured {now} on {machine()}.  ",
        f"Command: `{command}`", "",
        f"- {files} PNG → JPG files dropped one at a time ({GAP_S[0]} to {GAP_S[1]} s apart), "
        f"emulator latency {latency_s} s per job, settle_s {SETTLE_S}",
        "- polling: poll_interval_s 2, poll_max_s 30 (the defaults); webhooks: the same plus a "
        "`[webhook]` table (safety_poll_s 60, the default)",
        "- latency = the file's close → its output under its final name; "
        f"output folder looked at every {TICK_S * 1000:.0f} ms", "",
        markdown_table(HEADERS, [r.row() for r in results]), "",
        f"Result: webhooks p50 {hooked.p50:.2f} s vs polling {polling.p50:.2f} s "
        f"(p95 {hooked.p95:.2f} vs {polling.p95:.2f}); job GETs per file "
        f"{hooked.job_gets / files:.2f} vs {polling.job_gets / files:.2f}. Polling pays the first "
        "poll interval on every file (a job that outlives it waits for the next, 1.5 times longer, "
        "interval); a webhook delivery is tracked the moment it arrives, and the safety poll "
        "never fires for jobs this short.",
    ]) + "\n"


def write_doc(text: str, doc: Path = DOC) -> None:
    """Replace only our section (between our markers); create the file or append when missing."""
    current = doc.read_text() if doc.exists() else DOC_HEADER
    body = f"{START}\n{text}{END}"
    if START in current and END in current:
        current = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: body, current,
                         flags=re.S)
    else:
        current = current.rstrip() + f"\n\n{body}\n"
    doc.write_text(current)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--latency-s", type=float, default=0.5, help="emulator seconds per job")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    results = [measure(mode, args.files, args.latency_s, rng) for mode in ("polling", "webhooks")]
    print(text_table(HEADERS, [r.row() for r in results]))
    polling, hooked = results
    print(f"RESULT webhooks: p50 {hooked.p50:.2f} s vs polling {polling.p50:.2f} s; job GETs/file "
          f"{hooked.job_gets / args.files:.2f} vs {polling.job_gets / args.files:.2f}", flush=True)
    if args.write:
        command = " ".join(["python -m bench.webhooks", *argv])
        write_doc(section(results, args.files, args.latency_s, command))
        print(f"wrote the webhooks section of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
