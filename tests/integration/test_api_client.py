"""The API client against the emulator: rate-limit awareness and error mapping at the boundary."""

from __future__ import annotations

import pytest

from ccwatch.api import RATE_LOW_WATER, CloudConvertClient
from ccwatch.clock import FakeClock
from ccwatch.emulator import Emulator, serve
from ccwatch.errors import AccountError, FileError, RateLimited, TransientError

TASKS = {"tasks": {"in": {"operation": "import/upload"}}}


def test_job_creation_slows_when_the_window_runs_low() -> None:
    """Above the low-water mark creation is free; at or below it, one create per second."""
    clock = FakeClock()
    with Emulator(api_key="k", rate_limit_per_minute=RATE_LOW_WATER + 2) as emu, serve(emu) as url:
        api = CloudConvertClient(url, url + "/sync", "k", timeout_s=10, clock=clock)
        try:
            api.create_job(TASKS, path="a")
            assert api.create_delay() == 0.0  # plenty left
            for _ in range(3):  # reads count in their own group: they leave creation alone
                api.find_jobs_by_tag("x", path="a")
            assert api.create_delay() == 0.0
            api.create_job(TASKS, path="b")  # remaining is now at the low-water mark
            assert api.create_delay() == 1.0
            clock.advance(0.4)
            assert abs(api.create_delay() - 0.6) < 1e-9
            clock.advance(0.6)
            assert api.create_delay() == 0.0
        finally:
            api.close()


def test_http_answers_become_error_classes() -> None:
    """401 → account, 422 → file, 429 → rate limited with Retry-After, dropped → transient."""
    with Emulator(api_key="k", credits=37) as emu, serve(emu) as url:
        api = CloudConvertClient(url, url + "/sync", "k", timeout_s=10, clock=FakeClock())
        bad_key = CloudConvertClient(url, url + "/sync", "wrong", timeout_s=10, clock=FakeClock())
        try:
            with pytest.raises(AccountError) as refused:
                bad_key.me()
            assert refused.value.http_status == 401
            with pytest.raises(FileError) as invalid:
                api.create_job({"tasks": {"in": {"operation": "no/such"}}}, path="x")
            assert (invalid.value.http_status, invalid.value.code) == (422, "INVALID_DATA")
            emu.faults.rate_limit(times=1, retry_after_s=3)
            with pytest.raises(RateLimited) as limited:
                api.me()
            assert limited.value.retry_after_s == 3.0
            emu.faults.drop_connection("GET", "/v2/users/me", times=1)
            with pytest.raises(TransientError) as dropped:
                api.me()
            assert dropped.value.code == "NETWORK"
            assert api.me()["credits"] == 37  # and the next call gets through
        finally:
            api.close()
            bad_key.close()
