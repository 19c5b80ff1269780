"""Gateway keys: accepted as Bearer or x-api-key, refused with 401 in OpenAI format."""

from __future__ import annotations

import json

import openai
import pytest

from tests.integration import rawhttp


@pytest.fixture
def agw(make_gateway, upstream):
    return make_gateway(env={"TOKENWAY_API_KEYS": "gw-key-1,gw-key-2",
                             "TOKENWAY_OPENAI_BASE_URL": upstream.base_url,
                             "TOKENWAY_OPENAI_API_KEY": "sk-provider"},
                        config_text='[server]\nloopback_model = "on"\n')


def test_bearer_and_x_api_key_accepted(agw, upstream):
    c = openai.OpenAI(base_url=agw.url + "/v1", api_key="gw-key-2", max_retries=0)
    assert c.chat.completions.create(model="loopback", messages=[{"role": "user", "content": "x"}])
    st, _, _ = rawhttp.request(agw.url + "/v1/models", headers={"x-api-key": "gw-key-1"})
    assert st == 200
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    sent = upstream.requests[-1].headers
    # the gateway key never reaches the provider; the provider key is injected
    assert sent["authorization"] == "Bearer sk-provider"
    assert "gw-key" not in json.dumps(sent)


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"},
                                     {"x-api-key": "gw-key-1x"}, {"authorization": "gw-key-1"}])
def test_missing_or_wrong_key_is_401(agw, headers):
    st, _, body = rawhttp.request(agw.url + "/v1/chat/completions", "POST",
                                  {"model": "loopback", "messages": []}, headers=headers)
    assert st == 401
    err = json.loads(body)["error"]
    assert err["code"] == "invalid_api_key" and set(err) == {"message", "type", "param", "code"}
    rows = agw.wait_rows(1)
    assert rows[-1]["status"] == 401 and rows[-1]["error_kind"] == "auth"


def test_health_needs_no_key(agw):
    assert rawhttp.request(agw.url + "/health")[0] == 200


def test_keys_never_in_ledger_or_logs(agw, upstream, caplog):
    c = openai.OpenAI(base_url=agw.url + "/v1", api_key="gw-key-1", max_retries=0)
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    rows = agw.wait_rows(1)
    dump = json.dumps(rows) + caplog.text
    assert "gw-key-1" not in dump and "sk-provider" not in dump


def test_loopback_model_is_off_by_default_with_keys(make_gateway):
    """The built-in model costs the gateway CPU and memory and nobody a token: a
    gateway with keys (or on a public address) does not offer it unless asked."""
    gw = make_gateway(env={"TOKENWAY_API_KEYS": "k"})
    st, _, body = rawhttp.request(gw.url + "/v1/chat/completions", "POST",
                                  {"model": "loopback", "messages": [{"role": "user",
                                                                      "content": "x"}]},
                                  headers={"authorization": "Bearer k"})
    assert st == 404 and json.loads(body)["error"]["code"] == "model_not_found"
    st, _, body = rawhttp.request(gw.url + "/v1/models", headers={"authorization": "Bearer k"})
    assert st == 200 and "loopback" not in [m["id"] for m in json.loads(body)["data"]]


def test_health_details_need_a_key_when_keys_are_configured(agw):
    st, _, body = rawhttp.request(agw.url + "/health")
    health = json.loads(body)
    assert st == 200 and health == {"status": "ok", "version": health["version"]}
    st, _, body = rawhttp.request(agw.url + "/health", headers={"x-api-key": "gw-key-1"})
    details = json.loads(body)
    assert st == 200 and {"connections", "ledger", "upstream", "targets"} <= set(details)
