"""Prometheus metrics: counters the stages bump as things happen, gauges read at scrape time.

Each runtime has its own registry (no process-global state), so tests and ``run --once`` can hold
several. Series are prefixed ``ccwatch_``; docs/operations.md lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ccwatch.errors import (
    AccountError,
    CcwatchError,
    FileError,
    FileVanished,
    RateLimited,
    TransientError,
)


def error_class(exc: BaseException) -> str:
    """The design's error class of an exception, as a label value."""
    if isinstance(exc, RateLimited):
        return "rate_limited"
    if isinstance(exc, AccountError):
        return "account"
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, FileError):
        return "file"
    return "other" if isinstance(exc, CcwatchError) else "internal"


class Metrics:
    """What happened since start (counters); live numbers come from a :class:`LiveCollector`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs_created = Counter("ccwatch_jobs_created", "Jobs created on CloudConvert.",
                                    registry=r)
        self.files_finished = Counter("ccwatch_files_finished",
                                      "Files finished since start, by folder and outcome.",
                                      ["folder", "outcome"], registry=r)
        self.jobs_deleted = Counter("ccwatch_jobs_deleted",
                                    "Finished jobs deleted on CloudConvert (delete_jobs).", registry=r)
        self.uploaded_bytes = Counter("ccwatch_uploaded_bytes", "Bytes uploaded to CloudConvert.",
                                      registry=r)
        self.delivered_bytes = Counter("ccwatch_delivered_bytes",
                                       "Bytes of output files written to destinations.", registry=r)
        self.api_errors = Counter("ccwatch_api_errors",
                                  "Errors met while working on files, by error class.",
                                  ["class"], registry=r)
        self.webhook_refusals = Counter("ccwatch_webhook_refusals",
                                        "Webhook deliveries refused (unsigned, forged, unknown…).",
                                        registry=r)
        self.pauses = Counter("ccwatch_pauses", "Times submissions were paused for the account.",
                              registry=r)
        self.hook_failures = Counter("ccwatch_hook_failures",
                                     "on_done/on_failed commands that failed, timed out or could "
                                     "not start.", registry=r)

    def error(self, exc: BaseException) -> None:
        if not isinstance(exc, FileVanished):  # a file replaced under us is no error
            self.api_errors.labels(error_class(exc)).inc()

    def finished(self, folder: str, outcome: str) -> None:
        self.files_finished.labels(folder, outcome).inc()

    def add_live(self, collector: Collector) -> None:
        self.registry.register(collector)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class LiveCollector(Collector):
    """Gauges read when Prometheus scrapes: each source is a callable returning current numbers."""

    def __init__(self, *, files: Callable[[], dict[str, dict[str, int]]],
                 quarantined: Callable[[], dict[str, int]],
                 in_flight: Callable[[], int], paused: Callable[[], bool],
                 jobs_to_delete: Callable[[], int]) -> None:
        self._files = files
        self._quarantined = quarantined
        self._in_flight = in_flight
        self._paused = paused
        self._to_delete = jobs_to_delete

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # the series depend on the folders: describe them only when collected

    def collect(self) -> Iterator[GaugeMetricFamily]:
        files = GaugeMetricFamily("ccwatch_files", "File versions in the ledger, by folder and state.",
                                  labels=["folder", "state"])
        for folder, counts in self._files().items():
            for state, n in sorted(counts.items()):
                files.add_metric([folder, state], n)
        yield files
        held = GaugeMetricFamily("ccwatch_quarantined", "Files in quarantine now, by folder.",
                                 labels=["folder"])
        for folder, n in sorted(self._quarantined().items()):
            held.add_metric([folder], n)
        yield held
        yield GaugeMetricFamily("ccwatch_in_flight", "Files between settled and done.",
                                value=self._in_flight())
        yield GaugeMetricFamily("ccwatch_jobs_to_delete",
                                "Finished jobs still to delete on CloudConvert (retried).",
                                value=self._to_delete())
        yield GaugeMetricFamily("ccwatch_paused", "1 while submissions are paused for the account.",
                                value=1 if self._paused() else 0)
