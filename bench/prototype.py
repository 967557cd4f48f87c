"""The yardstick the performance issue was written against, rebuilt to measure in the same run.

    .venv/bin/python bench/prototype.py --port 14002 --nginx-url URL --slow-url URL
    .venv/bin/python bench/run.py --yardstick      # measures it next to the proxy (bench/README.md)

The issue's targets come from "small throwaway prototypes (FastAPI + pydantic + orjson on
uvicorn with uvloop and httptools, one core, same harness)"; the one with `aiohttp
ClientSession directly` upstream did 1,990 / 4,296 / 4,073 / 2,792 rps at c = 1 / 16 / 64 /
256 × 50 ms on the machine where the targets were set. This is that prototype: a FastAPI route
with a pydantic body, the messages joined into one prompt, one aiohttp POST in the custom
format, the first output returned as an OpenAI answer with orjson. No keys, limits, logs,
metrics, retries, streaming or error mapping: the bare shape of a proxy. Measured on the same
core in the same run as custom-llm-proxy, it turns the issue's absolute figures into ratios
that carry over between machines (bench/README.md, "The yardstick").
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel

UPSTREAM_MODEL = "meta-llama/Llama-2-13b-hf"


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str
    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False


def build_app(upstreams: dict[str, str]) -> FastAPI:
    session: aiohttp.ClientSession | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal session
        connector = aiohttp.TCPConnector(limit=1000, keepalive_timeout=60)
        session = aiohttp.ClientSession(connector=connector)
        yield
        await session.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> Response:
        assert session is not None
        prompt = " ".join(message.content for message in request.messages)
        custom = {
            "model": UPSTREAM_MODEL,
            "params": {
                "prompt": [prompt],
                "max_tokens": request.max_tokens,
                "temperature": request.temperature,
                "top_p": request.top_p,
            },
        }
        async with session.post(
            upstreams[request.model],
            data=orjson.dumps(custom),
            headers={"content-type": "application/json"},
        ) as upstream:
            answer = orjson.loads(await upstream.read())
        text = answer["data"][0]["output"][0]
        body = {
            "id": "chatcmpl-prototype",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nginx-url", required=True, help="upstream of model 'llama'")
    parser.add_argument("--slow-url", required=True, help="upstream of model 'llama-slow'")
    args = parser.parse_args()
    app = build_app({"llama": args.nginx_url, "llama-slow": args.slow_url})
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
