"""Log formatters: one JSON object per line for machines (`PROXY_LOG_FORMAT=json`), text for people.

A record may carry structured fields in `extra={"fields": {...}}` (the access log's request
fields, see app.telemetry). The JSON formatter puts them beside `time`, `level`, `logger` and
`message`; the text formatter appends them to the line as one compact JSON object (a
`name=value` rendering costs several times the rest of the line, once per request). Every
other record — the proxy's own, uvicorn's — is formatted the same way, so a JSON log has
nothing but JSON lines.
"""

from __future__ import annotations

import logging
import time
from typing import Any

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


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...fields, "exception"?}` on one line."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()

    def _utc_time(self, record: logging.LogRecord) -> str:
        """RFC 3339 in UTC with milliseconds. Formatted once per second, the milliseconds
        from a table: datetime's isoformat costs more than the rest of the line."""
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._second_text + _MILLISECONDS[int(record.msecs)]


class TextFormatter(logging.Formatter):
    """The usual `time LEVEL logger: message`, then the record's fields, if any, as JSON."""

    def __init__(self, fmt: str = DEFAULT_TEXT_FORMAT) -> None:
        super().__init__(fmt)
        self._second = -1
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging's default local time, formatted once per second (strftime is slow)."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        return f"{self._second_text},{int(record.msecs):03d}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = getattr(record, "fields", None)
        if not fields:
            return line
        return f"{line} {orjson.dumps(fields, default=str).decode()}"
