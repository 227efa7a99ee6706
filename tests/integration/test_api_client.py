"""The API client against the emulator: rate-limit awareness and error mapping at the boundary."""

from __future__ import annotations

import pytest

from ccwatch.client.api import CloudConvertClient
from ccwatch.clock import FakeClock
from ccwatch.emulator import Emulator, serve
from ccwatch.errors import AccountError, FileError, RateLimited, TransientError
from ccwatch.pipeline.pacing import CreatePacer

TASKS = {"tasks": {"in": {"operation": "import/upload"}}}


def test_job_creation_is_paced_from_the_windows_answers() -> None:
    """Creates run free while the window has room; once it is used up one create learns the
    window's end from its 429, and the pacer holds creation until then."""
    clock = FakeClock()
    pacer = CreatePacer()
    with Emulator(api_key="k", rate_limit_per_minute=3) as emu, serve(emu) as url:
        api = CloudConvertClient(url, url + "/sync", "k", timeout_s=10, clock=clock, pacing=pacer)
        try:
            for name in "abc":
                assert pacer.admit(clock.monotonic())
                api.create_job(TASKS, path=name)
            assert pacer.delay(clock.monotonic()) == 0.0  # nothing left, the end unknown: one probe
            assert pacer.admit(clock.monotonic())
            assert not pacer.admit(clock.monotonic())  # only one
            with pytest.raises(RateLimited) as refused:
                api.create_job(TASKS, path="d")
            retry_after = refused.value.retry_after_s
            assert retry_after is not None and 0 < retry_after <= 60
            assert abs(pacer.delay(clock.monotonic()) - retry_after) < 0.1
            assert not pacer.admit(clock.monotonic())
            clock.advance(retry_after + 0.1)
            assert pacer.admit(clock.monotonic())
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
            # A GET on a kept connection the server drops is asked once more on a new one (it
            # may have been an idle timeout); dropped again, it is a transient network error.
            emu.faults.drop_connection("GET", "/v2/users/me", times=2)
            with pytest.raises(TransientError) as dropped:
                api.me()
            assert dropped.value.code == "NETWORK"
            emu.faults.clear()
            assert api.me()["credits"] == 37  # and the next call gets through
        finally:
            api.close()
            bad_key.close()
