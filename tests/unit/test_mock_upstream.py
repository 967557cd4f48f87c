"""The mock upstream: `complete()` as data, then the ASGI app with its fault and delay headers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from app.mock_upstream import MockConnectionReset, complete, create_mock_app
from app.tokens import estimate_tokens

PROMPTS = ["The capital of France is P", "Hello", "Once upon a time", ""]


def request(prompts: list[str] | None = None, **params: Any) -> dict[str, Any]:
    return {
        "model": "meta-llama/Llama-2-13b-hf",
        "params": {"prompt": prompts or PROMPTS, **params},
    }


def outputs(body: dict[str, Any]) -> list[str]:
    return [item["output"][0] for item in body["data"]]


def continuations(body: dict[str, Any]) -> list[str]:
    return [item["output"][0][len(item["prompt"]) :] for item in body["data"]]


# complete(): the format


def test_answers_each_prompt_in_order_echoing_it() -> None:
    status, body = complete(request(temperature=0.7, top_p=0.9, top_k=40))
    assert status == 200
    assert body["message"] == "ok"
    assert [item["prompt"] for item in body["data"]] == PROMPTS
    for item in body["data"]:
        assert item["params"] == {"temperature": 0.7, "top_k": 40, "top_p": 0.9}
        assert len(item["output"]) == 1
        assert item["output"][0].startswith(item["prompt"])
    for text in continuations(body):
        assert text.startswith(" ")
        assert text.endswith(".")
        assert 6 <= estimate_tokens(text) <= 55


def test_defaults_apply_when_params_are_absent_or_null() -> None:
    absent = complete(request())[1]
    null = complete(request(max_tokens=None, temperature=None, top_p=None, top_k=None))[1]
    assert absent == null
    assert absent["data"][0]["params"] == {"temperature": 1.0, "top_k": -1, "top_p": 1.0}


def test_same_request_same_answer() -> None:
    assert complete(request(temperature=0.7)) == complete(request(temperature=0.7))


def test_int_and_float_sampling_values_are_the_same_seed() -> None:
    assert complete(request(temperature=1, top_p=1)) == complete(
        request(temperature=1.0, top_p=1.0)
    )


@pytest.mark.parametrize(
    "change",
    [{"model": "other"}, {"temperature": 0.5}, {"top_p": 0.5}, {"top_k": 5}],
)
def test_every_seed_input_changes_the_answer(change: dict[str, Any]) -> None:
    base = request(["a"] * 8, temperature=0.7)
    changed = request(["a"] * 8, temperature=0.7)
    if "model" in change:
        changed["model"] = change["model"]
    else:
        changed["params"].update(change)
    assert outputs(complete(base)[1]) != outputs(complete(changed)[1])


def test_temperature_zero_gives_equal_outputs_for_equal_prompts() -> None:
    texts = outputs(complete(request(["same prompt"] * 5, temperature=0))[1])
    assert len(set(texts)) == 1


def test_positive_temperature_varies_with_the_position() -> None:
    texts = outputs(complete(request(["same prompt"] * 5, temperature=0.8))[1])
    assert len(set(texts)) > 1


@pytest.mark.parametrize("max_tokens", [1, 2, 3, 7, 12, 30])
def test_max_tokens_cuts_the_continuation(max_tokens: int) -> None:
    prompts = [f"prompt number {i}" for i in range(40)]
    natural = continuations(complete(request(prompts, max_tokens=1000))[1])
    cut = continuations(complete(request(prompts, max_tokens=max_tokens))[1])
    for full, short in zip(natural, cut, strict=True):
        assert full.startswith(short)
        assert estimate_tokens(short) == min(max_tokens, estimate_tokens(full))
    # the natural lengths straddle the limit, so both branches above really ran
    assert any(estimate_tokens(text) > max_tokens for text in natural)


def test_prompt_and_continuation_tokens_add_up() -> None:
    item = complete(request(["ends with a word"], max_tokens=5))[1]["data"][0]
    assert estimate_tokens(item["output"][0]) == estimate_tokens(item["prompt"]) + 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "request body must be a JSON object"),
        ("text", "request body must be a JSON object"),
        ({"params": {"prompt": ["x"]}}, "'model' must be a non-empty string"),
        ({"model": "", "params": {"prompt": ["x"]}}, "'model' must be a non-empty string"),
        ({"model": 3, "params": {"prompt": ["x"]}}, "'model' must be a non-empty string"),
        ({"model": "m"}, "'params' must be an object"),
        ({"model": "m", "params": ["x"]}, "'params' must be an object"),
        ({"model": "m", "params": {}}, "'params.prompt' must be a list of strings"),
        ({"model": "m", "params": {"prompt": "x"}}, "'params.prompt' must be a list of strings"),
        (
            {"model": "m", "params": {"prompt": ["x", 1]}},
            "'params.prompt' must be a list of strings",
        ),
        ({"model": "m", "params": {"prompt": []}}, "'params.prompt' must not be empty"),
        (request(max_tokens=0), "'params.max_tokens' must be at least 1"),
        (request(max_tokens=1.5), "'params.max_tokens' must be an integer"),
        (request(max_tokens=True), "'params.max_tokens' must be an integer"),
        (request(temperature="hot"), "'params.temperature' must be a number"),
        (request(temperature=False), "'params.temperature' must be a number"),
        (request(temperature=-0.1), "'params.temperature' must not be negative"),
        (request(top_p=1.5), "'params.top_p' must be between 0 and 1"),
        (request(top_p=[1]), "'params.top_p' must be a number"),
        (request(top_k=4.0), "'params.top_k' must be an integer"),
    ],
)
def test_bad_requests_answer_400(body: object, message: str) -> None:
    assert complete(body) == (400, {"message": message, "data": []})


# the ASGI app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_mock_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
        yield client


async def post(
    client: httpx.AsyncClient,
    fault: str | None = None,
    *,
    delay: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    headers = {"x-mock-fault": fault} if fault else {}
    if delay is not None:
        headers["x-mock-delay-ms"] = delay
    kwargs.setdefault("json", request())
    return await client.post("/any/path", headers=headers, **kwargs)


async def test_app_answers_like_complete(client: httpx.AsyncClient) -> None:
    response = await post(client)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == complete(request())[1]


async def test_app_rejects_other_methods(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 405
    assert response.json() == {"message": "only POST is allowed", "data": []}


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff"])
async def test_app_rejects_non_json(client: httpx.AsyncClient, content: bytes) -> None:
    response = await post(client, content=content, json=None)
    assert response.status_code == 400
    assert response.json() == {"message": "request body is not valid JSON", "data": []}


async def test_app_passes_bad_requests_through(client: httpx.AsyncClient) -> None:
    response = await post(client, json={"model": "m"})
    assert response.status_code == 400
    assert response.json()["message"] == "'params' must be an object"


@pytest.mark.parametrize("code", [429, 500, 503])
async def test_fault_status(client: httpx.AsyncClient, code: int) -> None:
    response = await post(client, f"status:{code}")
    assert response.status_code == code
    assert response.json() == {"message": f"mock fault: status {code}", "data": []}


@pytest.mark.parametrize("fault", ["status:200", "status:abc", "status:", "explode"])
async def test_bad_fault_header_answers_400(client: httpx.AsyncClient, fault: str) -> None:
    response = await post(client, fault)
    assert response.status_code == 400
    assert fault in response.json()["message"]


async def test_fault_malformed(client: httpx.AsyncClient) -> None:
    response = await post(client, "malformed")
    assert response.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("no-data", {"message": "ok"}), ("not-ok", {"message": "model overloaded", "data": []})],
)
async def test_fault_fixed_bodies(
    client: httpx.AsyncClient, fault: str, expected: dict[str, Any]
) -> None:
    response = await post(client, fault)
    assert response.status_code == 200
    assert response.json() == expected


async def test_fault_wrong_count(client: httpx.AsyncClient) -> None:
    response = await post(client, "wrong-count")
    assert response.status_code == 200
    assert response.json()["data"] == complete(request())[1]["data"][:-1]


@pytest.mark.parametrize(("fault", "output"), [("non-string", [123]), ("empty-output", [])])
async def test_fault_bad_outputs(client: httpx.AsyncClient, fault: str, output: list[Any]) -> None:
    response = await post(client, fault)
    assert response.status_code == 200
    data = response.json()["data"]
    assert [item["prompt"] for item in data] == PROMPTS
    assert all(item["output"] == output for item in data)


async def test_data_faults_still_reject_bad_requests(client: httpx.AsyncClient) -> None:
    response = await post(client, "wrong-count", json={"model": "m", "params": {"prompt": []}})
    assert response.status_code == 400


async def test_fault_html(client: httpx.AsyncClient) -> None:
    response = await post(client, "html")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<html>")


async def test_fault_reset_raises_after_the_headers(client: httpx.AsyncClient) -> None:
    # A real server (uvicorn) closes the connection here; in-process the exception surfaces.
    with pytest.raises(MockConnectionReset):
        await post(client, "reset")


async def test_fault_hang_answers_nothing_until_the_client_leaves() -> None:
    app = create_mock_app()
    left = asyncio.Event()
    sent: list[Any] = []
    incoming = [{"type": "http.request", "body": orjson.dumps(request()), "more_body": False}]

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop()
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": [(b"x-mock-fault", b"hang")]}

    async def serve() -> None:
        await app(scope, receive, send)

    task = asyncio.create_task(serve())
    for _ in range(5):
        await asyncio.sleep(0)  # let the app run as far as it can; not a timing wait
    assert not task.done()
    left.set()
    await task
    assert sent == []


# delays


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Records the seconds the mock sleeps, and skips the sleeping."""
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)  # the module calls asyncio.sleep(...)
    return recorded


async def test_delay_header_sleeps_before_answering(
    client: httpx.AsyncClient, sleeps: list[float]
) -> None:
    response = await post(client, delay="250")
    assert response.status_code == 200
    assert 0.25 in sleeps


async def test_app_delay_applies_unless_the_header_replaces_it(sleeps: list[float]) -> None:
    transport = httpx.ASGITransport(app=create_mock_app(delay_ms=1500))
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
        assert (await client.post("/", json=request())).status_code == 200
        assert 1.5 in sleeps
        sleeps.clear()
        response = await client.post("/", json=request(), headers={"x-mock-delay-ms": "0"})
        assert response.status_code == 200
        assert 1.5 not in sleeps


@pytest.mark.parametrize("value", ["soon", "-5", "nan", "inf"])
async def test_bad_delay_header_answers_400(client: httpx.AsyncClient, value: str) -> None:
    response = await post(client, delay=value)
    assert response.status_code == 400
    assert "x-mock-delay-ms" in response.json()["message"]


async def test_lifespan_is_acknowledged() -> None:
    app = create_mock_app()
    incoming = [{"type": "lifespan.shutdown"}, {"type": "lifespan.startup"}]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop()

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
