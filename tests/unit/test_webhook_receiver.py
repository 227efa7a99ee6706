"""The webhook receiver as a WSGI app: signature check, refusals, and what reaches the pipeline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger
from werkzeug.test import Client

from ccwatch import webhook
from ccwatch.emulator import sign

SECRET = "s3cret-for-tests"
JOB = {"id": "job-1", "status": "finished", "tasks": []}


def event(job: dict[str, Any] = JOB, name: str = "job.finished") -> bytes:
    return json.dumps({"event": name, "job": job}).encode()


class Pipeline:
    """Stands in for ``Pipeline.job_pushed``: records jobs, answers a fixed verdict."""

    def __init__(self, verdict: str = "accepted") -> None:
        self.verdict = verdict
        self.jobs: list[dict[str, Any]] = []

    def job_pushed(self, job: dict[str, Any]) -> str:
        self.jobs.append(job)
        return self.verdict


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{level} {message}")
    yield lines
    logger.remove(sink)


def client(pipeline: Pipeline) -> Client:
    return Client(webhook.Receiver(path="/hook", secret=SECRET, on_job=pipeline.job_pushed))


def post(c: Client, body: bytes, signature: str | None, path: str = "/hook") -> tuple[int, Any]:
    headers = {"CloudConvert-Signature": signature} if signature is not None else {}
    response = c.post(path, data=body, headers=headers, content_type="application/json")
    return response.status_code, response.get_json()


def test_reference_vector_verifies() -> None:
    """The SDKs' test vector (cloudconvert-python testWebhookSignature.py)."""
    assert webhook.verify(b"cloudconvert",
                          "5c4c0691bce8a1a2af738b7073fe0627e792734813358c5f88a658819dd0a6d2",
                          "90sffs0d8fs0f9sf0")
    assert not webhook.verify(b"cloudconvert!",
                              "5c4c0691bce8a1a2af738b7073fe0627e792734813358c5f88a658819dd0a6d2",
                              "90sffs0d8fs0f9sf0")


def test_emulator_signature_verifies_with_receiver() -> None:
    body = event()
    assert webhook.signature(body, SECRET) == sign(body, SECRET)
    assert webhook.verify(body, sign(body, SECRET), SECRET)
    assert webhook.verify(body, " " + sign(body, SECRET).upper() + " ", SECRET)


@pytest.mark.parametrize("header", [None, "", "abc", "é" * 64, sign(b"other", SECRET)])
def test_bad_signatures_are_false_never_errors(header: str | None) -> None:
    assert webhook.verify(event(), header, SECRET) is False


def test_empty_secret_verifies_nothing() -> None:
    body = event()
    assert not webhook.verify(body, sign(body, ""), "")
    with pytest.raises(ValueError, match="secret"):
        webhook.Receiver(path="/hook", secret="", on_job=Pipeline().job_pushed)


def test_signed_delivery_reaches_the_pipeline() -> None:
    pipeline = Pipeline()
    body = event()
    assert post(client(pipeline), body, sign(body, SECRET)) == (200, {"ok": True})
    assert pipeline.jobs == [JOB]


def test_failed_event_is_accepted_too() -> None:
    pipeline = Pipeline()
    body = event({**JOB, "status": "error"}, "job.failed")
    assert post(client(pipeline), body, sign(body, SECRET))[0] == 200
    assert pipeline.jobs[0]["status"] == "error"


@pytest.mark.parametrize(("body", "signed_with", "status"), [
    (event(), None, 401),                                      # unsigned
    (event(), "wrong", 401),                                   # forged
    (b"{nope", SECRET, 400),                                   # garbage JSON
    (b"[1, 2]", SECRET, 400),                                  # JSON, not an event
    (event(name="job.created"), SECRET, 400),                  # an event we never asked for
    (event({"status": "finished"}), SECRET, 400),              # no job id
    (b'{"pad": "' + b"x" * (2 << 20) + b'"}', SECRET, 413),    # 2 MiB
])
def test_refusals_never_reach_the_pipeline(body: bytes, signed_with: str | None, status: int,
                                           log_lines: list[str]) -> None:
    pipeline = Pipeline()
    signature = sign(body, signed_with) if signed_with is not None else None
    code, answer = post(client(pipeline), body, signature)
    assert code == status and "error" in answer
    assert pipeline.jobs == []
    assert any(f"webhook refused ({status})" in line for line in log_lines)


def test_wrong_path_and_method() -> None:
    pipeline = Pipeline()
    c = client(pipeline)
    body = event()
    assert post(c, body, sign(body, SECRET), path="/other")[0] == 404
    assert c.get("/hook").status_code == 405
    assert c.put("/hook", data=body, headers={"CloudConvert-Signature": sign(body, SECRET)}
                 ).status_code == 405
    assert post(c, body, sign(body, SECRET), path="/hook/")[0] == 200  # trailing slash is fine
    assert len(pipeline.jobs) == 1


@pytest.mark.parametrize(("verdict", "status"), [("unknown", 404), ("done", 409)])
def test_pipeline_verdicts_map_to_statuses(verdict: str, status: int) -> None:
    body = event()
    assert post(client(Pipeline(verdict)), body, sign(body, SECRET))[0] == status


def test_a_pipeline_error_answers_500_so_the_sender_retries(log_lines: list[str]) -> None:
    def broken(job: dict[str, Any]) -> str:
        raise RuntimeError("ledger is locked")

    c = Client(webhook.Receiver(path="/hook", secret=SECRET, on_job=broken))
    body = event()
    assert post(c, body, sign(body, SECRET))[0] == 500
    assert any("ledger is locked" in line for line in log_lines)


def test_repr_and_logs_hide_the_secret(log_lines: list[str]) -> None:
    receiver = webhook.Receiver(path="/hook", secret=SECRET, on_job=Pipeline().job_pushed)
    assert repr(receiver) == "Receiver(path='/hook', secret=[secure])"
    c = Client(receiver)
    body = event()
    post(c, body, SECRET)  # a sender that puts the secret itself in the header
    post(c, body, sign(body, SECRET))
    assert log_lines and not [line for line in log_lines if SECRET in line]


def test_each_refusal_is_counted_for_metrics() -> None:
    """``on_refuse`` (ccwatch_webhook_refusals_total) counts refusals, never accepted deliveries."""
    pipeline = Pipeline()
    refused: list[None] = []
    c = Client(webhook.Receiver(path="/hook", secret=SECRET, on_job=pipeline.job_pushed,
                                on_refuse=lambda: refused.append(None)))
    body = event()
    assert post(c, body, sign(body, SECRET))[0] == 200
    assert refused == []
    assert post(c, body, "forged")[0] == 401
    assert post(c, body, None)[0] == 401
    assert len(refused) == 2
