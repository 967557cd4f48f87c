"""Instructions per request, counted by valgrind: a cost a shared machine cannot move.

    .venv/bin/python bench/instructions.py --compare 03ea53c         # plain and stream rows
    .venv/bin/python bench/instructions.py --compare-dir ../old --rows plain --requests 300

wrk's rates and CPU times move with whatever else runs here, by 5-10 % between runs of the
same code even in ABBA order (README, "Plain chat after the agents work"). The instructions a
request executes hardly move (about 1 % between runs): a change of a few percent in the proxy's
own cost shows, and where it went can be looked for (cg_annotate on the kept output files).

Each proxy (ours: this checkout; the compared one: a commit, checked out for the run into a
temporary git worktree, or a directory) runs `serve --config bench/proxy_config.yaml` under
`valgrind --tool=cachegrind --cache-sim=no`, with this checkout's Python environment, in front of
nginx (bench/nginx.conf.template, the zero-cost upstream), twice per row: once for `--warmup`
requests, once for `--warmup` + `--requests`. One client sends them one after another on one
keep-alive connection and checks every answer. The difference of the two totals, divided by
`--requests`, is one request's cost, with the start-up and the shutdown cancelled out.

Instructions are not time: valgrind runs one request at a time on a simple model of a CPU, so
what concurrency costs (the event loop's turns with many requests ready, the garbage
collector's walks over the requests in flight) and cache misses are not in the count. The
wrk benchmark (bench/run.py) measures those; this one says whether the code itself got dearer.
Needs valgrind and nginx (`apt-get install valgrind nginx`). A row takes about 20 s per 1,000
requests per proxy.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import procs
from load import BENCH_DIR
from slow_upstream import ANSWER

REPO = BENCH_DIR.parent
CONFIG = BENCH_DIR / "proxy_config.yaml"
API_KEY = "sk-bench-1234"
EXPECTED = b"ARIS."  # the answer nginx gives, the echoed prompt "…is P" taken off
ROWS = ("plain", "stream")
_TOTAL = re.compile(rb"I\s+refs:\s+([\d,]+)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    compared = parser.add_mutually_exclusive_group()
    compared.add_argument("--compare", metavar="COMMIT", help="a commit of this repository")
    compared.add_argument("--compare-dir", type=Path, help="another checkout of the proxy")
    parser.add_argument("--rows", default=",".join(ROWS), help="plain,stream [both]")
    parser.add_argument("--requests", type=int, default=1000, help="counted requests [1000]")
    parser.add_argument("--warmup", type=int, default=200, help="requests in both runs [200]")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    args.rows = [row for row in args.rows.split(",") if row]
    unknown = set(args.rows) - set(ROWS)
    if unknown or not args.rows:
        parser.error(f"--rows: choose from {', '.join(ROWS)}")
    if args.requests < 1 or args.warmup < 1:
        parser.error("--requests and --warmup must be at least 1")
    return args


@dataclass
class Proxy:
    label: str
    tree: Path  # where `python -m app` is run from


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("valgrind", "nginx"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed: apt-get install {tool}", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as scratch:
        work = Path(scratch)
        with contextlib.ExitStack() as stack:
            proxies = [Proxy("custom-llm-proxy", REPO)]
            if args.compare:
                tree = stack.enter_context(_worktree(args.compare, work / "compared"))
                proxies.append(Proxy(args.compare, tree))
            elif args.compare_dir:
                proxies.append(Proxy(str(args.compare_dir), args.compare_dir.resolve()))
            nginx_port = stack.enter_context(_nginx(work / "nginx"))
            results = {
                row: {
                    proxy.label: per_request(proxy, row, nginx_port, args, work)
                    for proxy in proxies
                }
                for row in args.rows
            }
    print(report(results, proxies, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def per_request(
    proxy: Proxy, row: str, nginx_port: int, args: argparse.Namespace, work: Path
) -> int:
    """Instructions one request of `row` costs `proxy`: two counted runs, their difference."""
    warmup: int = args.warmup
    requests: int = args.requests
    short = count(proxy, row, nginx_port, warmup, work)
    long = count(proxy, row, nginx_port, warmup + requests, work)
    return (long - short) // requests


def count(proxy: Proxy, row: str, nginx_port: int, requests: int, work: Path) -> int:
    """The instructions `serve` executes from start to exit, answering `requests`."""
    port = procs.free_port({nginx_port})
    log = work / f"valgrind-{os.getpid()}-{port}.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PROXY_")},
        "PYTHONPATH": str(proxy.tree),
        "PYTHONHASHSEED": "0",  # the same dict and set layouts in every run
        "BENCH_NGINX_PORT": str(nginx_port),
    }
    argv = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        f"--log-file={log}",
        sys.executable,
        "-m",
        "app",
        "serve",
        "--config",
        str(CONFIG),
        "--port",
        str(port),
    ]
    server = _spawn(argv, cwd=proxy.tree, env=env)
    try:
        _wait_listening(port, server)
        _send(port, row == "stream", requests)
        server.send_signal(signal.SIGINT)  # a clean exit: valgrind writes its totals
        server.wait(timeout=300)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    found = _TOTAL.search(log.read_bytes())
    if found is None:
        raise RuntimeError(f"no instruction total in {log}: {log.read_text()[-2000:]}")
    total: int = int(found.group(1).replace(b",", b""))
    return total


def _send(port: int, stream: bool, requests: int) -> None:
    request: dict[str, object] = {
        "model": "llama",
        "messages": [{"role": "user", "content": "The capital of France is P"}],
        "max_tokens": 32,
    }
    if stream:
        request["stream"] = True
    body = json.dumps(request).encode()
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        for _ in range(requests):
            connection.request("POST", "/v1/chat/completions", body, headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200 or EXPECTED not in answer:
                raise RuntimeError(f"wrong answer {response.status}: {answer[:300]!r}")
    finally:
        connection.close()


def _spawn(
    argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A server in its own session (killed as a group), its output thrown away."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_listening(port: int, server: subprocess.Popen[bytes]) -> None:
    give_up = time.monotonic() + 300  # valgrind starts Python 20-50x slower
    while not _listening(port):
        if server.poll() is not None:
            raise RuntimeError(f"the proxy exited with {server.returncode} before listening")
        if time.monotonic() > give_up:
            raise RuntimeError(f"the proxy did not listen on {port} within 300 s")
        time.sleep(0.1)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _nginx(prefix: Path) -> Iterator[int]:
    """nginx answering every POST with the custom-format ANSWER, on a free port."""
    port = procs.free_port(set())
    (prefix / "tmp").mkdir(parents=True)
    template = (BENCH_DIR / "nginx.conf.template").read_text()
    conf = template.replace("@PORT@", str(port)).replace("@ANSWER@", ANSWER.decode())
    (prefix / "nginx.conf").write_text(conf)
    server = _spawn(
        ["nginx", "-e", "stderr", "-p", f"{prefix}/", "-c", "nginx.conf", "-g", "daemon off;"]
    )
    try:
        _wait_listening(port, server)
        yield port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@contextlib.contextmanager
def _worktree(commit: str, path: Path) -> Iterator[Path]:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(path), commit],
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=True
        )


def report(
    results: dict[str, dict[str, int]], proxies: list[Proxy], args: argparse.Namespace
) -> str:
    ours = proxies[0].label
    lines = [
        f"instructions per request (valgrind), {args.requests} requests after {args.warmup}, "
        "one at a time on one connection",
        "",
    ]
    header = f"{'row':8} {ours:>18}"
    if len(proxies) > 1:
        header += f" {proxies[1].label:>18} {'ours ÷ compared':>16}"
    lines.append(header)
    for row, counts in results.items():
        line = f"{row:8} {counts[ours]:>18,}"
        if len(proxies) > 1:
            other = counts[proxies[1].label]
            line += f" {other:>18,} {counts[ours] / other:>15.3f}×"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
