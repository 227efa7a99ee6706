"""How long to wait: retry backoff for transient errors and the status-poll schedule. Pure."""

from __future__ import annotations

import random

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 300.0


def retry_delay(retries: int, retry_after_s: float | None, *, rng: random.Random) -> float:
    """Seconds before trying again after a transient error.

    The server's ``Retry-After`` wins (plus up to 10 %, so a crowd does not return at once);
    otherwise 1 s doubling per retry up to 5 min, jittered ±20 %.
    """
    if retry_after_s is not None:
        return retry_after_s * rng.uniform(1.0, 1.1)
    base: float = min(RETRY_MAX_S, RETRY_FIRST_S * 2.0 ** min(retries, 16))
    return base * rng.uniform(0.8, 1.2)


def poll_delay(polls_done: int, first_s: float, max_s: float, *, rng: random.Random) -> float:
    """Seconds until the next status poll: first_s, growing by half each time to max_s, ±10 %.

    Growing by 1.5 rather than 2 sees a job end at most ~1.5x its run time after it started
    (doubling: ~2x), for a few more GETs on long jobs.
    """
    base: float = min(max_s, first_s * 1.5 ** min(polls_done, 30))
    return base * rng.uniform(0.9, 1.1)
