"""app.telemetry: a request record becomes metrics (after a flush), timing headers and one line.

Metric values are read from prometheus-client's default registry, where app.metrics declares
them; every test uses its own model names, so tests do not see each other's counts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest

from app import telemetry
from app.config import CooldownConfig, ModelConfig
from app.metrics import LATENCY_BUCKETS
from app.routing import ModelRoute, build_route
from app.telemetry import LocalHistogram, RequestRecord, Telemetry


class Clock:
    """perf_counter() for the telemetry module, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(telemetry, "perf_counter", fake)
    return fake


class AccessLines:
    """The access-log records of the test's call phase."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def fields(self) -> list[dict[str, Any]]:
        return [r.fields for r in self._caplog.records if r.name == "app.access"]  # type: ignore[attr-defined]

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self._caplog.records if r.name == "app.access"]


@pytest.fixture
def access_lines(caplog: pytest.LogCaptureFixture) -> Iterator[AccessLines]:
    caplog.set_level(logging.INFO, logger="app.access")
    yield AccessLines(caplog)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def route_for(name: str, **fields: Any) -> ModelRoute:
    return build_route(
        ModelConfig(name=name, api_base="http://upstream.test/x", **fields), source="t", index=0
    )


def start(telemetry_: Telemetry, path: str = "/v1/chat/completions") -> RequestRecord:
    record = telemetry_.start({"type": "http", "method": "POST", "path": path}, "req-1")
    assert record is not None
    return record


def test_local_histogram_flushes_what_observe_would_have_recorded() -> None:
    samples = [0.0, 0.004, 0.005, 0.0051, 0.3, 0.3, 299.0, 1000.0]
    direct_registry = CollectorRegistry()
    direct = Histogram("h", "h", ["m"], buckets=LATENCY_BUCKETS, registry=direct_registry)
    bulk_registry = CollectorRegistry()
    bulk = Histogram("h", "h", ["m"], buckets=LATENCY_BUCKETS, registry=bulk_registry)
    local = LocalHistogram(LATENCY_BUCKETS)
    for sample in samples:
        direct.labels("x").observe(sample)
        local.observe(sample)
    assert local.pending
    local.flush_into(bulk.labels("x"))
    assert not local.pending
    local.flush_into(bulk.labels("x"))  # nothing new: adds nothing

    def exposition(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if "_created" not in line]

    assert exposition(bulk_registry) == exposition(direct_registry)


def test_a_request_is_counted_at_the_flush(clock: Clock) -> None:
    tele = Telemetry()
    route = route_for("tele-count")
    deployment = route.deployments.members[0]
    record = start(tele)
    record.bind(route, stream=False)
    clock.advance(1)
    record.begin_attempt(deployment)
    clock.advance(40)
    record.end_attempt(deployment)
    record.count_tokens({"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8})
    clock.advance(1)
    record.response_started(200)
    clock.advance(0.5)
    tele.finish(record, "alice")

    requests = {"model": "tele-count", "key": "alice", "status": "200"}
    assert value("proxy_requests_total", **requests) == 0  # not yet flushed
    tele.flush()
    assert value("proxy_requests_total", **requests) == 1
    assert value("proxy_tokens_total", model="tele-count", key="alice", kind="prompt") == 3
    assert value("proxy_tokens_total", model="tele-count", key="alice", kind="completion") == 5
    assert value("proxy_request_duration_seconds_count", model="tele-count") == 1
    assert value("proxy_request_duration_seconds_sum", model="tele-count") == pytest.approx(0.0425)
    assert value("proxy_overhead_duration_seconds_sum", model="tele-count") == pytest.approx(0.0025)
    assert value("proxy_time_to_first_byte_seconds_sum", model="tele-count") == pytest.approx(0.042)
    upstream = {"model": "tele-count", "deployment": "tele-count[0]"}
    assert value("proxy_upstream_duration_seconds_count", **upstream) == 1
    assert value("proxy_upstream_duration_seconds_sum", **upstream) == pytest.approx(0.04)
    bucket = {**upstream, "le": "0.025"}
    assert value("proxy_upstream_duration_seconds_bucket", **bucket) == 0
    assert value("proxy_upstream_duration_seconds_bucket", **{**bucket, "le": "0.05"}) == 1
    assert value("proxy_requests_in_flight", model="tele-count") == 0

    tele.flush()  # nothing new: the counts stay
    assert value("proxy_requests_total", **requests) == 1


def test_in_flight_follows_bind_and_finish() -> None:
    tele = Telemetry()
    records = [start(tele), start(tele)]
    for record in records:
        record.bind(route_for("tele-busy"), stream=True)
    tele.flush()
    assert value("proxy_requests_in_flight", model="tele-busy") == 2
    records[0].response_started(200)
    tele.finish(records[0], "")
    tele.flush()
    assert value("proxy_requests_in_flight", model="tele-busy") == 1


def test_in_flight_sums_every_model() -> None:
    tele = Telemetry()
    for model in ("tele-sum-a", "tele-sum-b", "tele-sum-b"):
        start(tele).bind(route_for(model), stream=False)
    start(tele)  # no model yet: not counted
    assert tele.in_flight() == 3


def test_a_request_without_a_model_counts_under_the_empty_model() -> None:
    tele = Telemetry()
    before = value("proxy_requests_total", model="", key="", status="401")
    record = start(tele, "/v1/models")
    record.response_started(401)
    tele.finish(record, "")
    tele.flush()
    assert value("proxy_requests_total", model="", key="", status="401") == before + 1


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/metrics"])
def test_probes_and_scrapes_get_no_record(path: str) -> None:
    assert Telemetry().start({"type": "http", "method": "GET", "path": path}, "r") is None


def test_timing_headers_count_an_attempt_in_progress_as_upstream(clock: Clock) -> None:
    record = start(Telemetry())
    route = route_for("tele-headers")
    deployment = route.deployments.members[0]
    record.bind(route, stream=True)
    clock.advance(2)
    record.begin_attempt(deployment)
    clock.advance(10)  # a stream's keep-alive started while the upstream works
    assert dict(record.response_started(200)) == {
        b"x-proxy-overhead-ms": b"2.000",
        b"x-upstream-latency-ms": b"10.000",
    }


def test_timing_headers_without_an_upstream_have_overhead_only(clock: Clock) -> None:
    record = start(Telemetry(), "/v1/models")
    clock.advance(0.25)
    assert record.response_started(200) == [(b"x-proxy-overhead-ms", b"0.250")]


def test_the_access_line(clock: Clock, access_lines: AccessLines) -> None:
    tele = Telemetry()
    route = route_for("tele-line")
    deployment = route.deployments.members[0]
    record = start(tele)
    record.bind(route, stream=False)
    for _ in range(2):
        record.begin_attempt(deployment)
        clock.advance(20)
        record.end_attempt(deployment)
        clock.advance(1)
    record.retries = 1
    record.count_tokens({"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16})
    record.response_started(200)
    clock.advance(1)
    tele.finish(record, "team-a")

    assert access_lines.messages() == ["POST /v1/chat/completions 200"]
    assert access_lines.fields() == [
        {
            "request_id": "req-1",
            "method": "POST",
            "path": "/v1/chat/completions",
            "status": 200,
            "key_name": "team-a",
            "model": "tele-line",
            "deployment": "tele-line[0]",
            "fallback": "",
            "stream": False,
            "latency_ms": 43.0,
            "upstream_ms": 40.0,
            "overhead_ms": 3.0,
            "ttfb_ms": 42.0,
            "prompt_tokens": 7,
            "completion_tokens": 9,
            "retries": 1,
            "client_disconnected": False,
        }
    ]


@pytest.mark.parametrize(
    ("top_level", "per_model", "logged"),
    [(False, None, False), (True, None, True), (True, False, False), (False, True, True)],
)
def test_log_content_per_model_over_the_top_level(
    top_level: bool, per_model: bool | None, logged: bool
) -> None:
    record = start(Telemetry(log_content=top_level))
    record.bind(
        route_for(f"tele-content-{top_level}-{per_model}", log_content=per_model), stream=False
    )
    assert record.log_content is logged


def test_content_is_in_the_line_only_when_set(access_lines: AccessLines) -> None:
    tele = Telemetry(log_content=True)
    record = start(tele)
    record.bind(route_for("tele-content"), stream=False)
    record.prompt, record.completion = ["Say hi"], ["hi"]
    record.response_started(200)
    tele.finish(record, "")
    plain = start(tele)
    plain.response_started(404)
    tele.finish(plain, "")
    with_content, without = access_lines.fields()
    assert (with_content["prompt"], with_content["completion"]) == (["Say hi"], ["hi"])
    assert "prompt" not in without and "completion" not in without


def test_no_line_is_built_when_info_is_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.access")

    def fail(*_args: object) -> None:
        raise AssertionError("the access line was built")

    monkeypatch.setattr(telemetry, "log_access", fail)
    tele = Telemetry()
    record = start(tele)
    record.response_started(200)
    tele.finish(record, "")


def test_client_disconnects_are_counted(access_lines: AccessLines) -> None:
    tele = Telemetry()
    gone_mid_stream = start(tele)
    gone_mid_stream.bind(route_for("tele-gone"), stream=True)
    gone_mid_stream.response_started(200)
    gone_mid_stream.client_left()  # after the headers said 200
    tele.finish(gone_mid_stream, "")
    gone_waiting = start(tele)
    gone_waiting.bind(route_for("tele-gone"), stream=False)
    gone_waiting.response_started(499)
    tele.finish(gone_waiting, "")
    tele.flush()
    assert value("proxy_client_disconnects_total", model="tele-gone") == 2
    requests = {"model": "tele-gone", "key": "", "status": "499"}
    assert value("proxy_requests_total", **requests) == 2
    assert value("proxy_requests_total", **{**requests, "status": "200"}) == 0
    lines = access_lines.fields()
    assert [line["client_disconnected"] for line in lines] == [True, True]
    assert [line["status"] for line in lines] == [499, 499]


def test_cooldown_and_recovery_are_metrics() -> None:
    route = route_for("tele-cool", cooldown=CooldownConfig(failures=2, seconds=5))
    deployment = route.deployments.members[0]
    labels = {"model": "tele-cool", "deployment": "tele-cool[0]"}
    assert value("proxy_deployment_up", **labels) == 1
    deployment.failed(now=0.0, retry_after=None, epoch=deployment.epoch)
    assert value("proxy_deployment_cooldowns_total", **labels) == 0
    deployment.failed(now=0.0, retry_after=None, epoch=deployment.epoch)
    assert value("proxy_deployment_cooldowns_total", **labels) == 1
    assert value("proxy_deployment_up", **labels) == 0
    deployment.succeeded(deployment.epoch)  # the probe after the cooldown
    assert value("proxy_deployment_up", **labels) == 1
