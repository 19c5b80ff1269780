"""The access log: one line per finished request, as JSON or logfmt.

Every finished request passes ``GatewayState.finish_record`` once; with an
access log configured its record is handed to an ``AccessLog`` there, and the
log's writer thread (``proxy.log_writer``) formats and writes it.  The fields
(docs/logging.md) come from the ``RequestRecord``; a field whose value is not
known (no provider reached, no usage reported) is left out of the line.

Never in a line: an API key, an ``Authorization`` value, prompt or answer text.
The record holds none of them (the key is named by its public id).

Values a client chose (the path, the model, the request id, the end user) are
escaped so that no client can end a line early or forge one:

* JSON: orjson escapes ``"``, ``\\`` and every control character below
  U+0020 (RFC 8259 section 7).  A line with any non-ASCII character is
  written again with ``\\uXXXX`` escapes, so U+0085, U+2028 and U+2029, which
  some line readers (Python's ``str.splitlines``, JavaScript) take for line
  breaks, never reach the file raw.
* logfmt (https://brandur.org/logfmt): a value of plain characters is written
  bare, any other is quoted with JSON string escapes (also ASCII only), which
  logfmt readers such as go-logfmt unquote.
"""

from __future__ import annotations

import json
import operator
import re
import time
from collections.abc import Callable
from typing import Any

import orjson

from .log_files import LogFile, StderrSink, open_sink
from .log_writer import LineWriter

# A logfmt value written without quotes: printable ASCII other than space, "=" and '"'.
_BARE = re.compile(r"[!#-<>-~]+")


class _Clock:
    """ISO 8601 UTC timestamps with milliseconds; the seconds part is built once
    per second (one writer thread uses it)."""

    __slots__ = ("second", "prefix")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def iso(self, ts: float) -> str:
        second = int(ts)
        if second != self.second:
            self.second = second
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self.prefix}.{int((ts - second) * 1000):03d}Z"


# (line field, RequestRecord attribute), in line order after "time".
FIELDS = (
    ("request_id", "request_id"), ("client_addr", "client_addr"), ("key_id", "api_key_id"),
    ("endpoint", "endpoint"), ("protocol", "client_protocol"), ("model", "model"),
    ("served_model", "served_model"), ("provider", "provider"), ("status", "status"),
    ("error_kind", "error_kind"), ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"), ("cached_tokens", "cached_tokens"),
    ("reasoning_tokens", "reasoning_tokens"), ("latency_ms", "latency_ms"),
    ("ttfb_ms", "ttfb_ms"), ("stream", "stream"), ("attempts", "attempts"),
    ("bytes_in", "bytes_in"), ("bytes_out", "bytes_out"), ("cost_usd", "cost_usd"),
    ("end_user", "end_user"),
)
_NAMES = tuple(name for name, _ in FIELDS)
# One C call reads every attribute (about half the time of a dict literal of them).
_values = operator.attrgetter(*(attr for _, attr in FIELDS))


def fields_of(rec: Any, clock: _Clock) -> dict[str, Any]:
    """The access-log fields of a finished ``RequestRecord``, in line order, the
    unknown ones left out (and ``served_model`` when it is the model asked for)."""
    out: dict[str, Any] = {"time": clock.iso(rec.ts)}
    for name, value in zip(_NAMES, _values(rec), strict=True):
        if value is not None:
            out[name] = value
    if rec.served_model == rec.model and "served_model" in out:
        del out["served_model"]
    for name in ("latency_ms", "ttfb_ms"):  # tenths of a millisecond
        if name in out:
            out[name] = round(out[name], 1)
    return out


def json_line(fields: dict[str, Any]) -> bytes:
    try:
        line = orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
        if line.isascii():
            return line
    except orjson.JSONEncodeError:  # a lone surrogate: json escapes it
        pass
    # Raw non-ASCII in a client's value: \\uXXXX escapes (see the module docstring).
    return json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode() + b"\n"


def logfmt_line(fields: dict[str, Any]) -> bytes:
    parts = []
    for key, value in fields.items():
        kind = type(value)
        if kind is str:
            if not _BARE.fullmatch(value):
                value = json.dumps(value)  # quoted, escaped, ASCII only
        elif kind is bool:
            value = "true" if value else "false"
        parts.append(f"{key}={value}")
    return (" ".join(parts) + "\n").encode()


FORMATS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "json": json_line, "logfmt": logfmt_line}


def formatter(access_format: str) -> Callable[[Any], bytes]:
    """record -> one access line in ``access_format`` ("json" or "logfmt")."""
    clock = _Clock()
    render = FORMATS[access_format]
    return lambda rec: render(fields_of(rec, clock))


class AccessLog:
    """The access log of one process: ``record`` is what ``finish_record`` calls."""

    def __init__(self, target: str, access_format: str, *, rotate_bytes: int = 0,
                 rotate_daily: bool = False, keep: int = 5, rotates: bool = True,
                 clock: Callable[[], float] = time.time,
                 on_error: Callable[[str], None] | None = None, **writer: Any) -> None:
        """Opens the file (OSError if it cannot be) and starts the writer thread."""
        sink: LogFile | StderrSink = open_sink(
            target, rotate_bytes=rotate_bytes, rotate_daily=rotate_daily, keep=keep,
            rotates=rotates, clock=clock)
        self.writer = LineWriter(sink, formatter(access_format), name="tw-access-log",
                                 on_error=on_error, **writer)
        self.record = self.writer.put
        self.reopen = self.writer.reopen
        self.flush = self.writer.flush
        self.close = self.writer.close
        self.stats = self.writer.stats


def open_access_log(config: Any, *, rotates: bool = True,
                    on_error: Callable[[str], None] | None = None) -> AccessLog | None:
    """The access log ``config.logging`` asks for, or None when it is off."""
    cfg = config.logging
    if cfg.access_log == "off":
        return None
    return AccessLog(cfg.access_log, cfg.access_format, rotate_bytes=cfg.rotate_bytes,
                     rotate_daily=cfg.rotate_daily, keep=cfg.keep, rotates=rotates,
                     on_error=on_error)
