"""Fake provider scripts for every upstream wire format, plus what each one says.

``provider_script(scenario)`` returns a ``FakeUpstream`` script that answers the
request by its path, in that provider's exact wire format:

    POST /v1/chat/completions                    OpenAI Chat (§1.4, §1.5)
    POST /v1/responses                           OpenAI Responses (§2.4, §2.5)
    POST /v1/messages                            Anthropic Messages (§3.7, §3.8)
    POST /v1/messages/count_tokens               Anthropic token counting (§3.10)
    POST /v1beta/models/M:generateContent        Gemini (§4)
    POST /v1beta/models/M:streamGenerateContent?alt=sse
    POST /v1beta/models/M:batchEmbedContents     Gemini embeddings
    POST /v1/embeddings                          OpenAI embeddings (float or base64)

Streams replay the conformance transcripts byte for byte, cut into small pieces
at deterministic pseudo-random offsets (so multi-byte characters and CRLF pairs
are split).  The only additions are the ones the real provider makes for the
request it got: OpenAI Chat appends the ``choices:[]`` usage chunk when the
request asks for ``stream_options.include_usage`` (the parallel tool-call
transcript was recorded without it), and the Gemini tool-call stream, which has
no transcript, is built in the transcript's own framing (CRLF, ``data:`` only,
whole ``functionCall`` parts, cumulative ``usageMetadata``); the OpenAI and Gemini
mid-stream failures are a transcript's first events followed by that provider's
in-stream error shape (§1.6, §4).

Scenarios: ``text``, ``utf8`` (Chat only: openai_chat_stream_text.sse with its multi-byte
text), ``tools``, ``length`` (output cap hit), ``filtered`` (content filter / refusal /
SAFETY), ``stop_sequence`` (Anthropic only), ``error`` (each vendor's typical HTTP error:
Anthropic 529 ``overloaded_error``, OpenAI 429 ``rate_limit_exceeded`` with
``retry-after``, Gemini 400 ``INVALID_ARGUMENT``) and ``midstream_error`` (Anthropic
``anthropic_stream_error_midstream.sse``; an OpenAI ``data: {"error":...}`` chunk; a
Gemini error object), each after some text.  ``provider_script(scenario, cut=...)``
stops any stream halfway instead (clean EOF or dropped connection).

``EXPECT[(vendor, scenario, stream)]`` is what the upstream said, in neutral
terms (§5.5 OpenAI usage semantics: ``prompt`` includes cache reads and writes,
``completion`` includes reasoning), for the tests to compare with what reached
the client and the ledger.
"""

from __future__ import annotations

import base64
import random
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from tests.integration.upstreams import (
    Recorded,
    json_response,
    sse_response,
    transcript,
)

# -- pieces ---------------------------------------------------------------------------------


def small_cuts(data: bytes, seed: int = 7, low: int = 1, high: int = 29) -> list[int]:
    """Deterministic cut offsets giving pieces of ``low``..``high`` bytes."""
    rnd = random.Random(seed + len(data))
    cuts, pos = [], 0
    while True:
        pos += rnd.randint(low, high)
        if pos >= len(data):
            return cuts
        cuts.append(pos)


def replay(data: bytes) -> list[tuple]:
    return sse_response(data, small_cuts(data))


def sse_events(data: bytes) -> list[tuple[str | None, str]]:
    """(event, data) pairs of an SSE body (CR, LF and CRLF line ends; §6.1)."""
    text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    out: list[tuple[str | None, str]] = []
    for block in text.split("\n\n"):
        event, lines = None, []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                lines.append(value)
        if lines:
            out.append((event, "\n".join(lines)))
    return out


# -- OpenAI Chat ----------------------------------------------------------------------------

REFUSAL = "I can't help with that."

CHAT_TEXT_USAGE = {
    "prompt_tokens": 1536, "completion_tokens": 8, "total_tokens": 1544,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0,
                                  "rejected_prediction_tokens": 0},
}
CHAT_TOOLS_USAGE = {
    "prompt_tokens": 92, "completion_tokens": 52, "total_tokens": 144,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0,
                                  "rejected_prediction_tokens": 0},
}
CHAT_UTF8_TEXT = "Hello! (English)\n¡Hola! (Spanish)\nこんにちは! (Japanese)"
CHAT_UTF8_USAGE = {
    "prompt_tokens": 14, "completion_tokens": 18, "total_tokens": 32,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0,
                                  "rejected_prediction_tokens": 0},
}
CHAT_TOOL_CALLS = [
    {"id": "call_6PqAxJsYwnvZ8M84lU6OY1ec", "type": "function",
     "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris, France\"}"}},
    {"id": "call_neQ1kwyHvjdy7H7HtLZ63NsH", "type": "function",
     "function": {"name": "get_local_time", "arguments": "{\"timezone\":\"Asia/Tokyo\"}"}},
]


def _chat_completion(message: dict, finish: str, usage: dict) -> dict:
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion",
        "created": 1741569952, "model": "gpt-4.1-2025-04-14",
        "choices": [{"index": 0, "message": {"role": "assistant", "refusal": None,
                                             "annotations": [], **message},
                     "logprobs": None, "finish_reason": finish}],
        "usage": usage, "service_tier": "default", "system_fingerprint": "fp_51e1070cf2",
    }


CHAT_BODIES = {
    "text": _chat_completion({"content": "The capital of France is Paris."}, "stop",
                             CHAT_TEXT_USAGE),
    "tools": _chat_completion({"content": None, "tool_calls": CHAT_TOOL_CALLS}, "tool_calls",
                              CHAT_TOOLS_USAGE),
    "length": _chat_completion({"content": "The capital of"}, "length",
                               {**CHAT_TEXT_USAGE, "completion_tokens": 3,
                                "total_tokens": 1539}),
    "utf8": _chat_completion({"content": CHAT_UTF8_TEXT}, "stop", CHAT_UTF8_USAGE),
    "filtered": _chat_completion({"content": REFUSAL}, "content_filter",
                                 {**CHAT_TEXT_USAGE, "completion_tokens": 6,
                                  "total_tokens": 1542}),
}


def _with_usage_chunk(data: bytes, usage: dict) -> bytes:
    """Append the ``choices:[]`` usage chunk OpenAI sends with ``include_usage`` (§1.5)."""
    first = orjson.loads(sse_events(data)[0][1])
    chunk = {k: first[k] for k in ("id", "object", "created", "model", "service_tier",
                                   "system_fingerprint")}
    chunk["choices"] = []
    chunk["usage"] = usage
    done = b"data: [DONE]\n\n"
    assert data.endswith(done)
    return data[:-len(done)] + b"data: " + orjson.dumps(chunk) + b"\n\n" + done


def openai_chat(scenario: str, req: Recorded) -> list[tuple]:
    body = req.json()
    if scenario == "error":
        return openai_error()
    if not body.get("stream"):
        return json_response(CHAT_BODIES[scenario])
    usage = (body.get("stream_options") or {}).get("include_usage") is True
    if scenario == "tools":
        data = transcript("openai_chat_stream_parallel_tool_calls.sse")
        return replay(_with_usage_chunk(data, CHAT_TOOLS_USAGE) if usage else data)
    if scenario == "midstream_error":
        return replay(chat_midstream_error())
    if scenario == "utf8":
        data = transcript("openai_chat_stream_text.sse")
        return replay(_with_usage_chunk(data, CHAT_UTF8_USAGE) if usage else data)
    if scenario == "text":
        # Real OpenAI sends the usage chunk only when asked for it.
        return replay(transcript("openai_chat_stream_include_usage.sse" if usage
                                 else "openai_chat_stream_text.sse"))
    raise AssertionError(f"no Chat stream for {scenario}")


def chat_midstream_error() -> bytes:
    """Five chunks of the text stream, then OpenAI's in-stream error and EOF, no [DONE]
    (§1.6 "Mid-stream error")."""
    data = transcript("openai_chat_stream_include_usage.sse")
    head = b"".join(b"data: " + d.encode() + b"\n\n" for _, d in sse_events(data)[:5])
    return head + (b'data: {"error": {"message": "The server had an error while processing '
                   b'your request. Sorry about that!", "type": "server_error"}}\n\n')


def openai_error() -> list[tuple]:
    return json_response({"error": {
        "message": "Rate limit reached for gpt-4.1 in organization org-7Yk2 on tokens per min "
                   "(TPM): Limit 30000, Used 29400, Requested 1977. Please try again in 2.754s. "
                   "Visit https://platform.openai.com/account/rate-limits to learn more.",
        "type": "tokens", "param": None, "code": "rate_limit_exceeded"}}, 429,
        [("retry-after", "3"), ("retry-after-ms", "2754"),
         ("x-ratelimit-limit-tokens", "30000"), ("x-ratelimit-remaining-tokens", "600"),
         ("x-ratelimit-reset-tokens", "2.754s")])


# -- OpenAI Responses -----------------------------------------------------------------------

def _completed(name: str) -> dict:
    for _, data in sse_events(transcript(name)):
        obj = orjson.loads(data)
        if obj["type"] == "response.completed":
            return obj["response"]
    raise AssertionError(name)


def _responses_incomplete(reason: str) -> dict:
    resp = _completed("responses_stream_text.sse")
    resp = orjson.loads(orjson.dumps(resp))
    resp["status"] = "incomplete"
    resp["incomplete_details"] = {"reason": reason}
    msg = resp["output"][0]
    msg["status"] = "incomplete"
    if reason == "max_output_tokens":
        resp["max_output_tokens"] = 16
        msg["content"][0]["text"] = "Hi there! How"
        out = 16
    else:
        msg["content"][0]["text"] = REFUSAL
        out = 6
    resp["usage"] = {"input_tokens": 37, "input_tokens_details": {"cached_tokens": 0},
                     "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
                     "total_tokens": 37 + out}
    return resp


def openai_responses(scenario: str, req: Recorded) -> list[tuple]:
    body = req.json()
    if scenario == "error":
        return openai_error()
    name = {"text": "responses_stream_text.sse",
            "tools": "responses_stream_function_call.sse"}.get(scenario)
    if body.get("stream"):
        assert name is not None, scenario
        return replay(transcript(name))
    if name:
        return json_response(_completed(name))
    return json_response(_responses_incomplete(
        "max_output_tokens" if scenario == "length" else "content_filter"))


# -- Anthropic ------------------------------------------------------------------------------

ANTHROPIC_SIGNATURE = (
    "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds2bCdj2L0ZfZvLiUKA9wQOwAEVtbRnGGrJKbZgSL"
    "8EdhSYDpOxbGPBbAiqKPKbZJa9hYw0zL4MIIbGXrAP4NOeA8E2hd8AvcKAkhECDpbuCcmHydjA4UBHbe6P0P+OSB")


def _message(content: list, stop: str, usage: dict) -> dict:
    write = usage["cache_creation_input_tokens"]
    return {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-6", "content": content, "stop_reason": stop,
            "stop_sequence": None, "usage": {
                "cache_creation": {"ephemeral_5m_input_tokens": write,
                                   "ephemeral_1h_input_tokens": 0},
                "service_tier": "standard", **usage}}


ANTHROPIC_BODIES = {
    "text": _message(
        [{"type": "text", "text": "Hello! It's nice to meet you. How can I help you today?"}],
        "end_turn", {"input_tokens": 12, "cache_creation_input_tokens": 100,
                     "cache_read_input_tokens": 2048, "output_tokens": 17}),
    "tools": _message(
        [{"type": "thinking", "signature": ANTHROPIC_SIGNATURE,
          "thinking": "The user wants the weather in Paris and the time in Tokyo."},
         {"type": "text", "text": "I'll check both for you."},
         {"type": "tool_use", "id": "toolu_01EnCNTFK7cCwUkuRwcqMB13", "name": "get_weather",
          "input": {"location": "Paris, France"}},
         {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_local_time",
          "input": {"timezone": "Asia/Tokyo"}}],
        "tool_use", {"input_tokens": 412, "cache_creation_input_tokens": 0,
                     "cache_read_input_tokens": 1500, "output_tokens": 187}),
    "length": _message(
        [{"type": "text", "text": "Hello! It's nice"}], "max_tokens",
        {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
         "output_tokens": 5}),
    "filtered": _message(
        [{"type": "text", "text": REFUSAL}], "refusal",
        {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
         "output_tokens": 6}),
    "stop_sequence": {**_message(
        [{"type": "text", "text": "Hello! It's nice to meet you."}], "stop_sequence",
        {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
         "output_tokens": 9}), "stop_sequence": "END"},
}

ANTHROPIC_COUNT_TOKENS = 2095


def anthropic(scenario: str, req: Recorded) -> list[tuple]:
    if req.path.startswith("/v1/messages/count_tokens"):
        return json_response({"input_tokens": ANTHROPIC_COUNT_TOKENS})
    body = req.json()
    if scenario == "error":
        return anthropic_error()
    if body.get("stream"):
        name = {"text": "anthropic_stream_text.sse",
                "tools": "anthropic_stream_thinking_tool_use.sse",
                "midstream_error": "anthropic_stream_error_midstream.sse"}[scenario]
        return replay(transcript(name))
    return json_response(ANTHROPIC_BODIES[scenario],
                         extra=[("request-id", "req_011CSHoEeqs5C35K2UUqR7Fy")])


def anthropic_error() -> list[tuple]:
    return json_response({"type": "error", "error": {"type": "overloaded_error",
                                                     "message": "Overloaded"},
                          "request_id": "req_011CgBtYPFQh3RhAiUIxiJqC"}, 529,
                         [("x-should-retry", "true"),
                          ("request-id", "req_011CgBtYPFQh3RhAiUIxiJqC")])


# -- Gemini ---------------------------------------------------------------------------------

GEMINI_TEXT = ("Hello (English)\n¡Hola! (Spanish)\nBonjour ! (French)\nHallo (German)\n"
               "Ciao (Italian)")
GEMINI_THOUGHT_SIGNATURE = "CiQB0e2Kb7ZWm0+Wf8lVb3tq7RB1yE2JhzKcR9aFi1yJvXu2dR8KXwHR7Yp0"


def _gemini_usage(prompt: int, candidates: int, thoughts: int, cached: int = 0) -> dict:
    u = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
         "totalTokenCount": prompt + candidates + thoughts,
         "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
         "thoughtsTokenCount": thoughts}
    if cached:
        u["cachedContentTokenCount"] = cached
        u["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    return u


def _gemini(parts: list, finish: str | None, usage: dict) -> dict:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return {"candidates": [cand], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash",
            "responseId": "v8-I-VtSV4yzZu_xfjNC9l"}


GEMINI_CALLS = [
    {"functionCall": {"name": "get_weather", "args": {"location": "Paris, France"}},
     "thoughtSignature": GEMINI_THOUGHT_SIGNATURE},
    {"functionCall": {"name": "get_local_time", "args": {"timezone": "Asia/Tokyo"}}},
]

GEMINI_BODIES = {
    "text": _gemini([{"text": GEMINI_TEXT}], "STOP", _gemini_usage(1033, 27, 214, cached=1024)),
    "tools": _gemini(GEMINI_CALLS, "STOP", _gemini_usage(74, 22, 96)),
    "length": _gemini([{"text": "Hello (English)\n"}], "MAX_TOKENS", _gemini_usage(9, 5, 0)),
    # A blocked answer: no content at all, only the reason and the ratings (§4).
    "filtered": {"candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]}],
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9,
                          "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}]},
        "modelVersion": "gemini-2.5-flash", "responseId": "v8-I-VtSV4yzZu_xfjNC9m"},
}


def gemini_tools_stream() -> bytes:
    """Two whole ``functionCall`` parts in two events, CRLF framing (§4 Stream)."""
    events = [_gemini([GEMINI_CALLS[0]], None, _gemini_usage(74, 11, 96)),
              _gemini([GEMINI_CALLS[1]], "STOP", _gemini_usage(74, 22, 96))]
    return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)


def gemini_midstream_error() -> bytes:
    """The first chunk of the text stream, then a Google RPC error object as the next
    event and EOF (§4, §5.7 "stream cut / error JSON")."""
    data = transcript("gemini_stream_text_crlf.sse")
    first = data[:data.index(b"\r\n\r\n") + 4]
    return first + (b'data: {"error": {"code": 503, "message": "The model is overloaded. '
                    b'Please try again later.", "status": "UNAVAILABLE"}}\r\n\r\n')


def gemini(scenario: str, req: Recorded) -> list[tuple]:
    if scenario == "error":
        return gemini_error()
    if req.path.split("?")[0].endswith(":batchEmbedContents"):
        n = len(req.json()["requests"])
        return json_response({"embeddings": [{"values": embedding(i)} for i in range(n)]})
    if ":streamGenerateContent" in req.path:
        if scenario == "text":
            return replay(transcript("gemini_stream_text_crlf.sse"))
        if scenario == "midstream_error":
            return replay(gemini_midstream_error())
        return replay(gemini_tools_stream())
    return json_response(GEMINI_BODIES[scenario])


def gemini_error() -> list[tuple]:
    return json_response({"error": {
        "code": 400, "message": "* GenerateContentRequest.contents[0].parts: contents.parts "
                                "must not be empty.\n",
        "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                     "fieldViolations": [{"field": "contents[0].parts",
                                          "description": "must not be empty"}]}]}}, 400)


# -- embeddings -----------------------------------------------------------------------------

def embedding(i: int) -> list[float]:
    """Values exact in float32, so base64 and float answers compare equal."""
    return [0.5 + i, -0.25, 0.125, 1.0 / (i + 2)] if i % 2 == 0 else [0.75, 0.0, -1.5, 2.0]


def openai_embeddings(req: Recorded) -> list[tuple]:
    body = req.json()
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    b64 = body.get("encoding_format") == "base64"
    data = []
    for i in range(len(inputs)):
        vec: Any = [float(struct.unpack("<f", struct.pack("<f", v))[0]) for v in embedding(i)]
        if b64:
            vec = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vec})
    return json_response({"object": "list", "data": data, "model": "text-embedding-3-small",
                          "usage": {"prompt_tokens": 3 * len(inputs),
                                    "total_tokens": 3 * len(inputs)}})


# -- dispatch -------------------------------------------------------------------------------

def cut_stream(actions: list[tuple], how: str) -> list[tuple]:
    """The same stream stopped halfway, before its terminal event: ``eof`` ends the body
    cleanly there, ``abort`` drops the connection there."""
    head = actions[0]
    if head[0] != "head" or head[1] != 200 or not any(
            v.startswith("text/event-stream") for k, v in head[2] if k == "content-type"):
        return actions
    data = b"".join(a[1] for a in actions if a[0] == "body")
    half = data[:len(data) // 2]
    out = sse_response(half, small_cuts(half))
    return out if how == "eof" else out[:-1] + [("close",)]


def provider_script(scenario: str, cut: str | None = None):
    """A ``FakeUpstream`` script serving every provider format for ``scenario``; with
    ``cut`` (``eof`` or ``abort``) streams stop halfway (see ``cut_stream``)."""

    def script(req: Recorded) -> list[tuple]:
        actions = answer(req)
        return cut_stream(actions, cut) if cut else actions

    def answer(req: Recorded) -> list[tuple]:
        path = req.path
        if path.startswith("/v1/chat/completions"):
            return openai_chat(scenario, req)
        if path.startswith("/v1/responses"):
            return openai_responses(scenario, req)
        if path.startswith("/v1/messages"):
            return anthropic(scenario, req)
        if path.startswith("/v1beta/models/"):
            return gemini(scenario, req)
        if path.startswith("/v1/embeddings"):
            return openai_error() if scenario == "error" else openai_embeddings(req)
        return json_response({"error": {"message": f"no route {path}",
                                        "type": "invalid_request_error", "param": None,
                                        "code": None}}, 404)

    return script


# -- what each upstream said ----------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    text: str | None  # the assistant text, None when there is none
    tools: tuple[tuple[str | None, str, dict], ...] = ()  # (upstream id or None, name, args)
    finish: str = "stop"  # neutral: "stop" | "tool_calls" | "length"
    prompt: int | None = None  # None: not known in advance (loopback)
    completion: int | None = None
    cached: int = 0
    cache_write: int = 0
    reasoning: int | None = None
    thinking: str | None = None  # reasoning text (Anthropic thinking, Responses summary)
    model: str | None = None  # the model the provider says served the request


def _chat_expect(scenario: str, stream: bool) -> Expected:
    if scenario == "tools":
        return Expected(None, tuple((c["id"], c["function"]["name"],
                                     orjson.loads(c["function"]["arguments"]))
                                    for c in CHAT_TOOL_CALLS), "tool_calls", 92, 52, 0,
                        model="gpt-4o-2024-08-06" if stream else "gpt-4.1-2025-04-14")
    if scenario == "length":
        return Expected("The capital of", (), "length", 1536, 3, 1024,
                        model="gpt-4.1-2025-04-14")
    if scenario == "filtered":
        return Expected(REFUSAL, (), "filtered", 1536, 6, 1024, model="gpt-4.1-2025-04-14")
    if scenario == "utf8":
        return Expected(CHAT_UTF8_TEXT, (), "stop", 14, 18, 0, model="gpt-4.1-2025-04-14")
    return Expected("The capital of France is Paris.", (), "stop", 1536, 8, 1024, reasoning=0,
                    model="gpt-4o-mini-2024-07-18" if stream else "gpt-4.1-2025-04-14")


WEATHER_ARGS = {"location": "Paris, France", "unit": "celsius"}

EXPECT: dict[tuple[str, str, bool], Expected] = {}
for _stream in (False, True):
    for _sc in ("text", "tools", "length", "filtered", "utf8"):
        EXPECT[("openai", _sc, _stream)] = _chat_expect(_sc, _stream)
EXPECT.update({
    ("responses", "text", False): Expected("Hi there! How can I assist you today?", (), "stop",
                                           37, 11, 0, reasoning=0, model="gpt-4.1-2025-04-14"),
    ("responses", "tools", False): Expected(
        None, (("call_m2lviOGI5XmZ7yE5PJG48PXx", "get_weather", WEATHER_ARGS),), "tool_calls",
        68, 149, 0, reasoning=128, model="gpt-5-2025-08-07",
        thinking="**Looking up the weather**\n\nThe user wants today's weather in Paris. "
                 "I'll call get_weather with Paris, France in celsius."),
    ("responses", "length", False): Expected("Hi there! How", (), "length", 37, 16, 0,
                                             model="gpt-4.1-2025-04-14"),
    ("anthropic", "text", True): Expected(
        "Hello! It's nice to meet you. How can I help you today?", (), "stop", 10, 17, 0,
        model="claude-sonnet-4-5-20250929"),
    ("anthropic", "text", False): Expected(
        "Hello! It's nice to meet you. How can I help you today?", (), "stop", 2160, 17, 2048,
        cache_write=100, model="claude-sonnet-4-6"),
    ("anthropic", "tools", True): Expected(
        "I'll check the current weather in Paris for you.",
        (("toolu_01EnCNTFK7cCwUkuRwcqMB13", "get_weather", WEATHER_ARGS),), "tool_calls",
        412, 187, 0, model="claude-sonnet-4-5-20250929",
        thinking="The user wants the current weather in Paris. I have a get_weather tool that "
                 "takes a location and an optional unit. Paris, France; Celsius is the local "
                 "convention."),
    ("anthropic", "tools", False): Expected(
        "I'll check both for you.",
        (("toolu_01EnCNTFK7cCwUkuRwcqMB13", "get_weather", {"location": "Paris, France"}),
         ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_local_time", {"timezone": "Asia/Tokyo"})),
        "tool_calls", 1912, 187, 1500, model="claude-sonnet-4-6",
        thinking="The user wants the weather in Paris and the time in Tokyo."),
    ("anthropic", "length", False): Expected("Hello! It's nice", (), "length", 12, 5, 0,
                                             model="claude-sonnet-4-6"),
    ("gemini", "text", True): Expected(GEMINI_TEXT, (), "stop", 9, 241, 0, reasoning=214,
                                       model="gemini-2.5-flash"),
    ("gemini", "text", False): Expected(GEMINI_TEXT, (), "stop", 1033, 241, 1024,
                                        reasoning=214, model="gemini-2.5-flash"),
    ("gemini", "length", False): Expected("Hello (English)\n", (), "length", 9, 5, 0,
                                          model="gemini-2.5-flash"),
    ("responses", "filtered", False): Expected(REFUSAL, (), "filtered", 37, 6, 0,
                                               model="gpt-4.1-2025-04-14"),
    ("anthropic", "filtered", False): Expected(REFUSAL, (), "filtered", 12, 6, 0,
                                               model="claude-sonnet-4-6"),
    ("anthropic", "stop_sequence", False): Expected(
        "Hello! It's nice to meet you.", (), "stop", 12, 9, 0, model="claude-sonnet-4-6"),
    ("gemini", "filtered", False): Expected(None, (), "filtered", 9, 0, 0,
                                            model="gemini-2.5-flash"),
})
EXPECT[("responses", "text", True)] = EXPECT[("responses", "text", False)]
EXPECT[("responses", "tools", True)] = EXPECT[("responses", "tools", False)]
for _stream in (False, True):
    EXPECT[("gemini", "tools", _stream)] = Expected(
        None, ((None, "get_weather", {"location": "Paris, France"}),
               (None, "get_local_time", {"timezone": "Asia/Tokyo"})), "tool_calls",
        74, 118, 0, reasoning=96, model="gemini-2.5-flash")
