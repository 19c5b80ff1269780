"""Several listeners in one process, each with its own endpoint set, and TLS
termination with the certificate re-read on reload."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys

import anthropic
import openai
import pytest

from proxy.config import ConfigError, load_config
from tests.integration import rawhttp
from tests.integration.test_upstream_http import make_cert

MSG = [{"role": "user", "content": "hello there"}]


def three_listeners(tls: str = "") -> str:
    return f'''
[server]
loopback_model = "on"
[[listeners]]
address = "127.0.0.1:0"
[[listeners]]
address = "127.0.0.1:0"
endpoints = ["anthropic"]
{tls}
[[listeners]]
address = "127.0.0.1:0"
endpoints = ["admin", "health", "metrics"]
'''


@pytest.fixture
def gw(make_gateway, loop_kind, parser):
    return make_gateway(loop_kind=loop_kind, parser=parser, config_text=three_listeners())


def test_each_listener_serves_only_its_endpoints(gw):
    main, anth, ops = gw.server.urls
    assert len({main, anth, ops}) == 3
    # The first listener serves everything.
    c = openai.OpenAI(base_url=main + "/v1", api_key="x", max_retries=0, timeout=10)
    assert "hello there" in c.chat.completions.create(model="loopback", messages=MSG)\
        .choices[0].message.content
    # The Anthropic-only one: Messages works, Chat is 404 in OpenAI's format.
    a = anthropic.Anthropic(base_url=anth, api_key="x", max_retries=0, timeout=10)
    msg = a.messages.create(model="loopback", max_tokens=50, messages=MSG)
    assert "hello there" in msg.content[0].text
    with pytest.raises(openai.NotFoundError) as err:
        openai.OpenAI(base_url=anth + "/v1", api_key="x", max_retries=0).chat.completions\
            .create(model="loopback", messages=MSG)
    assert err.value.body["code"] == "unknown_url"
    assert "this address serves anthropic" in err.value.body["message"]
    # Anthropic clients list models there; health is not served there.
    st, _, body = rawhttp.request(anth + "/v1/models", headers={"anthropic-version": "x"})
    assert st == 200 and "loopback" in body.decode()
    st, _, body = rawhttp.request(anth + "/health")
    assert st == 404 and json.loads(body)["error"]["code"] == "unknown_url"
    # The operations listener: health, no model endpoint (Anthropic's error shape
    # for an Anthropic path).
    assert rawhttp.request(ops + "/health")[0] == 200
    st, _, body = rawhttp.request(ops + "/v1/messages", "POST",
                                  {"model": "loopback", "max_tokens": 5, "messages": MSG})
    assert st == 404 and json.loads(body)["type"] == "error"
    # Every refused request has its ledger row.
    rows = gw.rows()
    assert [(r["endpoint"], r["status"]) for r in rows if r["status"] == 404] == [
        ("/v1/chat/completions", 404), ("/health", 404), ("/v1/messages", 404)]


def test_reload_changes_a_listeners_endpoint_set(gw):
    _, anth, _ = gw.server.urls
    assert rawhttp.request(anth + "/v1/chat/completions", "POST",
                           {"model": "loopback", "messages": MSG})[0] == 404
    assert gw.reload(three_listeners().replace('endpoints = ["anthropic"]',
                                               'endpoints = ["anthropic", "openai"]'))
    assert rawhttp.request(anth + "/v1/chat/completions", "POST",
                           {"model": "loopback", "messages": MSG})[0] == 200


def _tls_config(tmp_path, cert, key) -> str:
    return three_listeners(f'tls_cert = "{cert}"\ntls_key = "{key}"')


def test_tls_listener_and_certificate_reload(make_gateway, tmp_path, loop_kind):
    ca, cert, key = make_cert(tmp_path)
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    gw = make_gateway(loop_kind=loop_kind, config_text=_tls_config(tmp_path, live_cert,
                                                                   live_key))
    anth = gw.server.urls[1]
    assert anth.startswith("https://127.0.0.1:")
    port = int(anth.rsplit(":", 1)[1])
    url = f"https://localhost:{port}"
    client = anthropic.DefaultHttpxClient(verify=ssl.create_default_context(cafile=str(ca)),
                                          timeout=10)
    a = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0, http_client=client)
    assert "hello there" in a.messages.create(model="loopback", max_tokens=50,
                                              messages=MSG).content[0].text
    # A streamed answer over TLS too.
    with a.messages.stream(model="loopback", max_tokens=50, messages=MSG) as s:
        assert "hello there" in s.get_final_text()

    def handshake(cafile) -> str:
        ctx = ssl.create_default_context(cafile=str(cafile))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() in (None, "http/1.1")
            return str(tls.version())

    assert handshake(ca) in ("TLSv1.2", "TLSv1.3")
    # A connection opened before the reload keeps working after it.
    kept = http.client.HTTPSConnection("localhost", port, timeout=10,
                                       context=ssl.create_default_context(cafile=str(ca)))

    def kept_get() -> int:
        kept.request("GET", "/v1/models", headers={"anthropic-version": "x"})
        r = kept.getresponse()
        r.read()
        return r.status

    assert kept_get() == 200
    # A new pair from another CA, swapped in and reloaded: new handshakes get it.
    again = tmp_path / "again"
    again.mkdir()
    ca2, cert2, key2 = make_cert(again)
    shutil.copy(cert2, live_cert)
    shutil.copy(key2, live_key)
    assert gw.reload(_tls_config(tmp_path, live_cert, live_key))
    assert handshake(ca2) in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ca)  # the old CA does not vouch for what is served now
    assert kept_get() == 200
    # A broken pair on reload is refused, the running one stays.
    live_cert.write_text("not a certificate")
    assert not gw.reload(_tls_config(tmp_path, live_cert, live_key))
    assert handshake(ca2) in ("TLSv1.2", "TLSv1.3")
    kept.close()
    client.close()


def test_the_tls_context_refuses_old_protocols(tmp_path):
    from proxy.config import server_tls_context

    _, cert, key = make_cert(tmp_path)
    ctx = server_tls_context(str(cert), str(key))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION


def test_plain_http_to_a_tls_listener_gets_nothing_served(make_gateway, tmp_path):
    _, cert, key = make_cert(tmp_path)
    gw = make_gateway(config_text=_tls_config(tmp_path, cert, key))
    port = int(gw.server.urls[1].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        s.settimeout(5)
        try:
            data = s.recv(1000)
        except ConnectionResetError:
            data = b""
    assert b"HTTP/1.1 200" not in data
    assert gw.rows() == []  # nothing reached the gateway's HTTP layer


@pytest.mark.parametrize("text, where", [
    ('[[listeners]]\nendpoints = ["openai"]', "listeners[0].address: is required"),
    ('[[listeners]]\naddress = "127.0.0.1:1"\nendpoints = ["chat"]',
     "listeners[0].endpoints: unknown endpoint set 'chat'"),
    ('[[listeners]]\naddress = "127.0.0.1:1"\nendpoints = []', "listeners[0].endpoints"),
    ('[[listeners]]\naddress = "127.0.0.1:1"\ntls_cert = "a.pem"',
     "listeners[0].tls_key: TLS needs both"),
    ('[[listeners]]\naddress = "127.0.0.1:1"\ntls_cert = "nope.pem"\ntls_key = "nope.key"',
     "listeners[0].tls_cert: file not found"),
    ('[[listeners]]\naddress = "127.0.0.1:1"\n[[listeners]]\naddress = "127.0.0.1:1"',
     "listeners[1].address: 127.0.0.1:1 is already"),
    ('[server]\nlisten = "127.0.0.1:2"\n[[listeners]]\naddress = "127.0.0.1:1"',
     "server.listen: set either"),
    ('[[listeners]]\naddress = "127.0.0.1:1"\nport = 3', "listeners[0].port: unknown key"),
])
def test_listener_config_errors(tmp_path, text, where):
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path), env={})
    assert str(err.value).startswith(where), str(err.value)


def test_a_bad_certificate_is_a_config_error(tmp_path):
    (tmp_path / "c.pem").write_text("junk")
    (tmp_path / "k.pem").write_text("junk")
    path = tmp_path / "t.toml"
    path.write_text('[[listeners]]\naddress = "127.0.0.1:1"\ntls_cert = "c.pem"\n'
                    'tls_key = "k.pem"\n')
    with pytest.raises(ConfigError, match="listeners.0..tls_cert: cannot load"):
        load_config(str(path), env={})


def test_listen_flag_moves_the_first_listener(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[[listeners]]\naddress = "127.0.0.1:7001"\nendpoints = ["anthropic"]\n'
                    '[[listeners]]\naddress = "127.0.0.1:7002"\n')
    c = load_config(str(path), env={}, overrides={"listen": "127.0.0.1:7005"})
    assert [(lst.port, lst.endpoints) for lst in c.listeners] == [
        (7005, ("anthropic",)), (7002, ("openai", "anthropic", "gemini", "health", "admin",
                                        "metrics"))]
    assert c.server.port == 7005


def test_a_public_listener_needs_keys(tmp_path):
    """The auth rule holds per listener: one non-loopback address without keys
    refuses to start."""
    path = tmp_path / "t.toml"
    path.write_text('[[listeners]]\naddress = "127.0.0.1:0"\n'
                    '[[listeners]]\naddress = "0.0.0.0:0"\nendpoints = ["health"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWAY_")}
    out = subprocess.run([sys.executable, "-m", "proxy", "--config", str(path), "--db",
                          str(tmp_path / "l.db")], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 2
    assert "refusing to listen on 0.0.0.0:0 without gateway keys" in out.stderr
    assert not (tmp_path / "l.db").exists()


def test_a_stalled_tls_handshake_is_dropped(make_gateway, tmp_path):
    """A client that opens a TLS listener's port and says nothing holds it no
    longer than the header timeout."""
    _, cert, key = make_cert(tmp_path)
    text = _tls_config(tmp_path, cert, key).replace(
        '[server]\n', '[server]\nheader_timeout = "1s"\n')
    gw = make_gateway(config_text=text)
    port = int(gw.server.urls[1].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        assert s.recv(100) == b""  # closed by the gateway, not by our timeout


def test_workers_need_fixed_ports_beyond_the_first_listener(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[[listeners]]\naddress = "127.0.0.1:0"\n'
                    '[[listeners]]\naddress = "127.0.0.1:0"\nendpoints = ["health"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWAY_")}
    out = subprocess.run([sys.executable, "-m", "proxy", "--config", str(path), "--db",
                          str(tmp_path / "l.db"), "--workers", "2"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 2
    assert "every listener but the first needs a fixed port" in out.stderr
    assert not (tmp_path / "l.db").exists()
