"""app.logs formatters and the CLI's log config: one JSON object per line, or text with fields."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from typing import Any

import orjson
import pytest

from app.cli import log_config
from app.logs import AccessHandler, JsonFormatter, TextFormatter
from app.telemetry import RequestRecord, Telemetry, log_access

_RFC3339_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def make_record(
    msg: str = "hello %s",
    args: tuple[Any, ...] = ("world",),
    *,
    name: str = "app.test",
    level: int = logging.INFO,
    fields: dict[str, Any] | None = None,
    exc_info: Any = None,
) -> logging.LogRecord:
    extra = {"fields": fields} if fields is not None else None
    return logging.getLogger(name).makeRecord(name, level, "", 0, msg, args, exc_info, extra=extra)


def at(record: logging.LogRecord, created: float) -> logging.LogRecord:
    """The record as if made at `created` (LogRecord derives msecs from it)."""
    record.created = created
    record.msecs = int((created - int(created)) * 1000) + 0.0
    return record


def test_json_line_has_time_level_logger_message() -> None:
    record = at(make_record(), 1795587537.0421)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert orjson.loads(line) == {
        "time": "2026-11-25T06:18:57.042Z",
        "level": "INFO",
        "logger": "app.test",
        "message": "hello world",
    }


def test_json_time_is_utc_with_milliseconds_across_seconds() -> None:
    formatter = JsonFormatter()
    times = []
    for created in (1795587537.999, 1795587538.0, 1795587538.5):
        record = at(make_record(), created)
        times.append(orjson.loads(formatter.format(record))["time"])
    assert times == [
        "2026-11-25T06:18:57.999Z",
        "2026-11-25T06:18:58.000Z",
        "2026-11-25T06:18:58.500Z",
    ]
    assert all(_RFC3339_UTC_MS.fullmatch(value) for value in times)


def test_json_fields_sit_beside_the_message() -> None:
    fields = {"request_id": "abc", "status": 200, "latency_ms": 1.25, "prompt": ["a\nb"]}
    line = JsonFormatter().format(make_record("POST %s %d", ("/v1/x", 200), fields=fields))
    entry = orjson.loads(line)
    assert entry["message"] == "POST /v1/x 200"
    assert {name: entry[name] for name in fields} == fields
    assert line.count("\n") == 0  # the prompt's line break is escaped


def test_json_exception_is_one_field_on_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    line = JsonFormatter().format(make_record("failed", (), level=logging.ERROR, exc_info=exc_info))
    entry = orjson.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["exception"].startswith("Traceback")
    assert "ValueError: boom" in entry["exception"]
    assert "\n" not in line


def test_json_formats_uvicorn_records_and_ignores_their_extras() -> None:
    record = make_record("Started server process [%d]", (4242,), name="uvicorn.error")
    record.color_message = "Started server process [\x1b[36m%d\x1b[0m]"
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["message"] == "Started server process [4242]"
    assert entry["logger"] == "uvicorn.error"
    assert set(entry) == {"time", "level", "logger", "message"}


def test_text_appends_the_fields_as_one_json_object() -> None:
    fields = {"request_id": "abc", "key_name": "", "latency_ms": 1.5, "ttfb_ms": None}
    line = TextFormatter("%(levelname)s %(name)s: %(message)s").format(
        make_record("POST %s", ("/v1/x",), fields=fields)
    )
    prefix = "INFO app.test: POST /v1/x "
    assert line.startswith(prefix)
    assert orjson.loads(line.removeprefix(prefix)) == fields


def test_text_time_is_logging_s_default_local_time() -> None:
    record = at(make_record(), 1795587537.25)
    formatter = TextFormatter()
    assert formatter.formatTime(record) == logging.Formatter().formatTime(record)
    assert formatter.formatTime(record, "%Y") == "2026"


def test_text_without_fields_is_the_plain_format() -> None:
    line = TextFormatter("%(levelname)s %(name)s: %(message)s").format(make_record())
    assert line == "INFO app.test: hello world"


@pytest.mark.parametrize(
    ("log_format", "formatter"),
    [("json", "app.logs.JsonFormatter"), ("text", "app.logs.TextFormatter")],
)
def test_log_config_sends_every_logger_to_stdout_in_one_format(
    log_format: str, formatter: str
) -> None:
    config = log_config("info", log_format)
    assert config["formatters"] == {"default": {"()": formatter}}
    assert config["handlers"]["stdout"]["stream"] == "ext://sys.stdout"
    assert config["root"] == {"handlers": ["stdout"], "level": "INFO"}
    # The access log: its own handler to the same stdout, in the same format, at INFO.
    assert config["handlers"]["access"] == {
        "class": "app.logs.AccessHandler",
        "formatter": "default",
        "stream": "ext://sys.stdout",
    }
    assert config["loggers"]["app.access"] == {
        "handlers": ["access"],
        "propagate": False,
        "level": "INFO",
    }


def test_log_config_can_turn_the_access_log_off() -> None:
    config = log_config("debug", "json", access_log=False)
    assert config["loggers"]["app.access"] == {"level": "WARNING"}
    assert config["root"]["level"] == "DEBUG"


# ---- the access log's fast path ------------------------------------------------------------------

ACCESS_FIELDS: dict[str, Any] = {"request_id": "r-1", "status": 200, "latency_ms": 1.5, "x": None}


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_format_fields_is_the_line_format_makes_of_the_record(formatter: Any) -> None:
    fast = formatter.format_fields("app.access", "INFO", "POST /v1/x 200", ACCESS_FIELDS)
    slow = formatter.format(
        make_record("POST %s %d", ("/v1/x", 200), name="app.access", fields=ACCESS_FIELDS)
    )
    if isinstance(formatter, JsonFormatter):
        fast_entry, slow_entry = orjson.loads(fast), orjson.loads(slow)
        assert _RFC3339_UTC_MS.fullmatch(fast_entry.pop("time"))
        slow_entry.pop("time")
        assert fast_entry == slow_entry
    else:
        when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
        assert re.match(when, fast)
        assert re.sub(when, "", fast) == re.sub(when, "", slow)
        assert fast.endswith(
            'POST /v1/x 200 {"request_id":"r-1","status":200,"latency_ms":1.5,"x":null}'
        )


def test_format_fields_with_a_custom_text_format_goes_through_the_record() -> None:
    formatter = TextFormatter("%(levelname)s|%(name)s|%(message)s")
    line = formatter.format_fields("app.access", "INFO", "GET / 200", {"a": 1})
    assert line == 'INFO|app.access|GET / 200 {"a":1}'


@pytest.fixture
def access_logger() -> Any:
    """app.access as the CLI's log config sets it up, writing to a list; restored afterwards.
    (pytest's log capture adds its handler to non-propagating loggers for the test's call:
    the tests set the handlers again.)"""
    logger = logging.getLogger("app.access")
    saved = (logger.handlers[:], logger.filters[:], logger.propagate, logger.level)
    lines: list[str] = []

    class Lines:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    handler = AccessHandler(Lines())  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter())
    logger.handlers[:] = [handler]
    logger.filters[:] = []
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, handler, lines
    logger.handlers[:], logger.filters[:], logger.propagate, logger.level = saved


def a_record() -> RequestRecord:
    record = RequestRecord(Telemetry(), "r-9", "POST", "/v1/chat/completions", 0.0)
    record.status = 200
    return record


def test_log_access_writes_through_the_access_handler_alone(access_logger: Any) -> None:
    logger, handler, lines = access_logger
    logger.handlers[:] = [handler]  # pytest's log capture listens too; see the next test
    assert handler.fast_path(logger)
    log_access(a_record(), "team-a", 0.25, False)
    [line] = lines
    assert line.endswith("\n") and line.count("\n") == 1
    entry = orjson.loads(line)
    assert entry["message"] == "POST /v1/chat/completions 200"
    assert entry["logger"] == "app.access" and entry["level"] == "INFO"
    assert entry["request_id"] == "r-9" and entry["key_name"] == "team-a"
    assert entry["latency_ms"] == 250.0


def test_log_access_goes_the_usual_way_when_something_else_listens(access_logger: Any) -> None:
    logger, handler, lines = access_logger
    logger.handlers[:] = [handler]
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger.addHandler(Keep())
    assert not handler.fast_path(logger)
    log_access(a_record(), "team-a", 0.25, False)
    assert len(lines) == 1 and len(seen) == 1  # both handlers, from one record
    assert seen[0].getMessage() == "POST /v1/chat/completions 200"
    assert seen[0].fields["key_name"] == "team-a"  # type: ignore[attr-defined]


def test_log_access_honours_a_filter_on_the_logger(access_logger: Any) -> None:
    logger, handler, lines = access_logger
    logger.handlers[:] = [handler]
    logger.addFilter(lambda record: record.fields["status"] != 200)
    assert not handler.fast_path(logger)
    log_access(a_record(), "", 0.1, False)
    assert lines == []


class Writes:
    """A text stream that records each write."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


def json_access_handler(stream: Writes) -> AccessHandler:
    handler = AccessHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter())
    return handler


async def test_lines_of_one_loop_step_go_out_in_one_write() -> None:
    stream = Writes()
    handler = json_access_handler(stream)
    handler.write_fields("app.access", "POST /a 200", {"n": 1})
    handler.write_fields("app.access", "POST /b 200", {"n": 2})
    assert stream.writes == []  # held until the end of the step
    await asyncio.sleep(0)
    [write] = stream.writes
    assert [orjson.loads(line)["n"] for line in write.splitlines()] == [1, 2]
    handler.write_fields("app.access", "POST /c 200", {"n": 3})
    await asyncio.sleep(0)
    assert len(stream.writes) == 2  # a later step, a write of its own


async def test_flush_and_records_write_the_held_lines_first() -> None:
    stream = Writes()
    handler = json_access_handler(stream)
    handler.write_fields("app.access", "POST /a 200", {"n": 1})
    handler.flush()  # as logging.shutdown does at exit
    assert len(stream.writes) == 1
    handler.write_fields("app.access", "POST /b 200", {"n": 2})
    handler.handle(make_record("later", (), name="app.access"))
    assert [orjson.loads(text)["message"] for text in stream.writes[1:]] == [
        "POST /b 200",
        "later",
    ]
    await asyncio.sleep(0)
    assert len(stream.writes) == 3  # nothing left to write at the end of the step


def test_without_a_running_loop_a_line_is_written_at_once() -> None:
    stream = Writes()
    json_access_handler(stream).write_fields("app.access", "POST /a 200", {})
    assert len(stream.writes) == 1
