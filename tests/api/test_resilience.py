"""Fallbacks, cooldown and readiness over the ASGI app: what each model is sent, and what the
client sees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from app.config import ProxyConfig
from tests.api.conftest import FakeUpstream, assert_error, chat_body, failing_on, mock_answer, model
from tests.api.test_observability import delta, sample, scrape


def config_with_fallback(**primary: Any) -> ProxyConfig:
    return ProxyConfig(
        models=[
            model("primary", fallbacks=["llama", "raw-backup"], **primary),
            model("llama", prompt_template="llama2", defaults={"max_tokens": 7}),
            model("raw-backup"),
        ]
    )


async def test_a_fallback_gets_the_request_in_its_own_template_and_defaults(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    client = await make_client(config_with_fallback())
    fake_upstream.override = failing_on("/primary", 503)

    response = await client.post("/v1/chat/completions", json=chat_body(model="primary"))

    assert response.status_code == 200, response.text
    assert response.json()["model"] == "primary"  # the name the client asked for
    paths = [request.url.path for request in fake_upstream.requests]
    assert paths == ["/primary", "/llama"]
    sent = fake_upstream.bodies[1]
    assert sent["model"] == "llama"
    assert sent["params"]["prompt"] == ["<s>[INST] The capital of France is P [/INST]"]
    assert sent["params"]["max_tokens"] == 7


async def test_fallbacks_are_tried_in_order_until_one_answers(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    client = await make_client(config_with_fallback())

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path in ("/primary", "/llama"):
            return httpx.Response(502, text="bad gateway")
        return mock_answer(request)

    fake_upstream.override = handler

    response = await client.post("/v1/completions", json={"model": "primary", "prompt": "Hi"})

    assert response.status_code == 200, response.text
    assert [r.url.path for r in fake_upstream.requests] == ["/primary", "/llama", "/raw-backup"]


async def test_when_every_fallback_fails_the_client_hears_the_primary_error(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    client = await make_client(config_with_fallback())
    fake_upstream.override = lambda _request: httpx.Response(503, text="all down")

    response = await client.post("/v1/chat/completions", json=chat_body(model="primary"))

    error = assert_error(response, 503, code="upstream_unavailable")
    assert error["message"] == "upstream answered HTTP 503: all down"
    assert [r.url.path for r in fake_upstream.requests] == ["/primary", "/llama", "/raw-backup"]


async def test_a_request_the_upstream_refuses_does_not_fall_back(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    client = await make_client(config_with_fallback())
    fake_upstream.override = failing_on("/primary", 400)

    response = await client.post("/v1/chat/completions", json=chat_body(model="primary"))

    assert_error(response, 502, code="bad_upstream_response")
    assert [request.url.path for request in fake_upstream.requests] == ["/primary"]


async def test_ready_reports_every_deployment(
    make_client: Callable[..., Any],
) -> None:
    config = ProxyConfig(
        models=[
            model("single"),
            {
                "name": "pair",
                "deployments": [
                    {"api_base": "http://a.test/x", "max_concurrency": 4},
                    {"api_base": "http://b.test/x", "weight": 2},
                ],
            },
        ]
    )
    client = await make_client(config)

    response = await client.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert [m["model"] for m in body["models"]] == ["single", "pair"]
    pair = body["models"][1]
    assert pair["ready"] is True and pair["waiting"] == 0
    assert pair["deployments"][0] == {
        "deployment": "pair[0]",
        "api_base": "http://a.test/x",
        "state": "healthy",
        "in_flight": 0,
        "max_concurrency": 4,
        "requests": 0,
        "failures": 0,
        "cooldowns": 0,
    }


def failing_first(times: int, status: int, **headers: str) -> Callable[[httpx.Request], Any]:
    """Answer `status` (with `headers`) to the first `times` requests, then as the mock does."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= times:
            return httpx.Response(status, headers=headers, json={"message": "hiccup", "data": []})
        return mock_answer(request)

    return handler


async def test_a_lone_deployment_is_not_refused_while_it_cools_down(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    config = ProxyConfig(models=[model("lone", cooldown={"failures": 3, "seconds": 60})])
    client = await make_client(config)
    fake_upstream.override = failing_first(3, 500)
    before = await scrape(client)

    for _ in range(3):
        response = await client.post("/v1/chat/completions", json=chat_body(model="lone"))
        error = assert_error(response, 502, code="bad_upstream_response")
        assert error["message"] == 'upstream answered HTTP 500: {"message":"hiccup","data":[]}'
        assert "retry-after" not in response.headers
    ready = await client.get("/health/ready")
    after = await scrape(client)

    assert ready.status_code == 503  # readiness still reports the upstream's health ...
    (deployment,) = ready.json()["models"][0]["deployments"]
    assert deployment["state"] == "cooling_down"
    assert (deployment["failures"], deployment["cooldowns"]) == (3, 1)
    labels = {"model": "lone", "deployment": "lone[0]"}
    assert delta(before, after, "proxy_deployment_failures_total", **labels) == 3
    assert delta(before, after, "proxy_deployment_cooldowns_total", **labels) == 1
    assert sample(after, "proxy_deployment_up", **labels) == 0

    # ... but the next request is sent all the same, and its success ends the cooldown
    response = await client.post("/v1/chat/completions", json=chat_body(model="lone"))
    assert response.status_code == 200, response.text
    assert len(fake_upstream.requests) == 4
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["models"][0]["deployments"][0]["state"] == "healthy"
    assert sample(await scrape(client), "proxy_deployment_up", **labels) == 1


async def test_a_lone_deployment_passes_its_retry_after_on_and_takes_the_next_request(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    config = ProxyConfig(models=[model("asks", max_retries=2, cooldown={"failures": 3})])
    client = await make_client(config)
    fake_upstream.override = failing_first(3, 503, **{"retry-after": "20"})

    for sent in (1, 2, 3):
        response = await client.post("/v1/chat/completions", json=chat_body(model="asks"))
        assert_error(response, 503, code="upstream_unavailable")
        assert response.json()["error"]["message"].startswith("upstream answered HTTP 503")
        assert response.headers["retry-after"] == "20"
        assert len(fake_upstream.requests) == sent  # each one asked, none retried within 20 s

    response = await client.post("/v1/chat/completions", json=chat_body(model="asks"))
    assert response.status_code == 200, response.text


async def test_with_a_fallback_a_cooling_lone_deployment_is_skipped(
    make_client: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    client = await make_client(config_with_fallback(cooldown={"failures": 1, "seconds": 60}))
    fake_upstream.override = failing_on("/primary", 500)
    first = await client.post("/v1/chat/completions", json=chat_body(model="primary"))
    assert first.status_code == 200  # the primary failed and cooled down; llama answered
    fake_upstream.requests.clear()

    response = await client.post("/v1/chat/completions", json=chat_body(model="primary"))

    assert response.status_code == 200, response.text
    assert [request.url.path for request in fake_upstream.requests] == ["/llama"]
