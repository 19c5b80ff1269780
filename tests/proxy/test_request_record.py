"""The request record and the call around it: one record per request, handed to the
ledger once, in the ledger's column order; the body read with clear 4xx errors."""

from __future__ import annotations

import pytest

from protocols.ir import FORMAT_ANTHROPIC_MESSAGES, Usage
from proxy.call import MAX_MODEL_CHARS, MAX_STORED_PATH_CHARS, Call
from proxy.errors import GatewayError
from proxy.ledger.schema import LEDGER_COLUMNS
from proxy.request import RequestRecord
from proxy.wire import Request


def test_as_row_follows_the_ledger_columns() -> None:
    rec = RequestRecord("/v1/x", "openai_chat", "1.2.3.4:5", 10)
    for name in LEDGER_COLUMNS:
        setattr(rec, name, name)
    assert rec.as_row() == LEDGER_COLUMNS
    assert list(rec.as_dict()) == list(LEDGER_COLUMNS)


def test_usage_and_timing() -> None:
    rec = RequestRecord("/v1/x", "openai_chat", "", 0)
    assert rec.input_tokens is None and rec.ttfb_ms is None
    rec.set_usage(None)
    assert rec.input_tokens is None
    rec.set_usage(Usage(10, 5, 3, 2, 1))
    assert (rec.input_tokens, rec.output_tokens, rec.cached_tokens, rec.cache_write_tokens,
            rec.reasoning_tokens) == (10, 5, 3, 2, 1)
    rec.first_byte()
    first = rec.ttfb_ms
    rec.first_byte()
    assert rec.ttfb_ms == first  # only the first byte counts
    rec.close()
    assert rec.latency_ms is not None and rec.latency_ms >= first


class FakeConn:
    client_addr = "127.0.0.1:9"
    closed = False
    streaming = False
    write_paused = False
    flow = None
    task = None

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes, list]] = []
        self.aborted = False

    def respond(self, status, body, headers=None, content_type=b"application/json"):
        self.sent.append((status, body, headers or []))

    def abort(self) -> None:
        self.aborted = True


def make_call(body: bytes = b"", path: str = "/v1/messages",
              headers: list | None = None) -> tuple[Call, FakeConn, list]:
    req = Request("POST", path.encode(), headers or [(b"content-type", b"application/json")],
                  "1.1", True, 0.0)
    req.body = body
    req.content_type = dict(req.headers).get(b"content-type")  # as the connection reads it
    conn = FakeConn()
    records: list = []
    return Call(req, conn, "anthropic_messages", FORMAT_ANTHROPIC_MESSAGES,
                records.append), conn, records


@pytest.mark.parametrize("body, status, needle", [
    (b"", 400, "empty"),
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
])
def test_json_body_errors(body: bytes, status: int, needle: str) -> None:
    call, _, _ = make_call(body)
    with pytest.raises(GatewayError) as info:
        call.json_body()
    assert info.value.status == status and needle in info.value.message


def test_model_in_a_nested_string_is_not_a_duplicate() -> None:
    raw = b'{"model": "m", "contents": [{"role": "model"}], "text": "model"}'
    call, _, _ = make_call(raw)
    assert call.json_body()["model"] == "m"
    assert call.forwardable_body() is call.req.body


def test_a_body_with_two_model_keys_is_not_forwarded() -> None:
    call, _, _ = make_call(b'{"model": "a", "x": {"model": 1}, "model": "b"}')
    assert call.json_body()["model"] == "b"  # what routing would see...
    with pytest.raises(GatewayError) as info:
        call.forwardable_body()  # ...is not what a provider might read
    assert info.value.status == 400 and "more than once" in info.value.message


def test_non_json_content_type_is_415() -> None:
    call, _, _ = make_call(b"{}", headers=[(b"content-type", b"text/plain")])
    with pytest.raises(GatewayError) as info:
        call.json_body()
    assert info.value.status == 415


def test_model_name_is_bounded() -> None:
    call, _, _ = make_call()
    with pytest.raises(GatewayError):
        call.model_of({"model": "m" * (MAX_MODEL_CHARS + 1)})
    assert call.model_of({"model": "claude"}) == "claude" and call.rec.model == "claude"


def test_stored_path_is_bounded() -> None:
    call, _, _ = make_call(path="/" + "a" * 60_000)
    assert len(call.rec.endpoint) == MAX_STORED_PATH_CHARS


def test_errors_answer_in_the_client_protocol_and_record_once() -> None:
    call, conn, records = make_call(b"{}")
    call.send_error(GatewayError(503, "busy", kind="overloaded", retry_after_s=2.4))
    call.finish()
    [(status, body, headers)] = conn.sent
    assert status == 503
    assert body.startswith(b'{"type":"error","error":{"type":"overloaded_error"')
    assert (b"retry-after", b"2") in headers
    assert [r.status for r in records] == [503] and records[0].error_kind == "overloaded"


def test_internal_failure_during_a_stream_cuts_it_and_records() -> None:
    call, conn, records = make_call(b"{}")
    conn.streaming = True
    call.fail_internal()
    assert conn.aborted and conn.sent == []
    assert [r.error_kind for r in records] == ["internal"]


def test_internal_failure_answers_500_in_the_client_protocol() -> None:
    call, conn, records = make_call(b"{}")
    call.fail_internal()
    [(status, body, _)] = conn.sent
    assert status == 500 and b'"type":"api_error"' in body
    call.fail_internal()  # already answered: nothing more
    assert len(conn.sent) == 1 and len(records) == 1


def test_send_json_records_status_and_bytes() -> None:
    call, conn, records = make_call(b"{}")
    call.send_json({"ok": True})
    assert conn.sent[0][0] == 200 and records[0].bytes_out == len(conn.sent[0][1])
    assert records[0].ttfb_ms is not None


def test_spawned_work_that_crashes_is_answered() -> None:
    import asyncio

    async def boom() -> None:
        raise RuntimeError("bug")

    async def main() -> None:
        call, conn, records = make_call(b"{}")
        task = call.spawn(boom())
        assert conn.task is task
        await task
        assert conn.sent[0][0] == 500 and records[0].error_kind == "internal"

    asyncio.run(main())


@pytest.mark.parametrize("status, kind, code", [
    (400, "bad_request", None), (401, "auth", "invalid_api_key"),
    (404, "not_found", "model_not_found"), (405, "bad_request", None),
    (408, "client_timeout", None), (413, "bad_request", None), (415, "bad_request", None),
    (431, "bad_request", None), (500, "internal", None), (501, "bad_request", None),
    (502, "upstream_error", None), (503, "overloaded", None), (504, "upstream_timeout", None),
])
def test_the_gateways_own_errors_keep_their_status_in_every_format(status, kind, code) -> None:
    """One path writes every error body: the client format's codec, with the
    gateway's status kept (in the body too, where the format carries it)."""
    import json

    from protocols.ir import FORMAT_GEMINI, FORMAT_OPENAI_CHAT, FORMAT_OPENAI_RESPONSES
    from proxy.errors import error_reply

    err = GatewayError(status, "what went wrong", kind=kind, code=code, param="model")
    for fmt in (FORMAT_OPENAI_CHAT, FORMAT_OPENAI_RESPONSES, FORMAT_ANTHROPIC_MESSAGES,
                FORMAT_GEMINI):
        got, body = error_reply(fmt, err)
        assert got == status, fmt
        obj = json.loads(body)
        if fmt == FORMAT_ANTHROPIC_MESSAGES:
            assert obj["type"] == "error" and obj["error"]["message"] == "what went wrong"
        elif fmt == FORMAT_GEMINI:
            assert obj["error"]["code"] == status and obj["error"]["status"]
        else:
            assert obj["error"]["message"] == "what went wrong"
            assert obj["error"]["param"] == "model"
            if code is not None:
                assert obj["error"]["code"] == code
