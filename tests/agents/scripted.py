"""Scripted fake providers that drive a real coding agent through one tool loop.

``ScriptedProvider(wire)`` is a ``FakeUpstream`` script (``script(req) -> actions``)
that speaks exactly one provider wire format:

* ``"anthropic"``: Anthropic Messages (``POST /v1/messages``,
  ``/v1/messages/count_tokens``, ``GET /v1/models``),
* ``"chat"``: OpenAI Chat Completions (``POST /v1/chat/completions``, ``GET /v1/models``),
* ``"responses"``: OpenAI Responses (``POST /v1/responses``, ``GET /v1/models``),

plus ``HEAD`` on any path (200, empty). Any other path gets a 404 in that format's
error shape, so a gateway that talks the wrong protocol upstream fails loudly. Like
the real API, the Anthropic fake answers 400 to a request without the
``anthropic-version`` header or without ``max_tokens`` (``strict=False`` turns that off).

A model turn (a Messages / Chat / Responses request that offers tools) is answered:

1. while the request carries no tool result: one call of the shell tool the client
   offered, running ``command`` (default ``touch created_by_tool.txt``):
   ``Bash {"command": ...}`` (Claude Code), ``exec_command {"cmd": ...}`` (Codex
   0.17x), ``shell {"command": ["bash", "-lc", ...]}`` (older Codex);
2. once it carries one (``tool_result`` block / ``role: "tool"`` message /
   ``function_call_output`` item): the text ``DONE``.

Requests without tools (title / summary / topic side calls) get a short plain text.
Streaming replies are byte-for-byte in the shapes that the real clients accepted
(``/work/shared/conformance/captures/fake-replies-known-good.json``): Anthropic and
Responses streams carry ``event:`` lines, Chat streams are ``data:`` only and end
with ``data: [DONE]`` (the usage chunk only when ``stream_options.include_usage``, as
OpenAI does). Non-streaming requests get the matching JSON body.

Every answered request is appended to ``.exchanges`` (the raw ``Recorded`` request,
what kind of answer it got, and the tool call issued), next to ``FakeUpstream.requests``.
``start_scripted(wire)`` returns a started ``FakeUpstream`` with ``.scripted`` set.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from tests.integration.upstreams import FakeUpstream, Recorded, json_response

WIRES = ("anthropic", "chat", "responses")

DEFAULT_COMMAND = "touch created_by_tool.txt"
FINAL_TEXT = "DONE"
SIDE_TEXT = "Scripted session"

# Kinds of answers recorded in ScriptedProvider.exchanges.
TOOL_CALL = "tool_call"  # model turn 1: asked for a tool call
FINAL = "final"  # model turn 2: the request carried a tool result; answered DONE
SIDE = "side"  # a model request without tools (title / summary): short text
NO_TOOL = "no_shell_tool"  # tools offered but none of the shell tools we know
COUNT_TOKENS = "count_tokens"
MODELS = "models"
HEAD = "head"
NOT_FOUND = "not_found"
REJECTED = "rejected"  # a request the real provider would refuse (HTTP 400)

MODEL_TURNS = (TOOL_CALL, FINAL, SIDE, NO_TOOL)


@dataclass
class Exchange:
    request: Recorded
    kind: str
    stream: bool | None = None
    tool: str | None = None  # name of the tool called (TOOL_CALL)
    call_id: str | None = None  # id of the tool call issued (TOOL_CALL)
    arguments: dict | None = None  # arguments of the tool call issued (TOOL_CALL)

    @property
    def path(self) -> str:
        return urlsplit(self.request.path).path

    def body(self) -> dict:
        return self.request.json()


@dataclass
class ScriptedProvider:
    """A ``FakeUpstream`` script answering one wire format; see the module docstring."""

    wire: str
    command: str = DEFAULT_COMMAND
    final_text: str = FINAL_TEXT
    side_text: str = SIDE_TEXT
    model: str | None = None  # served model in replies (default: the requested one)
    # refuse (400) what the real Anthropic API refuses: no anthropic-version header,
    # no max_tokens
    strict: bool = True
    exchanges: list[Exchange] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.wire not in WIRES:
            raise ValueError(f"wire must be one of {WIRES} (got {self.wire!r})")
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # --- FakeUpstream script interface -------------------------------------------

    def __call__(self, req: Recorded) -> list[tuple]:
        path = urlsplit(req.path).path.rstrip("/")
        if req.method == "HEAD":
            self._record(req, HEAD)
            return [("head", 200, [("content-length", "0")]), ("end",)]
        if req.method == "GET" and path.endswith("/v1/models"):
            self._record(req, MODELS)
            return json_response(self._models_list())
        if req.method == "POST":
            if self.wire == "anthropic" and path.endswith("/v1/messages/count_tokens"):
                self._record(req, COUNT_TOKENS)
                return json_response({"input_tokens": _tokens_in(req)})
            endpoint = {"anthropic": "/v1/messages", "chat": "/v1/chat/completions",
                        "responses": "/v1/responses"}[self.wire]
            if path.endswith(endpoint):
                return self._model_turn(req)
        self._record(req, NOT_FOUND)
        return self._error(404, f"scripted {self.wire} fake: no endpoint {req.method} {path}")

    # --- queries for assertions --------------------------------------------------

    def model_turns(self) -> list[Exchange]:
        """Exchanges that were model requests (not HEAD / models / count_tokens)."""
        with self._lock:
            return [e for e in self.exchanges if e.kind in MODEL_TURNS]

    def kinds(self) -> list[str]:
        with self._lock:
            return [e.kind for e in self.exchanges]

    # --- internals ---------------------------------------------------------------

    def _record(self, req: Recorded, kind: str, **kw: Any) -> Exchange:
        ex = Exchange(req, kind, **kw)
        with self._lock:
            self.exchanges.append(ex)
        return ex

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def _model_turn(self, req: Recorded) -> list[tuple]:
        try:
            body = req.json()
        except orjson.JSONDecodeError:
            self._record(req, NOT_FOUND)
            return self._error(400, "scripted fake: request body is not JSON")
        problem = self._refusal(req, body)
        if problem:
            self._record(req, REJECTED)
            return self._error(400, problem)
        stream = bool(body.get("stream"))
        model = self.model or str(body.get("model") or "scripted-model")
        n_in = _tokens_in(req)
        if tool_results(self.wire, body):
            self._record(req, FINAL, stream=stream)
            return self._reply_text(self.final_text, model, stream, n_in, body)
        offered = offered_tools(self.wire, body)
        if not offered:
            self._record(req, SIDE, stream=stream)
            return self._reply_text(self.side_text, model, stream, n_in, body)
        call = shell_call(offered, self.command)
        if call is None:
            self._record(req, NO_TOOL, stream=stream)
            return self._reply_text(f"NO_SHELL_TOOL among {sorted(offered)}", model,
                                    stream, n_in, body)
        name, args = call
        call_id = {"anthropic": "toolu_", "chat": "call_", "responses": "call_"}[self.wire]
        call_id += f"scripted{self._next_id():016x}"
        self._record(req, TOOL_CALL, stream=stream, tool=name, call_id=call_id,
                     arguments=args)
        return self._reply_tool(name, args, call_id, model, stream, n_in, body)

    def _refusal(self, req: Recorded, body: dict) -> str | None:
        if not self.strict or self.wire != "anthropic":
            return None
        if "anthropic-version" not in req.headers:
            return "anthropic-version: header is required"
        max_tokens = body.get("max_tokens")
        if type(max_tokens) is not int or max_tokens < 1:
            return "max_tokens: Field required (a positive integer)"
        if not body.get("messages"):
            return "messages: Field required"
        return None

    def _reply_text(self, text: str, model: str, stream: bool, n_in: int,
                    body: dict) -> list[tuple]:
        n = self._next_id()
        if self.wire == "anthropic":
            return anthropic_text(text, model, stream, n_in, n)
        if self.wire == "chat":
            return chat_text(text, model, stream, n_in, n, _chat_usage_wanted(body))
        return responses_text(text, model, stream, n_in, n)

    def _reply_tool(self, name: str, args: dict, call_id: str, model: str, stream: bool,
                    n_in: int, body: dict) -> list[tuple]:
        n = self._next_id()
        if self.wire == "anthropic":
            return anthropic_tool(name, args, call_id, model, stream, n_in, n)
        if self.wire == "chat":
            return chat_tool(name, args, call_id, model, stream, n_in, n,
                             _chat_usage_wanted(body))
        return responses_tool(name, args, call_id, model, stream, n_in, n)

    def _models_list(self) -> dict:
        model = self.model or "scripted-model"
        if self.wire == "anthropic":
            return {"data": [{"type": "model", "id": model, "display_name": model,
                              "created_at": "2025-01-01T00:00:00Z"}],
                    "has_more": False, "first_id": model, "last_id": model}
        return {"object": "list", "data": [{"id": model, "object": "model",
                                            "created": 1735689600, "owned_by": "scripted"}]}

    def _error(self, status: int, message: str) -> list[tuple]:
        if self.wire == "anthropic":
            kind = "not_found_error" if status == 404 else "invalid_request_error"
            return json_response({"type": "error", "error": {"type": kind, "message": message}},
                                 status)
        return json_response({"error": {"message": message, "type": "invalid_request_error",
                                        "param": None, "code": None}}, status)


def start_scripted(wire: str, **kw: Any) -> FakeUpstream:
    """A started ``FakeUpstream`` answering with a ``ScriptedProvider(wire, **kw)``;
    the script is also reachable as ``.scripted``. Stop it with ``.stop()``."""
    scripted = ScriptedProvider(wire, **kw)
    up = FakeUpstream(script=scripted).start()
    up.scripted = scripted  # type: ignore[attr-defined]
    return up


# --- reading requests -------------------------------------------------------------


def offered_tools(wire: str, body: dict) -> set[str]:
    """Names of the tools a request offers (namespaced Responses tools included)."""
    names: set[str] = set()
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        if wire == "chat":
            fn = tool.get("function")
            name = fn.get("name") if isinstance(fn, dict) else tool.get("name")
            if name:
                names.add(name)
        elif wire == "responses" and tool.get("type") == "namespace":
            names.update(t["name"] for t in tool.get("tools") or [] if t.get("name"))
        elif tool.get("name"):
            names.add(tool["name"])
    return names


def shell_call(offered: set[str], command: str) -> tuple[str, dict] | None:
    """The (tool name, arguments) that runs ``command`` with a shell tool offered."""
    if "Bash" in offered:
        return "Bash", {"command": command, "description": "Create a file"}
    if "exec_command" in offered:
        return "exec_command", {"cmd": command}
    if "shell" in offered:
        return "shell", {"command": ["bash", "-lc", command]}
    if "local_shell" in offered:
        return "local_shell", {"command": ["bash", "-lc", command]}
    return None


def tool_calls(wire: str, body: dict) -> list[tuple[str, str, Any]]:
    """(call id, tool name, arguments) of the tool calls in a request's history."""
    out: list[tuple[str, str, Any]] = []
    if wire == "anthropic":
        for msg in body.get("messages") or []:
            for block in _blocks(msg.get("content")):
                if block.get("type") == "tool_use":
                    out.append((block.get("id"), block.get("name"), block.get("input")))
    elif wire == "chat":
        for msg in body.get("messages") or []:
            for tc in msg.get("tool_calls") or []:
                fn = tc.get("function") or {}
                out.append((tc.get("id"), fn.get("name"), _maybe_json(fn.get("arguments"))))
    else:
        for item in _items(body.get("input")):
            if item.get("type") in ("function_call", "custom_tool_call", "local_shell_call"):
                args = item.get("arguments", item.get("input", item.get("action")))
                out.append((item.get("call_id"), item.get("name"), _maybe_json(args)))
    return out


def tool_results(wire: str, body: dict) -> list[tuple[str, str]]:
    """(call id, output text) of the tool results a request carries."""
    out: list[tuple[str, str]] = []
    if wire == "anthropic":
        for msg in body.get("messages") or []:
            for block in _blocks(msg.get("content")):
                if block.get("type") == "tool_result":
                    out.append((block.get("tool_use_id"), _text_of(block.get("content"))))
    elif wire == "chat":
        for msg in body.get("messages") or []:
            if msg.get("role") == "tool":
                out.append((msg.get("tool_call_id"), _text_of(msg.get("content"))))
    else:
        for item in _items(body.get("input")):
            if item.get("type") in ("function_call_output", "custom_tool_call_output",
                                    "local_shell_call_output"):
                out.append((item.get("call_id"), _text_of(item.get("output"))))
    return out


def _blocks(content: Any) -> list[dict]:
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _items(value: Any) -> list[dict]:
    return [i for i in value if isinstance(i, dict)] if isinstance(value, list) else []


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text_of(b.get("text", b.get("content", "")))
                       for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _tokens_in(req: Recorded) -> int:
    """A deterministic stand-in for a token count: about 4 bytes a token."""
    return max(1, len(req.body) // 4)


def _chat_usage_wanted(body: dict) -> bool:
    opts = body.get("stream_options")
    return isinstance(opts, dict) and bool(opts.get("include_usage"))


# --- wire formats: Anthropic Messages ------------------------------------------------

SSE_HEAD = ("head", 200, [("content-type", "text/event-stream; charset=utf-8"),
                          ("cache-control", "no-cache")])


def _named_events(events: list[dict]) -> list[tuple]:
    """``event: <type>`` + ``data: <json>`` frames, one write per event."""
    acts: list[tuple] = [SSE_HEAD]
    for ev in events:
        acts.append(("body", b"event: %s\ndata: %s\n\n" % (ev["type"].encode(),
                                                            orjson.dumps(ev))))
    acts.append(("end",))
    return acts


def _data_events(events: list[dict], done: bool = True) -> list[tuple]:
    acts: list[tuple] = [SSE_HEAD]
    for ev in events:
        acts.append(("body", b"data: %s\n\n" % orjson.dumps(ev)))
    if done:
        acts.append(("body", b"data: [DONE]\n\n"))
    acts.append(("end",))
    return acts


def _split(text: str) -> list[str]:
    mid = max(1, len(text) // 2)
    return [p for p in (text[:mid], text[mid:]) if p]


def _anthropic_message(n: int, model: str, content: list, stop_reason: str | None,
                       n_in: int, n_out: int) -> dict:
    return {"id": f"msg_scripted{n:016x}", "type": "message", "role": "assistant",
            "model": model, "content": content, "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": n_in, "output_tokens": n_out,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}


def _anthropic_stream(n: int, model: str, blocks: list[tuple[dict, list[dict]]],
                      stop_reason: str, n_in: int) -> list[tuple]:
    events: list[dict] = [
        {"type": "message_start",
         "message": _anthropic_message(n, model, [], None, n_in, 1)},
        {"type": "ping"},
    ]
    for index, (start, deltas) in enumerate(blocks):
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta",
                   "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                   "usage": {"output_tokens": 12}})
    events.append({"type": "message_stop"})
    return _named_events(events)


def anthropic_text(text: str, model: str, stream: bool, n_in: int, n: int) -> list[tuple]:
    if not stream:
        return json_response(_anthropic_message(n, model, [{"type": "text", "text": text}],
                                                "end_turn", n_in, 12))
    deltas = [{"type": "text_delta", "text": p} for p in _split(text)]
    return _anthropic_stream(n, model, [({"type": "text", "text": ""}, deltas)],
                             "end_turn", n_in)


def anthropic_tool(name: str, args: dict, call_id: str, model: str, stream: bool,
                   n_in: int, n: int) -> list[tuple]:
    lead = "Running a tool."
    if not stream:
        content = [{"type": "text", "text": lead},
                   {"type": "tool_use", "id": call_id, "name": name, "input": args}]
        return json_response(_anthropic_message(n, model, content, "tool_use", n_in, 12))
    text_deltas = [{"type": "text_delta", "text": p} for p in ("Running", " a tool.")]
    arg_deltas = [{"type": "input_json_delta", "partial_json": p}
                  for p in _split(orjson.dumps(args).decode())]
    return _anthropic_stream(n, model, [
        ({"type": "text", "text": ""}, text_deltas),
        ({"type": "tool_use", "id": call_id, "name": name, "input": {}}, arg_deltas),
    ], "tool_use", n_in)


# --- wire formats: OpenAI Chat Completions -----------------------------------------


def _chat_usage(n_in: int) -> dict:
    return {"prompt_tokens": n_in, "completion_tokens": 12, "total_tokens": n_in + 12,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}


def _chat_chunk(n: int, model: str, delta: dict | None, finish: str | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta,
                                         "finish_reason": finish, "logprobs": None}]
    return {"id": f"chatcmpl-scripted{n:016x}", "object": "chat.completion.chunk",
            "created": 1795714696, "model": model, "choices": choices}


def _chat_stream(n: int, model: str, deltas: list[dict], finish: str, n_in: int,
                 with_usage: bool) -> list[tuple]:
    chunks = [_chat_chunk(n, model, {"role": "assistant", "content": ""})]
    chunks += [_chat_chunk(n, model, d) for d in deltas]
    chunks.append(_chat_chunk(n, model, {}, finish))
    if with_usage:
        last = _chat_chunk(n, model, None)
        last["usage"] = _chat_usage(n_in)
        chunks.append(last)
    return _data_events(chunks)


def _chat_completion(n: int, model: str, message: dict, finish: str, n_in: int) -> dict:
    return {"id": f"chatcmpl-scripted{n:016x}", "object": "chat.completion",
            "created": 1795714696, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish}],
            "usage": _chat_usage(n_in)}


def chat_text(text: str, model: str, stream: bool, n_in: int, n: int,
              with_usage: bool) -> list[tuple]:
    if not stream:
        msg = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        return json_response(_chat_completion(n, model, msg, "stop", n_in))
    return _chat_stream(n, model, [{"content": p} for p in _split(text)], "stop", n_in,
                        with_usage)


def chat_tool(name: str, args: dict, call_id: str, model: str, stream: bool, n_in: int,
              n: int, with_usage: bool) -> list[tuple]:
    arguments = orjson.dumps(args).decode()
    if not stream:
        msg = {"role": "assistant", "content": None, "refusal": None, "annotations": [],
               "tool_calls": [{"id": call_id, "type": "function",
                               "function": {"name": name, "arguments": arguments}}]}
        return json_response(_chat_completion(n, model, msg, "tool_calls", n_in))
    deltas = [{"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                               "function": {"name": name, "arguments": ""}}]}]
    deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]}
               for p in _split(arguments)]
    return _chat_stream(n, model, deltas, "tool_calls", n_in, with_usage)


# --- wire formats: OpenAI Responses -------------------------------------------------


def _response_obj(n: int, model: str, status: str, output: list, usage: dict | None) -> dict:
    return {"id": f"resp_scripted{n:016x}", "object": "response", "created_at": 1795714783,
            "model": model, "status": status, "output": output, "error": None,
            "incomplete_details": None, "instructions": None, "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "usage": usage, "store": False,
            "metadata": {}, "text": {"format": {"type": "text"}},
            "reasoning": {"effort": None, "summary": None}, "temperature": 1.0,
            "top_p": 1.0, "truncation": "disabled", "previous_response_id": None}


def _responses_usage(n_in: int) -> dict:
    return {"input_tokens": n_in, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": n_in + 12}


def _responses_stream(n: int, model: str, middle: list[dict], item: dict,
                      n_in: int) -> list[tuple]:
    events = [
        {"type": "response.created",
         "response": _response_obj(n, model, "in_progress", [], None)},
        {"type": "response.in_progress",
         "response": _response_obj(n, model, "in_progress", [], None)},
        *middle,
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed",
         "response": _response_obj(n, model, "completed", [item], _responses_usage(n_in))},
    ]
    numbered = []
    for seq, ev in enumerate(events):
        # sequence_number second, as OpenAI sends it
        numbered.append({"type": ev["type"], "sequence_number": seq,
                         **{k: v for k, v in ev.items() if k != "type"}})
    return _named_events(numbered)


def responses_text(text: str, model: str, stream: bool, n_in: int, n: int) -> list[tuple]:
    item_id = f"msg_scripted{n:016x}"
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant",
            "content": [part]}
    if not stream:
        return json_response(_response_obj(n, model, "completed", [item],
                                           _responses_usage(n_in)))
    at = {"item_id": item_id, "output_index": 0, "content_index": 0}
    middle = [
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**item, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
        *({"type": "response.output_text.delta", **at, "delta": p, "logprobs": []}
          for p in _split(text)),
        {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": part},
    ]
    return _responses_stream(n, model, middle, item, n_in)


def responses_tool(name: str, args: dict, call_id: str, model: str, stream: bool,
                   n_in: int, n: int) -> list[tuple]:
    item_id = f"fc_scripted{n:016x}"
    arguments = orjson.dumps(args).decode()
    item = {"id": item_id, "type": "function_call", "status": "completed", "name": name,
            "call_id": call_id, "arguments": arguments}
    if not stream:
        return json_response(_response_obj(n, model, "completed", [item],
                                           _responses_usage(n_in)))
    at = {"item_id": item_id, "output_index": 0}
    middle = [
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**item, "status": "in_progress", "arguments": ""}},
        *({"type": "response.function_call_arguments.delta", **at, "delta": p}
          for p in _split(arguments)),
        {"type": "response.function_call_arguments.done", **at, "name": name,
         "arguments": arguments},
    ]
    return _responses_stream(n, model, middle, item, n_in)
