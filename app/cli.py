"""Command line: `serve`, `mock-upstream`, `check-config`."""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from app.config import ConfigError
from app.main import create_app, prepare
from app.routing import Router
from app.server_protocol import CoalescingHttpToolsProtocol
from app.settings import Settings

if TYPE_CHECKING:
    from app.mock_upstream.plan import Fault, Latency

log = logging.getLogger("app")

# Read when neither --config nor PROXY_CONFIG names a config and this file exists: where the
# container image (and a system install) expects one.
DEFAULT_CONFIG = Path("/etc/custom-llm-proxy/config.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.run(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="custom-llm-proxy",
        description="OpenAI-compatible proxy for custom LLM API endpoints.",
    )
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", type=Path, help="YAML config (env PROXY_CONFIG)")
    serve.add_argument("--host", help="bind address (env PROXY_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env PROXY_PORT, default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (env PROXY_WORKERS)")
    serve.add_argument("--log-level", help="debug, info, warning, error (env PROXY_LOG_LEVEL)")
    serve.add_argument(
        "--log-format", choices=["text", "json"], help="text or json (env PROXY_LOG_FORMAT)"
    )
    serve.set_defaults(run=_serve)

    mock = commands.add_parser(
        "mock-upstream",
        help="run the reference custom-format server",
        description="Run the reference server of the custom format, with faults on demand.",
        epilog=_MOCK_UPSTREAM_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mock.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    mock.add_argument("--port", type=int, default=9000, help="port (default 9000)")
    latency = mock.add_mutually_exclusive_group()
    latency.add_argument(
        "--latency",
        type=_mock_option(_latency),
        metavar="DIST",
        help="delay before every answer, drawn per request: fixed:MS, uniform:LO-HI, exp:MEAN, "
        "normal:MEAN,SD (ms)",
    )
    latency.add_argument(
        "--delay-ms",
        dest="latency",
        type=_mock_option(lambda ms: _latency(f"fixed:{ms}")),
        metavar="MS",
        help="same as --latency fixed:MS",
    )
    mock.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="fraction of requests (0..1) answered with an error status (default 0)",
    )
    mock.add_argument(
        "--error-status",
        type=int,
        action="append",
        metavar="CODE",
        help="status of those errors, 400..599; repeat it to draw one of several (default 503)",
    )
    mock.add_argument(
        "--fault",
        type=_mock_option(_fault),
        metavar="MODE",
        help="fault mode (below) for the requests that got no error status",
    )
    mock.add_argument(
        "--fault-rate",
        type=float,
        default=1.0,
        metavar="P",
        help="fraction of those requests (0..1) that get the --fault (default 1)",
    )
    mock.add_argument(
        "--retry-after",
        type=int,
        metavar="SECONDS",
        help="send Retry-After: SECONDS with every error status",
    )
    mock.add_argument("--seed", type=int, metavar="N", help="seed the random draws, to repeat runs")
    mock.add_argument(
        "--reasoning",
        action="store_true",
        help="begin every answer with a <think>...</think> block, as a reasoning model does",
    )
    mock.add_argument(
        "--call-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="compute time of every call, as a GPU server's batch (default 0)",
    )
    mock.add_argument(
        "--prompt-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="compute time added per prompt of a call (default 0)",
    )
    mock.add_argument(
        "--max-calls",
        type=int,
        metavar="N",
        help="calls computed at once; the others queue for their turn (default: no limit)",
    )
    mock.set_defaults(run=_mock_upstream)

    check = commands.add_parser("check-config", help="validate a config and show its models")
    check.add_argument("path", type=Path)
    check.set_defaults(run=_check_config)
    return parser


def log_config(level: str, log_format: str = "text", *, access_log: bool = True) -> dict[str, Any]:
    """One format for the proxy's and uvicorn's loggers, in every worker process: text, or one
    JSON object per line (app.logs). The access log is the `app.access` logger at INFO."""
    formatter = "app.logs.JsonFormatter" if log_format == "json" else "app.logs.TextFormatter"
    # Off, the access logger is above INFO, so no request builds its line. On, it has a handler
    # of its own to the same stdout, which writes its lines without logging's records (app.logs).
    access = (
        {"app.access": {"handlers": ["access"], "propagate": False, "level": "INFO"}}
        if access_log
        else {"app.access": {"level": "WARNING"}}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            # stdout, as containers and process managers expect of a service's logs
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stdout",
            },
            "access": {
                "class": "app.logs.AccessHandler",
                "formatter": "default",
                "stream": "ext://sys.stdout",
            },
        },
        "root": {"handlers": ["stdout"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level.upper()},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level.upper()},
            "uvicorn.access": {"handlers": [], "propagate": False},
            **access,
        },
    }


def _serve(args: argparse.Namespace) -> int:
    # Command-line options go into the environment so that every worker process sees them.
    for option, variable in (
        ("config", "PROXY_CONFIG"),
        ("host", "PROXY_HOST"),
        ("port", "PROXY_PORT"),
        ("workers", "PROXY_WORKERS"),
        ("log_level", "PROXY_LOG_LEVEL"),
        ("log_format", "PROXY_LOG_FORMAT"),
    ):
        value = getattr(args, option)
        if value is not None:
            os.environ[variable] = str(value)
    settings = Settings()
    logging.config.dictConfig(_log_config(settings))
    if settings.config is None and DEFAULT_CONFIG.is_file():
        os.environ["PROXY_CONFIG"] = str(DEFAULT_CONFIG)  # the container's mount point
        settings = Settings()
    # What is started here is stopped here, in reverse order, before the interpreter exits.
    with ExitStack() as started:
        if settings.config is None and settings.api_base is None:
            from app.demo import running_demo_upstream

            url = started.enter_context(running_demo_upstream())
            os.environ["PROXY_DEMO_UPSTREAM"] = url
            settings = Settings()
            log.info(
                "no config and no PROXY_API_BASE: serving model 'demo' from the built-in mock "
                "upstream at %s",
                url,
            )
        _log_open_files(*raise_open_file_limit())  # worker processes inherit the limit
        metrics_dir = _share_metrics(settings.workers)  # before any metric is written
        if metrics_dir is not None:
            started.callback(shutil.rmtree, metrics_dir, ignore_errors=True)
        return _run(settings)


def _run(settings: Settings) -> int:
    try:
        app = create_app(settings, tune_gc=True)  # checks the config before anything listens
    except ConfigError as exc:
        print(f"custom-llm-proxy: bad config: {exc}", file=sys.stderr)
        return 2
    target: Any = app if settings.workers == 1 else "app.main:create_app_from_env"
    uvicorn.run(
        target,
        factory=settings.workers > 1,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop=settings.loop,
        http=CoalescingHttpToolsProtocol,
        log_config=_log_config(settings),
        access_log=False,  # the proxy's own, app.access, has the request's fields
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        proxy_headers=False,  # nothing reads the client address; saves an ASGI layer per request
        server_header=False,
    )
    return 0


# Below this many open files, a proxy holds fewer requests than LLM traffic often has in flight.
_FEW_OPEN_FILES = 8192


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft limit on open files to its hard limit: (before, after).

    Each request in flight holds two sockets, the client's and the upstream's, and many hosts
    start services with a soft limit of 1,024 (the hard one is often 524,288 or more). Past
    the limit, new connections fail: clients see refusals, upstreams look unreachable."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # e.g. macOS, whose hard limit may be above what it allows
        return soft, soft
    return soft, hard


def _log_open_files(before: int, after: int) -> None:
    def shown(limit: int) -> str:
        return "unlimited" if limit == resource.RLIM_INFINITY else f"{limit:,}"

    raised = f"raised from {shown(before)} to" if after != before else "at its hard limit,"
    if after == resource.RLIM_INFINITY or after >= _FEW_OPEN_FILES:
        log.info(
            "open files: soft limit %s %s (each request in flight holds two)", raised, shown(after)
        )
        return
    log.warning(
        "open files: soft limit %s %s, so at most about %s requests can be in flight (each "
        "holds two sockets); raise the hard limit (ulimit -Hn, systemd LimitNOFILE=, "
        "docker --ulimit nofile=)",
        raised,
        shown(after),
        f"{after // 2:,}",
    )


def _log_config(settings: Settings) -> dict[str, Any]:
    return log_config(settings.log_level, settings.log_format, access_log=settings.access_log)


def _share_metrics(workers: int) -> Path | None:
    """Let worker processes add up their metrics: prometheus-client's multiprocess mode, in
    which each process writes its figures to files in PROMETHEUS_MULTIPROC_DIR.

    The variable must be set before a worker imports prometheus_client: the workers are
    spawned, fresh interpreters, so setting it here is in time. A directory named by the
    environment is emptied (figures of an earlier run would add up with this one's); one made
    here is returned, to be removed at exit, and carries this process's id in its name, so
    that a later start removes it if this process was killed before it could."""
    named = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if named:
        directory = Path(named)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return None
    if workers == 1:
        return None
    temp = Path(tempfile.gettempdir())
    for left in temp.glob(f"{_METRICS_DIR_PREFIX}*-*"):
        owner = left.name.removeprefix(_METRICS_DIR_PREFIX).partition("-")[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(left, ignore_errors=True)
    made = Path(tempfile.mkdtemp(prefix=f"{_METRICS_DIR_PREFIX}{os.getpid()}-", dir=temp))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(made)
    return made


_METRICS_DIR_PREFIX = "custom-llm-proxy-metrics-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


_MOCK_UPSTREAM_EPILOG = """\
fault modes (--fault MODE, or the request header x-mock-fault: MODE):
  status:CODE  malformed  no-data  not-ok  html  wrong-count  non-string
  empty-output  huge[:BYTES]  trickle  reset-body  reset  hang
other request headers: x-mock-delay-ms: MS, x-mock-retry-after: SECONDS
a GPU server's batches: --call-ms 100 --prompt-ms 2 --max-calls 4
counters: GET /_mock/stats, POST /_mock/reset-stats
tools and JSON: a prompt offering tools gets a call, one asking for JSON a JSON object
details: the docstring of app/mock_upstream/__init__.py"""


def _mock_option(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser of app.mock_upstream: its ValueError is a usage error."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


# The mock's modules are imported only when it runs: `serve` starts faster without them.


def _latency(text: str) -> Latency:
    from app.mock_upstream import parse_latency

    return parse_latency(text)


def _fault(text: str) -> Fault:
    from app.mock_upstream import parse_fault

    return parse_fault(text)


def _mock_upstream(args: argparse.Namespace) -> int:
    from app import mock_upstream

    try:
        plan = mock_upstream.FaultPlan(
            latency=args.latency or mock_upstream.Fixed(),
            error_rate=args.error_rate,
            error_statuses=tuple(args.error_status or mock_upstream.DEFAULT_ERROR_STATUSES),
            fault=args.fault,
            fault_rate=args.fault_rate,
            retry_after=args.retry_after,
            seed=args.seed,
            reasoning=args.reasoning,
            call_ms=args.call_ms,
            prompt_ms=args.prompt_ms,
            max_calls=args.max_calls,
        )
    except ValueError as exc:
        print(f"custom-llm-proxy mock-upstream: error: {exc}", file=sys.stderr)
        return 2
    mock_upstream.run_mock_upstream(args.host, args.port, plan=plan)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings = Settings(config=args.path)
    try:
        config, router = prepare(settings)
    except ConfigError as exc:
        print(f"custom-llm-proxy: bad config: {exc}", file=sys.stderr)
        return 2
    print(f"{args.path}: OK, {len(config.models)} model(s)")
    _print_routes(router)
    if settings.api_base:
        print(f"other model names pass through to {settings.api_base}")
    print(f"client API keys: {len(config.api_keys) or 'none (open)'}")
    return 0


def _aliases(aliases: list[str]) -> str:
    return f" (aliases: {', '.join(aliases)})" if aliases else ""


def _print_routes(router: Router) -> None:
    for route in router.routes:
        model = route.config
        counting = f"tokenizer {model.tokenizer}" if route.counter.exact else "estimated tokens"
        print(
            f"- {route.name}{_aliases(model.aliases)} -> {route.upstream_model}, "
            f"routing {model.routing}, "
            f"max_retries {model.max_retries}, fallbacks {model.fallbacks or 'none'}\n"
            f"    template {route.template.name}, strip_prompt {model.strip_prompt}, "
            f"{counting}\n"
            f"    tools {model.tools_syntax}, reasoning {model.reasoning}, "
            f"output_retries {model.output_retries}\n"
            f"    defaults {model.defaults.model_dump()}"
        )
        limits = model.batch_limits
        if limits is not None:
            print(f"    batching: max_batch {limits.max_batch}, max_wait_ms {limits.max_wait_ms:g}")
        for deployment in route.deployments.members:
            endpoint = deployment.endpoint
            # Header values are secrets (upstream tokens): only their names are shown.
            headers = ", ".join(name for name in endpoint.headers if name != "content-type")
            # The proxy's URL without its credentials; TLS: whether the config sets its own.
            via = f", through the proxy {endpoint.proxy.display}" if endpoint.proxy else ""
            tls = ", own TLS settings" if endpoint.tls is not None else ""
            print(
                f"    {deployment.label} @ {endpoint.url}: weight {deployment.weight}, "
                f"timeout {endpoint.timeout:g} s, "
                f"max_concurrency {deployment.max_concurrency or 'unlimited'}, "
                f"upstream model {deployment.upstream_model or route.upstream_model}, "
                f"headers {headers or 'none'}{via}{tls}"
            )


if __name__ == "__main__":
    sys.exit(main())
