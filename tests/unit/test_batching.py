"""Micro-batching as data: which requests share an upstream call, what each gets back, and what
leaving, failing and retrying do to a batch.

The upstream is an `UpstreamClient` that answers each prompt with `out:<prompt>` and can hold
its answers until a test lets them go; the dispatcher's backoff sleeps are recorded, not slept.
A batch is closed by being full or by the event loop's next turn (`max_wait_ms: 0`); the one
test of a timer waits for its results, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import random
from time import perf_counter
from typing import Any

import orjson
import pytest

from app.cli import main
from app.config import ConfigError, ModelConfig, load_config
from app.dispatch import Dispatcher
from app.errors import UpstreamBadResponse, UpstreamUnavailable
from app.routing import ModelRoute, build_route
from app.schemas.custom import Sampling
from app.telemetry import RequestRecord, Telemetry
from app.upstream import UpstreamRequest, UpstreamResponse
from tests.unit.test_dispatch import Sleeps
from tests.waiting import until

SAMPLING = Sampling(max_tokens=16, temperature=0.0, top_p=1.0, top_k=-1)
A, B = "http://a.test/", "http://b.test/"


class EchoUpstream:
    """Answers every prompt with `out:<prompt>`; `failures` first answers fail with 503;
    while `gate` is unset, answers wait for it. `spoil` drops one output of each answer."""

    def __init__(self, failures: int = 0, *, spoil: bool = False) -> None:
        self.sent: list[UpstreamRequest] = []
        self.cancelled: list[UpstreamRequest] = []
        self.failures = failures
        self.spoil = spoil
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.sent.append(request)
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(request)
            raise
        if self.failures:
            self.failures -= 1
            return UpstreamResponse(503, b'{"message": "busy", "data": []}')
        prompts = prompts_of(request)
        data = [{"prompt": p, "output": [f"out:{p}"]} for p in prompts]
        if self.spoil:
            del data[-1]
        return UpstreamResponse(200, orjson.dumps({"data": data, "message": "ok"}))

    async def aclose(self) -> None:
        return None

    @property
    def calls(self) -> list[list[str]]:
        return [prompts_of(request) for request in self.sent]


def prompts_of(request: UpstreamRequest) -> list[str]:
    prompts: list[str] = orjson.loads(request.body)["params"]["prompt"]
    return prompts


def model(*urls: str, batching: dict[str, Any] | None = None, **fields: Any) -> ModelRoute:
    config = ModelConfig(
        name="m",
        deployments=[{"api_base": url} for url in urls or (A,)],
        routing="weighted",
        batching={"max_batch": 8, "max_wait_ms": 0} if batching is None else batching,
        **fields,
    )
    return build_route(config, source="test", index=0)


def dispatcher(upstream: EchoUpstream) -> Dispatcher:
    time = Sleeps()
    return Dispatcher(upstream, rng=random.Random(7), sleep=time, clock=time.clock)


def ask(
    d: Dispatcher,
    route: ModelRoute,
    prompts: list[str],
    request_id: str,
    *,
    sampling: Sampling = SAMPLING,
    record: RequestRecord | None = None,
    key: str | None = None,
) -> asyncio.Task[list[str]]:
    return asyncio.ensure_future(
        d.complete(route, prompts, sampling, request_id, record, client_key=key)
    )


def record(telemetry: Telemetry, request_id: str) -> RequestRecord:
    return RequestRecord(telemetry, request_id, "POST", "/v1/completions", perf_counter())


async def turns(count: int = 5) -> None:
    """Let the event loop go round `count` times (tasks start, batches close)."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_concurrent_requests_share_one_call_and_each_gets_its_own_outputs() -> None:
    upstream = EchoUpstream()
    d, route = dispatcher(upstream), model()

    tasks = [ask(d, route, [f"p{i}"], f"req-{i}") for i in range(5)]
    results = await asyncio.gather(*tasks)

    assert upstream.calls == [["p0", "p1", "p2", "p3", "p4"]]
    assert results == [[f"out:p{i}"] for i in range(5)]
    assert upstream.sent[0].request_id == "req-0,req-1,req-2,req-3,req-4"


async def test_a_request_with_several_prompts_gets_its_own_slice_in_order() -> None:
    upstream = EchoUpstream()
    d, route = dispatcher(upstream), model()

    results = await asyncio.gather(
        ask(d, route, ["a"], "r1"),
        ask(d, route, ["b1", "b2", "b3"], "r2"),
        ask(d, route, ["c"], "r3"),
    )

    assert upstream.calls == [["a", "b1", "b2", "b3", "c"]]
    assert results == [["out:a"], ["out:b1", "out:b2", "out:b3"], ["out:c"]]


async def test_a_full_batch_is_sent_at_once_and_the_next_request_opens_another() -> None:
    upstream = EchoUpstream()
    d = dispatcher(upstream)
    route = model(batching={"max_batch": 4, "max_wait_ms": 10_000})

    first = [ask(d, route, ["a1", "a2"], "r1"), ask(d, route, ["b1", "b2"], "r2")]
    assert await asyncio.gather(*first) == [["out:a1", "out:a2"], ["out:b1", "out:b2"]]
    third = ask(d, route, ["c"], "r3")
    await turns()

    assert upstream.calls == [["a1", "a2", "b1", "b2"]]  # full: sent without the 10 s wait
    assert d.batcher.open_batches == 1  # "c" waits for company
    third.cancel()
    await turns()
    assert d.batcher.open_batches == 0
    assert upstream.calls == [["a1", "a2", "b1", "b2"]]  # an emptied batch is not sent


async def test_a_request_that_would_overfill_the_batch_sends_it_and_opens_the_next() -> None:
    upstream = EchoUpstream()
    d = dispatcher(upstream)
    route = model(batching={"max_batch": 4, "max_wait_ms": 0})

    results = await asyncio.gather(
        ask(d, route, ["a1", "a2", "a3"], "r1"), ask(d, route, ["b1", "b2"], "r2")
    )

    assert upstream.calls == [["a1", "a2", "a3"], ["b1", "b2"]]
    assert results == [["out:a1", "out:a2", "out:a3"], ["out:b1", "out:b2"]]


async def test_a_request_as_large_as_a_batch_goes_alone_without_waiting() -> None:
    upstream = EchoUpstream()
    d = dispatcher(upstream)
    route = model(batching={"max_batch": 2, "max_wait_ms": 10_000})

    assert await d.complete(route, ["x", "y", "z"], SAMPLING, "big") == ["out:x", "out:y", "out:z"]
    assert upstream.calls == [["x", "y", "z"]]
    assert d.batcher.open_batches == 0


async def test_differing_parameters_never_share_a_call() -> None:
    upstream = EchoUpstream()
    d, route = dispatcher(upstream), model()
    hotter = Sampling(max_tokens=16, temperature=0.5, top_p=1.0, top_k=-1)
    longer = Sampling(max_tokens=32, temperature=0.0, top_p=1.0, top_k=-1)

    await asyncio.gather(
        ask(d, route, ["a"], "r1"),
        ask(d, route, ["b"], "r2", sampling=hotter),
        ask(d, route, ["c"], "r3", sampling=longer),
        ask(d, route, ["d"], "r4"),
    )

    assert sorted(upstream.calls) == [["a", "d"], ["b"], ["c"]]
    params = {tuple(prompts_of(r)): orjson.loads(r.body)["params"] for r in upstream.sent}
    assert params[("b",)]["temperature"] == 0.5
    assert params[("c",)]["max_tokens"] == 32


async def test_forwarded_client_keys_keep_their_requests_apart() -> None:
    upstream = EchoUpstream()
    d = dispatcher(upstream)
    forwarding = model(forward_client_auth=True)
    keeping = model()

    await asyncio.gather(
        ask(d, forwarding, ["a"], "r1", key="sk-one"),
        ask(d, forwarding, ["b"], "r2", key="sk-two"),
        ask(d, forwarding, ["c"], "r3", key="sk-one"),
    )
    assert sorted((r.authorization, prompts_of(r)) for r in upstream.sent) == [
        ("sk-one", ["a", "c"]),
        ("sk-two", ["b"]),
    ]

    upstream.sent.clear()
    await asyncio.gather(
        ask(d, keeping, ["a"], "r1", key="sk-one"), ask(d, keeping, ["b"], "r2", key="sk-two")
    )
    assert [(r.authorization, prompts_of(r)) for r in upstream.sent] == [(None, ["a", "b"])]


async def test_a_request_cancelled_before_its_batch_is_sent_is_not_in_it() -> None:
    upstream = EchoUpstream()
    d = dispatcher(upstream)
    route = model(batching={"max_batch": 3, "max_wait_ms": 10_000})

    leaving = ask(d, route, ["gone"], "r1")
    staying = ask(d, route, ["a"], "r2")
    await turns()
    leaving.cancel()
    await turns()
    others = [ask(d, route, ["b"], "r3"), ask(d, route, ["c"], "r4")]  # these fill it

    assert await asyncio.gather(staying, *others) == [["out:a"], ["out:b"], ["out:c"]]
    assert upstream.calls == [["a", "b", "c"]]
    assert upstream.sent[0].request_id == "r2,r3,r4"
    assert leaving.cancelled()


async def test_a_request_cancelled_after_sending_drops_only_its_own_result() -> None:
    upstream = EchoUpstream()
    upstream.gate.clear()
    d, route = dispatcher(upstream), model()

    leaving, staying = ask(d, route, ["gone"], "r1"), ask(d, route, ["a"], "r2")
    await until(lambda: upstream.sent)
    leaving.cancel()
    await turns()
    upstream.gate.set()

    assert await staying == ["out:a"]
    assert leaving.cancelled()
    assert upstream.calls == [["gone", "a"]]
    assert upstream.cancelled == []  # the shared call went on


async def test_the_shared_call_is_cancelled_when_every_request_has_left() -> None:
    upstream = EchoUpstream()
    upstream.gate.clear()
    d, route = dispatcher(upstream), model()

    tasks = [ask(d, route, ["a"], "r1"), ask(d, route, ["b"], "r2")]
    await until(lambda: upstream.sent)
    tasks[0].cancel()
    await turns()
    assert upstream.cancelled == []
    tasks[1].cancel()
    await until(lambda: upstream.cancelled)

    assert [prompts_of(r) for r in upstream.cancelled] == [["a", "b"]]


async def test_a_failed_batch_is_retried_as_a_whole_and_every_record_sees_it() -> None:
    upstream = EchoUpstream(failures=1)
    d, route = dispatcher(upstream), model(A, B, max_retries=2)
    telemetry = Telemetry()
    records = [record(telemetry, f"r{i}") for i in range(3)]

    results = await asyncio.gather(
        *(ask(d, route, [f"p{i}"], f"r{i}", record=records[i]) for i in range(3))
    )

    assert results == [["out:p0"], ["out:p1"], ["out:p2"]]
    assert upstream.calls == [["p0", "p1", "p2"], ["p0", "p1", "p2"]]
    assert [r.endpoint.url for r in upstream.sent] == [A, B]  # the retry went elsewhere
    assert [(r.retries, r.deployment) for r in records] == [(1, "m[1]")] * 3
    assert all(r.upstream_seconds > 0 for r in records)


async def test_a_failure_reaches_every_request_of_the_batch_as_its_own_error() -> None:
    upstream = EchoUpstream(failures=5)
    d, route = dispatcher(upstream), model(max_retries=0)

    results = await asyncio.gather(
        ask(d, route, ["a"], "r1"), ask(d, route, ["b"], "r2"), return_exceptions=True
    )

    assert all(isinstance(r, UpstreamUnavailable) for r in results)
    assert results[0] is not results[1]
    assert upstream.calls == [["a", "b"]]


async def test_an_answer_with_the_wrong_number_of_outputs_fails_everyone_with_502() -> None:
    upstream = EchoUpstream(spoil=True)
    d, route = dispatcher(upstream), model(max_retries=0)

    results = await asyncio.gather(
        ask(d, route, ["a"], "r1"), ask(d, route, ["b", "c"], "r2"), return_exceptions=True
    )

    for result in results:
        assert isinstance(result, UpstreamBadResponse)
        assert result.status == 502
        assert "2 outputs for 3 prompts" in result.message


async def test_a_batch_waits_max_wait_ms_for_company() -> None:
    upstream = EchoUpstream()
    d = dispatcher(upstream)
    route = model(batching={"max_batch": 8, "max_wait_ms": 50})
    loop = asyncio.get_running_loop()
    started = loop.time()

    first = ask(d, route, ["a"], "r1")
    await turns()
    assert upstream.sent == []  # still waiting for company
    second = ask(d, route, ["b"], "r2")

    assert await asyncio.gather(first, second) == [["out:a"], ["out:b"]]
    assert loop.time() - started >= 0.05
    assert upstream.calls == [["a", "b"]]


async def test_a_batch_whose_deployments_are_full_is_held_open_until_a_call_ends() -> None:
    upstream = EchoUpstream()
    upstream.gate.clear()
    d = dispatcher(upstream)
    route = model(batching={"max_batch": 8, "max_wait_ms": 0}, max_concurrency=1)

    first = ask(d, route, ["a"], "r1")
    await until(lambda: upstream.sent)  # the only slot is busy with ["a"]
    later = [ask(d, route, ["b"], "r2"), ask(d, route, ["c"], "r3")]
    await turns()  # their wait (0 ms) is over; the batch stays open
    later.append(ask(d, route, ["d"], "r4"))
    await turns()
    assert upstream.calls == [["a"]]
    upstream.gate.set()

    assert await asyncio.gather(first, *later) == [["out:a"], ["out:b"], ["out:c"], ["out:d"]]
    assert upstream.calls == [["a"], ["b", "c", "d"]]


async def test_a_held_batch_that_fills_up_goes_at_once() -> None:
    upstream = EchoUpstream()
    upstream.gate.clear()
    d = Dispatcher(upstream)  # the deployment's queue waits on the loop's own clock
    route = model(batching={"max_batch": 2, "max_wait_ms": 0}, max_concurrency=1)

    first = ask(d, route, ["a"], "r1")
    await until(lambda: upstream.sent)
    held = ask(d, route, ["b"], "r2")
    await turns()
    filler = ask(d, route, ["c"], "r3")  # full: it goes to the deployment's queue
    await turns()
    assert d.batcher.open_batches == 0
    upstream.gate.set()

    assert await asyncio.gather(first, held, filler) == [["out:a"], ["out:b"], ["out:c"]]
    assert upstream.calls == [["a"], ["b", "c"]]


async def test_a_model_without_batching_sends_each_request_at_once() -> None:
    upstream = EchoUpstream()
    d = dispatcher(upstream)
    route = build_route(ModelConfig(name="m", api_base=A), source="test", index=0)

    await asyncio.gather(ask(d, route, ["a"], "r1"), ask(d, route, ["b"], "r2"))

    assert upstream.calls == [["a"], ["b"]]
    assert [r.request_id for r in upstream.sent] == ["r1", "r2"]


# Config


def test_a_deployment_may_lower_the_limits_of_the_model() -> None:
    config = ModelConfig(
        name="m",
        deployments=[
            {"api_base": A, "batching": {"max_batch": 4, "max_wait_ms": 10}},
            {"api_base": B},
        ],
        batching={"max_batch": 16, "max_wait_ms": 5},
    )
    limits = config.batch_limits
    assert limits is not None
    assert (limits.max_batch, limits.max_wait_ms) == (4, 5)


def test_a_deployment_takes_the_models_values_for_what_it_leaves_out() -> None:
    config = ModelConfig(
        name="m",
        deployments=[
            {"api_base": A, "batching": {"max_batch": 8}},
            {"api_base": B, "batching": {"max_batch": 12}},
        ],
        batching={"max_batch": 16, "max_wait_ms": 20},
    )
    limits = config.batch_limits
    assert limits is not None
    assert (limits.max_batch, limits.max_wait_ms) == (8, 20)  # not the default wait of 5


def test_without_batching_there_are_no_limits() -> None:
    assert ModelConfig(name="m", api_base=A).batch_limits is None


@pytest.mark.parametrize(
    ("model_batching", "deployment_batching", "error"),
    [
        ({"max_batch": 0}, None, "greater than or equal to 1"),
        ({"max_wait_ms": -1}, None, "greater than or equal to 0"),
        ({"max_batches": 3}, None, "Extra inputs are not permitted"),
        (None, {"max_batch": 4}, "needs the model's 'batching' on"),
    ],
)
def test_bad_batching_is_a_config_error(
    tmp_path: Any, model_batching: Any, deployment_batching: Any, error: str
) -> None:
    deployment: dict[str, Any] = {"api_base": A}
    if deployment_batching is not None:
        deployment["batching"] = deployment_batching
    entry: dict[str, Any] = {"name": "m", "deployments": [deployment]}
    if model_batching is not None:
        entry["batching"] = model_batching
    path = tmp_path / "config.yaml"
    path.write_text(orjson.dumps({"models": [entry]}).decode())

    with pytest.raises(ConfigError, match=error):
        load_config(path)


def test_check_config_shows_the_limits_a_model_batches_with(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = {
        "name": "m",
        "deployments": [{"api_base": A, "batching": {"max_batch": 4}}, {"api_base": B}],
        "batching": {"max_batch": 32, "max_wait_ms": 2.5},
    }
    path = tmp_path / "config.yaml"
    path.write_text(orjson.dumps({"models": [entry, {"name": "n", "api_base": A}]}).decode())

    assert main(["check-config", str(path)]) == 0

    out = capsys.readouterr().out
    assert out.count("batching:") == 1
    assert "    batching: max_batch 4, max_wait_ms 2.5\n" in out
