"""Floors: the proxy's server and upstream client with none of the proxy's own work on top.

    .venv/bin/python bench/floors.py asgi --port 14003 --nginx-url URL --slow-url URL
    .venv/bin/python bench/run.py --floor forwarder      # measured next to the proxy in one run

Two bare ASGI apps, served the way `custom-llm-proxy serve` serves the proxy (uvicorn, uvloop,
httptools, the proxy's `CoalescingHttpToolsProtocol`, no access log):

- `asgi` reads the request, parses its JSON and answers a fixed chat completion (or, for
  `"stream": true`, a fixed one-chunk stream): the server alone. For the slow model it waits
  `--slow-ms` first (`asyncio.sleep`), so its slow row holds as many requests in flight as the
  others' do.
- `forwarder` does the same after one POST of a fixed custom-format request to the model's
  upstream through `app.http_client.HTTPPool`, and answers with the upstream's first output: the
  server and the upstream client, the part of a request's cost no proxy on this stack can shed.

No keys, validation, templates, translation, usage, ids, logs or metrics. The proxy's CPU per
request minus a floor's, measured in the same run, is what the proxy's own work costs (README,
"Where the time goes").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson
import uvicorn
from starlette.types import Receive, Scope, Send

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.http_client import HTTPPool, prepare_post  # noqa: E402
from app.server_protocol import CoalescingHttpToolsProtocol  # noqa: E402

CUSTOM_REQUEST = orjson.dumps(
    {
        "model": "meta-llama/Llama-2-13b-hf",
        "params": {"prompt": ["The capital of France is P"], "max_tokens": 32},
    }
)
FIXED_OUTPUT = "The capital of France is PARIS."
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def completion(model: str, text: str) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-floor",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
    )


def stream(model: str, text: str) -> bytes:
    chunk = orjson.dumps(
        {
            "id": "chatcmpl-floor",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}],
        }
    )
    return b"data: %s\n\ndata: [DONE]\n\n" % chunk


class Floor:
    """The ASGI app. `upstreams` maps a model name to its URL (the `forwarder`); `waits`, a
    model name to the seconds to wait instead (the `asgi` floor)."""

    def __init__(self, upstreams: dict[str, str], waits: dict[str, float]) -> None:
        headers = {"content-type": "application/json"}
        self.targets = {model: prepare_post(url, headers) for model, url in upstreams.items()}
        self.waits = waits
        self.pool: HTTPPool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http" and scope["method"] == "POST":
            await self.answer(receive, send)
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pool = HTTPPool()
                await send({"type": "lifespan.startup.complete"})
            else:
                if self.pool is not None:
                    await self.pool.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def answer(self, receive: Receive, send: Send) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = orjson.loads(body)
        model = request["model"]
        text = FIXED_OUTPUT
        target = self.targets.get(model)
        if target is not None and self.pool is not None:
            upstream = await self.pool.post(target, b"", CUSTOM_REQUEST, timeout=30.0)
            text = orjson.loads(upstream.body)["data"][0]["output"][0]
        elif model in self.waits:
            await asyncio.sleep(self.waits[model])
        streamed = request.get("stream") is True
        content = stream(model, text) if streamed else completion(model, text)
        headers = SSE_HEADERS if streamed else JSON_HEADERS
        headers = [*headers, (b"content-length", b"%d" % len(content))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("floor", choices=("asgi", "forwarder"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nginx-url", required=True, help="upstream of model 'llama'")
    parser.add_argument("--slow-url", required=True, help="upstream of model 'llama-slow'")
    parser.add_argument("--slow-ms", type=float, default=50.0, help="the asgi floor's wait [50]")
    args = parser.parse_args(argv)
    if args.floor == "forwarder":
        app = Floor({"llama": args.nginx_url, "llama-slow": args.slow_url}, {})
    else:
        app = Floor({}, {"llama-slow": args.slow_ms / 1000})
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,
        access_log=False,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
