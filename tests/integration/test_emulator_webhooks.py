"""Webhooks: signed like the real service, retried on 5xx, disabled by 410, droppable by a fault."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator

import httpx
import pytest
from emulator_helpers import Receiver, client, convert_png, poll, webhook_receiver

from ccwatch.emulator import Emulator, sign


@pytest.fixture
def api(emulator: Emulator) -> Iterator[httpx.Client]:
    with client(emulator) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


def verified(body: bytes, signature: str, secret: str = "test-secret") -> bool:
    good = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(good, signature)


def test_signature_matches_the_reference_vector() -> None:
    """The SDKs' test vector: HMAC-SHA256("cloudconvert", "90sffs0d8fs0f9sf0")."""
    assert sign(b"cloudconvert", "90sffs0d8fs0f9sf0") == (
        "5c4c0691bce8a1a2af738b7073fe0627e792734813358c5f88a658819dd0a6d2")


def test_job_webhook_url_gets_a_signed_job_finished(api: httpx.Client, receiver: Receiver) -> None:
    """Body ``{"event", "job"}`` with tasks and export URLs; signature over the raw bytes."""
    job = convert_png(api, webhook_url=receiver.url)
    [delivery] = poll(receiver.snapshot, what="webhook delivery")
    assert delivery.headers["Content-Type"] == "application/json"
    assert verified(delivery.body, delivery.headers["CloudConvert-Signature"])
    payload = json.loads(delivery.body)
    assert payload["event"] == "job.finished" and payload["job"]["id"] == job["id"]
    out = next(t for t in payload["job"]["tasks"] if t["name"] == "out")
    assert out["result"]["files"][0]["url"].startswith("http://127.0.0.1:")


def test_failed_job_sends_job_failed(emulator: Emulator, api: httpx.Client,
                                     receiver: Receiver) -> None:
    """A failing task makes the job's event ``job.failed``."""
    emulator.faults.task_error(glob="*", code="CONVERSION_FAILED", message="nope")
    convert_png(api, webhook_url=receiver.url)
    [delivery] = poll(receiver.snapshot, what="webhook delivery")
    assert json.loads(delivery.body)["event"] == "job.failed"


def test_registered_webhooks_crud_and_events(emulator: Emulator, api: httpx.Client,
                                             receiver: Receiver) -> None:
    """POST /v2/webhooks, list, job.created + job.finished deliveries, DELETE stops them."""
    created = api.post("/v2/webhooks", json={"url": receiver.url,
                                             "events": ["job.created", "job.finished"]})
    assert created.status_code == 201
    hook = created.json()["data"]
    assert hook["url"] == receiver.url and hook["disabled"] is False and hook["signing_secret"]
    listed = api.get("/v2/users/me/webhooks").json()
    assert [h["id"] for h in listed["data"]] == [hook["id"]] and "meta" in listed
    convert_png(api)
    events = poll(lambda: [json.loads(r.body)["event"] for r in receiver.snapshot()]
                  if len(receiver.snapshot()) >= 2 else None, what="two deliveries")
    assert sorted(events) == ["job.created", "job.finished"]
    assert api.delete(f"/v2/webhooks/{hook['id']}").status_code == 204
    assert api.get("/v2/users/me/webhooks").json()["data"] == []
    with webhook_receiver() as other:
        convert_png(api, webhook_url=other.url)
        poll(other.snapshot, what="the job's own delivery")
    assert len(receiver.snapshot()) == 2
    bad = api.post("/v2/webhooks", json={"url": "x", "events": ["job.exploded"]})
    assert bad.status_code == 422 and {"url", "events"} <= set(bad.json()["errors"])


def test_5xx_is_retried_three_times_with_the_same_body(api: httpx.Client,
                                                      receiver: Receiver) -> None:
    """Network errors and 5xx are retried up to 3 times; every attempt is signed the same."""
    receiver.statuses = [500, 502, 503]
    convert_png(api, webhook_url=receiver.url)
    attempts = poll(lambda: receiver.snapshot() if len(receiver.snapshot()) == 4 else None,
                    what="four attempts")
    assert len({a.body for a in attempts}) == 1
    assert all(verified(a.body, a.headers["CloudConvert-Signature"]) for a in attempts)


def test_410_disables_a_registered_webhook(api: httpx.Client, receiver: Receiver) -> None:
    """Gone means gone: the webhook is marked disabled and gets no more deliveries."""
    receiver.statuses = [410]
    api.post("/v2/webhooks", json={"url": receiver.url, "events": ["job.finished"]})
    convert_png(api)
    poll(lambda: api.get("/v2/users/me/webhooks").json()["data"][0]["disabled"],
         what="the webhook disabled")
    convert_png(api)
    assert len(receiver.snapshot()) == 1


def test_drop_webhooks_loses_n_deliveries(emulator: Emulator, api: httpx.Client,
                                          receiver: Receiver) -> None:
    """A dropped delivery is never sent (nor retried); the next one arrives."""
    emulator.faults.drop_webhooks(times=1)
    first = convert_png(api, webhook_url=receiver.url)
    second = convert_png(api, webhook_url=receiver.url)
    [delivery] = poll(receiver.snapshot, what="the second delivery")
    assert json.loads(delivery.body)["job"]["id"] == second["id"]
    dropped = [d for d in emulator.webhook_deliveries() if d.status == -1]
    assert [d.job_id for d in dropped] == [first["id"]]
