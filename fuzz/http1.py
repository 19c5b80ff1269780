"""Differential fuzz target for the two HTTP/1.1 request parsers (``proxy/h1_parsers.py``).

The input is the bytes a client sends on one connection. They go through the real
connection (``proxy.h1.HTTPConnection``) once on each backend, httptools (llhttp) and
h11, with a host that records every request head when it is admitted, every whole
request when it is handled (each answered at once with a 200, so pipelined requests
go on) and the error the connection answers with when it refuses the bytes. The same
bytes are fed whole, a line at a time, in pseudo-random pieces and (when short) a byte
at a time; for each split:

1. Nothing escapes the connection but its own answers: the dispatcher's last-resort
   abort (``_dispatch`` catching an exception) never runs.
2. Every request head and every whole request that both backends accepted is the same
   on both: method, target, headers (names lower-cased, values), HTTP version, body.
   Two parsers that accept the same bytes and read them differently are how request
   smuggling starts (RFC 9112 §11.2): no difference of this kind is tolerated.
3. Where one backend went further than the other (accepted a head or a whole request
   the other did not), the other one refused the bytes, and the difference belongs to
   one of the classes documented in fuzz/README.md ("http1: where the parsers
   differ"), checked by ``CLASSES`` below. A backend still waiting for bytes that the
   other accepted is a framing difference and always fails.
4. For each backend, what two splits both accepted is the same: the parse does not
   depend on where reads end.

Statuses are not compared: llhttp answers 400 where h11 answers 501 for a transfer
coding it does not know, and both are refusals.

``python -m fuzz.run http1`` runs it long; every failing input belongs in
``fuzz/corpus/http1/``, which the normal test run replays.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fuzz import chunks
from proxy.config import ServerConfig
from proxy.h1 import HTTPConnection
from proxy.wire import Request

BACKENDS = ("httptools", "h11")
# Small limits, so that inputs of a few hundred bytes reach the 431 and 413 paths.
SETTINGS = replace(ServerConfig(), max_header_bytes=512, max_body_bytes=2048)
# For finding where each request ends, byte at a time: no limit in reach.
UNLIMITED = replace(ServerConfig(), max_header_bytes=1 << 20, max_body_bytes=1 << 20)
# Byte-at-a-time feeding of large inputs would only slow the fuzzer down.
MAX_BYTEWISE_BYTES = 1024

Head = tuple[str, bytes, tuple[tuple[bytes, bytes], ...], str]


class _Clock:
    """The connection reads ``loop.time()`` for its deadlines only: time stands still."""

    def time(self) -> float:
        return 0.0


class _Transport:
    """The connection's socket: keeps what it is told to write and whether it was cut."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass


@dataclass
class Run:
    """What one backend made of the bytes: heads and requests with the number of bytes
    fed when each was accepted, and how the connection ended."""

    heads: list[Head] = field(default_factory=list)
    head_at: list[int] = field(default_factory=list)
    requests: list[tuple[Head, bytes]] = field(default_factory=list)
    done_at: list[int] = field(default_factory=list)
    state: str = "open"  # open (waiting for bytes), closed, rejected, aborted
    status: int = 0
    message: str = ""
    fed: int = 0

    @property
    def steps(self) -> int:
        """Milestones passed: head 0, request 0, head 1, request 1..."""
        return len(self.heads) + len(self.requests)


class _Host:
    """The connection's host (``proxy.h1.ConnectionHost``): admits every head, answers
    every request with a 200 at once, and records all of it in a ``Run``."""

    def __init__(self, parser: str, settings: ServerConfig) -> None:
        self.loop = _Clock()
        self.settings = replace(settings, parser=parser)
        self.connections: set[Any] = set()
        self.draining = False
        self.holding = False
        self.run = Run()

    @staticmethod
    def _head(req: Request) -> Head:
        return (req.method, req.target, tuple(req.headers), req.version)

    def admit(self, req: Request) -> None:
        self.run.heads.append(self._head(req))
        self.run.head_at.append(self.run.fed)

    def handle(self, req: Request, conn: HTTPConnection) -> None:
        self.run.requests.append((self._head(req), req.body))
        self.run.done_at.append(self.run.fed)
        conn.respond(200, b"{}")

    def reject(self, conn: HTTPConnection, status: int, message: str,
               path: str | None) -> bytes:
        self.run.state, self.run.status, self.run.message = "rejected", status, message
        return b"{}"


def run(parser: str, pieces: list[bytes], settings: ServerConfig = SETTINGS) -> Run:
    """Feed ``pieces`` to a new connection on ``parser``; what it accepted and refused."""
    host = _Host(parser, settings)
    conn = HTTPConnection(host)  # type: ignore[arg-type]
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    out = host.run
    for piece in pieces:
        if conn.closed or transport.aborted:
            break
        out.fed += len(piece)
        conn.data_received(piece)
    if transport.aborted:
        out.state = "aborted"
    elif out.state == "open" and conn.closed:
        out.state = "closed"
    conn.connection_lost(None)
    return out


def splits(data: bytes) -> list[list[bytes]]:
    """The deterministic ways ``data`` is cut into reads."""
    out = [[data], [p for p in re.split(rb"(?<=\n)", data) if p],
           chunks(data, zlib.crc32(data))]
    if len(data) <= MAX_BYTEWISE_BYTES:
        out.append([data[i:i + 1] for i in range(len(data))])
    return out


# -- the documented differences ------------------------------------------------------

#: Request methods llhttp knows (llhttp's HTTP method table, requests only); h11 takes
#: any token. ``PRI`` is llhttp's HTTP/2 preface, never a request.
LLHTTP_METHODS = frozenset(
    "DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND "
    "PROPPATCH SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE "
    "M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE "
    "QUERY".split())
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_FOLD = re.compile(rb"\n[ \t]")
_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9a-zA-Z-]+ [\x21-\x7e]+ HTTP/[0-9]\.[0-9]\r?\n")
_CHUNK_LINE = re.compile(rb"(?:^|\n)[0-9a-fA-F]*(?:[ \t]|;)")
_LONG_CHUNK_SIZE = re.compile(rb"(?:^|\n)[0-9a-fA-F]{21,}")
_H11_CHUNK_HEADER = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\n]*)?[ \t]*\r\n")
_FRAMING_FIELD = re.compile(rb"\n(?:transfer-encoding|content-length)[ \t]*:", re.I)
_RAW_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class Divergence:
    """Where one backend (``refused``) stopped and the other (``accepted``) went on."""

    refused: str  # the backend that refused
    run: Run  # its run
    head: Head  # the head the other backend accepted there (or whose body it finished)
    phase: str  # "head": the refused side did not accept this head; "body": its body
    raw_head: bytes  # the bytes of that request's head, as the other backend read them
    raw_body: bytes  # and of its body (b"" in the "head" phase)

    @property
    def raw_trailer(self) -> bytes:
        """The trailer section of a chunked ``raw_body`` (after the last chunk), read
        with h11's chunk grammar: only h11 accepts a body that llhttp refused."""
        body, pos = self.raw_body, 0
        while m := _H11_CHUNK_HEADER.match(body, pos):
            size = int(m.group(1), 16)
            if size == 0:
                return body[m.end():]
            pos = m.end() + size + 2
        return b""


def _headers(div: Divergence, name: bytes) -> list[bytes]:
    return [v for k, v in div.head[2] if k == name]


def _llhttp_refused(div: Divergence) -> bool:
    return div.refused == "httptools"


def _h11_refused(div: Divergence) -> bool:
    return div.refused == "h11"


#: name -> (backend that refuses, predicate on the divergence). Each one is a class of
#: fuzz/README.md "http1: where the parsers differ", in the same order.
CLASSES: dict[str, Callable[[Divergence], bool]] = {
    "method": lambda d: _llhttp_refused(d) and d.head[0] not in LLHTTP_METHODS,
    "version": lambda d: _llhttp_refused(d) and d.head[3] not in ("1.0", "1.1"),
    "bare-lf": lambda d: _llhttp_refused(d) and bool(
        _BARE_LF.search(d.raw_head) or _BARE_LF.search(d.raw_trailer)),
    "obs-fold": lambda d: _llhttp_refused(d) and bool(
        _FOLD.search(d.raw_head) or _FOLD.search(b"\n" + d.raw_trailer)),
    "target": lambda d: _llhttp_refused(d) and "url" in d.run.message,
    "field-value-ctl": lambda d: _llhttp_refused(d) and (
        any(_CTL.search(v) for _, v in d.head[2]) or bool(_RAW_CTL.search(d.raw_trailer))),
    "content-length-list": lambda d: _llhttp_refused(d) and (
        d.raw_head.lower().count(b"content-length") > 1 or b"," in b"".join(
            _headers(d, b"content-length")) or "Content-Length" in d.run.message),
    "content-length-and-chunked": lambda d: _llhttp_refused(d) and bool(
        _headers(d, b"content-length")) and bool(_headers(d, b"transfer-encoding")),
    "chunk-line": lambda d: _llhttp_refused(d) and d.phase == "body" and bool(
        _CHUNK_LINE.search(d.raw_body)),
    "trailer-framing": lambda d: _llhttp_refused(d) and bool(
        _FRAMING_FIELD.search(b"\n" + d.raw_trailer)),
    "host": lambda d: _h11_refused(d) and (len(_headers(d, b"host")) > 1 or (
        d.head[3] == "1.1" and not _headers(d, b"host"))),
    "request-line": lambda d: _h11_refused(d) and not _REQUEST_LINE.match(d.raw_head),
    "transfer-coding": lambda d: _h11_refused(d) and any(
        v.lower() != b"chunked" for v in _headers(d, b"transfer-encoding")),
    "chunk-size-digits": lambda d: _h11_refused(d) and d.phase == "body" and bool(
        _LONG_CHUNK_SIZE.search(d.raw_body)),
}


def classify(div: Divergence) -> list[str]:
    return [name for name, holds in CLASSES.items() if holds(div)]


def _divergence(data: bytes, runs: dict[str, Run], short: str, long: str) -> Divergence:
    """The divergence where ``short`` stopped: the raw bytes of the request in question
    come from a byte-at-a-time run of ``long``, which knows where each request ends.
    That run has no head or body limit in reach: the connection counts a head's raw
    bytes as they arrive, so byte at a time it may refuse a head near the limit that it
    accepted whole."""
    s, ln = runs[short], runs[long]
    k = len(s.requests)
    phase = "head" if len(s.heads) == k else "body"
    head = ln.heads[k]
    exact = run(long, [data[i:i + 1] for i in range(len(data))], UNLIMITED)
    raw_head = raw_body = b""
    if exact.heads[:k + 1] == ln.heads[:k + 1]:
        start = exact.done_at[k - 1] if k else 0
        raw_head = data[start:exact.head_at[k]]
        if phase == "body" and len(exact.done_at) > k:
            raw_body = data[exact.head_at[k]:exact.done_at[k]]
    return Divergence(short, s, head, phase, raw_head, raw_body)


def compare(data: bytes, runs: dict[str, Run]) -> list[str]:
    """Invariants 1 to 3 for one split; the classes of the difference, if any."""
    a, b = runs["httptools"], runs["h11"]
    for name, r in runs.items():
        assert r.state != "aborted", f"{name}: the connection was aborted by the dispatcher"
    n = min(len(a.heads), len(b.heads))
    for i in range(n):
        assert a.heads[i] == b.heads[i], (
            f"both backends accepted head {i} and read it differently: "
            f"httptools {a.heads[i]!r}, h11 {b.heads[i]!r}")
    n = min(len(a.requests), len(b.requests))
    for i in range(n):
        assert a.requests[i] == b.requests[i], (
            f"both backends accepted request {i} and read it differently: "
            f"httptools {a.requests[i]!r}, h11 {b.requests[i]!r}")
    if a.steps == b.steps:
        return []
    short, long = ("httptools", "h11") if a.steps < b.steps else ("h11", "httptools")
    s = runs[short]
    # llhttp reads a PRI head as the start of the HTTP/2 connection preface and waits
    # for its last 6 bytes ("SM\r\n\r\n"), then refuses whatever they are.
    preface = (short == "httptools" and s.state == "open" and len(s.heads) == len(s.requests)
               and runs[long].heads[len(s.heads)][0] == "PRI")
    assert s.state == "rejected" or preface, (
        f"{long} accepted a {'head' if len(s.heads) == len(s.requests) else 'request'} "
        f"that {short} did not refuse ({s.state}): the two disagree on framing")
    if preface:
        return ["method"]
    div = _divergence(data, runs, short, long)
    found = classify(div)
    assert found, (
        f"{short} refused ({s.status} {s.message!r}) a {div.phase} that {long} accepted, "
        f"in no documented class: head {div.head!r}, raw {div.raw_head!r} {div.raw_body!r}")
    return found


def check(data: bytes) -> None:
    first: dict[str, Run] = {}
    for pieces in splits(data):
        runs = {name: run(name, pieces) for name in BACKENDS}
        compare(data, runs)
        for name, r in runs.items():
            f = first.setdefault(name, r)
            for mine, theirs in ((r.heads, f.heads), (r.requests, f.requests)):
                n = min(len(mine), len(theirs))
                assert mine[:n] == theirs[:n], f"{name}: the parse depends on the split"


def strategy() -> Any:
    """HTTP/1.1-shaped inputs for ``fuzz.run``: pipelined requests built from the
    request-line, header and framing tokens where parsers tend to differ."""
    from hypothesis import strategies as st

    eol = st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r", b" \r\n", b"\r\r\n"])
    method = st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"FOO", b"get", b"PRI",
                              b"CONNECT", b"M-SEARCH", b"OPTIONS"])
    target = st.sampled_from([b"/", b"/v1/chat/completions", b"*", b"http://x/y", b"/a?b",
                              b"/a b", b"/\x7f", b"x:1", b"/%00", b""])
    version = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9",
                               b"HTTP/1.2", b"http/1.1", b"HTTP/11"])
    name = st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection",
                            b"Expect", b"Upgrade", b"Trailer", b"X", b"X Y", b"", b"x\x01"])
    value = st.sampled_from([b"x", b"0", b"3", b" 3", b"3 ", b"+3", b"3,3", b"03", b"chunked",
                             b"gzip, chunked", b"Chunked", b"close", b"keep-alive",
                             b"100-continue", b"", b" ", b"a\x00b", b"a\x01b", b"\xff",
                             b"a\tb", b"99999999999999999999"])
    sep = st.sampled_from([b": ", b":", b" : ", b":\t", b":  "])
    field = st.tuples(name, sep, value, eol).map(b"".join)
    fold = st.sampled_from([b"", b"", b"", b" folded\r\n", b"\tfolded\r\n"])
    head = st.tuples(method, st.sampled_from([b" ", b"  ", b"\t"]), target, st.just(b" "),
                     version, eol, st.lists(st.tuples(field, fold).map(b"".join), max_size=5)
                     .map(b"".join), eol).map(b"".join)
    size = st.sampled_from([b"%x", b"%X", b"%x ", b"%x;e=1", b"0%x", b"%x\t", b"%x;"])
    chunk = st.tuples(size, st.integers(0, 6), eol).map(
        lambda t: (t[0] % t[1]) + t[2] + b"a" * t[1] + b"\r\n")
    chunked = st.tuples(st.lists(chunk, max_size=3).map(b"".join),
                        st.sampled_from([b"0\r\n\r\n", b"0\r\nX: y\r\n\r\n", b"0\n\n",
                                         b"0\r\nHost: z\r\n\r\n"])).map(b"".join)
    body = st.one_of(st.binary(max_size=8), chunked)
    request = st.tuples(head, body).map(b"".join)
    return st.lists(request, min_size=1, max_size=3).map(b"".join)
