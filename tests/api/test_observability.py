"""Observability over the ASGI app: /metrics, the timing headers, the access log, CORS.

Metrics live in prometheus-client's process-wide registry, so each test reads the change
between two scrapes, on models of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from app.config import CorsConfig, ModelConfig, ProxyConfig
from app.logs import JsonFormatter
from tests.api.conftest import FakeUpstream, assert_error, chat_body, failing_on, model

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ORIGIN = "https://chat.example.com"


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return sample(after, name, **labels) - sample(before, name, **labels)


def access_fields(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == "app.access"]  # type: ignore[attr-defined]


def timing(response: httpx.Response) -> tuple[float, float | None]:
    """(overhead ms, upstream ms or None) from the response headers."""
    upstream = response.headers.get("x-upstream-latency-ms")
    return (
        float(response.headers["x-proxy-overhead-ms"]),
        None if upstream is None else float(upstream),
    )


# ---- /metrics -----------------------------------------------------------------------------------


async def test_metrics_count_requests_tokens_and_upstream_time(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client(ProxyConfig(models=[model("obs-count")]))
    before = await scrape(client)
    usages = []
    for _ in range(3):
        response = await client.post("/v1/chat/completions", json=chat_body(model="obs-count"))
        assert response.status_code == 200
        usages.append(response.json()["usage"])
    assert_error(
        await client.post("/v1/chat/completions", json=chat_body(model="nope")),
        404,
        code="model_not_found",
    )
    after = await scrape(client)

    ok = {"model": "obs-count", "key": "", "status": "200"}
    assert delta(before, after, "proxy_requests_total", **ok) == 3
    assert delta(before, after, "proxy_requests_total", model="", key="", status="404") == 1
    for kind in ("prompt", "completion"):
        assert delta(before, after, "proxy_tokens_total", model="obs-count", key="", kind=kind) == (
            sum(usage[f"{kind}_tokens"] for usage in usages)
        )
    deployment = {"model": "obs-count", "deployment": "obs-count[0]"}
    assert delta(before, after, "proxy_upstream_duration_seconds_count", **deployment) == 3
    for histogram in (
        "proxy_request_duration_seconds",
        "proxy_overhead_duration_seconds",
        "proxy_time_to_first_byte_seconds",
    ):
        assert delta(before, after, f"{histogram}_count", model="obs-count") == 3
        assert delta(before, after, f"{histogram}_bucket", model="obs-count", le="+Inf") == 3
    assert sample(after, "proxy_requests_in_flight", model="obs-count") == 0
    assert sample(after, "proxy_deployment_up", **deployment) == 1


async def test_probes_and_scrapes_are_not_counted(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    for path in ("/health", "/health/ready", "/metrics"):
        assert (await client.get(path)).status_code == 200
    after = await scrape(client)
    assert delta(before, after, "proxy_requests_total", model="", key="", status="200") == 0


async def test_retries_fallbacks_and_cooldowns(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    client = await make_client(
        ProxyConfig(
            models=[
                model(
                    "obs-primary",
                    fallbacks=["obs-backup"],
                    max_retries=1,
                    retry_backoff_seconds=0,
                    cooldown={"failures": 2, "seconds": 60},
                ),
                model("obs-backup"),
            ]
        )
    )
    fake_upstream.override = failing_on("/obs-primary", 503)
    before = await scrape(client)
    response = await client.post("/v1/chat/completions", json=chat_body(model="obs-primary"))
    assert response.status_code == 200, response.text
    after = await scrape(client)

    primary = {"model": "obs-primary", "deployment": "obs-primary[0]"}
    assert delta(before, after, "proxy_upstream_retries_total", **primary) == 1
    assert delta(before, after, "proxy_deployment_cooldowns_total", **primary) == 1
    assert sample(after, "proxy_deployment_up", **primary) == 0
    assert (
        delta(before, after, "proxy_fallbacks_total", model="obs-primary", fallback="obs-backup")
        == 1
    )
    assert delta(before, after, "proxy_upstream_duration_seconds_count", **primary) == 2
    assert (
        delta(
            before,
            after,
            "proxy_upstream_duration_seconds_count",
            model="obs-backup",
            deployment="obs-backup[0]",
        )
        == 1
    )
    ok = {"model": "obs-primary", "key": "", "status": "200"}  # counted as the model asked for
    assert delta(before, after, "proxy_requests_total", **ok) == 1


async def test_an_unexpected_error_counts_as_500(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(ProxyConfig(models=[model("obs-bug")]))

    def bug(_request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug in the proxy")

    fake_upstream.override = bug
    before = await scrape(client)
    caplog.set_level(logging.INFO, logger="app.access")
    response = await client.post("/v1/chat/completions", json=chat_body(model="obs-bug"))
    assert_error(response, 500, code="internal_error")
    after = await scrape(client)
    assert delta(before, after, "proxy_requests_total", model="obs-bug", key="", status="500") == 1
    [line] = access_fields(caplog)
    assert (line["status"], line["model"], line["deployment"]) == (500, "obs-bug", "obs-bug[0]")


async def test_metrics_can_require_a_key(make_client: Callable[..., Any]) -> None:
    keys = [{"key": "sk-obs-scraper", "name": "scraper"}]
    open_client = await make_client(ProxyConfig(api_keys=keys))
    assert (await open_client.get("/metrics")).status_code == 200  # open by default

    closed = await make_client(ProxyConfig(api_keys=keys, metrics={"require_key": True}))
    assert_error(await closed.get("/metrics"), 401, code="invalid_api_key")
    await scrape(closed, authorization="Bearer sk-obs-scraper")


# ---- headers ------------------------------------------------------------------------------------


async def test_json_answers_carry_overhead_and_upstream_latency(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.delay = 0.05
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    overhead, upstream = timing(response)
    assert upstream is not None and upstream >= 50.0
    assert 0.0 <= overhead < upstream


async def test_an_error_before_any_upstream_has_overhead_only(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(model="nope"))
    assert_error(response, 404)
    overhead, upstream = timing(response)
    assert overhead >= 0.0 and upstream is None


async def test_streams_carry_the_headers(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert response.text.endswith("data: [DONE]\n\n")
    overhead, upstream = timing(response)
    assert overhead >= 0.0 and upstream is not None and upstream >= 0.0

    # Keep-alives start the stream (after 0.05 s) while the upstream still works (0.2 s): the
    # headers count its time so far as upstream, not as the proxy's.
    fake_upstream.delay = 0.2
    response = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert response.text.startswith(": keep-alive")
    overhead, upstream = timing(response)
    assert upstream is not None and upstream >= 40.0
    assert 0.0 <= overhead < upstream


# ---- the access log -----------------------------------------------------------------------------


async def test_one_access_line_per_request_with_the_key_name_not_the_key(
    make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-obs-very-secret-key"
    client = await make_client(
        ProxyConfig(models=[model("obs-log")], api_keys=[{"key": secret, "name": "alice"}])
    )
    caplog.set_level(logging.INFO, logger="app.access")
    auth = {"authorization": f"Bearer {secret}", "x-request-id": "obs-req-1"}
    response = await client.post(
        "/v1/chat/completions", json=chat_body(model="obs-log"), headers=auth
    )
    assert response.status_code == 200
    assert_error(await client.get("/v1/models", headers={"authorization": "Bearer wrong"}), 401)

    ok, refused = access_fields(caplog)
    usage = response.json()["usage"]
    assert ok["request_id"] == "obs-req-1"
    assert (ok["method"], ok["path"], ok["status"]) == ("POST", "/v1/chat/completions", 200)
    assert (ok["key_name"], ok["model"], ok["deployment"]) == ("alice", "obs-log", "obs-log[0]")
    assert (ok["prompt_tokens"], ok["completion_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert ok["retries"] == 0 and ok["stream"] is False and ok["client_disconnected"] is False
    assert ok["latency_ms"] == pytest.approx(ok["upstream_ms"] + ok["overhead_ms"], abs=0.002)
    assert 0 < ok["ttfb_ms"] <= ok["latency_ms"]
    assert "prompt" not in ok and "completion" not in ok
    assert (refused["status"], refused["key_name"], refused["model"]) == (401, "", "")

    formatter = JsonFormatter()
    text = "\n".join(formatter.format(r) for r in caplog.records)
    assert secret not in text
    after = await scrape(client)
    assert sample(after, "proxy_requests_total", model="obs-log", key="alice", status="200") == 1


async def test_log_content_adds_prompt_and_completion(
    make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(
        ProxyConfig(
            models=[model("obs-open-book"), model("obs-private", log_content=False)],
            log_content=True,
        )
    )
    caplog.set_level(logging.INFO, logger="app.access")
    logged = await client.post("/v1/chat/completions", json=chat_body(model="obs-open-book"))
    private = await client.post("/v1/chat/completions", json=chat_body(model="obs-private"))
    assert logged.status_code == private.status_code == 200

    with_content, without = access_fields(caplog)
    assert with_content["prompt"] == ["The capital of France is P"]
    assert with_content["completion"] == [logged.json()["choices"][0]["message"]["content"]]
    assert "prompt" not in without and "completion" not in without
    private_text = private.json()["choices"][0]["message"]["content"]
    assert all(private_text not in r.getMessage() for r in caplog.records)


async def test_log_content_is_off_by_default(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.access")
    response = await client.post("/v1/completions", json={"model": "raw-model", "prompt": "Hi"})
    assert response.status_code == 200
    [line] = access_fields(caplog)
    assert "prompt" not in line and line["path"] == "/v1/completions"


# ---- CORS ---------------------------------------------------------------------------------------


def preflight(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-stainless-os",
    }


@pytest.fixture
async def cors_client(make_client: Callable[..., Any]) -> httpx.AsyncClient:
    config = ProxyConfig(
        models=[model("raw-model")], cors=CorsConfig(allow_origins=[ORIGIN], max_age=300)
    )
    result: httpx.AsyncClient = await make_client(config)
    return result


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/models"])
async def test_cors_preflight_from_an_allowed_origin(
    cors_client: httpx.AsyncClient, path: str
) -> None:
    response = await cors_client.options(path, headers=preflight(ORIGIN))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers and "x-stainless-os" in allowed_headers
    assert response.headers["access-control-max-age"] == "300"
    assert response.headers["x-request-id"]


async def test_cors_preflight_from_another_origin_is_refused(
    cors_client: httpx.AsyncClient,
) -> None:
    response = await cors_client.options(
        "/v1/chat/completions", headers=preflight("https://evil.example")
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_cors_answers_name_the_allowed_origin_and_expose_the_headers(
    cors_client: httpx.AsyncClient,
) -> None:
    for stream in (False, True):
        response = await cors_client.post(
            "/v1/chat/completions", json=chat_body(stream=stream), headers={"origin": ORIGIN}
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        exposed = response.headers["access-control-expose-headers"]
        for header in ("x-request-id", "x-proxy-overhead-ms", "x-upstream-latency-ms"):
            assert header in exposed
    other = await cors_client.post(
        "/v1/chat/completions", json=chat_body(), headers={"origin": "https://evil.example"}
    )
    assert other.status_code == 200  # the browser, not the server, withholds it
    assert "access-control-allow-origin" not in other.headers


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    response = await client.options("/v1/chat/completions", headers=preflight(ORIGIN))
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers
    answer = await client.post("/v1/chat/completions", json=chat_body(), headers={"origin": ORIGIN})
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"allow_origins": ["https://chat.example.com/"]}, "is not an origin"),
        ({"allow_origins": ["chat.example.com"]}, "is not an origin"),
        ({"allow_origins": []}, "at least 1 item"),
        ({"allow_origins": ["*"], "allow_credentials": True}, "needs the origins listed"),
    ],
)
def test_cors_config_refuses_what_would_not_work_or_be_unsafe(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        CorsConfig.model_validate(fields)


def test_model_config_takes_log_content() -> None:
    assert ModelConfig(name="m", api_base="http://x.test/", log_content=True).log_content is True
    assert ProxyConfig().log_content is False and ProxyConfig().cors is None
