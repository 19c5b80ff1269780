"""The Realtime API relayed as a WebSocket: trio-websocket (driven through anyio)
as the client, a wsproto fake of the provider's Realtime server."""

from __future__ import annotations

import json
import socket
from typing import Any

import anyio
import pytest
import trio
import trio_websocket

from tests.integration import rawhttp
from tests.integration.realtime_upstream import SERVED_MODEL, FakeRealtime

GATEWAY_KEY = "gw-realtime-key"


def config(up: FakeRealtime, extra_route: str = "", second: str = "") -> str:
    return f'''
[providers.rt]
kind = "openai"
base_url = "{up.base_url}"
api_key = "sk-provider-secret"
{second}
[[routes]]
match = "gpt-realtime*"
to = ["rt"{extra_route}]
'''


@pytest.fixture
def up():
    u = FakeRealtime().start()
    yield u
    u.stop()


def ws_url(gw, model: str = "gpt-realtime") -> str:
    return gw.url.replace("http://", "ws://") + f"/v1/realtime?model={model}"


def wait_until(condition: Any, limit_s: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def run(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args, backend="trio")


async def one_session(url: str, headers: list[tuple[bytes, bytes]] | None = None,
                      subprotocols: list[str] | None = None,
                      responses: int = 2) -> dict[str, Any]:
    out: dict[str, Any] = {"events": []}
    with trio.fail_after(20):
        async with trio_websocket.open_websocket_url(
                url, extra_headers=headers or [], subprotocols=subprotocols) as ws:
            out["subprotocol"] = ws.subprotocol
            out["events"].append(json.loads(await ws.get_message()))  # session.created
            for _ in range(responses):
                await ws.send_message(json.dumps({"type": "response.create"}))
                while True:
                    event = json.loads(await ws.get_message())
                    out["events"].append(event)
                    if event["type"] == "response.done":
                        break
            await ws.send_message(b"\x00\x01binary")
            out["echo"] = await ws.get_message()
            await ws.ping(b"p1")
    return out


def test_a_session_is_relayed_both_ways_and_metered(make_gateway, up, loop_kind, parser):
    gw = make_gateway(loop_kind=loop_kind, parser=parser, config_text=config(up),
                      env={"TOKENWAY_API_KEYS": GATEWAY_KEY})
    out = run(one_session, ws_url(gw), [(b"authorization", b"Bearer " + GATEWAY_KEY.encode()),
                                        (b"openai-beta", b"realtime=v1")], ["realtime"])
    types = [e["type"] for e in out["events"]]
    assert types[0] == "session.created" and types.count("response.done") == 2
    assert "".join(e["delta"] for e in out["events"]
                   if e["type"] == "response.output_text.delta") == "Hello there!" * 2
    assert out["echo"] == b"\x00\x01binary"
    assert out["subprotocol"] == "realtime"
    # The provider got its own key and the beta switch, never the gateway key.
    hs = up.handshakes[0]
    assert hs["target"] == "/v1/realtime?model=gpt-realtime"
    assert hs["headers"]["authorization"] == "Bearer sk-provider-secret"
    assert hs["headers"]["openai-beta"] == "realtime=v1"
    assert GATEWAY_KEY not in json.dumps(hs)
    assert wait_until(lambda: up.closes) and up.closes == [(1000, "")]
    # One row for the session, with the totals of both responses.
    row = gw.wait_rows(1)[0]
    assert (row["endpoint"], row["client_protocol"], row["status"], row["stream"]) == (
        "/v1/realtime", "openai_realtime", 101, True)
    assert (row["model"], row["served_model"], row["provider"]) == (
        "gpt-realtime", SERVED_MODEL, "rt")
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (300, 30, 10)
    assert row["error_kind"] is None and row["bytes_in"] > 0 and row["bytes_out"] > 0


def test_a_browser_key_subprotocol_authenticates_and_is_not_forwarded(make_gateway, up):
    gw = make_gateway(config_text=config(up), env={"TOKENWAY_API_KEYS": GATEWAY_KEY})
    out = run(one_session, ws_url(gw), [],
              ["realtime", "openai-insecure-api-key." + GATEWAY_KEY], 1)
    assert out["subprotocol"] == "realtime"
    assert up.handshakes[0]["subprotocols"] == ["realtime"]
    # Without a key: 401 in OpenAI's shape, before any provider is asked.
    with pytest.raises(trio_websocket.ConnectionRejected) as err:
        run(one_session, ws_url(gw))
    assert err.value.status_code == 401
    assert json.loads(err.value.body)["error"]["code"] == "invalid_api_key"
    assert len(up.handshakes) == 1


def test_provider_refusal_reaches_the_client_as_an_http_error(make_gateway, up):
    up.mode = "reject"
    gw = make_gateway(config_text=config(up))
    with pytest.raises(trio_websocket.ConnectionRejected) as err:
        run(one_session, ws_url(gw))
    assert err.value.status_code == 502
    message = json.loads(err.value.body)["error"]["message"]
    assert "HTTP 401" in message and "Incorrect API key provided" in message
    row = gw.wait_rows(1)[0]
    assert (row["status"], row["error_kind"], row["provider"]) == (502, "upstream_error", "rt")


def test_a_busy_provider_fails_over_to_the_next_target(make_gateway, up):
    up.mode = "busy"
    other = FakeRealtime().start()
    try:
        second = f'[providers.rt2]\nkind = "openai"\nbase_url = "{other.base_url}"\n' \
                 'api_key = "sk-two"\n'
        gw = make_gateway(config_text=config(up, ', "rt2"', second))
        out = run(one_session, ws_url(gw), None, None, 1)
        assert out["events"][-1]["type"] == "response.done"
        row = gw.wait_rows(1)[0]
        assert (row["provider"], row["attempts"], row["status"]) == ("rt2", 2, 101)
    finally:
        other.stop()


def test_a_cut_provider_closes_the_client_with_1011_and_records_it(make_gateway, up):
    up.mode = "cut"
    gw = make_gateway(config_text=config(up))

    async def session() -> tuple[int | None, list[str]]:
        types = []
        with trio.fail_after(20):
            async with trio_websocket.open_websocket_url(ws_url(gw)) as ws:
                await ws.get_message()
                await ws.send_message(json.dumps({"type": "response.create"}))
                try:
                    while True:
                        types.append(json.loads(await ws.get_message())["type"])
                except trio_websocket.ConnectionClosed as closed:
                    return closed.reason.code, types
        return None, types

    code, types = run(session)
    assert code == 1011 and types[-1] == "response.done"
    row = gw.wait_rows(1)[0]
    assert (row["status"], row["error_kind"], row["input_tokens"]) == (101, "stream_cut", 100)


def test_a_client_that_vanishes_ends_the_provider_session(make_gateway, up):
    gw = make_gateway(config_text=config(up))

    # A raw client: the upgrade, one frame read, then the socket is dropped.
    host, port = gw.server.bound[0]
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nhost: x\r\n"
              b"upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\n"
              b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101 ")
    # RFC 6455 §1.3's example key and its accept value.
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    s.close()
    row = gw.wait_rows(1)[0]
    assert (row["status"], row["error_kind"]) == (101, "cancelled")
    assert up.closes == [(1001, "client left")] or up.closes == []


@pytest.mark.parametrize("headers, status", [
    (b"connection: close\r\n", 426),  # a plain GET: the Realtime API needs the upgrade
    (b"upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 8\r\n"
     b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n", 426),
    (b"upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\n"
     b"sec-websocket-key: short\r\n", 400),
    (b"upgrade: websocket\r\nconnection: keep-alive\r\nsec-websocket-version: 13\r\n"
     b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n", 400),
])
def test_bad_upgrades_get_openai_errors(make_gateway, up, parser, headers, status):
    gw = make_gateway(parser=parser, config_text=config(up))
    host, port = gw.server.bound[0]
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nhost: x\r\n" + headers
                  + b"\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 %d " % status), data[:100]
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["message"]
    assert up.handshakes == []


def test_an_upgrade_to_anything_else_is_refused(make_gateway, up, parser):
    gw = make_gateway(parser=parser, config_text=config(up))
    st, _, _ = rawhttp.request(gw.url + "/v1/chat/completions", "POST", {"model": "x"},
                               headers={"upgrade": "h2c", "connection": "Upgrade"})
    assert st == 501


def test_a_model_on_a_non_openai_provider_is_refused(make_gateway):
    gw = make_gateway(config_text='[providers.a]\nkind = "anthropic"\napi_key = "k"\n'
                                  'base_url = "http://127.0.0.1:9"\n'
                                  '[[routes]]\nmatch = "claude*"\nto = ["a"]\n')
    with pytest.raises(trio_websocket.ConnectionRejected) as err:
        run(one_session, ws_url(gw, "claude-x"))
    assert err.value.status_code == 400
    assert "without a Realtime API" in json.loads(err.value.body)["error"]["message"]


def test_a_client_that_leaves_during_the_provider_handshake_gets_a_row(make_gateway, up):
    up.mode = "silent"
    gw = make_gateway(config_text=config(up))
    host, port = gw.server.bound[0]
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nhost: x\r\n"
              b"upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\n"
              b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert wait_until(lambda: up.handshakes)
    s.close()
    row = gw.wait_rows(1)[0]
    assert (row["status"], row["error_kind"]) == (499, "cancelled")


def _upgrade(gw) -> socket.socket:
    host, port = gw.server.bound[0]
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nhost: x\r\n"
              b"upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\n"
              b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101 ")
    return s


def _settled(read: Any) -> int:
    """The value of ``read()`` once it stopped growing for 0.5 s (at most 20 s)."""
    import time

    last, since = read(), time.monotonic()
    deadline = since + 20
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > 0.5:
            break
    return int(last)


def test_a_client_that_does_not_read_stops_the_provider(make_gateway, up):
    """64 MiB from the provider to a client that reads nothing: the relay stops
    reading the provider, so what left the provider is bounded by the socket
    buffers on the way (a few MiB on loopback), not by the flood."""
    up.mode = "flood"
    gw = make_gateway(config_text=config(up))
    s = _upgrade(gw)
    sent = _settled(lambda: up.flood_sent)
    assert 0 < sent < 24 * 1024 * 1024, sent
    conn = next(iter(gw.server.connections))
    assert conn.transport.get_write_buffer_size() < 2 * 1024 * 1024
    s.close()
    row = gw.wait_rows(1)[0]
    assert row["error_kind"] == "cancelled" and row["bytes_out"] <= sent


def test_a_provider_that_does_not_read_stops_the_client(make_gateway, up):
    """The other way round: a client sending without end to a provider that
    reads nothing is itself not read any more."""
    from wsproto import ConnectionType
    from wsproto.connection import Connection
    from wsproto.events import BytesMessage

    up.mode = "deaf"
    gw = make_gateway(config_text='[server]\nsend_timeout = "1s"\n' + config(up))
    s = _upgrade(gw)
    ws = Connection(ConnectionType.CLIENT)
    frame = ws.send(BytesMessage(data=b"\x01" * 65536))
    s.settimeout(2)
    sent = 0
    try:
        while sent < 256 * 1024 * 1024:
            s.sendall(frame)
            sent += len(frame)
    except (TimeoutError, ConnectionError):
        pass  # blocked, or already ended by the gateway (below)
    assert sent < 48 * 1024 * 1024, sent  # the gateway stopped reading us
    # The provider read nothing for send_timeout: the session ends (the client
    # is not read meanwhile, so this is how it ends).
    row = gw.wait_rows(1, timeout_s=15)[0]
    assert row["error_kind"] == "upstream_timeout"
    s.close()


def test_the_openai_sdks_realtime_client_through_the_gateway(make_gateway, up, loop_kind):
    import openai

    gw = make_gateway(loop_kind=loop_kind, config_text=config(up),
                      env={"TOKENWAY_API_KEYS": GATEWAY_KEY})
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    with client.realtime.connect(model="gpt-realtime") as conn:
        assert conn.recv().type == "session.created"
        conn.response.create()
        for event in conn:
            if event.type == "response.done":
                assert event.response.usage.input_tokens == 100
                break
    assert up.handshakes[0]["headers"]["authorization"] == "Bearer sk-provider-secret"
    row = gw.wait_rows(1)[0]
    assert (row["status"], row["input_tokens"], row["output_tokens"]) == (101, 100, 10)
