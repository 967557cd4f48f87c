"""Which HTTP client should the proxy use upstream? CPU per request, measured, same conditions.

    .venv/bin/python bench/clients.py [--requests 4000] [--conc 16]

Starts nginx (the benchmark's zero-cost upstream, bench/nginx.conf.template) on the load CPU,
then, on the other CPU, POSTs the same custom-format request through each client in turn:
httpx.AsyncClient, aiohttp.ClientSession and the project's own app.http_client.HTTPPool, all on
uvloop. Prints requests/s and process CPU time per request (time.process_time: this process
only, so nginx's work is not counted). The proxy's own per-request budget is a few hundred µs,
so the client's share decides much of it; README "Performance" records the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import procs  # noqa: E402  (bench/ is a folder of scripts)
from run import answers, start_nginx  # noqa: E402
from slow_upstream import ANSWER  # noqa: E402

from app.http_client import HTTPPool, prepare_post  # noqa: E402

BODY = (
    b'{"model": "meta-llama/Llama-2-13b-hf", "params": {"prompt": ["The capital of France is P"],'
    b' "max_tokens": 32, "temperature": 0.7, "top_p": 1.0, "top_k": 40}}'
)
HEADERS = {"content-type": "application/json", "x-request-id": "0123456789abcdef"}
Post = Callable[[], Awaitable[bytes]]


async def measure(label: str, post: Post, requests: int, conc: int) -> None:
    async def worker(count: int) -> None:
        for _ in range(count):
            body = await post()
            assert b"PARIS" in body, body[:200]

    await asyncio.gather(*(worker(50) for _ in range(conc)))  # warm up: connections, caches
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(requests // conc) for _ in range(conc)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = requests // conc * conc
    print(f"{label:34s} {done / wall:9,.0f} req/s {cpu / done * 1e6:9.1f} µs CPU/request")


async def compare(url: str, requests: int, conc: int) -> None:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1000)) as client:

        async def httpx_post() -> bytes:
            return (await client.post(url, content=BODY, headers=HEADERS)).content

        await measure("httpx.AsyncClient", httpx_post, requests, conc)

    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def aiohttp_post() -> bytes:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                return await response.read()

        await measure("aiohttp.ClientSession", aiohttp_post, requests, conc)

    pool = HTTPPool()
    target = prepare_post(url, {"content-type": "application/json"})
    extra = b"x-request-id: 0123456789abcdef\r\n"

    async def pool_post() -> bytes:
        async with asyncio.timeout(300):  # the proxy always runs it under a timeout
            return (await pool.post(target, extra, BODY)).body

    await measure("app.http_client.HTTPPool", pool_post, requests, conc)
    await pool.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--conc", type=int, default=16)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    load_cpu, client_cpu = cpus[0], cpus[-1]
    port = procs.free_port(set())
    out = Path(tempfile.mkdtemp(prefix="clp-clients-"))
    url = f"http://127.0.0.1:{port}/"
    with procs.Servers(out, out) as servers:
        nginx = start_nginx(servers, out / "nginx", port, [load_cpu], dict(os.environ))
        procs.wait_until(
            functools.partial(answers, url, b"{}", {}, ANSWER),
            deadline_s=30,
            what=f"waiting for nginx at {url}",
            server=nginx,
        )
        os.sched_setaffinity(0, {client_cpu})
        print(
            f"nginx on CPU {load_cpu}, clients on CPU {client_cpu}; "
            f"{args.requests} POSTs at concurrency {args.conc}"
        )
        uvloop.run(compare(url, args.requests, args.conc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
