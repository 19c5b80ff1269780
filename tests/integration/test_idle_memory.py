"""An idle ``gatewayd`` on its embedded defaults (SQLite ledger, the loopback model):
what it has imported after serving one Chat request, its threads and its resident
memory; and that each part left out of start-up is imported by the request that
needs it.

The gateway runs under tests/integration/idle_probe.py, which answers with the
process's ``sys.modules``; threads and VmRSS are read from /proc (proc(5))."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration import daemon
from tests.log_audit import AUDIT

# Never imported by a gateway on the defaults that served one Chat request: each is
# imported by the request or the setting that needs it (the comments say which).
NOT_AT_IDLE = (
    "proxy.endpoints.admin", "proxy.accounts.views",  # /admin
    "proxy.usage_report", "csv",
    "proxy.endpoints.count_tokens", "protocols.tokens",  # /v1/messages/count_tokens
    "proxy.endpoints.embeddings", "protocols.embeddings",  # /v1/embeddings
    "proxy.endpoints.realtime", "proxy.realtime", "wsproto",  # /v1/realtime
    "proxy.h2conn", "h2", "hpack",  # an HTTP/2 client
    "proxy.accounts.redis_meter", "redis",  # [limits] redis_url
    "proxy.ledger.postgres", "psycopg",  # --database-url postgresql://
    "protocols.openai_chat.stream_decoder", "protocols.openai_chat.stream_encoder",
    "protocols.openai_chat.request", "protocols._streams",  # a stream, a translation
    "protocols.stream_filter", "protocols.observe", "protocols.sse",  # a provider's reply
    "random",  # a weighted route, a retry
    "calendar",  # a budget refusal
    "shutil", "bz2", "lzma",  # (argparse's help formatter)
    "encodings.idna", "stringprep", "unicodedata",  # a listen or provider host name
    "apsw.ext", "apsw.bestpractice", "fractions", "decimal", "email",
    "multiprocessing", "concurrent.futures.process", "tomllib",
)
# Main, ledger writer, accounts sync, and idle_probe's own. A host given by name (not
# an address) starts libuv's four resolver threads on top.
IDLE_THREADS = 4
# VmRSS bound: 36.3 MiB before these parts were left out, 32.8 MiB after (Python
# 3.11, no bytecode cache written: PYTHONDONTWRITEBYTECODE=1; 34.0 and 31.5 MiB
# with one); the bench's target is 30 MiB (bench/report.py).
IDLE_RSS_MAX_KIB = 35 * 1024

CHAT = {"model": "loopback", "messages": [{"role": "user", "content": "hello"}]}


class Probed:
    def __init__(self, tmp_path: Path, listen: str = "127.0.0.1:0") -> None:
        self.p, self.host, self.port = daemon.start(
            "tests.integration.idle_probe", ["--listen", listen], tmp_path,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def post(self, path: str, body: dict) -> tuple[int, bytes]:
        c = http.client.HTTPConnection(self.host, self.port, timeout=20)
        try:
            c.request("POST", path, json.dumps(body), {"content-type": "application/json"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def modules(self) -> set[str]:
        self.p.stdin.write("\n")
        self.p.stdin.flush()
        return set(self.p.stdout.readline().split())

    def status(self, field: str) -> int:
        text = Path(f"/proc/{self.p.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+)", text, re.M).group(1))

    def stop(self) -> None:
        self.p.send_signal(signal.SIGTERM)
        self.p.stdin.close()
        try:
            self.p.wait(20)
        finally:
            for line in self.p.stderr:
                AUDIT.text("gatewayd stderr", line)
            self.p.stdout.close()
            self.p.stderr.close()


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture
def gateway(tmp_path):
    g = Probed(tmp_path)
    yield g
    g.stop()


def test_an_idle_gateway_holds_only_what_its_defaults_use(gateway):
    status, body = gateway.post("/v1/chat/completions", CHAT)
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"]
    loaded = gateway.modules()
    assert {"proxy.server", "proxy.ledger.sqlite", "protocols.openai_chat.body"} <= loaded
    assert sorted(loaded.intersection(NOT_AT_IDLE)) == []
    assert gateway.status("Threads") == IDLE_THREADS
    rss = gateway.status("VmRSS")
    assert rss <= IDLE_RSS_MAX_KIB, f"idle VmRSS {rss} KiB"


def test_each_part_left_out_is_imported_by_the_request_that_needs_it(gateway):
    before = gateway.modules()
    # An Anthropic client's stream: the loopback model answers through the IR.
    status, _ = gateway.post("/v1/messages", {**CHAT, "max_tokens": 20, "stream": True})
    assert status == 200
    status, _ = gateway.post("/v1/embeddings", {"model": "loopback", "input": "hello"})
    assert status == 200
    status, _ = gateway.post("/v1/messages/count_tokens", CHAT)
    assert status == 200
    after = gateway.modules()
    wanted = {"protocols.openai_chat.request", "protocols.openai_chat.stream_decoder",
              "protocols._streams", "protocols.sse",
              "proxy.endpoints.embeddings",
              "protocols.embeddings", "proxy.endpoints.count_tokens", "protocols.tokens"}
    assert not wanted & before
    assert wanted <= after


def test_a_listen_host_name_is_resolved_as_before(tmp_path):
    g = Probed(tmp_path, listen="localhost:0")
    try:
        status, _ = g.post("/v1/chat/completions", CHAT)
        assert status == 200
        # create_server resolved the name on libuv's thread pool.
        assert g.status("Threads") == IDLE_THREADS + 4
    finally:
        g.stop()


def test_the_openai_chat_facade_names_every_part():
    import protocols.openai_chat as chat

    assert set(chat._PARTS) == set(chat.__all__)
    for name in chat.__all__:
        assert getattr(chat, name) is not None
