"""The mock upstream: `complete()` as data, then the ASGI app with its fault and delay headers."""

from __future__ import annotations

import asyncio
import math
import random
import re
import statistics
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from app import cli, mock_upstream
from app.mock_upstream import (
    CHUNK_BYTES,
    FAULT_MODES,
    HUGE_DEFAULT_BYTES,
    TRICKLE_LENGTH,
    Exponential,
    Fault,
    FaultPlan,
    Fixed,
    MockConnectionReset,
    Normal,
    Uniform,
    complete,
    create_mock_app,
    draw_ms,
    parse_fault,
    parse_latency,
)
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


class Connection:
    """Drives the app as a server would: one request in, its ASGI messages out through a queue,
    and a client disconnect on demand."""

    def __init__(
        self,
        app: Any,
        headers: dict[str, str] | None = None,
        *,
        body: bytes | None = None,
        method: str = "POST",
        path: str = "/inference",
    ) -> None:
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._left = asyncio.Event()
        body = orjson.dumps(request()) if body is None else body
        self._incoming = [{"type": "http.request", "body": body, "more_body": False}]
        raw_headers = [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
        scope = {"type": "http", "method": method, "path": path, "headers": raw_headers}
        self.task = asyncio.create_task(app(scope, self._receive, self.messages.put))

    async def _receive(self) -> dict[str, Any]:
        if self._incoming:
            return self._incoming.pop()
        await self._left.wait()
        return {"type": "http.disconnect"}

    def leave(self) -> None:
        self._left.set()

    async def next(self, timeout: float = 2.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def finish(self) -> list[dict[str, Any]]:
        await self.task
        return [self.messages.get_nowait() for _ in range(self.messages.qsize())]


async def settle() -> None:
    """Let every other task run as far as it can; not a timing wait."""
    for _ in range(10):
        await asyncio.sleep(0)


def header(message: dict[str, Any], name: str) -> str | None:
    values = [v.decode() for k, v in message["headers"] if k.decode().lower() == name]
    return values[0] if values else None


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
    connection = Connection(create_mock_app(), {"x-mock-fault": "hang"})
    await settle()
    assert not connection.task.done()
    connection.leave()
    assert await connection.finish() == []


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


# latency distributions


@pytest.mark.parametrize(
    ("text", "latency"),
    [
        ("fixed:25", Fixed(25)),
        (" fixed:0 ", Fixed(0)),
        ("uniform:10-20.5", Uniform(10, 20.5)),
        ("uniform:7-7", Uniform(7, 7)),
        ("exp:50", Exponential(50)),
        ("normal:100,15", Normal(100, 15)),
    ],
)
def test_parse_latency(text: str, latency: mock_upstream.Latency) -> None:
    assert parse_latency(text) == latency
    assert parse_latency(str(latency)) == latency


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "unknown latency ''"),
        ("gamma:3", "unknown latency 'gamma:3'; use fixed:MS, uniform:LO-HI"),
        ("fixed", "bad latency 'fixed': '' is not a number"),
        ("fixed:soon", "'soon' is not a number"),
        ("fixed:-1", "the delay must be a finite number of milliseconds >= 0, not -1"),
        ("exp:inf", "MEAN must be a finite number"),
        ("uniform:5", "expected two numbers separated by '-'"),
        ("uniform:-5-10", "'' is not a number"),
        ("uniform:20-10", "LO must not exceed HI (20 > 10)"),
        ("normal:10", "expected two numbers separated by ','"),
        ("normal:10,-1", "SD must be a finite number of milliseconds >= 0, not -1"),
    ],
)
def test_parse_latency_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_latency(text)


def test_draw_ms_follows_each_distribution() -> None:
    rng = random.Random(5)

    def draws(latency: mock_upstream.Latency) -> list[float]:
        return [draw_ms(latency, rng) for _ in range(5000)]

    assert set(draws(Fixed(12))) == {12}
    uniform = draws(Uniform(10, 20))
    assert min(uniform) >= 10 and max(uniform) <= 20
    assert statistics.mean(uniform) == pytest.approx(15, abs=0.3)
    assert statistics.mean(draws(Exponential(50))) == pytest.approx(50, rel=0.06)
    assert set(draws(Exponential(0))) == {0}
    normal = draws(Normal(100, 10))
    assert statistics.mean(normal) == pytest.approx(100, abs=1)
    assert statistics.stdev(normal) == pytest.approx(10, rel=0.06)
    clipped = draws(Normal(0, 10))  # half the draws are below 0
    assert min(clipped) == 0
    assert 0.45 < clipped.count(0) / len(clipped) < 0.55


# fault modes and the plan


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("status:429", Fault("status", 429)),
        ("huge", Fault("huge", HUGE_DEFAULT_BYTES)),
        ("huge:1000", Fault("huge", 1000)),
        ("huge:0", Fault("huge", 0)),
        (" trickle ", Fault("trickle")),
        ("reset-body", Fault("reset-body")),
    ],
)
def test_parse_fault(text: str, fault: Fault) -> None:
    assert parse_fault(text) == fault
    assert parse_fault(str(fault)) == fault


def test_every_documented_mode_parses() -> None:
    for mode in FAULT_MODES:
        assert parse_fault(mode.replace("[:BYTES]", "").replace("CODE", "500")).mode in mode
    assert HUGE_DEFAULT_BYTES == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("explode", "unknown fault mode 'explode'; one of status:CODE, malformed"),
        ("", "unknown fault mode ''"),
        ("hang:3", "unknown fault mode 'hang:3'"),
        ("status", "bad fault mode 'status': '' is not a whole number"),
        ("status:200", "bad fault mode 'status:200': a fault status must be 400..599, not 200"),
        ("status:abc", "bad fault mode 'status:abc': 'abc' is not a whole number"),
        ("huge:lots", "bad fault mode 'huge:lots'"),
        ("huge:-1", "huge:BYTES must not be negative, not -1"),
    ],
)
def test_parse_fault_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_fault(text)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"error_rate": 1.5}, "the error rate must be between 0 and 1, not 1.5"),
        ({"error_rate": math.nan}, "the error rate must be between 0 and 1"),
        ({"fault": Fault("hang"), "fault_rate": -0.1}, "the fault rate must be between 0 and 1"),
        ({"fault_rate": 0.5}, "a fault rate needs a fault mode"),
        ({"error_statuses": ()}, "the error statuses must not be empty"),
        ({"error_statuses": (503, 302)}, "a fault status must be 400..599, not 302"),
        ({"retry_after": -1}, "retry-after must be >= 0 seconds, not -1"),
    ],
)
def test_fault_plan_rejects(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        FaultPlan(**fields)


def test_create_mock_app_takes_a_plan_or_a_delay_not_both() -> None:
    with pytest.raises(TypeError, match="not both"):
        create_mock_app(plan=FaultPlan(), delay_ms=5)


# the plan at work


async def statuses(app: Any, count: int, headers: dict[str, str] | None = None) -> list[int]:
    found = []
    for _ in range(count):
        messages = await Connection(app, headers).finish()
        found.append(messages[0]["status"])
    return found


async def test_error_rate_answers_that_fraction_with_the_error_statuses() -> None:
    app = create_mock_app(plan=FaultPlan(error_rate=0.3, error_statuses=(429, 503), seed=7))
    found = await statuses(app, 2000)
    errors = [status for status in found if status != 200]
    assert 0.27 < len(errors) / len(found) < 0.33
    assert set(errors) == {429, 503}
    assert 0.4 < errors.count(429) / len(errors) < 0.6


async def test_error_answers_carry_the_status_body() -> None:
    app = create_mock_app(plan=FaultPlan(error_rate=1.0, error_statuses=(502,)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
        response = await client.post("/", json=request())
    assert response.status_code == 502
    assert response.json() == {"message": "mock fault: status 502", "data": []}
    assert "retry-after" not in response.headers


async def test_the_same_seed_gives_the_same_draws() -> None:
    def plan(seed: int) -> FaultPlan:
        return FaultPlan(error_rate=0.5, seed=seed)

    first = await statuses(create_mock_app(plan=plan(1)), 200)
    again = await statuses(create_mock_app(plan=plan(1)), 200)
    other = await statuses(create_mock_app(plan=plan(2)), 200)
    assert first == again
    assert first != other


async def test_fault_rate_answers_that_fraction_with_the_fault() -> None:
    app = create_mock_app(plan=FaultPlan(fault=Fault("status", 500), fault_rate=0.25, seed=3))
    found = await statuses(app, 2000)
    assert set(found) == {200, 500}
    assert 0.22 < found.count(500) / len(found) < 0.28


async def test_the_fault_draw_comes_after_the_error_draw() -> None:
    plan = FaultPlan(error_rate=0.5, fault=Fault("status", 500), seed=4)
    found = await statuses(create_mock_app(plan=plan), 1000)
    assert set(found) == {503, 500}  # the fault, rate 1, takes every request the errors spared
    assert 0.45 < found.count(503) / len(found) < 0.55


async def test_a_fault_header_replaces_the_plans_draws() -> None:
    app = create_mock_app(plan=FaultPlan(error_rate=1.0, fault=Fault("hang")))
    assert await statuses(app, 5, {"x-mock-fault": "status:418"}) == [418] * 5
    messages = await Connection(app, {"x-mock-fault": "no-data"}).finish()
    assert orjson.loads(messages[1]["body"]) == {"message": "ok"}


async def test_plan_retry_after_goes_on_error_answers_only() -> None:
    app = create_mock_app(plan=FaultPlan(error_rate=0.5, error_statuses=(429,), retry_after=7))
    for _ in range(40):
        start = (await Connection(app).finish())[0]
        expected = "7" if start["status"] == 429 else None
        assert header(start, "retry-after") == expected


@pytest.mark.parametrize(
    ("plan", "headers", "expected"),
    [
        (FaultPlan(), {"x-mock-fault": "status:503", "x-mock-retry-after": "2"}, "2"),
        (FaultPlan(retry_after=7), {"x-mock-fault": "status:429", "x-mock-retry-after": "0"}, "0"),
        (FaultPlan(retry_after=7), {"x-mock-fault": "status:500"}, "7"),
        (FaultPlan(), {"x-mock-fault": "status:503"}, None),
        (FaultPlan(), {"x-mock-retry-after": "2"}, None),  # a 200 gets none
        (FaultPlan(retry_after=7), {"x-mock-fault": "not-ok"}, None),
    ],
)
async def test_retry_after_header(
    plan: FaultPlan, headers: dict[str, str], expected: str | None
) -> None:
    start = (await Connection(create_mock_app(plan=plan), headers).finish())[0]
    assert header(start, "retry-after") == expected


@pytest.mark.parametrize("value", ["soon", "-1", "1.5", ""])
async def test_bad_retry_after_header_answers_400(client: httpx.AsyncClient, value: str) -> None:
    response = await client.post("/", json=request(), headers={"x-mock-retry-after": value})
    assert response.status_code == 400
    assert "x-mock-retry-after" in response.json()["message"]


async def test_plan_latency_is_drawn_per_request(sleeps: list[float]) -> None:
    app = create_mock_app(plan=FaultPlan(latency=Uniform(100, 200), seed=1))
    assert await statuses(app, 50) == [200] * 50
    assert len(sleeps) == 50
    assert all(0.1 <= seconds <= 0.2 for seconds in sleeps)
    assert len(set(sleeps)) == 50
    sleeps.clear()
    assert await statuses(app, 3, {"x-mock-delay-ms": "250"}) == [200] * 3
    assert sleeps == [0.25] * 3


# new fault modes


async def test_fault_reset_body_sends_half_the_answer_then_resets() -> None:
    connection = Connection(create_mock_app(), {"x-mock-fault": "reset-body"})
    with pytest.raises(MockConnectionReset):
        await connection.task
    start, body = await connection.next(), await connection.next()
    full = orjson.dumps(complete(request())[1])
    assert start["status"] == 200
    assert header(start, "content-length") == str(len(full))
    assert body == {"type": "http.response.body", "body": full[: len(full) // 2], "more_body": True}
    assert connection.messages.empty()


@pytest.mark.parametrize("size", [300_000, 1_000_003])
async def test_fault_huge_streams_a_valid_answer_of_at_least_the_size(size: int) -> None:
    messages = await Connection(create_mock_app(), {"x-mock-fault": f"huge:{size}"}).finish()
    start, *bodies = messages
    body = b"".join(message["body"] for message in bodies)
    assert start["status"] == 200
    assert header(start, "content-type") == "application/json"
    assert header(start, "content-length") == str(len(body))
    assert len(body) == size
    assert len(bodies) > size // CHUNK_BYTES
    assert all(len(message["body"]) <= CHUNK_BYTES for message in bodies[:-1])
    assert [message["more_body"] for message in bodies] == [True] * (len(bodies) - 1) + [False]
    answer = orjson.loads(body)
    expected = complete(request())[1]
    assert answer["message"] == "ok"
    assert answer["data"][1:] == expected["data"][1:]
    first, normal = answer["data"][0], expected["data"][0]
    assert first["prompt"] == normal["prompt"] and first["params"] == normal["params"]
    assert len(first["output"]) == 1
    assert first["output"][0].startswith(normal["output"][0] + " The steady proxy")


async def test_fault_huge_smaller_than_the_answer_is_the_answer() -> None:
    messages = await Connection(create_mock_app(), {"x-mock-fault": "huge:10"}).finish()
    assert orjson.loads(b"".join(m["body"] for m in messages[1:])) == complete(request())[1]


async def test_fault_trickle_sends_a_byte_at_a_time_and_never_completes() -> None:
    connection = Connection(create_mock_app(), {"x-mock-fault": "trickle"})
    start = await connection.next()
    assert start["status"] == 200
    assert header(start, "content-length") == str(TRICKLE_LENGTH)
    received = b""
    with pytest.raises(TimeoutError):  # the client's patience: 0.5 s
        async with asyncio.timeout(0.5):
            while True:
                message = await connection.next()
                assert message["more_body"] is True
                assert len(message["body"]) == 1
                received += message["body"]
    assert 2 <= len(received) <= 4  # one byte at once, then one every 0.2 s
    assert orjson.dumps(complete(request())[1]).startswith(received)
    assert not connection.task.done()
    connection.leave()
    await asyncio.wait_for(connection.task, 1.0)


@pytest.mark.parametrize("fault", ["reset-body", "huge:100", "trickle"])
async def test_answer_faults_reject_bad_requests(client: httpx.AsyncClient, fault: str) -> None:
    response = await post(client, fault, json={"model": "m", "params": {"prompt": []}})
    assert response.status_code == 400
    assert response.json()["message"] == "'params.prompt' must not be empty"


# counters


async def stats(client: httpx.AsyncClient) -> dict[str, int]:
    response = await client.get("/_mock/stats")
    assert response.status_code == 200
    result: dict[str, int] = response.json()
    return result


async def test_stats_count_posts_and_faults_and_reset(client: httpx.AsyncClient) -> None:
    assert await stats(client) == {"requests": 0, "faults": 0, "in_flight": 0}
    for fault in [None, None, "not-ok", "status:503", "explode"]:
        await post(client, fault)
    await post(client, json={"model": "m"})  # a bad request is no fault
    await client.get("/inference")  # a 405 is no POST
    assert await stats(client) == {"requests": 6, "faults": 2, "in_flight": 0}
    response = await client.post("/_mock/reset-stats")
    assert response.status_code == 200
    assert response.json() == {"requests": 6, "faults": 2, "in_flight": 0}
    assert await stats(client) == {"requests": 0, "faults": 0, "in_flight": 0}


async def test_stats_count_plan_faults() -> None:
    app = create_mock_app(plan=FaultPlan(error_rate=0.5, seed=2))
    found = await statuses(app, 100)
    messages = await Connection(app, method="GET", path="/_mock/stats").finish()
    assert orjson.loads(messages[1]["body"]) == {
        "requests": 100,
        "faults": found.count(503),
        "in_flight": 0,
    }


async def test_stats_count_requests_in_flight() -> None:
    app = create_mock_app()

    async def current() -> dict[str, int]:
        messages = await Connection(app, method="GET", path="/_mock/stats").finish()
        result: dict[str, int] = orjson.loads(messages[1]["body"])
        return result

    hanging = [Connection(app, {"x-mock-fault": "hang"}) for _ in range(3)]
    await settle()
    assert await current() == {"requests": 3, "faults": 3, "in_flight": 3}
    await Connection(app, method="POST", path="/_mock/reset-stats").finish()
    assert await current() == {"requests": 0, "faults": 0, "in_flight": 3}  # a gauge stays
    for connection in hanging:
        connection.leave()
        await connection.finish()
    assert await current() == {"requests": 0, "faults": 0, "in_flight": 0}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("POST", "/_mock/stats", "GET"), ("GET", "/_mock/reset-stats", "POST")],
)
async def test_stats_paths_take_one_method(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.json() == {"message": f"only {allowed} is allowed", "data": []}
    assert (await stats(client))["requests"] == 0


# the command line


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, FaultPlan]]:
    """Records what `mock-upstream` would serve, instead of serving it."""
    calls: list[tuple[str, int, FaultPlan]] = []

    def fake_run(host: str, port: int, *, plan: FaultPlan) -> None:
        calls.append((host, port, plan))

    monkeypatch.setattr(mock_upstream, "run_mock_upstream", fake_run)
    return calls


def test_cli_defaults_to_no_faults(served: list[tuple[str, int, FaultPlan]]) -> None:
    assert cli.main(["mock-upstream"]) == 0
    assert served == [("127.0.0.1", 9000, FaultPlan())]


def test_cli_builds_the_plan(served: list[tuple[str, int, FaultPlan]]) -> None:
    argv = [
        "mock-upstream", "--port", "9100", "--latency", "normal:50,10", "--error-rate", "0.2",
        "--error-status", "429", "--error-status", "503", "--fault", "huge:1000",
        "--fault-rate", "0.1", "--retry-after", "3", "--seed", "42",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    plan = FaultPlan(
        latency=Normal(50, 10),
        error_rate=0.2,
        error_statuses=(429, 503),
        fault=Fault("huge", 1000),
        fault_rate=0.1,
        retry_after=3,
        seed=42,
    )
    assert served == [("127.0.0.1", 9100, plan)]


def test_cli_delay_ms_is_fixed_latency(served: list[tuple[str, int, FaultPlan]]) -> None:
    assert cli.main(["mock-upstream", "--delay-ms", "40"]) == 0
    assert served[0][2] == FaultPlan(latency=Fixed(40))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--latency", "gamma:3"], "argument --latency: unknown latency 'gamma:3'; use fixed:MS"),
        (["--latency", "uniform:9-1"], "argument --latency: bad latency 'uniform:9-1': LO must"),
        (["--delay-ms", "soon"], "argument --delay-ms: bad latency 'fixed:soon'"),
        (["--delay-ms", "5", "--latency", "exp:5"], "not allowed with argument --delay-ms"),
        (["--fault", "explode"], "argument --fault: unknown fault mode 'explode'"),
        (["--fault", "status:99"], "argument --fault: bad fault mode 'status:99'"),
        (["--error-rate", "lots"], "argument --error-rate: invalid float value: 'lots'"),
    ],
)
def test_cli_usage_errors(
    served: list[tuple[str, int, FaultPlan]],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["mock-upstream", *args])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: custom-llm-proxy mock-upstream")
    assert message in err
    assert served == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--error-rate", "1.5"], "the error rate must be between 0 and 1, not 1.5"),
        (["--error-status", "302"], "a fault status must be 400..599, not 302"),
        (["--fault-rate", "0.5"], "a fault rate needs a fault mode"),
        (["--retry-after", "-2"], "retry-after must be >= 0 seconds, not -2"),
    ],
)
def test_cli_refuses_a_bad_plan(
    served: list[tuple[str, int, FaultPlan]],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert cli.main(["mock-upstream", *args]) == 2
    assert capsys.readouterr().err == f"custom-llm-proxy mock-upstream: error: {message}\n"
    assert served == []


def test_cli_help_names_every_mode_and_header(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["mock-upstream", "--help"])
    out = capsys.readouterr().out
    for text in [*FAULT_MODES, "x-mock-delay-ms", "x-mock-retry-after", "/_mock/stats"]:
        assert text in out
