"""Prometheus metrics of one app (its own registry, so that several apps in one process do not clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Requests, turns and their latency, learning jobs and the model version that serves."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ilearn_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.turns = Counter("ilearn_turns", "Turns answered, by reply kind and API", ["kind", "api"],
                             registry=self.registry)
        self.turn_seconds = Histogram("ilearn_turn_seconds", "Seconds to answer a turn", ["api"],
                                      buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.turns_in_flight = Gauge("ilearn_turns_in_flight", "Turns being answered now", registry=self.registry)
        self.feedback = Counter("ilearn_explicit_feedback", "Explicit feedback given, by rating", ["rating"],
                                registry=self.registry)
        self.jobs = Counter("ilearn_learning_jobs", "Learning jobs finished, by outcome", ["outcome"],
                            registry=self.registry)
        self.jobs_running = Gauge("ilearn_learning_jobs_running", "Learning jobs queued or running",
                                  registry=self.registry)
        self.model_version = Gauge("ilearn_model_version_info", "1 for the model version that serves",
                                   ["version"], registry=self.registry)
        self._version: str | None = None

    def serving(self, version: str) -> None:
        """Record which version serves (the gauge of the previous one is removed)."""
        if version == self._version:
            return
        if self._version is not None:
            self.model_version.remove(self._version)
        self.model_version.labels(version).set(1)
        self._version = version

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["Metrics"]
