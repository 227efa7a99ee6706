"""Restart at scale: ``ccwatch run`` over a tree whose files are all converted already (keep mode).

Idle means: the daemon logged "startup scan: 0 new file(s)" for its folder (it is watching by then:
watchers start before the scan) and it made no API call, counted in the emulator's request log after
a quiet window.
"""

from __future__ import annotations

import re
import time

from bench.child import BenchError, Child
from bench.common import (
    Settings,
    Size,
    by_size,
    ccwatch_args,
    ccwatch_env,
    daemon_ready,
    emulator,
    wait_until,
    workspace,
    write_config,
)
from bench.report import Result, Target
from bench.tree import build_done_tree, ledger_bytes

SETTINGS = Settings(settle_s=0.5, watch="events")
TARGET_S = 2.0
TARGET_RSS_MB = 80.0


def run(size: Size) -> Result:
    count = by_size(size, full=100_000, quick=2_000, smoke=20)
    quiet_s = by_size(size, full=3.0, quick=1.0, smoke=0.3)
    with workspace("restart") as ws, emulator() as emu:
        build_s = build_done_tree(ws, count)
        assert emu.base_url
        config = write_config(ws, emu.base_url, SETTINGS)
        ledger_before = ledger_bytes(ws)
        with Child(ccwatch_args(config, once=False), ws.root / "daemon.log", env=ccwatch_env(),
                   cwd=ws.root) as child:
            ready_at = wait_until(daemon_ready(child), 120, "the start-up scan", child)
            to_idle_s = ready_at - child.started
            time.sleep(quiet_s)  # a window in which a stray API call or upload would show
            calls = len(emu.requests)
            child.terminate()
            usage = child.wait(60)
            log = child.log_text()
        found = re.search(r"startup scan: (\d+) new file", log)
        new_files = int(found.group(1)) if found else -1
        size_mb = ledger_bytes(ws) / 2**20
    if usage.returncode != 0:
        raise BenchError(f"ccwatch run exited {usage.returncode} after SIGTERM")
    rows = [(f"{count:,}", f"{to_idle_s:.2f}", str(new_files), str(calls), f"{size_mb:.1f}",
             f"{usage.maxrss_mb:.0f}", f"{build_s:.1f}")]
    summary = (f"{count:,} done files: idle after {to_idle_s:.2f} s, {calls} API calls, "
               f"{new_files} new, ledger {size_mb:.1f} MB")
    return Result(
        name="restart", title="Restart at scale", summary=summary,
        headers=("files", "start -> idle s", "new files", "API calls", "ledger MB", "peak RSS MB",
                 "state built in s"), rows=rows,
        settings=[f"{count:,} one-byte files in folders of 1,000, originals keep, every one "
                  "already done in the ledger", f"ccwatch: {SETTINGS.describe()}",
                  f"API calls counted up to {quiet_s} s after the start-up scan line"],
        notes=["The ledger rows were inserted directly (one transaction into the schema "
               "ccwatch.ledger.Ledger creates, state done with each file's size and mtime_ns): "
               "building that state through real conversions would take hours. Start -> idle is "
               "from process start (interpreter and imports included) to the log line "
               "\"startup scan: 0 new file(s)\"; watchers are running before that scan. "
               f"Ledger size before the run: {ledger_before / 2**20:.1f} MB."],
        targets=[Target(f"<= {TARGET_S:.0f} s to idle ({to_idle_s:.2f} s)", to_idle_s <= TARGET_S),
                 Target(f"<= {TARGET_RSS_MB:.0f} MB peak RSS ({usage.maxrss_mb:.0f} MB)",
                        usage.maxrss_mb <= TARGET_RSS_MB),
                 Target(f"0 API calls ({calls})", calls == 0 and new_files == 0)],
    )
