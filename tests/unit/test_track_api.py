"""Pure decisions: HTTP answers → error classes, job → root failure / outputs, poll backoff."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from ccwatch.client.api import error_for
from ccwatch.errors import AccountError, FileError, RateLimited, TransientError
from ccwatch.pipeline.backoff import poll_delay, retry_delay
from ccwatch.stages.track import outputs_of, root_failure


def _resp(status: int, body: object = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """error_for's arguments for an answer with a JSON body."""
    return {"status": status, "headers": headers or {}, "content": json.dumps(body).encode()}


@pytest.mark.parametrize(("status", "cls"), [
    (500, TransientError), (502, TransientError), (503, TransientError), (429, RateLimited),
    (401, AccountError), (402, AccountError), (403, AccountError),
    (400, FileError), (422, FileError), (404, FileError),
])
def test_error_classes(status: int, cls: type[Exception]) -> None:
    """Each status maps to the class the pipeline branches on."""
    err = error_for(**_resp(status, {"message": "m", "code": "C"}))
    assert type(err) is cls
    assert err.http_status == status and err.code == "C"


def test_retry_after_and_validation_details() -> None:
    """429 carries Retry-After; 422 messages include the field errors."""
    err = error_for(**_resp(429, {"message": "Too Many Requests", "code": "TOO_MANY_REQUESTS"},
                          {"Retry-After": "7"}))
    assert isinstance(err, RateLimited) and err.retry_after_s == 7.0
    err422 = error_for(**_resp(422, {"message": "The given data was invalid.", "code": "INVALID_DATA",
                                   "errors": {"tasks.convert": ["bad format"]}}))
    assert "tasks.convert: bad format" in err422.message
    html = error_for(503, {}, b"<html>down</html>", "Service Unavailable")
    assert isinstance(html, TransientError) and html.code is None


def test_root_failure_skips_input_task_failed() -> None:
    """The reported task is the one that broke, not its dependants."""
    job = {"id": "j", "status": "error", "tasks": [
        {"name": "out", "status": "error", "code": "INPUT_TASK_FAILED", "message": "Input task has failed"},
        {"name": "convert", "status": "error", "code": "CONVERSION_FAILED", "message": "bad pixels"},
        {"name": "in", "status": "finished"},
    ]}
    err = root_failure(job)
    assert (err.task, err.code, err.message, err.job_id) == (
        "convert", "CONVERSION_FAILED", "bad pixels", "j")


def test_outputs_in_template_order_and_require_urls() -> None:
    """Export files are listed per export task; a file without a URL is a file error."""
    job = {"id": "j", "tasks": [
        {"name": "b", "result": {"files": [{"filename": "2.pdf", "url": "u2", "size": 3}]}},
        {"name": "a", "result": {"files": [{"filename": "1.pdf", "url": "u1"}]}},
    ]}
    outs = outputs_of(job, ("a", "b"))
    assert [(o.filename, o.url, o.size) for o in outs] == [("1.pdf", "u1", None), ("2.pdf", "u2", 3)]
    with pytest.raises(FileError):
        outputs_of({"tasks": [{"name": "a", "result": {"files": [{"filename": "x"}]}}]}, ("a",))


def test_poll_delay_backs_off_to_the_cap() -> None:
    """first_s, growing by half, capped at max_s, jittered by at most 10 %."""
    rng = random.Random(1)
    delays = [poll_delay(n, 2.0, 30.0, rng=rng) for n in range(12)]
    assert 1.8 <= delays[0] <= 2.2
    assert 2.7 <= delays[1] <= 3.3
    assert 4.05 <= delays[2] <= 4.95
    assert all(27.0 <= d <= 33.0 for d in delays[7:])


def test_retry_delay_doubles_to_five_minutes_unless_the_server_says() -> None:
    """1 s doubling, capped at 300 s, ±20 %; a Retry-After is honoured as given (+ <= 10 %)."""
    rng = random.Random(2)
    assert 0.8 <= retry_delay(0, None, rng=rng) <= 1.2
    assert 6.4 <= retry_delay(3, None, rng=rng) <= 9.6
    assert 240 <= retry_delay(30, None, rng=rng) <= 360
    assert 7.0 <= retry_delay(30, 7.0, rng=rng) <= 7.7
