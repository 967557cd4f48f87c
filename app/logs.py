"""Log formatters: one JSON object per line for machines (`PROXY_LOG_FORMAT=json`), text for people.

A record may carry structured fields in `extra={"fields": {...}}` (the access log's request
fields, see app.telemetry). The JSON formatter puts them beside `time`, `level`, `logger` and
`message`; the text formatter appends them to the line as one compact JSON object (a
`name=value` rendering costs several times the rest of the line, once per request). Every
other record — the proxy's own, uvicorn's — is formatted the same way, so a JSON log has
nothing but JSON lines.

The access log writes a line per request, and logging's way there (a record, the logger tree,
filters, the handler's format) cost about a tenth of a request's CPU. So the CLI's log config
gives `app.access` a handler of its own, `AccessHandler`, and app.telemetry hands it the line's
parts directly (`write_fields`): the same line, formatted by the same formatter, without the
record. Anything else on `app.access` (a handler or filter added by an embedding application)
makes it go the usual way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TextIO

import orjson

DEFAULT_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))


class FieldsRecord(logging.LogRecord):
    """A record with `fields`, made without LogRecord.__init__'s lookups of the source file,
    process and thread, which cost more than formatting the line (the access log makes one per
    request). Its source attributes are empty; every format here shows only the time, level,
    logger, message and fields."""

    def __init__(
        self, name: str, level: int, msg: str, args: tuple[object, ...], fields: dict[str, object]
    ) -> None:
        now = time.time()
        self.name = name
        self.msg = msg
        self.args = args
        self.levelno = level
        self.levelname = logging.getLevelName(level)
        self.pathname = self.filename = self.module = ""
        self.lineno = 0
        self.funcName = ""
        self.exc_info = None
        self.exc_text = None
        self.stack_info = None
        self.created = now
        self.msecs = (now - int(now)) * 1000
        self.relativeCreated = 0.0
        self.thread = None
        self.threadName = None
        self.processName = None
        self.process = None
        self.fields = fields


class FieldsFormatter(logging.Formatter):
    """A formatter that can also format a line from its parts, without a record."""

    def format_fields(
        self, logger: str, level: str, message: str, fields: dict[str, object]
    ) -> str:
        """What `format` makes of an INFO-or-higher FieldsRecord with these parts, now."""
        record = FieldsRecord(logger, logging.getLevelName(level), message, (), fields)
        return self.format(record)


class AccessHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The access log's stream handler; `write_fields` is its fast path (module docstring).

    Lines written in one step of an event loop go out together at the end of the step, in one
    write: under load many requests end in the same step, and a write to a pipe or file costs
    about as much as formatting the line. Nothing waits longer than the step; without a running
    loop a line is written at once."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._pending: list[str] | None = None

    def write_fields(self, logger: str, message: str, fields: dict[str, object]) -> None:
        formatter = self.formatter
        assert isinstance(formatter, FieldsFormatter)
        line = formatter.format_fields(logger, "INFO", message, fields) + self.terminator
        with self.lock:  # type: ignore[union-attr]
            if self._pending is not None:
                self._pending.append(line)
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._write(line)
                return
            self._pending = [line]
            loop.call_soon(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        self.flush()  # the lines held from this step go first
        super().emit(record)

    def flush(self) -> None:
        """Write the lines held for the end of the step, then flush the stream."""
        with self.lock:  # type: ignore[union-attr]
            pending = self._pending
            if pending:
                self._pending = None
                self.stream.write("".join(pending))
            super().flush()

    def _write(self, text: str) -> None:
        self.stream.write(text)
        super().flush()

    def fast_path(self, logger: logging.Logger) -> bool:
        """Whether `logger`'s lines may skip logging's machinery: this handler is its only
        output, nothing filters, and the formatter can format from parts."""
        return (
            logger.handlers == [self]
            and not logger.filters
            and not self.filters
            and isinstance(self.formatter, FieldsFormatter)
            and self.level <= logging.INFO
        )


class JsonFormatter(FieldsFormatter):
    """`{"time", "level", "logger", "message", ...fields, "exception"?}` on one line."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def format_fields(
        self, logger: str, level: str, message: str, fields: dict[str, object]
    ) -> str:
        now = time.time()
        entry = _entry(self._time_text(now, _msecs(now)), level, logger, message, fields)
        return orjson.dumps(entry, default=str).decode()

    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(
            self._utc_time(record),
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "fields", None),
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()

    def _utc_time(self, record: logging.LogRecord) -> str:
        return self._time_text(record.created, int(record.msecs))

    def _time_text(self, created: float, msecs: int) -> str:
        """RFC 3339 in UTC with milliseconds. Formatted once per second, the milliseconds
        from a table: datetime's isoformat costs more than the rest of the line."""
        second = int(created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._second_text + _MILLISECONDS[msecs]


class TextFormatter(FieldsFormatter):
    """The usual `time LEVEL logger: message`, then the record's fields, if any, as JSON."""

    def __init__(self, fmt: str = DEFAULT_TEXT_FORMAT) -> None:
        super().__init__(fmt)
        self._second = -1
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging's default local time, formatted once per second (strftime is slow)."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self._local_time(record.created, int(record.msecs))

    def _local_time(self, created: float, msecs: int) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        return f"{self._second_text},{msecs:03d}"

    def format_fields(
        self, logger: str, level: str, message: str, fields: dict[str, object]
    ) -> str:
        if self._fmt != DEFAULT_TEXT_FORMAT:
            return super().format_fields(logger, level, message, fields)
        now = time.time()
        when = self._local_time(now, _msecs(now))
        return f"{when} {level} {logger}: {message} {orjson.dumps(fields, default=str).decode()}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = getattr(record, "fields", None)
        if not fields:
            return line
        return f"{line} {orjson.dumps(fields, default=str).decode()}"


def _entry(
    when: str, level: str, logger: str, message: str, fields: dict[str, object] | None
) -> dict[str, Any]:
    """A JSON log line's object: time, level, logger, message, then the fields."""
    entry: dict[str, Any] = {"time": when, "level": level, "logger": logger, "message": message}
    if fields:
        entry.update(fields)
    return entry


def _msecs(now: float) -> int:
    """The milliseconds of a `time.time()` value, as LogRecord counts them."""
    return int((now - int(now)) * 1000)
