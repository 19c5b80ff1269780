"""x-request-id: the gateway's own id on every answer and ledger row, or the client's
when it sent a sane one."""

from __future__ import annotations

import pytest

from tests.integration import rawhttp

MSG = [{"role": "user", "content": "hi"}]


def _post(gw, rid: bytes | None, **body):
    headers = {} if rid is None else {"x-request-id": rid.decode("latin-1")}
    return rawhttp.request(gw.url + "/v1/chat/completions", "POST",
                           {"model": "gpt-4o", "messages": MSG, **body}, headers=headers)


def test_a_sane_client_id_is_kept_in_the_answer_and_the_row(gateway):
    for n, (rid, body) in enumerate(((b"trace-Abc_123:4/5+6=", {}),
                                     (b"s1", {"stream": True})), 1):
        st, headers, _ = _post(gateway, rid, **body)
        assert st == 200 and headers["x-request-id"] == rid.decode()
        assert gateway.wait_rows(n)[n - 1]["request_id"] == rid.decode()
    # An error answer carries it too.
    st, headers, _ = _post(gateway, b"err-1", model="no-such-model")
    assert st == 404 and headers["x-request-id"] == "err-1"


@pytest.mark.parametrize("rid", [b"", b"has space", b"x" * 129, b"-leading-dash",
                                 "caf\u00e9".encode(), b"semi;colon"])
def test_anything_else_gets_the_gateways_own_id(gateway, rid):
    st, headers, _ = _post(gateway, rid)
    assert st == 200 and headers["x-request-id"].startswith("req_")
    assert gateway.wait_rows(1)[-1]["request_id"] == headers["x-request-id"]


def test_without_one_the_gateway_names_the_request(gateway):
    st, headers, _ = _post(gateway, None)
    assert st == 200 and headers["x-request-id"].startswith("req_")
