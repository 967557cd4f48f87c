"""app.serving: generation end to end with a fake upstream; large texts counted off the loop."""

from __future__ import annotations

import threading
from dataclasses import replace

import orjson

from app.auth import KeyChecker
from app.config import ModelConfig, ProxyConfig
from app.dispatch import Dispatcher
from app.ids import IdGenerator
from app.routing import Router, build_route
from app.schemas.custom import Sampling
from app.serving import Generation, generate
from app.state import ProxyState
from app.tokens import LARGE_TEXT
from app.upstream import UpstreamRequest, UpstreamResponse


class EchoUpstream:
    """Answers like the custom format: each prompt echoed, then ' done.'."""

    def __init__(self) -> None:
        self.requests: list[UpstreamRequest] = []

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.requests.append(request)
        prompts = orjson.loads(request.body)["params"]["prompt"]
        data = [{"prompt": p, "output": [p + " done."]} for p in prompts]
        return UpstreamResponse(200, orjson.dumps({"data": data, "message": "ok"}))

    async def aclose(self) -> None:
        return None


class RecordingCounter:
    """An 'exact' counter that notes which thread counted what."""

    exact = True

    def __init__(self) -> None:
        self.threads: list[str] = []

    def count(self, text: str) -> int:
        self.threads.append(threading.current_thread().name)
        return len(text.split())


def make(prompt: str) -> tuple[ProxyState, Generation, RecordingCounter, EchoUpstream]:
    counter = RecordingCounter()
    route = replace(
        build_route(ModelConfig(name="m", api_base="http://x.test/"), source="t", index=0),
        counter=counter,
    )
    upstream = EchoUpstream()
    state = ProxyState(
        config=ProxyConfig(),
        router=Router({"m": route}, None),
        upstream=upstream,
        dispatcher=Dispatcher(upstream),
        keys=KeyChecker([]),
        fingerprint="fp",
        ids=IdGenerator(),
    )
    job = Generation(
        route=route,
        prompts=[prompt, prompt],
        counted_prompts=[prompt],
        sampling=Sampling(max_tokens=50, temperature=0.0, top_p=1.0, top_k=40),
        stops=(),
        chat=True,
        retarget=lambda _route: job,
    )
    return state, job, counter, upstream


async def test_choices_usage_and_one_upstream_request() -> None:
    state, job, counter, upstream = make("Say hi")
    finished = await generate(state, job, "req-1")
    assert [choice.text for choice in finished.choices] == ["done.", "done."]
    assert [choice.index for choice in finished.choices] == [0, 1]
    # the prompt counts once for n=2; each completion counts
    assert finished.usage == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert len(upstream.requests) == 1
    assert upstream.requests[0].request_id == "req-1"
    assert set(counter.threads) == {threading.current_thread().name}


async def test_large_texts_with_a_real_tokenizer_are_counted_off_the_event_loop() -> None:
    state, job, counter, _ = make("word " * (LARGE_TEXT // 4))
    finished = await generate(state, job, "req-2")
    assert finished.usage["prompt_tokens"] == LARGE_TEXT // 4
    assert counter.threads and threading.current_thread().name not in counter.threads
