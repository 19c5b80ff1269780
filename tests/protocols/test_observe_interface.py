"""One observe path: ``Translation`` covers same-format requests, streams, replies and
errors for every format, Chat included (the usage report it asks for and strips)."""

from __future__ import annotations

import json

import pytest

from protocols import ir, registry
from protocols.observe import StreamTap
from protocols.stream_filter import TranslatedStream
from protocols.translate import Translation
from tests.integration.upstreams import transcript

FORMATS = [ir.FORMAT_OPENAI_CHAT, ir.FORMAT_OPENAI_RESPONSES, ir.FORMAT_ANTHROPIC_MESSAGES,
           ir.FORMAT_GEMINI]

#: Each format's own error body, as its provider writes it.
OWN_ERRORS = {
    ir.FORMAT_OPENAI_CHAT: b'{"error":{"message":"bad key","type":"invalid_request_error",'
                           b'"param":null,"code":"invalid_api_key"}}',
    ir.FORMAT_OPENAI_RESPONSES: b'{"error":{"message":"slow down","type":"requests",'
                                b'"param":null,"code":"rate_limit_exceeded"}}',
    ir.FORMAT_ANTHROPIC_MESSAGES: b'{"type":"error","error":{"type":"overloaded_error",'
                                  b'"message":"Overloaded"}}',
    ir.FORMAT_GEMINI: b'{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}',
}

NOT_OWN = [b"<html><body><h1>502 Bad Gateway</h1></body></html>", b"upstream timed out", b"",
           b'{"detail":"not an error object"}']


def observed(fmt: str, body: dict | None = None) -> Translation:
    tr = Translation(fmt, fmt, request_id="r", created=0)
    tr.request(body if body is not None else {"model": "m"})
    return tr


@pytest.mark.parametrize("fmt", FORMATS)
def test_own_error_body_passes_through(fmt):
    status, body = observed(fmt).error(429, OWN_ERRORS[fmt])
    assert (status, body) == (429, OWN_ERRORS[fmt])


@pytest.mark.parametrize("raw", NOT_OWN)
@pytest.mark.parametrize("fmt", FORMATS)
def test_foreign_error_body_becomes_the_clients_format(fmt, raw):
    tr = observed(fmt)
    status, body = tr.error(502, raw)
    mod = registry.format_module(fmt)
    assert (status, body) == mod.encode_error(mod.decode_error(502, raw), fmt)
    assert mod.is_error_body(body)  # the client's own shape now
    assert status // 100 == 5 and tr.failed


@pytest.mark.parametrize("fmt", FORMATS)
def test_gateway_error_bodies_use_the_client_format(fmt):
    err = ir.ApiError(kind=ir.ErrorKind.TIMEOUT, message="provider timed out", status=504)
    status, body = registry.encode_error(fmt, err)
    assert status == 504 and registry.format_module(fmt).is_error_body(body)
    assert b"provider timed out" in body


def test_chat_stream_request_asks_for_usage_and_the_filter_strips_it():
    body = {"model": "m", "stream": True, "messages": []}
    tr = observed(ir.FORMAT_OPENAI_CHAT, body)
    sent = tr.request(body)
    assert sent is not body and sent["stream_options"] == {"include_usage": True}
    assert "stream_options" not in body  # the client's body is not touched
    f = tr.stream_filter()
    assert isinstance(f, StreamTap)
    data = transcript("openai_chat_stream_include_usage.sse")
    out = f.feed(data) + f.finish()
    assert b'"choices":[]' not in out and out.endswith(b"data: [DONE]\n\n")
    assert type(f.usage) is ir.Usage and f.usage.input_tokens > 0 and f.complete


@pytest.mark.parametrize("opts", [{"include_usage": True}, None])
def test_chat_request_left_alone_when_asked_or_not_streaming(opts):
    body = {"model": "m", "messages": []}
    if opts is not None:
        body.update(stream=True, stream_options=opts)
    tr = Translation(ir.FORMAT_OPENAI_CHAT, ir.FORMAT_OPENAI_CHAT, request_id="r", created=0)
    assert tr.request(body) is body
    data = transcript("openai_chat_stream_include_usage.sse")
    f = tr.stream_filter()
    assert f.feed(data) + f.finish() == data  # nothing stripped for a client that asked


@pytest.mark.parametrize("fmt", [ir.FORMAT_OPENAI_RESPONSES, ir.FORMAT_ANTHROPIC_MESSAGES,
                                 ir.FORMAT_GEMINI])
def test_other_formats_send_the_body_itself(fmt):
    body = {"model": "m", "stream": True}
    assert observed(fmt, body).request(body) is body


def test_chat_reply_usage_is_ir_usage():
    tr = observed(ir.FORMAT_OPENAI_CHAT)
    reply = {"id": "c", "object": "chat.completion", "model": "gpt-served", "choices": [],
             "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}
    assert tr.response(reply) is reply
    assert tr.usage == ir.Usage(input_tokens=7, output_tokens=2) and tr.model == "gpt-served"


def test_translated_filter_has_the_same_interface():
    tr = Translation(ir.FORMAT_OPENAI_CHAT, ir.FORMAT_ANTHROPIC_MESSAGES, request_id="r",
                     created=0)
    tr.request({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    f = tr.stream_filter()
    assert isinstance(f, TranslatedStream) and f.at_boundary and not f.error_relayed
    out = f.feed(transcript("anthropic_stream_text.sse")) + f.finish()
    assert out.endswith(b"data: [DONE]\n\n") and f.complete
    assert type(f.usage) is ir.Usage and f.model
    assert f.heartbeat() == registry.format_module(ir.FORMAT_OPENAI_CHAT).HEARTBEAT


@pytest.mark.parametrize("fmt", FORMATS)
def test_tap_error_frame_is_the_formats_own_error(fmt):
    f = observed(fmt).stream_filter()
    frame = f.error_frame("upstream stream failed: timed out", "timeout")
    data = frame.split(b"data: ", 1)[1].strip()
    assert registry.format_module(fmt).is_error_body(data) or b'"type":"error"' in data
    assert "timed out" in json.dumps(json.loads(data))


STREAMS = {ir.FORMAT_OPENAI_CHAT: "openai_chat_stream_include_usage.sse",
           ir.FORMAT_ANTHROPIC_MESSAGES: "anthropic_stream_text.sse",
           ir.FORMAT_OPENAI_RESPONSES: "responses_stream_text.sse"}


@pytest.mark.parametrize("client", [ir.FORMAT_OPENAI_CHAT, ir.FORMAT_ANTHROPIC_MESSAGES])
@pytest.mark.parametrize("upstream", list(STREAMS))
def test_ended_holds_from_the_last_event_on(client, upstream):
    """``ended`` turns true when the provider's terminal event is fed, before
    ``finish()``: a connection that fails after it has left the client a whole answer."""
    tr = Translation(client, upstream, request_id="r", created=0)
    tr.request({"model": "m", "stream": True, "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}]})
    f = tr.stream_filter()
    data = transcript(STREAMS[upstream])
    last = data.rstrip(b"\n").rfind(b"\n\n") + 2  # where the last event starts
    f.feed(data[:last])
    assert not f.ended
    f.feed(data[last:-1])
    assert not f.ended  # the last event is not whole yet
    f.feed(data[-1:])
    assert f.ended
    f.finish()
    assert f.ended and f.complete


@pytest.mark.parametrize("fmt", [ir.FORMAT_OPENAI_CHAT, ir.FORMAT_ANTHROPIC_MESSAGES])
def test_ended_after_the_providers_error_event(fmt):
    f = observed(fmt, {"model": "m", "stream": True}).stream_filter()
    data = transcript(STREAMS[fmt])
    f.feed(data[:data.find(b"\n\n") + 2])
    assert not f.ended
    f.feed(f.error_frame("overloaded", "upstream_error"))  # as the provider would send it
    assert f.ended and f.error_relayed


@pytest.mark.parametrize("kind,client_type", [("timeout", "timeout_error"),
                                              ("cut", "api_error")])
def test_translated_error_frame_says_what_failed(kind, client_type):
    """A provider that went silent or dropped mid-stream: the client's error event
    carries the gateway's cause, as the passthrough's does, not a guess from the
    decoder (a timeout is not 'the stream ended early')."""
    tr = Translation(ir.FORMAT_ANTHROPIC_MESSAGES, ir.FORMAT_OPENAI_CHAT, request_id="r",
                     created=0)
    tr.request({"model": "m", "stream": True, "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}]})
    f = tr.stream_filter()
    data = transcript("openai_chat_stream_include_usage.sse")
    assert f.feed(data[:data.find(b"\n\n") + 2])
    frame = f.error_frame("provider sent nothing for 1 s", kind)
    assert frame.startswith(b"event: error\n")
    err = json.loads(frame.split(b"data: ", 1)[1])["error"]
    assert err == {"details": None, "type": client_type,
                   "message": "provider sent nothing for 1 s"}
    assert not f.complete and f.ended
    assert f.error_frame("again", kind) == b"" and f.finish() == b""  # one error, once
