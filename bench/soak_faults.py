"""The soak's failing requests and hostile clients: two small thread pools in the harness
that run beside the load drivers for the whole soak, each at a bounded rate, and count
what every attempt got.

Failing requests (`FailureDriver`): well-formed requests for models whose route fails
upstream, through the fault providers of the generated tokenway config (targets.py):
500s, 429s with Retry-After, a connection cut midway through a stream (and through a
non-stream body), a refused connect, and a failover from a 500 to a working provider.
The expected outcome of each is written next to it; anything else (a hang above all) is
counted as unexpected.

Hostile clients (`HostileClients`): raw sockets cycling through slowloris heads, stalled
bodies, an oversized header, invalid JSON, deeply nested JSON, invalid UTF-8, pipelined
requests from a client that never reads, connections dropped mid-request and
mid-stream, and (when the target checks keys) a request without a key. Every socket has
a timeout: a case the gateway neither refused nor closed ends on the client's side as
`client timeout`, which fails the soak.
"""

from __future__ import annotations

import http.client
import itertools
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

# Failing requests: this many threads, at most this many requests a second in all.
FAILURE_THREADS = 4
FAILURE_RATE = 8.0
FAILURE_TIMEOUT_S = 30.0
# Hostile clients: slow cases hold a thread for up to ~70 s, so many threads; the pacer
# bounds the rate at which cases start.
HOSTILE_THREADS = 24
HOSTILE_RATE = 3.0
# Longer than the gateway's own deadlines (header 30 s, body 60 s, send 60 s by default):
# a case still open after its timeout was neither refused nor closed.
SLOWLORIS_TIMEOUT_S = 45.0
STALLED_BODY_TIMEOUT_S = 80.0
PIPELINE_HOLD_S = 70.0
QUICK_TIMEOUT_S = 15.0
TRICKLE_S = 5.0              # the slowloris sends one more header byte this often
BIG_HEADER_BYTES = 80 * 1024  # above the gateway's 64 KiB head limit
NEST_DEPTH = 100_000
PIPELINED = 32               # requests written back to back by the client that never reads


class Pacer:
    """At most `rate` starts a second across threads (a shared schedule)."""

    def __init__(self, rate: float) -> None:
        self.period = 1.0 / rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        """False when `stop` was set while waiting."""
        with self.lock:
            now = time.monotonic()
            due = max(self.next, now)
            self.next = due + self.period
        return not stop.wait(max(0.0, due - now))


@dataclass
class Tally:
    """Outcomes of one kind of attempt."""

    what: str
    expected: str
    outcomes: Counter = field(default_factory=Counter)
    unexpected: int = 0
    max_s: float = 0.0

    def add(self, outcome: str, ok: bool, elapsed: float) -> None:
        self.outcomes[outcome] += 1
        if not ok:
            self.unexpected += 1
        self.max_s = max(self.max_s, elapsed)

    def as_dict(self) -> dict:
        return {"what": self.what, "expected": self.expected, "count": sum(self.outcomes.values()),
                "outcomes": dict(self.outcomes.most_common()), "unexpected": self.unexpected,
                "max_s": round(self.max_s, 2)}


class _Pool:
    """Threads that take the next case of a cycle when the pacer lets them."""

    def __init__(self, n: int, rate: float, cases: list[tuple[str, Callable[[], tuple[str, bool]]]],
                 tallies: dict[str, Tally]) -> None:
        self.stop_event = threading.Event()
        self.pacer = Pacer(rate)
        self.cases = cases
        self.tallies = tallies
        self._cycle = itertools.cycle(range(len(cases)))
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(n)]
        self.errors: list[str] = []

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _work(self) -> None:
        while self.pacer.wait(self.stop_event):
            with self._lock:
                name, fn = self.cases[next(self._cycle)]
            t0 = time.monotonic()
            try:
                outcome, ok = fn()
            except Exception as exc:  # a bug of ours: count it, keep going
                outcome, ok = f"harness error {type(exc).__name__}", False
                if len(self.errors) < 10:
                    self.errors.append(f"{name}: {exc!r}")
            if outcome == "interrupted":  # the soak ended under it: not an outcome
                continue
            with self._lock:
                self.tallies[name].add(outcome, ok, time.monotonic() - t0)

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stop_event.set()
        end = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.1, end - time.monotonic()))

    def result(self) -> dict:
        with self._lock:
            out = {name: t.as_dict() for name, t in self.tallies.items()}
        return out


# ---------------------------------------------------------------------------
# Failing requests
# ---------------------------------------------------------------------------

def _chat(model: str, stream: bool) -> bytes:
    req: dict = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        req["stream"] = True
    return orjson.dumps(req)


# (name, client API path, model, stream, what, expected, the outcomes that are expected)
FAILURES = (
    ("fail_500", "/v1/chat/completions", "fault-500-bench", False,
     "chat -> provider answering 500 (one target)", "5xx", ("500", "502", "503")),
    ("fail_429", "/v1/chat/completions", "fault-429-bench", False,
     "chat -> provider answering 429 + retry-after: 1", "429 or 503", ("429", "503")),
    ("fail_cut_stream", "/v1/chat/completions", "fault-cut-bench", True,
     "chat stream, provider drops the connection after 5 of 20 deltas",
     "200 then an error event, or 502", ("200 error event", "200 cut", "502", "503")),
    ("fail_cut_xlate", "/v1/messages", "fault-cut-bench", False,
     "messages -> chat, provider drops the connection mid-body", "502/503", ("502", "503")),
    ("fail_dead", "/v1/chat/completions", "fault-dead-bench", False,
     "chat -> provider port refusing connections", "502/503", ("502", "503")),
    ("failover_500", "/v1/chat/completions", "fault-failover-bench", False,
     "chat -> [500 provider, working provider]", "200", ("200",)),
    ("failover_500_stream", "/v1/chat/completions", "fault-failover-bench", True,
     "chat stream -> [500 provider, working provider]", "200, stream complete",
     ("200 complete",)),
)


class FailureDriver:
    def __init__(self, base_url: str, headers: Callable[[str], dict[str, str]]) -> None:
        u = urlsplit(base_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.headers = headers
        tallies = {name: Tally(what, exp) for name, _, _, _, what, exp, _ in FAILURES}
        cases = [(f[0], self._case(*f[1:4], f[6])) for f in FAILURES]
        self.pool = _Pool(FAILURE_THREADS, FAILURE_RATE, cases, tallies)

    def _case(self, path: str, model: str, stream: bool,
              ok: tuple[str, ...]) -> Callable[[], tuple[str, bool]]:
        body = _chat(model, stream) if path != "/v1/messages" else orjson.dumps(
            {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
        api = "messages" if path == "/v1/messages" else "chat"

        def run() -> tuple[str, bool]:
            outcome = self._request(path, body, api, stream)
            return outcome, outcome in ok

        return run

    def _request(self, path: str, body: bytes, api: str, stream: bool) -> str:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=FAILURE_TIMEOUT_S)
        try:
            conn.request("POST", path, body=body,
                         headers={"Content-Type": "application/json", **self.headers(api)})
            resp = conn.getresponse()
            try:
                data = resp.read()
            except http.client.IncompleteRead:
                return f"{resp.status} cut"
            if resp.status != 200 or not stream:
                return str(resp.status)
            if b"data: [DONE]" in data:
                return "200 complete"
            return "200 error event" if b"error" in data else "200 cut"
        except TimeoutError:
            return "client timeout"
        except ConnectionResetError:
            return "reset"
        except (OSError, http.client.HTTPException) as exc:
            return f"error {type(exc).__name__}"
        finally:
            conn.close()

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop(FAILURE_TIMEOUT_S + 5)

    def result(self) -> dict:
        return self.pool.result()


# ---------------------------------------------------------------------------
# Hostile clients
# ---------------------------------------------------------------------------

def _head(path: str, headers: dict[str, str], length: int | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status_of(data: bytes) -> str | None:
    if data.startswith(b"HTTP/1."):
        parts = data.split(b" ", 2)
        if len(parts) >= 2 and parts[1].isdigit():
            return parts[1].decode()
    return None


class HostileClients:
    def __init__(self, base_url: str, headers: Callable[[str], dict[str, str]],
                 checks_keys: bool) -> None:
        u = urlsplit(base_url)
        self.addr = (u.hostname or "127.0.0.1", u.port or 80)
        self.auth = headers("chat")
        stop = threading.Event()
        self.stop_event = stop
        # (name, what, expected, run)
        table: list[tuple[str, str, str, Callable[[], tuple[str, bool]]]] = [
            ("slowloris", "partial head, one more byte every 5 s", "408 or closed",
             self.slowloris),
            ("stalled_body", "Content-Length 1000, 100 bytes sent, then nothing",
             "408 or closed", self.stalled_body),
            ("big_header", f"one {BIG_HEADER_BYTES // 1024} KiB header value",
             "431 or closed", self.big_header),
            ("invalid_json", "a body cut off inside the JSON", "400", self.invalid_json),
            ("nested_json", f"{NEST_DEPTH:,} nested arrays in a message", "400",
             self.nested_json),
            ("invalid_utf8", "bytes 0xff 0xfe inside a JSON string", "400", self.invalid_utf8),
            ("pipelined_noread",
             f"{PIPELINED} stream requests written back to back, nothing read",
             f"closed by the gateway within {PIPELINE_HOLD_S:g} s", self.pipelined_noread),
            ("drop_mid_request", "half a body, then close (FIN or RST)", "dropped by client",
             self.drop_mid_request),
            ("drop_mid_stream", "a paced stream, closed after its first bytes",
             "dropped by client", self.drop_mid_stream),
        ]
        if checks_keys:
            table.append(("no_key", "a request without a key", "401", self.no_key))
        tallies = {name: Tally(what, exp) for name, what, exp, _ in table}
        self.pool = _Pool(HOSTILE_THREADS, HOSTILE_RATE, [(n, fn) for n, _, _, fn in table],
                          tallies)
        self.pool.stop_event = stop

    # -- plumbing -------------------------------------------------------------------
    def _connect(self, timeout_s: float) -> socket.socket:
        s = socket.create_connection(self.addr, timeout=5.0)
        s.settimeout(timeout_s)
        return s

    def _answer(self, s: socket.socket, deadline: float) -> str:
        """Wait (checking for the soak's end) for the gateway's answer: its status, or
        `closed` / `reset`, or `client timeout` when `deadline` passed first."""
        buf = b""
        s.settimeout(0.5)
        while True:
            if self.stop_event.is_set():
                return "interrupted"
            try:
                data = s.recv(65536)
            except TimeoutError:
                if time.monotonic() >= deadline:
                    return "client timeout"
                continue
            except ConnectionResetError:
                return _status_of(buf) or "reset"
            if not data:
                return _status_of(buf) or "closed"
            buf += data
            st = _status_of(buf)
            if st is not None:
                return st
            if len(buf) > 64:
                return "garbage"

    @staticmethod
    def _send(s: socket.socket, data: bytes) -> str | None:
        """Write; a gateway that hung up first answers for us (`reset`/`closed`)."""
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return "reset"
        return None

    def _quick(self, body: bytes) -> str:
        with self._connect(QUICK_TIMEOUT_S) as s:
            err = self._send(s, _head("/v1/chat/completions", self.auth, len(body)) + body)
            return self._answer(s, time.monotonic() + QUICK_TIMEOUT_S) if err is None else err

    # -- the cases ------------------------------------------------------------------
    def slowloris(self) -> tuple[str, bool]:
        t0 = time.monotonic()
        with self._connect(1.0) as s:
            if self._send(s, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"X-Slow: "):
                return "reset", True
            s.settimeout(0.5)
            next_byte = t0 + TRICKLE_S
            deadline = t0 + SLOWLORIS_TIMEOUT_S
            while True:
                if self.stop_event.is_set():
                    return "interrupted", True
                now = time.monotonic()
                if now >= deadline:
                    return "client timeout", False
                if now >= next_byte:
                    next_byte += TRICKLE_S
                    if self._send(s, b"a"):
                        return "reset", True
                try:
                    data = s.recv(65536)
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    return "reset", True
                st = _status_of(data) if data else "closed"
                return st or "garbage", st in ("408", "closed", "400")

    def stalled_body(self) -> tuple[str, bool]:
        with self._connect(1.0) as s:
            err = self._send(s, _head("/v1/chat/completions", self.auth, 1000) + b"{" * 100)
            out = err or self._answer(s, time.monotonic() + STALLED_BODY_TIMEOUT_S)
            return out, out in ("408", "closed", "reset", "interrupted")

    def big_header(self) -> tuple[str, bool]:
        body = _chat("gpt-bench", False)
        with self._connect(QUICK_TIMEOUT_S) as s:
            head = _head("/v1/chat/completions", {**self.auth, "X-Big": "a" * BIG_HEADER_BYTES},
                         len(body))
            err = self._send(s, head + body)
            out = self._answer(s, time.monotonic() + QUICK_TIMEOUT_S) if err is None else err
            if err is not None:
                # The gateway refused mid-write: its answer may still be readable.
                try:
                    out = _status_of(s.recv(65536)) or out
                except OSError:
                    pass
            return out, out in ("431", "400", "413", "closed", "reset", "interrupted")

    def invalid_json(self) -> tuple[str, bool]:
        out = self._quick(b'{"model":"gpt-bench","messages":[{"role":"user","content":"hi"')
        return out, out == "400" or out == "interrupted"

    def nested_json(self) -> tuple[str, bool]:
        body = (b'{"model":"gpt-bench","messages":[{"role":"user","content":'
                + b"[" * NEST_DEPTH + b"]" * NEST_DEPTH + b"}]}")
        out = self._quick(body)
        return out, out in ("400", "413", "interrupted")

    def invalid_utf8(self) -> tuple[str, bool]:
        out = self._quick(b'{"model":"gpt-bench","messages":[{"role":"user","content":"'
                          b'\xff\xfe bad"}]}')
        return out, out in ("400", "interrupted")

    def no_key(self) -> tuple[str, bool]:
        body = _chat("gpt-bench", False)
        with self._connect(QUICK_TIMEOUT_S) as s:
            err = self._send(s, _head("/v1/chat/completions", {}, len(body)) + body)
            out = err or self._answer(s, time.monotonic() + QUICK_TIMEOUT_S)
            return out, out in ("401", "interrupted")

    def pipelined_noread(self) -> tuple[str, bool]:
        """Requests for long streams written back to back; nothing read for a while,
        then everything the gateway sent is read: did it hang up on us (send timeout)
        or keep writing into a full socket?"""
        body = _chat("gpt-bench-n2000", True)
        one = _head("/v1/chat/completions", self.auth, len(body)) + body
        t0 = time.monotonic()
        s = socket.create_connection(self.addr, timeout=5.0)
        try:
            # A small receive buffer: the gateway's writes back up quickly.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            if self._send(s, one * PIPELINED):
                return "reset", True
            if self.stop_event.wait(PIPELINE_HOLD_S):
                return "interrupted", True
            s.settimeout(2.0)
            while True:
                try:
                    data = s.recv(1 << 20)
                except TimeoutError:
                    return f"still open after {PIPELINE_HOLD_S:g} s", False
                except ConnectionResetError:
                    break
                if not data:
                    break
                if time.monotonic() - t0 > PIPELINE_HOLD_S + 60:
                    return "still sending after the hold", False
            return "closed by the gateway", True
        finally:
            s.close()

    def drop_mid_request(self) -> tuple[str, bool]:
        body = _chat("gpt-bench", False)
        s = self._connect(QUICK_TIMEOUT_S)
        rst = int(time.monotonic() * 1000) % 2 == 0
        try:
            self._send(s, _head("/v1/chat/completions", self.auth, len(body))
                       + body[:len(body) // 2])
            if rst:  # SO_LINGER 0: close sends RST
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            s.close()
        return ("dropped (RST)" if rst else "dropped (FIN)"), True

    def drop_mid_stream(self) -> tuple[str, bool]:
        body = _chat("gpt-bench-n64-i20", True)
        with self._connect(QUICK_TIMEOUT_S) as s:
            err = self._send(s, _head("/v1/chat/completions", self.auth, len(body)) + body)
            if err:
                return err, False
            try:
                data = s.recv(4096)
            except TimeoutError:
                return "client timeout", False
            except ConnectionResetError:
                return "reset", False
            st = _status_of(data)
            return (f"{st}, dropped after the first bytes" if st else "closed"), st == "200"

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop(10.0)

    def result(self) -> dict:
        return self.pool.result()
