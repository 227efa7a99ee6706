"""Rate limit: a backlog bigger than the account's job-creation limit, paced from the answers.

``run --once`` over ``k x limit + 1`` files against an emulator whose creation route group allows
``limit`` creates per window (reads count in their own group, as on the real API). The first
window began when the emulator started, before ccwatch's first create, so it is left out: the
(limit + 1)-th successful create opens the second window and the (k x limit + 1)-th the
(k+1)-th, so ``(k - 1) x limit`` creates between them is the rate ccwatch kept, against
``limit / window`` per second. That includes the windows in which ccwatch learns the window's
length (with its 429s).
"""

from __future__ import annotations

from bench.child import BenchError
from bench.common import (
    API_KEY,
    Settings,
    Size,
    by_size,
    count_files,
    measure_all,
    run_ccwatch_once,
    stage_images,
    workspace,
    write_config,
)
from bench.report import Result, Target
from ccwatch.emulator import Emulator, serve

WINDOW_S = 10.0  # the emulator's window
SETTINGS = Settings(settle_s=0.5)


def _measure(limit: int, windows: int) -> tuple[float, int, int, float]:
    """(creates per second over the full windows, 201s, 429s, run seconds)."""
    n = windows * limit + 1
    with workspace("ratelimit") as ws, Emulator(api_key=API_KEY, rate_limit_per_minute=limit,
                                                rate_window_s=WINDOW_S) as emu, serve(emu):
        for path in stage_images(ws, n):
            path.rename(ws.input / path.name)
        assert emu.base_url
        usage = run_ccwatch_once(ws, write_config(ws, emu.base_url, SETTINGS),
                                 timeout_s=120 + windows * WINDOW_S * 2)
        if count_files(ws.output) != n:
            raise BenchError(f"run --once delivered {count_files(ws.output)} of {n} files")
        creates = [r for r in emu.requests if r.method == "POST" and r.path == "/v2/jobs"]
        done = [r.at for r in creates if r.status == 201]
        refused = sum(r.status == 429 for r in creates)
        if len(done) != n:
            raise BenchError(f"{len(done)} jobs created for {n} files")
        # (A smoke run stays inside one window: nothing to measure but the code path.)
        measured = done[limit::limit]
        rate = (len(measured) - 1) * limit / (measured[-1] - measured[0]) if windows > 1 else 0.0
        return rate, len(done), refused, usage.wall_s


def run(size: Size) -> Result:
    limit = by_size(size, full=120, quick=60, smoke=3)
    windows = by_size(size, full=6, quick=3, smoke=0)
    ((rate, created, refused, wall),) = measure_all(size, lambda: _measure(limit, windows))
    allowed = limit / WINDOW_S
    share, refused_pct = rate / allowed, 100 * refused / (created + refused)
    rows = [(f"{limit} per {WINDOW_S:.0f} s", str(created), str(refused), f"{refused_pct:.2f}",
             f"{rate:.3f}", f"{allowed:.3f}", f"{100 * share:.1f}", f"{wall:.0f}")]
    summary = (f"{100 * share:.1f} % of the limit over windows 2 to {windows}, {refused} of "
               f"{created + refused} creates answered 429 ({refused_pct:.2f} %)")
    return Result(
        name="ratelimit", title="Rate limit (a backlog paced at the job-creation limit)",
        summary=summary,
        headers=("limit", "jobs created", "429s", "429 %", "creates/s kept", "creates/s allowed",
                 "% of the limit", "run s"), rows=rows,
        settings=[f"{windows * limit + 1} PNGs to JPEG, emulator latency 0, a fixed window of "
                  f"{limit} creates per {WINDOW_S:.0f} s; ccwatch: {SETTINGS.describe()}"],
        notes=["The emulator's Retry-After is whole seconds (rounded up): a 429 puts the window's "
               "end within a second. The pacer narrows that by opening the next windows early "
               "(a 429 when too early) until it knows the length to 0.3 s; those windows are "
               "measured too. The first window, begun when the emulator started, is not."],
        targets=[Target(f">= 95 % of the limit ({100 * share:.1f} %)", share >= 0.95),
                 Target(f"< 1 % of creates answered 429 ({refused_pct:.2f} %)", refused_pct < 1.0)],
    )
