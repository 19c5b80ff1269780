"""Every client protocol over every upstream, through the real gateway, with the real SDKs.

Clients: the ``openai`` SDK for Chat Completions (``create``, ``create(stream=True)``, the
``chat.completions.stream()`` helper) and Responses (``create``, ``responses.stream()``),
the ``anthropic`` SDK (``create``, ``messages.stream()``, ``create(stream=True)``) and a
raw HTTP Gemini client (``generateContent`` and ``streamGenerateContent?alt=sse``).
Upstreams: fake OpenAI Chat, OpenAI Responses, Anthropic and Gemini providers that speak
their exact wire formats (``tests/integration/providers.py``), and the built-in
``loopback`` model.

For each pair the tests check what docs/protocols.md §5 promises: the text and the tool calls
(ids, names, argument JSON) arrive intact, stop reasons map per §5.4, usage maps per §5.5,
and the ledger row says who asked, who answered, and how many tokens it took. Around that
matrix: request fields and tool-result turns as the upstream receives them (§5.1-§5.3),
the thinking/reasoning round trip, upstream HTTP errors in each client's format (§5.7),
mid-stream errors and cut streams (§5.6, §6.3), requests a target cannot express,
count_tokens, the model list and embeddings.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import re
import struct
import time
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import PARSERS, RunningGateway, close_at_end
from tests.integration import rawhttp
from tests.integration.providers import (
    ANTHROPIC_COUNT_TOKENS,
    ANTHROPIC_SIGNATURE,
    EXPECT,
    Expected,
    embedding,
    provider_script,
    sse_events,
)
from tests.integration.upstreams import SENT, FakeUpstream, transcript
from tests.schemas.recorder import Recorder

# -- the matrix -----------------------------------------------------------------------------

MODEL = {"openai": "gpt-4.1", "responses": "gpt-4.1", "anthropic": "claude-sonnet-4-6",
         "gemini": "gemini-2.5-flash", "loopback": "loopback"}
PROVIDER = {"openai": "openai", "responses": "openai", "anthropic": "anthropic",
            "gemini": "gemini", "loopback": "loopback"}
CLIENT_PROTOCOL = {"chat": "openai_chat", "responses": "openai_responses",
                   "anthropic": "anthropic_messages", "gemini": "gemini"}
MODES = {
    "chat": ("create", "stream", "helper"),
    "responses": ("create", "stream"),
    "anthropic": ("create", "helper", "raw"),
    "gemini": ("generate", "stream"),
}
STREAMING = {"stream", "helper", "raw"}
STREAM_MODES = [(c, m) for c, modes in MODES.items() for m in modes if m in STREAMING]
# "openai" is the Chat fake for every client (a Responses client reaches it through a
# provider with responses_api = false); "responses" is the Responses fake, which only a
# Responses client is sent to.
UPSTREAMS = {
    "chat": ("openai", "anthropic", "gemini", "loopback"),
    "responses": ("responses", "openai", "anthropic", "gemini", "loopback"),
    "anthropic": ("openai", "anthropic", "gemini", "loopback"),
    "gemini": ("openai", "anthropic", "gemini", "loopback"),
}

PROMPT = {
    "text": "Say hello in three languages",
    "tools": 'Please call get_weather with {"location":"Paris, France"} and use '
             'get_local_time with {"timezone":"Asia/Tokyo"}',
    "length": "Say hello in three languages, then in five more, then explain every greeting",
    "filtered": "Explain how to pick the lock on my neighbour's door",
    "utf8": "Say hello in three languages",
}
# Output cap sent by each client in the "length" scenario.
LIMIT = {"chat": 5, "responses": 16, "anthropic": 5, "gemini": 5}

WEATHER_SCHEMA = {"type": "object", "properties": {
    "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}
TIME_SCHEMA = {"type": "object", "properties": {"timezone": {"type": "string"}},
               "required": ["timezone"]}
FUNCS = [("get_weather", "Get the current weather for a location", WEATHER_SCHEMA),
         ("get_local_time", "Get the local time in an IANA timezone", TIME_SCHEMA)]
CHAT_TOOLS = [{"type": "function", "function": {"name": n, "description": d, "parameters": p}}
              for n, d, p in FUNCS]
RESPONSES_TOOLS = [{"type": "function", "name": n, "description": d, "parameters": p,
                    "strict": False} for n, d, p in FUNCS]
ANTHROPIC_TOOLS = [{"name": n, "description": d, "input_schema": p} for n, d, p in FUNCS]
GEMINI_TOOLS = [{"functionDeclarations": [{"name": n, "description": d, "parameters": p}
                                          for n, d, p in FUNCS]}]

ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def matrix(scenarios: tuple[str, ...], streams: bool = True) -> list[Any]:
    out = []
    for client, modes in MODES.items():
        for mode in modes:
            if mode in STREAMING and not streams:
                continue
            for up in UPSTREAMS[client]:
                for sc in scenarios:
                    out.append(pytest.param(client, mode, up, sc,
                                            id=f"{client}.{mode}-{up}-{sc}"))
    return out


# -- gateway and clients --------------------------------------------------------------------

def start_gateway(make_gateway, upstream, *, responses_api: bool = True,
                  routes: str | None = None, extra_config: str = "", **kw: Any):
    """A gateway whose OpenAI, Anthropic and Gemini providers are all the fake upstream."""
    env = gateway_env(f"http://127.0.0.1:{upstream.port}")
    if routes is not None:
        env["TOKENWAY_ROUTES"] = routes
    cfg = extra_config + ("" if responses_api else RESPONSES_API_OFF)
    return make_gateway(env=env, config_text=cfg or None, **kw)


RESPONSES_API_OFF = "[providers.openai]\nresponses_api = false\n"


def gateway_env(host: str) -> dict[str, str]:
    return {"TOKENWAY_OPENAI_BASE_URL": host + "/v1", "TOKENWAY_OPENAI_API_KEY": "sk-openai-up",
            "TOKENWAY_ANTHROPIC_BASE_URL": host, "TOKENWAY_ANTHROPIC_API_KEY": "sk-ant-up",
            "TOKENWAY_GEMINI_BASE_URL": host, "TOKENWAY_GEMINI_API_KEY": "gm-up"}


@pytest.fixture
def gw_for(make_gateway, upstream):
    def make(client: str, up: str, scenario: str, extra_config: str = "", **kw: Any):
        upstream.script = provider_script(scenario)
        return start_gateway(make_gateway, upstream, extra_config=extra_config,
                             responses_api=not (client == "responses" and up == "openai"), **kw)
    return make


class SharedView:
    """One test's view of a gateway shared by the module: only the ledger rows written
    since the test began."""

    def __init__(self, gw: RunningGateway) -> None:
        self.gw = gw
        self.t0 = time.time()

    @property
    def url(self) -> str:
        return self.gw.url

    def wait_rows(self, n: int, timeout_s: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = [r for r in self.gw.rows() if r["ts"] >= self.t0]
            if len(rows) >= n:
                break
            time.sleep(0.01)
        return rows


@pytest.fixture(scope="module")
def shared_gateways(tmp_path_factory):
    """Success-path tests share one fake upstream and one gateway per configuration
    (starting and stopping a gateway per case would dominate the run time)."""
    up = FakeUpstream().start()
    gws: dict[bool, RunningGateway] = {}

    def get(responses_api: bool) -> RunningGateway:
        if responses_api not in gws:
            host = f"http://127.0.0.1:{up.port}"
            gws[responses_api] = RunningGateway(
                tmp_path_factory.mktemp("gateway"), env=gateway_env(host),
                config_text=None if responses_api else RESPONSES_API_OFF).start()
        return gws[responses_api]

    yield up, get
    for gw in gws.values():
        gw.stop()
        assert not [e for e in gw.errors if "exception" in e], gw.errors
    up.stop()


@pytest.fixture
def shared(shared_gateways):
    """``shared(client, up, scenario) -> (gateway view, fake upstream)`` for one case."""
    up, get = shared_gateways

    def make(client: str, upstream_kind: str, scenario: str):
        up.script = provider_script(scenario)
        up.requests.clear()
        gw = get(not (client == "responses" and upstream_kind == "openai"))
        return SharedView(gw), up

    return make


#: Every reply, error body and stream event the SDK clients below receive is validated
#: against the provider's published schema (tests/schemas/, docs/protocols.md §5.9).
RECORDER = Recorder(SENT)


@pytest.fixture(autouse=True)
def _schema_valid_exchanges():
    RECORDER.problems.clear()
    SENT.clear()
    yield
    assert RECORDER.problems == [], "\n".join(RECORDER.problems[:20])


def oai(gw) -> openai.OpenAI:
    return close_at_end(openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key",
                                      max_retries=0, timeout=20,
                                      http_client=RECORDER.client(timeout=20)))


def ant(gw) -> anthropic.Anthropic:
    return close_at_end(anthropic.Anthropic(base_url=gw.url, api_key="client-key",
                                            max_retries=0, timeout=20,
                                            http_client=RECORDER.client(timeout=20)))


def dump(obj: Any) -> dict | None:
    return None if obj is None else obj.model_dump()


def plain(obj: Any) -> Any:
    """A model as wire JSON, without the fields the SDK helpers add (``parsed``...)."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items() if not k.startswith("parsed")}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    return obj


@dataclass
class Got:
    text: str | None
    tools: list[tuple[str | None, str, str]]  # (id, name, arguments JSON text)
    finish: Any  # in the client's own terms
    usage: dict | None  # in the client's own shape
    thinking: str | None = None  # Anthropic thinking / Responses reasoning summary text
    signature: str | None = None  # Anthropic thinking signature


# -- the four clients -----------------------------------------------------------------------

def run_chat(gw, model: str, scenario: str, mode: str) -> Got:
    c = oai(gw)
    kw: dict[str, Any] = {"model": model,
                          "messages": [{"role": "user", "content": PROMPT[scenario]}]}
    if scenario == "tools":
        kw["tools"] = CHAT_TOOLS
    if scenario == "length":
        kw["max_completion_tokens"] = LIMIT["chat"]
    if mode == "create":
        r = c.chat.completions.create(**kw)
        assert r.object == "chat.completion" and len(r.choices) == 1
        assert r.id.startswith("chatcmpl")
        m = r.choices[0].message
        assert m.role == "assistant"
        return Got(m.content, [(t.id, t.function.name, t.function.arguments)
                               for t in m.tool_calls or []],
                   r.choices[0].finish_reason, dump(r.usage))
    if mode == "stream":
        chunks = list(c.chat.completions.create(**kw, stream=True,
                                                stream_options={"include_usage": True}))
        assert len({ch.id for ch in chunks}) == 1, "one id on every chunk (§1.5)"
        text, roles, finish, usage = "", [], None, None
        calls: dict[int, list[str]] = {}
        for i, ch in enumerate(chunks):
            assert ch.object == "chat.completion.chunk"
            if not ch.choices:
                assert ch.usage is not None and i == len(chunks) - 1, "usage chunk comes last"
                usage = dump(ch.usage)
                continue
            assert ch.usage is None, "only the final choices:[] chunk carries usage"
            [choice] = ch.choices
            d = choice.delta
            if d.role:
                roles.append(d.role)
            text += d.content or ""
            for tc in d.tool_calls or []:
                acc = calls.setdefault(tc.index, ["", "", ""])
                acc[0] += tc.id or ""
                acc[1] += (tc.function and tc.function.name) or ""
                acc[2] += (tc.function and tc.function.arguments) or ""
            if choice.finish_reason:
                assert finish is None, "one finish chunk"
                finish = choice.finish_reason
        assert roles == ["assistant"], "role is sent once (§1.5)"
        assert sorted(calls) == list(range(len(calls)))
        return Got(text or None, [tuple(calls[k]) for k in sorted(calls)], finish, usage)
    assert mode == "helper"
    with c.chat.completions.stream(**kw) as s:
        deltas = [ev.delta for ev in s if ev.type == "content.delta"]
        final = s.get_final_completion()
    m = final.choices[0].message
    assert m.role == "assistant", "the helper concatenates repeated roles (§1.5)"
    assert "".join(deltas) == (m.content or "")
    assert final.usage is None, "no usage chunk unless include_usage was asked for"
    return Got(m.content, [(t.id, t.function.name, t.function.arguments)
                           for t in m.tool_calls or []], final.choices[0].finish_reason, None)


def run_responses(gw, model: str, scenario: str, mode: str) -> Got:
    c = oai(gw)
    kw: dict[str, Any] = {"model": model, "input": PROMPT[scenario]}
    if scenario == "tools":
        kw["tools"] = RESPONSES_TOOLS
    if scenario == "length":
        kw["max_output_tokens"] = LIMIT["responses"]
    if mode == "create":
        r = c.responses.create(**kw)
    else:
        with c.responses.stream(**kw) as s:
            events = list(s)
            r = s.get_final_response()
        assert events[0].type == "response.created", "response.created comes first (§2.5)"
        assert events[-1].type == "response.completed"
        assert [e.sequence_number for e in events] == list(range(len(events))), \
            "sequence_number runs 0, 1, 2... (§2.5)"
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert deltas == r.output_text
        done = [e.item for e in events if e.type == "response.output_item.done"]
        assert [plain(i) for i in done] == [plain(i) for i in r.output], \
            "response.completed repeats the done items (§2.5)"
        added = [e.output_index for e in events if e.type == "response.output_item.added"]
        assert added == list(range(len(r.output)))
    assert r.object == "response" and r.id.startswith("resp_")
    tools, thinking = [], []
    for item in r.output:
        if item.type == "function_call":
            # a fresh fc_ item id; call_id is the id clients answer with (§5.3)
            assert item.id.startswith("fc_") and item.id != item.call_id
            assert isinstance(item.arguments, str) and item.status == "completed"
            tools.append((item.call_id, item.name, item.arguments))
        elif item.type == "reasoning":
            assert not tools, "reasoning comes before the calls it led to"
            thinking += [p.text for p in item.summary]
    reason = r.incomplete_details.reason if r.incomplete_details else None
    return Got(r.output_text or None, tools, (r.status, reason), dump(r.usage),
               "".join(thinking) or None)


def run_anthropic(gw, model: str, scenario: str, mode: str) -> Got:
    c = ant(gw)
    kw: dict[str, Any] = {"model": model, "max_tokens": 1024,
                          "messages": [{"role": "user", "content": PROMPT[scenario]}]}
    if scenario == "tools":
        kw["tools"] = ANTHROPIC_TOOLS
    if scenario == "length":
        kw["max_tokens"] = LIMIT["anthropic"]
    if mode == "create":
        m = c.messages.create(**kw)
        assert m.id.startswith("msg_") and (m.type, m.role) == ("message", "assistant")
        return _anthropic_got(m.content, m.stop_reason, dump(m.usage))
    if mode == "helper":
        with c.messages.stream(**kw) as s:
            streamed = "".join(s.text_stream)
            m = s.get_final_message()
        assert m.id.startswith("msg_") and (m.type, m.role) == ("message", "assistant")
        got = _anthropic_got(m.content, m.stop_reason, dump(m.usage))
        assert streamed == (got.text or "")
        return got
    assert mode == "raw"
    events = list(c.messages.create(**kw, stream=True))
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    assert events[0].message.id.startswith("msg_") and events[0].message.content == []
    usage = events[0].message.usage.model_dump()
    blocks: list[dict] = []
    stop, open_block = None, None
    for ev in events[1:-1]:
        if ev.type == "content_block_start":
            assert open_block is None and ev.index == len(blocks), "blocks are sequential"
            open_block = ev.index
            b = ev.content_block.model_dump()
            b["_json"] = ""
            blocks.append(b)
        elif ev.type == "content_block_delta":
            assert ev.index == open_block
            b, d = blocks[ev.index], ev.delta
            if d.type == "text_delta":
                b["text"] += d.text
            elif d.type == "input_json_delta":
                b["_json"] += d.partial_json
            elif d.type == "thinking_delta":
                b["thinking"] += d.thinking
            elif d.type == "signature_delta":
                b["signature"] += d.signature
        elif ev.type == "content_block_stop":
            assert ev.index == open_block
            open_block = None
        elif ev.type == "message_delta":
            assert open_block is None
            stop = ev.delta.stop_reason
            # message_delta usage is cumulative: present fields replace (§3.8)
            for k, v in ev.usage.model_dump().items():
                if v is not None:
                    usage[k] = v
    for b in blocks:
        if b["type"] == "tool_use":
            b["input"] = json.loads(b["_json"]) if b["_json"] else b["input"]
    return _anthropic_got(blocks, stop, usage)


def _anthropic_got(content: list, stop: Any, usage: dict | None) -> Got:
    blocks = [b if isinstance(b, dict) else b.model_dump() for b in content]
    text = "".join(b["text"] for b in blocks if b["type"] == "text")
    tools = [(b["id"], b["name"], json.dumps(b["input"])) for b in blocks
             if b["type"] == "tool_use"]
    thinking = [b for b in blocks if b["type"] == "thinking"]
    return Got(text or None, tools, stop, usage,
               "".join(b["thinking"] for b in thinking) or None,
               "".join(b["signature"] for b in thinking) or None)


def gemini_post(gw, model: str, body: dict, stream: bool):
    action = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
    status, headers, data = rawhttp.request(f"{gw.url}/v1beta/models/{model}{action}", "POST",
                                            body, {"x-goog-api-key": "client-key"}, timeout=20)
    RECORDER.check(action, status, headers.get("content-type", ""), data)
    return status, headers, data


def run_gemini(gw, model: str, scenario: str, mode: str) -> Got:
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": PROMPT[scenario]}]}]}
    if scenario == "tools":
        body["tools"] = GEMINI_TOOLS
    if scenario == "length":
        body["generationConfig"] = {"maxOutputTokens": LIMIT["gemini"]}
    status, headers, data = gemini_post(gw, model, body, mode == "stream")
    assert status == 200, data[:500]
    if mode == "stream":
        assert headers["content-type"].startswith("text/event-stream")
        chunks = [json.loads(d) for _, d in sse_events(data)]
        assert chunks, data[:500]
    else:
        assert headers["content-type"].startswith("application/json")
        chunks = [json.loads(data)]
    text, tools, finish, usage = "", [], None, None
    for ch in chunks:
        assert "error" not in ch, ch
        for cand in ch.get("candidates") or []:
            assert finish is None, "finishReason only on the last chunk (§4)"
            for part in (cand.get("content") or {}).get("parts") or []:
                if "text" in part and not part.get("thought"):
                    text += part["text"]
                if "functionCall" in part:
                    fc = part["functionCall"]
                    tools.append((fc.get("id"), fc["name"], json.dumps(fc["args"])))
            finish = cand.get("finishReason") or finish
        usage = ch.get("usageMetadata") or usage
    return Got(text or None, tools, finish, usage)


RUN = {"chat": run_chat, "responses": run_responses, "anthropic": run_anthropic,
       "gemini": run_gemini}


# -- expectations in each client's terms ----------------------------------------------------

FINISH = {
    "chat": {"stop": "stop", "tool_calls": "tool_calls", "length": "length",
             "filtered": "content_filter"},
    "responses": {"stop": ("completed", None), "tool_calls": ("completed", None),
                  "length": ("incomplete", "max_output_tokens"),
                  "filtered": ("incomplete", "content_filter")},
    "anthropic": {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens",
                  "filtered": "refusal"},
    "gemini": {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS",
               "filtered": "SAFETY"},
}


def neutral_usage(client: str, u: dict | None) -> dict | None:
    """The client's usage in OpenAI terms (§5.5): prompt includes cache reads and writes."""
    if u is None:
        return None
    if client == "chat":
        ptd = u.get("prompt_tokens_details") or {}
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
        return {"prompt": u["prompt_tokens"], "completion": u["completion_tokens"],
                "cached": ptd.get("cached_tokens") or 0, "cache_write": None}
    if client == "responses":
        assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
        return {"prompt": u["input_tokens"], "completion": u["output_tokens"],
                "cached": (u.get("input_tokens_details") or {}).get("cached_tokens") or 0,
                "cache_write": None}
    if client == "anthropic":
        read = u.get("cache_read_input_tokens") or 0
        write = u.get("cache_creation_input_tokens") or 0
        return {"prompt": u["input_tokens"] + read + write, "completion": u["output_tokens"],
                "cached": read, "cache_write": write}
    out = u.get("candidatesTokenCount", 0) + u.get("thoughtsTokenCount", 0)
    assert u["totalTokenCount"] == u["promptTokenCount"] + out
    return {"prompt": u["promptTokenCount"], "completion": out,
            "cached": u.get("cachedContentTokenCount") or 0, "cache_write": None}


def loopback_expect(client: str, scenario: str) -> Expected:
    if scenario == "tools":
        return Expected(None, ((None, "get_weather", {"location": "Paris, France"}),
                               (None, "get_local_time", {"timezone": "Asia/Tokyo"})),
                        "tool_calls")
    reply = "loopback: " + PROMPT[scenario]
    if scenario == "length":
        return Expected(reply[:4 * LIMIT[client]], (), "length")
    return Expected(reply)


def check_answer(client: str, up: str, exp: Expected, got: Got) -> None:
    if exp.text is None:
        assert not got.text, got.text
    else:
        assert got.text == exp.text
    assert len(got.tools) == len(exp.tools), got.tools
    ids = [t[0] for t in got.tools]
    for (gid, gname, gargs), (eid, ename, eargs) in zip(got.tools, exp.tools, strict=True):
        assert gname == ename
        assert json.loads(gargs) == eargs, gargs
        if client == "gemini":
            # functionCall.id is optional in Gemini (§4); when sent it must be the upstream id.
            assert gid is None or eid is None or gid == eid
            continue
        if eid is not None:
            assert gid == eid, "tool-call ids pass through unchanged (§5.3)"
        else:
            assert gid and len(gid) <= 40, gid
        if client == "anthropic":
            assert ANTHROPIC_ID.match(gid), gid
    if client != "gemini":
        assert len(set(ids)) == len(ids), ids
    assert got.finish == FINISH[client][exp.finish]
    if exp.thinking is not None and client in ("responses", "anthropic"):
        # thinking <-> reasoning summary (§5.6 "Any upstream -> Responses client")
        assert got.thinking == exp.thinking
    if client == up == "anthropic" and exp.thinking is not None:
        assert got.signature == upstream_signature(exp), "signatures pass unchanged (§3.3)"


def upstream_signature(exp: Expected) -> str:
    if exp.model == "claude-sonnet-4-6":
        return ANTHROPIC_SIGNATURE
    return "".join(json.loads(d)["delta"]["signature"] for _, d in sse_events(
        transcript("anthropic_stream_thinking_tool_use.sse")) if '"signature_delta"' in d)


def check_usage(client: str, exp: Expected, got: Got) -> dict | None:
    n = neutral_usage(client, got.usage)
    if n is None or exp.prompt is None:
        return n
    assert (n["prompt"], n["completion"], n["cached"]) == (exp.prompt, exp.completion,
                                                           exp.cached), (n, got.usage)
    if n["cache_write"] is not None:
        assert n["cache_write"] == exp.cache_write, got.usage
    return n


def check_row(row: dict, client: str, up: str, mode: str, exp: Expected,
              seen: dict | None) -> None:
    assert row["client_protocol"] == CLIENT_PROTOCOL[client]
    assert row["provider"] == PROVIDER[up]
    assert row["model"] == MODEL[up]
    assert (row["status"], row["error_kind"]) == (200, None)
    assert row["stream"] is (mode in STREAMING)
    assert row["served_model"] == (exp.model or MODEL[up])
    if exp.prompt is not None:
        assert (row["input_tokens"], row["output_tokens"]) == (exp.prompt, exp.completion), row
        assert (row["cached_tokens"] or 0) == exp.cached, row
        assert (row["cache_write_tokens"] or 0) == exp.cache_write, row
        if exp.reasoning:
            assert row["reasoning_tokens"] == exp.reasoning, row
    else:
        assert row["input_tokens"] and row["input_tokens"] > 0, row
        assert row["output_tokens"] and row["output_tokens"] > 0, row
    if seen is not None:
        assert (row["input_tokens"], row["output_tokens"]) == (seen["prompt"],
                                                               seen["completion"])


def strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in strings(v)]
    return []


def check_upstream_request(up: str, req, scenario: str, stream: bool) -> None:
    """The request the provider got is in its own format, with the prompt and tools."""
    body = req.json()
    assert any(PROMPT[scenario] in s for s in strings(body)), body
    names = [n for n, _, _ in FUNCS] if scenario == "tools" else []
    if up == "openai":
        assert req.path == "/v1/chat/completions"
        assert req.headers["authorization"] == "Bearer sk-openai-up"
        assert body["model"] == MODEL[up] and bool(body.get("stream")) is stream
        if stream:
            assert body["stream_options"]["include_usage"] is True, "usage is asked for (§5.5)"
        assert [t["function"]["name"] for t in body.get("tools") or []] == names
    elif up == "responses":
        assert req.path == "/v1/responses"
        assert body["model"] == MODEL[up] and bool(body.get("stream")) is stream
        assert [t["name"] for t in body.get("tools") or []] == names
    elif up == "anthropic":
        assert req.path == "/v1/messages"
        assert req.headers["x-api-key"] == "sk-ant-up" and req.headers["anthropic-version"]
        assert "authorization" not in req.headers
        assert body["model"] == MODEL[up] and bool(body.get("stream")) is stream
        assert isinstance(body["max_tokens"], int) and body["max_tokens"] > 0
        assert [t["name"] for t in body.get("tools") or []] == names
        assert all(t["input_schema"]["type"] == "object" for t in body.get("tools") or [])
    else:
        action = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        assert req.path == f"/v1beta/models/{MODEL[up]}{action}"
        assert req.headers["x-goog-api-key"] == "gm-up"
        assert "authorization" not in req.headers and "model" not in body
        decls = [d["name"] for t in body.get("tools") or []
                 for d in t.get("functionDeclarations") or []]
        assert decls == names


# -- the matrix tests -----------------------------------------------------------------------

@pytest.mark.parametrize("client,mode,up,scenario", matrix(("text", "tools")) + [
    # openai_chat_stream_text.sse: multi-byte characters split across pieces
    pytest.param(c, m, "openai", "utf8", id=f"{c}.{m}-openai-utf8") for c, m in STREAM_MODES])
def test_answer(shared, client, mode, up, scenario):
    gw, upstream = shared(client, up, scenario)
    stream = mode in STREAMING
    got = RUN[client](gw, MODEL[up], scenario, mode)
    exp = loopback_expect(client, scenario) if up == "loopback" else EXPECT[(up, scenario, stream)]
    check_answer(client, up, exp, got)
    seen = check_usage(client, exp, got)
    if up == "loopback":
        assert not upstream.requests
    else:
        [req] = upstream.requests
        check_upstream_request(up, req, scenario, stream)
    [row] = gw.wait_rows(1)
    check_row(row, client, up, mode, exp, seen)


LOOP_CASES = [("chat", "stream", "anthropic"), ("responses", "stream", "gemini"),
              ("anthropic", "raw", "openai"), ("gemini", "stream", "anthropic")]


@pytest.mark.parametrize("who,how,source", [("anthropic", "create", "openai"),
                                             ("anthropic", "raw", "anthropic"),
                                             ("responses", "stream", "gemini")])
def test_exchanges_are_held_to_the_schemas(shared, who, how, source):
    """The schema check sees the replies the gateway writes, and leaves alone what it
    relays: a translated reply is checked, a relayed Anthropic stream is not (the
    provider's own bytes), and a Message without ``container`` is caught."""
    gw, _ = shared(who, source, "text")
    RUN[who](gw, MODEL[source], "text", how)
    assert RECORDER.checked >= 1
    assert RECORDER.problems == []
    before = RECORDER.checked
    broken = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
              "content": [], "stop_reason": "end_turn", "stop_sequence": None,
              "usage": {"input_tokens": 1, "output_tokens": 1}}
    RECORDER.check("/v1/messages", 200, "application/json", json.dumps(broken).encode())
    assert RECORDER.checked == before + 1
    assert any('"container" is a required property' in p for p in RECORDER.problems)
    RECORDER.problems.clear()


@pytest.mark.parametrize("client,mode,up", LOOP_CASES, ids=["-".join(c) for c in LOOP_CASES])
def test_answer_on_every_loop_and_parser(gw_for, upstream, loop_kind, parser, client, mode, up):
    """Translated tool-call streams on both event loops and both HTTP/1 parsers."""
    gw = gw_for(client, up, "tools", loop_kind=loop_kind, parser=parser)
    got = RUN[client](gw, MODEL[up], "tools", mode)
    exp = EXPECT[(up, "tools", True)]
    check_answer(client, up, exp, got)
    seen = check_usage(client, exp, got)
    [row] = gw.wait_rows(1)
    check_row(row, client, up, mode, exp, seen)


@pytest.mark.parametrize("client,mode,up,scenario", [
    p for p in matrix(("length", "filtered"), streams=False)
    if not (p.values[2] == "loopback" and p.values[3] == "filtered")])
def test_finish_mapping(shared, client, mode, up, scenario):
    """Output cap and content filter map per §5.4: length / incomplete max_output_tokens /
    max_tokens / MAX_TOKENS, and content_filter / incomplete content_filter / refusal /
    SAFETY."""
    gw, upstream = shared(client, up, scenario)
    got = RUN[client](gw, MODEL[up], scenario, mode)
    exp = loopback_expect(client, scenario) if up == "loopback" else EXPECT[(up, scenario, False)]
    check_answer(client, up, exp, got)
    seen = check_usage(client, exp, got)
    if up != "loopback" and scenario == "length":
        body = upstream.requests[-1].json()
        cap = (body.get("max_completion_tokens") or body.get("max_tokens")
               or body.get("max_output_tokens")
               or (body.get("generationConfig") or {}).get("maxOutputTokens"))
        assert cap == LIMIT[client], body
    [row] = gw.wait_rows(1)
    check_row(row, client, up, mode, exp, seen)


@pytest.mark.parametrize("client", list(MODES))
def test_stop_sequence_from_anthropic(shared, client):
    """Anthropic ``stop_sequence`` is a natural stop for Chat, Responses and Gemini (§5.4)
    and passes unchanged, with the sequence, to an Anthropic client."""
    gw, upstream = shared(client, "anthropic", "stop_sequence")
    mode = MODES[client][0]
    exp = EXPECT[("anthropic", "stop_sequence", False)]
    if client == "anthropic":
        m = ant(gw).messages.create(model=MODEL["anthropic"], max_tokens=64, messages=[
            {"role": "user", "content": "hi"}], stop_sequences=["END"])
        assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", "END")
        assert m.content[0].text == exp.text
    else:
        got = RUN[client](gw, MODEL["anthropic"], "text", mode)
        check_answer(client, "anthropic", exp, got)
    [row] = gw.wait_rows(1)
    assert (row["status"], row["output_tokens"]) == (200, 9)


# -- upstream HTTP errors -------------------------------------------------------------------

# upstream -> (status each client gets, a phrase of the upstream's message)
ERRORS = {
    "anthropic": ({"chat": 503, "responses": 503, "anthropic": 529, "gemini": 503},
                  "Overloaded"),
    "openai": ({"chat": 429, "responses": 429, "anthropic": 429, "gemini": 429},
               "Please try again in 2.754s"),
    "gemini": ({"chat": 400, "responses": 400, "anthropic": 400, "gemini": 400},
               "must not be empty"),
}
ANTHROPIC_TYPES = {529: "overloaded_error", 429: "rate_limit_error", 400: "invalid_request_error"}
GOOGLE_STATUS = {503: "UNAVAILABLE", 429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT"}
OPENAI_EXC = {503: openai.InternalServerError, 429: openai.RateLimitError,
              400: openai.BadRequestError}
ANTHROPIC_EXC = {529: anthropic.OverloadedError, 429: anthropic.RateLimitError,
                 400: anthropic.BadRequestError}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("client", list(MODES))
@pytest.mark.parametrize("up", list(ERRORS))
def test_upstream_http_error(gw_for, upstream, up, client, stream):
    """Each provider's typical error reaches each client in its own format (§5.7)."""
    # The gateway may retry a retryable upstream error itself ([routing] max_attempts);
    # keep its backoff short so the test stays fast.
    gw = gw_for(client, "responses" if client == "responses" and up == "openai" else up,
                "error", '[routing]\nbackoff = "5ms"\nbackoff_max = "10ms"\n')
    statuses, phrase = ERRORS[up]
    want = statuses[client]
    model = MODEL[up]
    msgs = [{"role": "user", "content": "hi"}]
    if client in ("chat", "responses"):
        c = oai(gw)
        with pytest.raises(openai.APIStatusError) as ei:
            if client == "chat":
                c.chat.completions.create(model=model, messages=msgs, stream=stream)
            else:
                c.responses.create(model=model, input="hi", stream=stream)
        assert type(ei.value) is OPENAI_EXC[want]
        status, headers, body = want, ei.value.response.headers, ei.value.response.json()
        assert ei.value.status_code == want
        err = body["error"]
        assert set(err) >= {"message", "type", "param", "code"}, err
        assert phrase in err["message"]
        if want == 429:
            assert err["code"] == "rate_limit_exceeded"
        elif want == 400:
            assert err["type"] == "invalid_request_error"
    elif client == "anthropic":
        with pytest.raises(anthropic.APIStatusError) as ei:
            ant(gw).messages.create(model=model, max_tokens=64, messages=msgs, stream=stream)
        assert type(ei.value) is ANTHROPIC_EXC[want]
        assert ei.value.status_code == want
        headers, body = ei.value.response.headers, ei.value.response.json()
        assert body["type"] == "error"
        assert body["error"]["type"] == ANTHROPIC_TYPES[want]
        assert phrase in body["error"]["message"]
    else:
        status, headers, data = gemini_post(gw, model, {"contents": [
            {"role": "user", "parts": [{"text": "hi"}]}]}, stream)
        assert status == want, data
        err = json.loads(data)["error"]
        assert (err["code"], err["status"]) == (want, GOOGLE_STATUS[want])
        assert phrase in err["message"]
    if want == 429:
        assert headers.get("retry-after") == "3", "retry-after is preserved (§5.7)"
    [row] = gw.wait_rows(1)
    assert (row["status"], row["error_kind"]) == (want, "upstream_error")
    # max_retries=0 in the SDKs: every upstream attempt is the gateway's own, and counted.
    assert len(upstream.requests) == row["attempts"] >= 1
    assert row["provider"] == PROVIDER[up] and row["client_protocol"] == CLIENT_PROTOCOL[client]


# -- mid-stream errors ----------------------------------------------------------------------

# upstream -> (text sent before the error, a phrase of its message, the Anthropic error
# type and the Google status a client of those formats gets; §5.7)
MIDSTREAM = {
    "anthropic": ("Here is a summary of the changes in this pull request:\n\n1.", "Overloaded",
                  "overloaded_error", "UNAVAILABLE"),
    "openai": ("The capital of France", "The server had an error", "api_error", "INTERNAL"),
    "gemini": ("Hello (English)\n¡Hola! (Spanish)\n", "The model is overloaded",
               "overloaded_error", "UNAVAILABLE"),
}


def midstream_cases() -> list[Any]:
    return [pytest.param(client, mode, up, id=f"{client}.{mode}-{up}")
            for client, mode in STREAM_MODES for up in MIDSTREAM]


@pytest.mark.parametrize("client,mode,up", midstream_cases())
def test_midstream_error(gw_for, upstream, client, mode, up):
    """The provider fails after streaming began (anthropic_stream_error_midstream.sse, an
    OpenAI ``data: {"error":...}`` chunk, a Gemini error object): the client gets the text
    sent so far, then its own error event, which its SDK raises; never a clean end."""
    gw = gw_for(client, up, "midstream_error")
    partial, phrase, anthropic_type, google_status = MIDSTREAM[up]
    model = MODEL[up]
    msgs = [{"role": "user", "content": "Summarise the PR"}]
    text = ""
    if client == "chat":
        c = oai(gw)
        with pytest.raises(openai.APIError) as ei:
            if mode == "stream":
                for ch in c.chat.completions.create(model=model, messages=msgs, stream=True):
                    text += ch.choices[0].delta.content or "" if ch.choices else ""
            else:
                with c.chat.completions.stream(model=model, messages=msgs) as s:
                    for ev in s:
                        if ev.type == "content.delta":
                            text += ev.delta
        assert not isinstance(ei.value, openai.APIConnectionError)
        assert phrase in ei.value.message
    elif client == "responses":
        with oai(gw).responses.stream(model=model, input="Summarise the PR") as s:
            events = list(s)
            with pytest.raises(RuntimeError, match="response.completed"):
                s.get_final_response()
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        types = [e.type for e in events]
        assert types[0] == "response.created"
        assert "response.completed" not in types
        assert types[-1] in ("response.failed", "error"), types
        assert [e.sequence_number for e in events] == list(range(len(events)))
        last = events[-1]
        if last.type == "response.failed":
            assert last.response.status == "failed" and last.response.error.code
            assert phrase in last.response.error.message
        else:
            assert phrase in last.message
    elif client == "anthropic":
        c = ant(gw)
        with pytest.raises(anthropic.APIStatusError) as ei:
            if mode == "helper":
                with c.messages.stream(model=model, max_tokens=256, messages=msgs) as s:
                    for t in s.text_stream:
                        text += t
            else:
                for ev in c.messages.create(model=model, max_tokens=256, messages=msgs,
                                            stream=True):
                    if ev.type == "content_block_delta" and ev.delta.type == "text_delta":
                        text += ev.delta.text
        assert ei.value.body["type"] == "error"
        assert ei.value.body["error"]["type"] == anthropic_type
        assert phrase in ei.value.body["error"]["message"]
    else:
        status, _, data = gemini_post(gw, model, {"contents": [
            {"role": "user", "parts": [{"text": "Summarise the PR"}]}]}, True)
        assert status == 200
        chunks = [json.loads(d) for _, d in sse_events(data)]
        errors = [i for i, ch in enumerate(chunks) if "error" in ch]
        assert errors, chunks[-1]
        for ch in chunks[:errors[0]]:
            for cand in ch.get("candidates") or []:
                assert not cand.get("finishReason"), "no clean end"
                text += "".join(p.get("text", "") for p in cand["content"]["parts"]
                                if not p.get("thought"))
        err = chunks[errors[0]]["error"]
        assert err["status"] == google_status, err
        assert phrase in err["message"]
    assert text == partial, "what arrived before the error is delivered"
    [row] = gw.wait_rows(1)
    assert row["status"] == 200 and row["stream"] is True
    assert row["error_kind"] is not None
    assert row["provider"] == PROVIDER[up]


RAW_STREAM = {
    "chat": lambda model: ("/v1/chat/completions", {
        "model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}),
    "responses": lambda model: ("/v1/responses", {"model": model, "stream": True,
                                                  "input": "hi"}),
    "anthropic": lambda model: ("/v1/messages", {
        "model": model, "stream": True, "max_tokens": 256,
        "messages": [{"role": "user", "content": "hi"}]}),
    "gemini": lambda model: (f"/v1beta/models/{model}:streamGenerateContent?alt=sse", {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
}


def is_error_event(client: str, event: str | None, data: str) -> bool:
    if client == "anthropic":
        return event == "error"
    obj = json.loads(data)
    if client == "responses":
        return obj.get("type") in ("error", "response.failed")
    return "error" in obj


@pytest.mark.parametrize("client,up", [(c, u) for c in MODES for u in MIDSTREAM])
def test_midstream_error_is_reported_once(gw_for, upstream, client, up):
    """On the wire: exactly one error event, the last one, carrying the provider's message
    (a second, gateway-made error after it would mislabel the failure)."""
    gw = gw_for(client, up, "midstream_error")
    path, body = RAW_STREAM[client](MODEL[up])
    status, _, data = rawhttp.request(gw.url + path, "POST", body)
    assert status == 200
    events = [(e, d) for e, d in sse_events(data) if d != "[DONE]"]
    errors = [i for i, (e, d) in enumerate(events) if is_error_event(client, e, d)]
    assert errors == [len(events) - 1], [events[i] for i in errors]
    assert MIDSTREAM[up][1] in events[-1][1]
    assert not data.rstrip().endswith(b"[DONE]")


# -- request fields -------------------------------------------------------------------------

SYSTEM = "You are terse."


def mapping_request(client: str) -> dict[str, Any]:
    """System prompt, sampling, stop, output cap and a forced single tool, per client."""
    if client == "chat":
        return {"messages": [{"role": "system", "content": SYSTEM},
                             {"role": "user", "content": PROMPT["text"]}],
                "temperature": 0.5, "top_p": 0.9, "stop": ["END"],
                "max_completion_tokens": 300, "tools": CHAT_TOOLS,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "parallel_tool_calls": False}
    if client == "responses":
        return {"instructions": SYSTEM, "input": PROMPT["text"], "temperature": 0.5,
                "top_p": 0.9, "max_output_tokens": 300, "tools": RESPONSES_TOOLS,
                "tool_choice": {"type": "function", "name": "get_weather"},
                "parallel_tool_calls": False}
    if client == "anthropic":
        # this SDK version has no sampling arguments: they go as extra body fields
        return {"system": SYSTEM, "messages": [{"role": "user", "content": PROMPT["text"]}],
                "extra_body": {"temperature": 0.5, "top_p": 0.9}, "stop_sequences": ["END"],
                "max_tokens": 300, "tools": ANTHROPIC_TOOLS,
                "tool_choice": {"type": "tool", "name": "get_weather",
                                "disable_parallel_tool_use": True}}
    return {"systemInstruction": {"parts": [{"text": SYSTEM}]},
            "contents": [{"role": "user", "parts": [{"text": PROMPT["text"]}]}],
            "generationConfig": {"temperature": 0.5, "topP": 0.9, "stopSequences": ["END"],
                                 "maxOutputTokens": 300},
            "tools": GEMINI_TOOLS,
            "toolConfig": {"functionCallingConfig": {"mode": "ANY",
                                                     "allowedFunctionNames": ["get_weather"]}}}


def check_mapped_fields(up: str, body: dict, client: str) -> None:
    """§5.1: each field lands where the upstream format keeps it."""
    has_stop = client != "responses"  # Responses has no stop sequences (§2.1)
    no_parallel = client != "gemini"  # Gemini has no parallel-calls switch
    if up == "openai":
        first = body["messages"][0]
        assert first["role"] in ("system", "developer") and SYSTEM in json.dumps(first)
        assert (body["temperature"], body["top_p"]) == (0.5, 0.9)
        assert (body.get("max_completion_tokens") or body.get("max_tokens")) == 300
        if has_stop:
            assert body["stop"] in (["END"], "END")
        assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
        if no_parallel:
            assert body["parallel_tool_calls"] is False
    elif up == "responses":
        assert body["instructions"] == SYSTEM
        assert (body["temperature"], body["top_p"], body["max_output_tokens"]) == (0.5, 0.9, 300)
        assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
        assert body["parallel_tool_calls"] is False
    elif up == "anthropic":
        system = body["system"]
        assert system == SYSTEM or [b["text"] for b in system] == [SYSTEM], system
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.5, 0.9, 300)
        if has_stop:
            assert body["stop_sequences"] == ["END"]
        choice = body["tool_choice"]
        assert (choice["type"], choice["name"]) == ("tool", "get_weather")
        if no_parallel:
            assert choice.get("disable_parallel_tool_use") is True
    else:
        assert [p["text"] for p in body["systemInstruction"]["parts"]] == [SYSTEM]
        cfg = body["generationConfig"]
        assert (cfg["temperature"], cfg["topP"], cfg["maxOutputTokens"]) == (0.5, 0.9, 300)
        if has_stop:
            assert cfg["stopSequences"] == ["END"]
        fcc = body["toolConfig"]["functionCallingConfig"]
        assert (fcc["mode"], fcc["allowedFunctionNames"]) == ("ANY", ["get_weather"])
    if up != "openai":
        turns = body.get("messages") or body.get("contents") or body.get("input") or []
        assert all(SYSTEM not in s for s in strings(turns)), \
            "the system prompt is hoisted, not left as a turn"


@pytest.mark.parametrize("client,up", [(c, u) for c in MODES for u in UPSTREAMS[c]
                                       if u != "loopback"])
def test_request_fields_map(shared, client, up):
    gw, upstream = shared(client, up, "text")
    req = mapping_request(client)
    model = MODEL[up]
    if client == "chat":
        oai(gw).chat.completions.create(model=model, **req)
    elif client == "responses":
        oai(gw).responses.create(model=model, **req)
    elif client == "anthropic":
        ant(gw).messages.create(model=model, **req)
    else:
        status, _, data = gemini_post(gw, model, req, False)
        assert status == 200, data
    [sent] = upstream.requests
    check_mapped_fields(up, sent.json(), client)


# -- streams that stop early ----------------------------------------------------------------

def cut_cases() -> list[Any]:
    # one streaming mode per client: the helpers add nothing once the raw stream is right
    out = []
    for client, mode in (("chat", "stream"), ("responses", "stream"), ("anthropic", "raw"),
                         ("gemini", "stream")):
        for up in UPSTREAMS[client]:
            if up == "loopback":
                continue
            for how, scenario in (("eof", "text"), ("eof", "tools"), ("abort", "text")):
                out.append(pytest.param(client, mode, up, scenario, how,
                                        id=f"{client}.{mode}-{up}-{scenario}-{how}"))
    return out


@pytest.mark.parametrize("client,mode,up,scenario,how", cut_cases())
def test_stream_cut_is_an_error(gw_for, upstream, client, mode, up, scenario, how):
    """The upstream stream stops halfway, before its terminal event (clean EOF or a dropped
    connection): the client gets its own error event after the partial answer, never a
    fabricated clean ending (§6.3 "Cut streams")."""
    gw = gw_for(client, up, scenario)
    upstream.script = provider_script(scenario, cut=how)
    exp = EXPECT[(up, scenario, True)]
    model = MODEL[up]
    text = ""
    if client == "chat":
        c = oai(gw)
        kw: dict[str, Any] = {"model": model,
                              "messages": [{"role": "user", "content": PROMPT[scenario]}]}
        if scenario == "tools":
            kw["tools"] = CHAT_TOOLS
        with pytest.raises(openai.APIError) as ei:
            if mode == "stream":
                for ch in c.chat.completions.create(**kw, stream=True):
                    assert not (ch.choices and ch.choices[0].finish_reason), "no clean finish"
                    text += ch.choices[0].delta.content or "" if ch.choices else ""
            else:
                with c.chat.completions.stream(**kw) as s:
                    for ev in s:
                        if ev.type == "content.delta":
                            text += ev.delta
                    s.get_final_completion()
        assert not isinstance(ei.value, openai.APIConnectionError), ei.value
    elif client == "responses":
        kw = {"model": model, "input": PROMPT[scenario]}
        if scenario == "tools":
            kw["tools"] = RESPONSES_TOOLS
        with oai(gw).responses.stream(**kw) as s:
            events = list(s)
            with pytest.raises(RuntimeError, match="response.completed"):
                s.get_final_response()
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        types = [e.type for e in events]
        assert "response.completed" not in types
        assert types[-1] in ("response.failed", "error"), types
        assert [e.sequence_number for e in events] == list(range(len(events)))
    elif client == "anthropic":
        c = ant(gw)
        kw = {"model": model, "max_tokens": 512,
              "messages": [{"role": "user", "content": PROMPT[scenario]}]}
        if scenario == "tools":
            kw["tools"] = ANTHROPIC_TOOLS
        with pytest.raises(anthropic.APIStatusError):
            if mode == "helper":
                with c.messages.stream(**kw) as s:
                    for t in s.text_stream:
                        text += t
            else:
                for ev in c.messages.create(**kw, stream=True):
                    assert ev.type not in ("message_delta", "message_stop"), "no clean end"
                    if ev.type == "content_block_delta" and ev.delta.type == "text_delta":
                        text += ev.delta.text
    else:
        body: dict[str, Any] = {"contents": [
            {"role": "user", "parts": [{"text": PROMPT[scenario]}]}]}
        if scenario == "tools":
            body["tools"] = GEMINI_TOOLS
        status, _, data = gemini_post(gw, model, body, True)
        assert status == 200
        chunks = [json.loads(d) for _, d in sse_events(data)]
        for ch in chunks[:-1]:
            for cand in ch.get("candidates") or []:
                assert not cand.get("finishReason"), "no clean end"
                text += "".join(p.get("text", "") for p in cand["content"]["parts"]
                                if not p.get("thought"))
        assert "error" in chunks[-1], chunks[-1]
    assert (exp.text or "").startswith(text), (text, exp.text)
    [row] = gw.wait_rows(1)
    assert row["status"] == 200 and row["stream"] is True
    assert row["error_kind"] is not None, row
    assert row["provider"] == PROVIDER[up]


# -- a tool-result turn ---------------------------------------------------------------------

CALLS = [("call_6PqAxJsYwnvZ8M84lU6OY1ec", "get_weather", {"location": "Paris, France"},
          "18°C, light rain"),
         ("call_neQ1kwyHvjdy7H7HtLZ63NsH", "get_local_time", {"timezone": "Asia/Tokyo"},
          "21:04 JST")]


def tool_turn_request(client: str) -> dict[str, Any]:
    """The second request of a tool loop in each client's format: the prompt, the two
    parallel calls the model made, and their results."""
    prompt = PROMPT["tools"]
    if client == "chat":
        return {"messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": i, "type": "function",
                 "function": {"name": n, "arguments": json.dumps(a)}} for i, n, a, _ in CALLS]},
            *({"role": "tool", "tool_call_id": i, "content": r} for i, _, _, r in CALLS)],
            "tools": CHAT_TOOLS}
    if client == "responses":
        return {"input": [
            {"role": "user", "content": prompt},
            *({"type": "function_call", "call_id": i, "name": n, "arguments": json.dumps(a)}
              for i, n, a, _ in CALLS),
            *({"type": "function_call_output", "call_id": i, "output": r}
              for i, _, _, r in CALLS)], "tools": RESPONSES_TOOLS}
    if client == "anthropic":
        return {"max_tokens": 1024, "tools": ANTHROPIC_TOOLS, "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a, _ in CALLS]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": i, "content": r}
                for i, _, _, r in CALLS]}]}
    return {"tools": GEMINI_TOOLS, "contents": [
        {"role": "user", "parts": [{"text": prompt}]},
        {"role": "model", "parts": [{"functionCall": {"name": n, "args": a}}
                                    for _, n, a, _ in CALLS]},
        {"role": "user", "parts": [{"functionResponse": {"name": n, "response": {"result": r}}}
                                   for _, n, _, r in CALLS]}]}


def check_tool_history(up: str, body: dict, client: str) -> None:
    """The upstream got both calls and both results, paired by id, in its own format."""
    keep_ids = client != "gemini"  # a Gemini client sends no ids: the gateway pairs by order
    if up == "openai":
        msgs = body["messages"]
        [k] = [j for j, m in enumerate(msgs) if m.get("tool_calls")]
        calls = msgs[k]["tool_calls"]
        assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] \
            == [(n, a) for _, n, a, _ in CALLS]
        ids = [c["id"] for c in calls]
        assert all(ids) and len(set(ids)) == 2 and all(len(i) <= 40 for i in ids)
        if keep_ids:
            assert ids == [i for i, _, _, _ in CALLS]
        results = msgs[k + 1:k + 3]
        assert [m["role"] for m in results] == ["tool", "tool"]
        assert [m["tool_call_id"] for m in results] == ids
        for m, (_, _, _, r) in zip(results, CALLS, strict=True):
            assert r in json.dumps(m["content"], ensure_ascii=False)
    elif up == "responses":
        items = [x for x in body["input"] if isinstance(x, dict) and x.get("type")]
        calls = [x for x in items if x["type"] == "function_call"]
        outs = [x for x in items if x["type"] == "function_call_output"]
        assert [(c["call_id"], c["name"], json.loads(c["arguments"])) for c in calls] == \
            [(i, n, a) for i, n, a, _ in CALLS]
        assert [(o["call_id"], o["output"]) for o in outs] == [(i, r) for i, _, _, r in CALLS]
    elif up == "anthropic":
        msgs = body["messages"]
        [k] = [j for j, m in enumerate(msgs) if m["role"] == "assistant"]
        uses = [b for b in msgs[k]["content"] if b["type"] == "tool_use"]
        assert [(b["name"], b["input"]) for b in uses] == [(n, a) for _, n, a, _ in CALLS]
        ids = [b["id"] for b in uses]
        assert all(ANTHROPIC_ID.match(i) for i in ids) and len(set(ids)) == 2
        if keep_ids:
            assert ids == [i for i, _, _, _ in CALLS]
        nxt = msgs[k + 1]
        assert nxt["role"] == "user"
        results = nxt["content"][:2]
        assert [b["type"] for b in results] == ["tool_result"] * 2, \
            "one user message holding every tool_result, first (§3.3)"
        assert [b["tool_use_id"] for b in results] == ids
        for b, (_, _, _, r) in zip(results, CALLS, strict=True):
            assert r in json.dumps(b["content"], ensure_ascii=False)
    else:
        contents = body["contents"]
        [k] = [j for j, c in enumerate(contents) if c.get("role") == "model"]
        fcs = [p["functionCall"] for p in contents[k]["parts"] if "functionCall" in p]
        assert [(f["name"], f["args"]) for f in fcs] == [(n, a) for _, n, a, _ in CALLS]
        nxt = contents[k + 1]
        assert nxt["role"] == "user"
        frs = [p["functionResponse"] for p in nxt["parts"] if "functionResponse" in p]
        assert [f["name"] for f in frs] == [n for _, n, _, _ in CALLS]
        for f, (_, _, _, r) in zip(frs, CALLS, strict=True):
            assert isinstance(f["response"], dict), "functionResponse.response is an object (§5.2)"
            assert r in json.dumps(f["response"], ensure_ascii=False)


@pytest.mark.parametrize("client,up", [(c, u) for c in MODES for u in UPSTREAMS[c]])
def test_tool_result_turn(shared, client, up):
    """The second turn of a tool loop: calls and results reach the upstream paired (§5.2,
    §5.3, §5.8 case 6) and the answer comes back."""
    gw, upstream = shared(client, up, "text")
    req = tool_turn_request(client)
    model = MODEL[up]
    if client == "chat":
        text = oai(gw).chat.completions.create(model=model, **req).choices[0].message.content
    elif client == "responses":
        text = oai(gw).responses.create(model=model, **req).output_text
    elif client == "anthropic":
        m = ant(gw).messages.create(model=model, **req)
        text = "".join(b.text for b in m.content if b.type == "text")
    else:
        status, _, data = gemini_post(gw, model, req, False)
        assert status == 200, data
        text = "".join(p.get("text", "") for p in
                       json.loads(data)["candidates"][0]["content"]["parts"])
    if up == "loopback":
        assert text.startswith("loopback: tool get_weather returned: ")
        for _, n, _, r in CALLS:
            assert f"tool {n} returned: " in text and r in text
    else:
        assert text == EXPECT[(up, "text", False)].text
        [sent] = upstream.requests
        check_tool_history(up, sent.json(), client)
    [row] = gw.wait_rows(1)
    assert (row["status"], row["error_kind"]) == (200, None)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_reasoning_round_trip_responses_over_anthropic(gw_for, upstream, stream):
    """A Codex-style stateless loop on Claude: the reasoning item the gateway minted from
    Anthropic thinking comes back in the next request, and the upstream gets the thinking
    block with its signature byte for byte, before the tool_use it led to (§3.5, §5.8
    case 11)."""
    gw = gw_for("responses", "anthropic", "tools")
    c = oai(gw)
    kw: dict[str, Any] = {"model": MODEL["anthropic"], "input": PROMPT["tools"],
                          "tools": RESPONSES_TOOLS, "store": False,
                          "include": ["reasoning.encrypted_content"]}
    if stream:
        with c.responses.stream(**kw) as s:
            first = s.get_final_response()
    else:
        first = c.responses.create(**kw)
    exp = EXPECT[("anthropic", "tools", stream)]
    [reasoning] = [i for i in first.output if i.type == "reasoning"]
    assert reasoning.encrypted_content, "the gateway's own reversible payload (§2.7)"
    calls = [i for i in first.output if i.type == "function_call"]
    replay = [{"role": "user", "content": PROMPT["tools"]}]
    replay += [i.model_dump(exclude_none=True) for i in first.output]
    replay += [{"type": "function_call_output", "call_id": fc.call_id, "output": "18°C"}
               for fc in calls]
    upstream.script = provider_script("text")
    second = c.responses.create(**{**kw, "input": replay})
    assert second.output_text == EXPECT[("anthropic", "text", False)].text
    sent = upstream.requests[-1].json()
    [assistant] = [m for m in sent["messages"] if m["role"] == "assistant"]
    blocks = assistant["content"]
    assert blocks[0] == {"type": "thinking", "thinking": exp.thinking,
                         "signature": upstream_signature(exp)}, blocks[0]
    assert [b["id"] for b in blocks if b["type"] == "tool_use"] == [t[0] for t in exp.tools]
    results = sent["messages"][sent["messages"].index(assistant) + 1]["content"]
    assert [b["tool_use_id"] for b in results if b["type"] == "tool_result"] == \
        [t[0] for t in exp.tools]


# -- requests the target cannot express -----------------------------------------------------

INEXPRESSIBLE = [
    pytest.param("chat", "anthropic", {"n": 2}, "n", id="chat-n2-anthropic"),
    pytest.param("chat", "anthropic", {"logprobs": True, "top_logprobs": 2}, "logprobs",
                 id="chat-logprobs-anthropic"),
    pytest.param("gemini", "anthropic", {"generationConfig": {"candidateCount": 2}},
                 "candidateCount", id="gemini-candidateCount-anthropic"),
    pytest.param("anthropic", "openai",
                 {"mcp_servers": [{"type": "url", "url": "https://mcp.example/sse",
                                   "name": "ex"}]}, "mcp_servers",
                 id="anthropic-mcp_servers-openai"),
    pytest.param("anthropic", "gemini",
                 {"mcp_servers": [{"type": "url", "url": "https://mcp.example/sse",
                                   "name": "ex"}]}, "mcp_servers",
                 id="anthropic-mcp_servers-gemini"),
]


@pytest.mark.parametrize("client,up,extra,field", INEXPRESSIBLE)
def test_inexpressible_request_is_400(gw_for, upstream, client, up, extra, field):
    gw = gw_for(client, up, "text")
    model = MODEL[up]
    if client == "chat":
        with pytest.raises(openai.BadRequestError) as ei:
            oai(gw).chat.completions.create(model=model, messages=[
                {"role": "user", "content": "hi"}], **extra)
        err = ei.value.response.json()["error"]
        assert err["type"] == "invalid_request_error" and err["param"] == field
        assert field in err["message"]
    elif client == "responses":
        with pytest.raises(openai.BadRequestError) as ei:
            oai(gw).responses.create(model=model, input="hi", **extra)
        err = ei.value.response.json()["error"]
        assert err["type"] == "invalid_request_error"
        assert field in (err["param"] or "") or field in err["message"]
    elif client == "anthropic":
        with pytest.raises(anthropic.BadRequestError) as ei:
            ant(gw).messages.create(model=model, max_tokens=64, messages=[
                {"role": "user", "content": "hi"}], extra_body=extra)
        body = ei.value.response.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert field in body["error"]["message"]
    else:
        status, _, data = gemini_post(gw, model, {"contents": [
            {"role": "user", "parts": [{"text": "hi"}]}], **extra}, False)
        assert status == 400, data
        err = json.loads(data)["error"]
        assert (err["code"], err["status"]) == (400, "INVALID_ARGUMENT")
        assert field in err["message"]
    assert not upstream.requests, "nothing is sent to the provider"
    [row] = gw.wait_rows(1)
    assert (row["status"], row["error_kind"]) == (400, "bad_request")


# -- count_tokens, models, embeddings -------------------------------------------------------

def test_count_tokens_from_anthropic_upstream(gw_for, upstream):
    gw = gw_for("anthropic", "anthropic", "text")
    r = ant(gw).messages.count_tokens(model=MODEL["anthropic"], messages=[
        {"role": "user", "content": "Hello, Claude"}], tools=ANTHROPIC_TOOLS)
    assert r.input_tokens == ANTHROPIC_COUNT_TOKENS
    [req] = upstream.requests
    assert req.path == "/v1/messages/count_tokens"
    assert req.headers["x-api-key"] == "sk-ant-up" and "authorization" not in req.headers
    assert req.json()["tools"][0]["name"] == "get_weather"
    [row] = gw.wait_rows(1)
    assert (row["client_protocol"], row["provider"], row["status"]) == (
        "anthropic_count_tokens", "anthropic", 200)


@pytest.mark.parametrize("up", ["openai", "gemini", "loopback"])
def test_count_tokens_local(gw_for, upstream, up):
    gw = gw_for("anthropic", up, "text")
    c = ant(gw)
    short = c.messages.count_tokens(model=MODEL[up], messages=[
        {"role": "user", "content": "Hello"}]).input_tokens
    long = c.messages.count_tokens(model=MODEL[up], system="You are terse.", messages=[
        {"role": "user", "content": "Hello " * 400}], tools=ANTHROPIC_TOOLS).input_tokens
    assert 0 < short < long
    assert not upstream.requests, "estimated locally, never sent"
    rows = gw.wait_rows(2)
    assert [(r["client_protocol"], r["provider"], r["status"]) for r in rows] == [
        ("anthropic_count_tokens", "local", 200)] * 2
    assert all(r["input_tokens"] is None for r in rows), "counting is not inference"


def test_anthropic_prefix_paths(gw_for, upstream):
    """An Anthropic client whose base URL is ``{gateway}/anthropic``."""
    gw = gw_for("anthropic", "anthropic", "text")
    c = anthropic.Anthropic(base_url=gw.url + "/anthropic", api_key="k", max_retries=0,
                            timeout=20, http_client=RECORDER.client(timeout=20))
    m = c.messages.create(model=MODEL["anthropic"], max_tokens=64,
                          messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == EXPECT[("anthropic", "text", False)].text
    assert c.messages.count_tokens(model=MODEL["anthropic"], messages=[
        {"role": "user", "content": "hi"}]).input_tokens == ANTHROPIC_COUNT_TOKENS
    assert "loopback" in [x.id for x in c.models.list().data]
    assert [r.path for r in upstream.requests] == ["/v1/messages", "/v1/messages/count_tokens"]
    rows = gw.wait_rows(2)
    assert [r["client_protocol"] for r in rows] == ["anthropic_messages",
                                                    "anthropic_count_tokens"]


def test_models_list_in_both_shapes(make_gateway, upstream):
    gw = start_gateway(make_gateway, upstream,
                       routes="gpt-4.1=>openai,claude-sonnet-4-6=>anthropic,"
                              "gemini-2.5-flash=>gemini")
    names = ["gpt-4.1", "claude-sonnet-4-6", "gemini-2.5-flash", "loopback"]
    ids = [m.id for m in oai(gw).models.list()]
    assert ids == names
    page = ant(gw).models.list()
    assert [m.id for m in page.data] == names
    assert all(m.type == "model" and m.display_name for m in page.data)
    _, _, raw = rawhttp.request(gw.url + "/v1/models")
    assert json.loads(raw)["object"] == "list"
    _, _, raw = rawhttp.request(gw.url + "/v1/models", headers={"anthropic-version": "2023-06-01"})
    obj = json.loads(raw)
    assert obj["has_more"] is False and (obj["first_id"], obj["last_id"]) == (names[0], names[-1])
    assert not upstream.requests


@pytest.mark.parametrize("encoding", ["float", "base64", "sdk-default"])
@pytest.mark.parametrize("up,model", [("openai", "text-embedding-3-small"),
                                      ("gemini", "gemini-embedding-001")])
def test_embeddings(gw_for, upstream, up, model, encoding):
    gw = gw_for("chat", up, "text")
    kw: dict[str, Any] = {"model": model, "input": ["first text", "second text"],
                          "dimensions": 4}
    if encoding != "sdk-default":
        kw["encoding_format"] = encoding
    r = oai(gw).embeddings.create(**kw)
    vecs = [d.embedding for d in sorted(r.data, key=lambda d: d.index)]
    if encoding == "base64":
        vecs = [list(struct.unpack(f"<{len(base64.b64decode(v)) // 4}f", base64.b64decode(v)))
                for v in vecs]
    assert vecs == [embedding(0), embedding(1)]
    [req] = upstream.requests
    sent = req.json()
    if up == "openai":
        assert req.path == "/v1/embeddings"
        assert sent["input"] == ["first text", "second text"] and sent["dimensions"] == 4
    else:
        assert req.path == f"/v1beta/models/{model}:batchEmbedContents"
        assert req.headers["x-goog-api-key"] == "gm-up"
        assert [x["content"]["parts"][0]["text"] for x in sent["requests"]] == kw["input"]
        assert all(x["model"] == f"models/{model}" and x["outputDimensionality"] == 4
                   for x in sent["requests"])
    [row] = gw.wait_rows(1)
    assert (row["client_protocol"], row["provider"], row["status"]) == (
        "openai_embeddings", up, 200)
    if up == "openai":
        assert row["input_tokens"] == 6


@pytest.mark.parametrize("up,model,status", [("openai", "text-embedding-3-small", 429),
                                             ("gemini", "gemini-embedding-001", 400),
                                             ("anthropic", "claude-sonnet-4-6", 400)])
def test_embeddings_errors(gw_for, upstream, up, model, status):
    """Provider errors (and a provider kind without embeddings) in OpenAI's format."""
    gw = gw_for("chat", up, "error")
    with pytest.raises(openai.APIStatusError) as ei:
        oai(gw).embeddings.create(model=model, input="hello", encoding_format="float")
    assert ei.value.status_code == status
    err = ei.value.response.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    if up == "anthropic":
        assert err["param"] == "model" and not upstream.requests
    else:
        assert len(upstream.requests) >= 1
    if up == "gemini":
        assert err["type"] == "invalid_request_error" and "must not be empty" in err["message"]
    [row] = gw.wait_rows(1)
    assert (row["client_protocol"], row["status"]) == ("openai_embeddings", status)


# -- memory: a finished request leaves no reference cycle -----------------------------------

@contextlib.contextmanager
def cyclic_garbage():
    """Yields a list that, on exit, holds the gateway's objects (types from ``proxy`` and
    ``protocols``) that became unreachable inside the block only through reference
    cycles: objects the cycle collector, not reference counting, would have to free. The
    collector is off inside the block."""
    found: list[str] = []
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(sorted({f"{type(o).__module__}.{type(o).__qualname__}"
                             for o in gc.garbage
                             if (type(o).__module__ or "").startswith(("proxy", "protocols"))}))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()
        if was_enabled:
            gc.enable()


@pytest.mark.parametrize("client,mode,up", [
    (c, m, u) for c, modes in MODES.items() for m in modes for u in UPSTREAMS[c]
    if m in ("create", "stream", "raw", "generate")])
def test_a_request_leaves_no_reference_cycle(shared, client, mode, up):
    """Everything a request builds (the exchange, the translation, the stream decoder and
    encoder, the IR) is freed by reference counting when it ends. A cycle among them
    would keep a whole request (a Claude Code body is ~50 KB of IR) alive until the next
    collection, and make the collector's pauses grow with the traffic."""
    gw, upstream = shared(client, up, "tools")
    RUN[client](gw, MODEL[up], "tools", mode)  # the gateway and its pools exist now
    gw.wait_rows(1)
    with cyclic_garbage() as found:
        gw.t0 = time.time()
        RUN[client](gw, MODEL[up], "tools", mode)
        assert gw.wait_rows(1), "the request was not recorded"
        gw.gw.settle()  # the callback that recorded the row has ended the exchange
    assert found == [], f"{client}.{mode} over {up} left cycles among {found}"


@pytest.mark.parametrize("parser", PARSERS)
def test_a_closed_connection_leaves_no_reference_cycle(gw_for, upstream, parser):
    """Connections that close, the client's and the provider's, are freed by reference
    counting: the protocol objects and their parsers drop their references to each
    other."""
    gw = gw_for("chat", "openai", "text", parser=parser)
    answer = upstream.script
    upstream.script = lambda req: answer(req) + [("close",)]  # the provider's side too
    body = json.dumps({"model": MODEL["openai"], "stream": True,
                       "messages": [{"role": "user", "content": PROMPT["text"]}]}).encode()
    rawhttp.request(gw.url + "/v1/chat/completions", "POST", body,
                    {"content-type": "application/json"})  # the gateway's lazy parts exist
    with cyclic_garbage() as found:
        for _ in range(3):
            s = rawhttp.connect(gw.port)
            s.sendall(rawhttp.post_bytes("/v1/chat/completions", body))
            status, _, _ = rawhttp.Reader(s).response()
            assert status == 200
            s.close()
        deadline = time.monotonic() + 5
        while gw.server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not gw.server.connections, "the gateway did not see the clients leave"
        pool = gw.server.state.pool
        while pool._all and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not pool._all, "the gateway did not see the provider close"
    assert found == [], f"closed connections left cycles among {found}"
