"""The daemon's log lines: one JSON object per line on stderr, so a log shipper (journald, Loki, ELK)
parses every line. A traceback is a field (``exc``), never extra lines; Python warnings and exceptions
that escape a thread go through the same formatter."""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal

LogFormat = Literal["json", "text"]


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg"[, "thread"][, "exc"]}``, one line, ASCII (non-ASCII escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.threadName and record.threadName != "MainThread":
            line["thread"] = record.threadName
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def configure_logging(level: str = "INFO", log_format: LogFormat = "json") -> None:
    """Send every log record (and warnings, and exceptions escaping threads) to stderr in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception
    sys.excepthook = _log_uncaught


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    logging.getLogger("steel.thread").critical("thread %s died", name, exc_info=exc_info)


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("steel").critical("uncaught %s", exc_type.__name__, exc_info=(exc_type, exc, tb))
