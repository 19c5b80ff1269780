"""The daemon log: the gateway's own messages (start, reload, warnings, errors).

One line a message: ``TIME LEVEL LOGGER: MESSAGE``, TIME in ISO 8601 UTC with
milliseconds, as the access log's.  A message about one request ends with
``request_id=ID``: the code passes the id along, ``log.warning(...,
extra={"request_id": rec.request_id})``; explicit, so it also holds in protocol
callbacks, which run outside any request task (a contextvar set in the task
would not reach them).

Messages quote text from clients and providers (an error message, a tool's
name), so control characters are written escaped (``\\n``, ``\\x1b``): a client
cannot start a forged line.  Traceback lines follow their message indented by
four spaces, so every line that starts a record starts with its timestamp.

Destinations (``[logging] daemon_log``): ``stderr`` (written by the logging
call itself, as Python's ``StreamHandler`` does), or a file, written by a
``LineWriter`` thread (rotated like the access log, reopened on SIGUSR1).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from .log_files import LogFile
from .log_writer import LineWriter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Control characters (C0, DEL, and the C1/Unicode line breaks that some readers
# split lines on) -> visible escapes.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, 0x85)}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x2028: "\\u2028",
                 0x2029: "\\u2029"})
TRACEBACK_INDENT = "    "


def escape(text: str) -> str:
    """``text`` with its control characters written as escapes."""
    return text if text.isprintable() else text.translate(_ESCAPES)


class DaemonFormatter(logging.Formatter):
    """``FORMAT`` in UTC, messages escaped, ``request_id=`` when the record has one."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        record.message = escape(record.message)
        line = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line += f" request_id={escape(str(request_id))}"
        return line

    def formatException(self, ei: Any) -> str:  # noqa: N802
        text = super().formatException(ei)
        return "\n".join(TRACEBACK_INDENT + escape(line) for line in text.splitlines())

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return "\n".join(TRACEBACK_INDENT + escape(line) for line in stack_info.splitlines())


class WriterHandler(logging.Handler):
    """Hands log records to a ``LineWriter`` (formatted on its thread)."""

    def __init__(self, sink: LogFile, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.writer = LineWriter(sink, self._line, name="tw-daemon-log",
                                 on_error=_to_stderr)

    def _line(self, record: logging.LogRecord) -> bytes:
        return (self.format(record) + "\n").encode("utf-8", "backslashreplace")

    def emit(self, record: logging.LogRecord) -> None:
        self.writer.put(record)

    def flush(self) -> None:
        self.writer.flush(1.0)

    def close(self) -> None:
        self.writer.close()
        super().close()


def _to_stderr(message: str) -> None:
    """A daemon log file that cannot be written: say so where someone may see it."""
    try:
        sys.stderr.write(f"gatewayd: daemon log: {message}\n")
    except (OSError, ValueError):
        pass


_handler: WriterHandler | None = None  # the file handler, when daemon_log is a file
_installed: logging.Handler | None = None  # what install() added to the root logger


def install(logging_cfg: Any, level: str, *, rotates: bool = True) -> None:
    """Send the ``tokenway`` messages where ``logging_cfg.daemon_log`` says, at
    ``level``; OSError when the file cannot be opened.  Replaces what an
    earlier call installed, and only that."""
    global _handler, _installed
    handler: logging.Handler
    if logging_cfg.daemon_log == "stderr":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(DaemonFormatter())
        new = None
    else:
        sink = LogFile(logging_cfg.daemon_log, rotate_bytes=logging_cfg.rotate_bytes,
                       rotate_daily=logging_cfg.rotate_daily, keep=logging_cfg.keep,
                       rotates=rotates)
        handler = new = WriterHandler(sink, DaemonFormatter())
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
        if _handler is not None and _installed is _handler:
            _handler.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    _handler, _installed = new, handler


def after_fork(logging_cfg: Any, level: str, *, rotates: bool) -> None:
    """In a forked worker: the parent's writer thread did not come along, so a
    file destination gets a new handler (and thread) of the worker's own."""
    global _handler
    if _handler is not None:
        _handler = None  # the parent's: its thread lives in the parent only
        install(logging_cfg, level, rotates=rotates)


def reopen() -> None:
    """SIGUSR1: reopen the daemon log file (nothing to do on stderr)."""
    if _handler is not None:
        _handler.writer.reopen()


def close() -> None:
    """Write what is queued and stop the writer (before the process exits)."""
    global _handler, _installed
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler.close()
        _handler = _installed = None


def stats() -> dict[str, Any] | None:
    """The daemon log writer's counters (for ``/health``), None on stderr."""
    return None if _handler is None else _handler.writer.stats()
