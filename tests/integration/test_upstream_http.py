"""The upstream client against real sockets: TLS with a CA bundle, framing, headers."""

from __future__ import annotations

import json
import ssl
import subprocess

import openai
import pytest

from tests.integration import rawhttp
from tests.integration.upstreams import CHAT_COMPLETION, FakeUpstream


def make_cert(tmp_path):
    """A throwaway CA and a localhost certificate signed by it (openssl CLI)."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    (tmp_path / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "srv.key",
        "-out", "srv.csr")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext.cnf", "-out", "srv.pem")
    return tmp_path / "ca.pem", tmp_path / "srv.pem", tmp_path / "srv.key"


@pytest.fixture
def tls_upstream(tmp_path):
    ca, cert, key = make_cert(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    up = FakeUpstream(ssl_context=ctx).start()
    yield up, ca
    up.stop()


def provider_config(base_url: str, extra: str = "") -> str:
    return f'''
[providers.p]
kind = "openai"
base_url = "{base_url}"
api_key = "sk-test"
{extra}
[[routes]]
match = "*"
to = ["p"]
'''


def test_tls_with_ca_bundle(make_gateway, tls_upstream, loop_kind):
    up, ca = tls_upstream
    gw = make_gateway(loop_kind=loop_kind,
                      config_text=provider_config(up.base_url, f'ca_bundle = "{ca}"'))
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    r = c.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.content == CHAT_COMPLETION["choices"][0]["message"]["content"]
    for _ in range(3):
        c.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "x"}])
    assert up.connections == 1  # TLS connection kept alive and reused


def test_tls_verification_failure_is_502(make_gateway, tls_upstream):
    up, _ = tls_upstream
    gw = make_gateway(config_text=provider_config(up.base_url))  # system CAs: untrusted
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as ei:
        c.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 502 and "TLS" in ei.value.message
    assert gw.wait_rows(1)[0]["error_kind"] == "upstream_unreachable"


@pytest.fixture
def pgw(make_gateway, upstream, parser):
    return make_gateway(parser=parser, config_text=provider_config(upstream.base_url))


def test_close_delimited_upstream_body(pgw, upstream):
    body = json.dumps(CHAT_COMPLETION).encode()
    upstream.script = lambda req: [("head", 200, [("content-type", "application/json"),
                                                  ("connection", "close")]),
                                   ("body", body[:50]), ("body", body[50:]), ("close",)]
    st, _, got = rawhttp.request(pgw.url + "/v1/chat/completions", "POST",
                                 {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert st == 200 and json.loads(got)["usage"]["prompt_tokens"] == 19
    assert pgw.wait_rows(1)[0]["input_tokens"] == 19


def test_hop_by_hop_and_credentials_not_forwarded(pgw, upstream):
    st, _, _ = rawhttp.request(
        pgw.url + "/v1/chat/completions", "POST",
        {"model": "m", "messages": [{"role": "user", "content": "x"}]},
        headers={"authorization": "Bearer client-key", "x-api-key": "client-key",
                 "keep-alive": "timeout=5", "proxy-authorization": "Basic abc", "te": "trailers",
                 "connection": "keep-alive, x-custom-hop", "openai-organization": "org-1",
                 "openai-project": "proj-1", "user-agent": "test-agent/1.0"})
    assert st == 200
    sent = upstream.requests[-1].headers
    assert sent["authorization"] == "Bearer sk-test"
    # The client does not choose the provider account it is billed to.
    for h in ("x-api-key", "keep-alive", "proxy-authorization", "te", "connection",
              "openai-organization", "openai-project"):
        assert h not in sent, h
    assert sent["user-agent"] == "test-agent/1.0"
    assert sent["accept-encoding"] == "identity"


def test_provider_account_headers_not_relayed_to_client(pgw, upstream):
    body = json.dumps(CHAT_COMPLETION).encode()
    upstream.script = lambda req: [("head", 200, [("content-type", "application/json"),
                                                  ("openai-organization", "org-secret"),
                                                  ("openai-project", "proj-secret"),
                                                  ("openai-processing-ms", "12"),
                                                  ("content-length", str(len(body)))]),
                                   ("body", body), ("end",)]
    st, headers, _ = rawhttp.request(pgw.url + "/v1/chat/completions", "POST",
                                     {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert st == 200
    assert "openai-organization" not in headers and "openai-project" not in headers
    assert headers["openai-processing-ms"] == "12"


def test_passthrough_auth_never_forwards_the_gateway_key(make_gateway, upstream):
    gw = make_gateway(env={"TOKENWAY_API_KEYS": "gw-secret"},
                      config_text=provider_config(upstream.base_url, 'auth = "passthrough"')
                      .replace('api_key = "sk-test"\n', ""))
    st, _, _ = rawhttp.request(gw.url + "/v1/chat/completions", "POST",
                               {"model": "m", "messages": [{"role": "user", "content": "x"}]},
                               headers={"authorization": "Bearer gw-secret",
                                        "x-api-key": "provider-own-key"})
    assert st == 200
    sent = upstream.requests[-1].headers
    assert "authorization" not in sent
    assert sent["x-api-key"] == "provider-own-key"


def test_passthrough_auth_forwards_client_key(make_gateway, upstream):
    gw = make_gateway(config_text=provider_config(upstream.base_url, 'auth = "passthrough"')
                      .replace('api_key = "sk-test"\n', ""))
    rawhttp.request(gw.url + "/v1/chat/completions", "POST",
                    {"model": "m", "messages": [{"role": "user", "content": "x"}]},
                    headers={"authorization": "Bearer client-own-key"})
    assert upstream.requests[-1].headers["authorization"] == "Bearer client-own-key"


def test_upstream_5xx_non_json_is_wrapped(pgw, upstream):
    upstream.script = lambda req: [("head", 503, [("content-length", "11")]),
                                   ("body", b"Unavailable"), ("end",)]
    st, _, body = rawhttp.request(pgw.url + "/v1/chat/completions", "POST",
                                  {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    err = json.loads(body)["error"]
    # Rewritten as the Chat error for the status (Translation.error in observe mode).
    assert st == 503 and "Unavailable" in err["message"] and err["type"] == "server_error"
    assert err["code"] == "server_is_overloaded"
