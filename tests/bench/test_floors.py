"""bench/floors.py, the bare apps the proxy's CPU per request is compared with, run for real:
the forwarder answers through a real mock upstream, the asgi floor without one; and
`bench/run.py --floor` starts them as the compared proxy."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import orjson
import pytest
from openai import OpenAI

from tests.e2e.servers import Server, clean_env, free_port, mock_stats, running_mock, start_server

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "bench"
FLOORS = (sys.executable, str(BENCH_DIR / "floors.py"))
MESSAGES = [{"role": "user", "content": "The capital of France is P"}]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bench_modules() -> Iterator[dict[str, ModuleType]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH_DIR))  # bench/ is scripts, not a package
        yield {name: importlib.import_module(name) for name in ("floors", "run")}


def start_floor(tmp_path: Path, floor: str, nginx_url: str, slow_url: str, *extra: str) -> Server:
    port = free_port()
    args = [floor, "--port", str(port), "--nginx-url", nginx_url, "--slow-url", slow_url, *extra]
    server = start_server(
        f"{floor}-floor", args, port=port, log_dir=tmp_path, env=clean_env(), program=FLOORS
    )
    try:
        server.wait_ready(None)  # GET answers 404: any HTTP answer means it listens
    except BaseException:
        server.stop()
        raise
    return server


def sdk(server: Server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=10)


@pytest.mark.timeout(60)
def test_forwarder_answers_with_what_the_upstream_said(
    tmp_path: Path, bench_modules: dict[str, ModuleType]
) -> None:
    floors = bench_modules["floors"]
    with running_mock(tmp_path, "mock") as mock:
        direct = httpx.post(f"{mock.url}/inference", content=floors.CUSTOM_REQUEST, timeout=10)
        said = direct.json()["data"][0]["output"][0]
        assert said != floors.FIXED_OUTPUT  # so the answer below can only have come upstream
        url = f"{mock.url}/inference"
        floor = start_floor(tmp_path, "forwarder", url, url)
        try:
            before = mock_stats(mock)["requests"]
            answer = sdk(floor).chat.completions.create(model="llama", messages=MESSAGES)
            chunks = list(
                sdk(floor).chat.completions.create(
                    model="llama-slow", messages=MESSAGES, stream=True
                )
            )
            after = mock_stats(mock)["requests"]
        finally:
            floor.stop()
    assert answer.choices[0].message.content == said
    assert [chunk.choices[0].delta.content for chunk in chunks] == [said]
    assert after - before == 2


@pytest.mark.timeout(60)
def test_asgi_floor_answers_without_an_upstream(
    tmp_path: Path, bench_modules: dict[str, ModuleType]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/"  # nothing listens: it must not be called
    floor = start_floor(tmp_path, "asgi", nowhere, nowhere, "--slow-ms", "200")
    try:
        answer = sdk(floor).chat.completions.create(model="llama", messages=MESSAGES)
        started = time.monotonic()
        slow = sdk(floor).chat.completions.create(model="llama-slow", messages=MESSAGES)
        waited = time.monotonic() - started
        raw = httpx.post(
            f"{floor.url}/v1/chat/completions",
            json={"model": "llama", "messages": MESSAGES, "stream": True},
            timeout=10,
        )
    finally:
        floor.stop()
    fixed = bench_modules["floors"].FIXED_OUTPUT
    assert answer.choices[0].message.content == slow.choices[0].message.content == fixed
    assert waited >= 0.2  # the slow model's wait stands in for the upstream's latency
    assert raw.headers["content-type"] == "text/event-stream"
    events = raw.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert orjson.loads(events[0].removeprefix("data: "))["choices"][0]["delta"] == {
        "content": fixed
    }


@pytest.mark.parametrize(
    ("option", "label", "program"),
    [
        (["--floor", "forwarder"], "forwarder floor", "floors.py forwarder --slow-ms 20"),
        (["--floor", "asgi"], "asgi floor", "floors.py asgi --slow-ms 20"),
        (["--yardstick"], "prototype", "prototype.py"),
    ],
)
def test_run_starts_the_compared_proxy_it_names(
    bench_modules: dict[str, ModuleType], option: list[str], label: str, program: str
) -> None:
    args = bench_modules["run"].parse_args([*option, "--slow-ms", "20"])
    port = int(args.compare_url.removeprefix("http://127.0.0.1:"))
    assert args.compare_label == label
    assert args.compare_cmd == (
        f"{sys.executable} {BENCH_DIR}/{program} --port {port}"
        " --nginx-url $BENCH_NGINX_URL --slow-url $BENCH_SLOW_URL"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--floor", "asgi", "--yardstick"],
        ["--floor", "asgi", "--compare-cmd", "x", "--compare-url", "http://127.0.0.1:1"],
    ],
)
def test_run_takes_one_compared_proxy(
    bench_modules: dict[str, ModuleType], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        bench_modules["run"].parse_args(argv)
    assert exited.value.code == 2
    assert "name the compared proxy" in capsys.readouterr().err
