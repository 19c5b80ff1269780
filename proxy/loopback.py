"""The built-in ``loopback`` model: deterministic answers, no network.

Agent flows can be developed and tested offline against it. The answers have the exact shapes
of the OpenAI Chat Completions and Embeddings APIs (docs/protocols.md §1.4, §1.5), so any
OpenAI client accepts them. This module is pure: no I/O, no clock, no randomness. The caller
passes the response id and the ``created`` timestamp, and the same request always gives the same
bytes.

Public API
----------
* ``chat_completion(body, request_id=, created=)`` returns a ``chat.completion`` object.
* ``chat_stream(body, request_id=, created=)`` returns the complete list of SSE frames
  (``data: {json}\\n\\n`` ... ``data: [DONE]\\n\\n``).
* ``chat_usage(body)`` returns the usage that both of the above report (the stream reports it
  only with ``stream_options.include_usage``).
* ``LoopbackError`` is raised for invalid input. It carries ``status`` (400), ``param``,
  ``message`` and ``code``; ``openai_error()`` gives the OpenAI error body (§1.6).

Reply rule (text)
-----------------
1. If the conversation ends with one or more ``tool`` messages, the reply is
   ``"loopback: " + "; ".join("tool <name> returned: <content>" for each trailing tool
   message)``. ``<name>`` is the function name of the matching ``tool_calls[].id`` in an earlier
   assistant message, else the tool message's ``name``, else its ``tool_call_id``.
2. Otherwise the reply is ``"loopback: " + <text of the last user message>``. The text of a
   message is its string content, or its parts joined with ``"\\n"``: a text part gives its
   text, an ``image_url`` part gives ``[image]``, ``input_audio`` gives ``[audio]``, ``file``
   gives ``[file]``, and any other part gives ``[<type>]``.
3. If there is no user message at all, the reply is ``NO_USER_MESSAGE_REPLY``
   (``"loopback: there is no user message to answer."``).

Then ``stop`` cuts the reply just before the earliest occurrence of any stop string
(``finish_reason`` stays ``"stop"``), and the token limit (below) may shorten it further.

Tool-call rule
--------------
Only function tools count (``tools[].type == "function"``); custom tools and the deprecated
``functions`` field are ignored. ``tool_choice`` defaults to ``"auto"``.
``{"type": "allowed_tools", ...}`` narrows the callable tools and gives the mode.

* ``"none"``: never call a tool.
* ``"auto"``: call tools only when the conversation does not end with a tool result and the last
  user message contains the word ``call`` or ``use`` (any case, whole word). Every offered tool
  name that appears as a whole word (name characters are ``[A-Za-z0-9_-]``) anywhere *after* the
  first such word is called, in the order of the text. Example:
  ``please call get_weather with {"city":"Paris"}``.
* ``"required"``: the same scan, but over the whole last user message and without needing the
  trigger word; if no tool is named, the first callable tool is called.
* ``{"type": "function", "function": {"name": N}}``: exactly one call to ``N``. As OpenAI does,
  ``finish_reason`` is then ``"stop"``; otherwise it is ``"tool_calls"``.

The arguments of a call are the JSON object that starts at the first ``{`` between the tool name
and the next called name (or the end of the text), re-serialised compactly, when it parses.
Otherwise they are built from the tool's JSON schema: every ``required`` property gets
``"loopback"`` for a string, the first ``enum`` value or the ``const``, ``0`` for numbers,
``false``, ``[]``, or a nested object built the same way. Names inside a parsed JSON object are
not scanned. A repeated call with the same name and the same arguments is made once; with
``parallel_tool_calls: false`` only the first call is kept. A forced choice (``"required"`` or a
named function) calls a tool even after a tool result, as OpenAI does.

Call ids are ``call_`` + 24 characters of ``[A-Za-z0-9]`` taken from a BLAKE2b hash of the
request id, the choice index and the call index (29 characters, within OpenAI's 40).

Tokens
------
``prompt_tokens = ceil(B / 4) + 3 * len(messages)``, where ``B`` is the UTF-8 byte length of the
text of every message (as defined above, plus the name and arguments of assistant tool calls)
and of the compact JSON of ``tools``. ``completion_tokens = max(1, ceil(R / 4))`` per choice,
where ``R`` is the byte length of the reply text, or of every call's name plus arguments.
Cached and reasoning tokens are 0.

``max_completion_tokens`` and ``max_tokens`` are one setting (the smaller wins when both are
given). If the reply's completion tokens exceed it, the reply is cut to ``4 * limit`` bytes (at a
character boundary) and ``finish_reason`` is ``"length"``; for tool calls the arguments are cut
the same way (leaving invalid JSON, as a real model would) and later calls are dropped.

``n`` (1..128) gives ``n`` identical choices; only the tool-call ids differ. Streams send the
choices one after another. ``logprobs`` is answered with ``null``; ``response_format``,
``temperature`` and the other sampling fields are accepted and ignored.

Streaming (§1.5)
----------------
Per choice: a role chunk (``{"role":"assistant","content":"","refusal":null}``, or with
``"content":null`` and the first tool-call header when the turn is tool calls), content chunks
(the reply split into words, each with its leading whitespace, grouped to at most
``MAX_STREAM_PIECES``), tool-call chunks (``id``, ``type`` and ``function.name`` once per index,
then argument fragments), and a finish chunk with ``"delta":{}``. With
``stream_options.include_usage`` a final ``"choices":[]`` chunk carries the usage and every
earlier chunk has ``"usage":null``. Then ``data: [DONE]``.

Embeddings: ``proxy/loopback_embeddings.py``.
"""

import json
import re
from functools import lru_cache
from typing import Any

import orjson

__all__ = [
    "LOOPBACK_MODEL",
    "LoopbackError",
    "chat_completion",
    "chat_stream",
    "chat_usage",
]

LOOPBACK_MODEL = "loopback"

REPLY_PREFIX = "loopback: "
NO_USER_MESSAGE_REPLY = "loopback: there is no user message to answer."
SYSTEM_FINGERPRINT = "fp_loopback0"
SERVICE_TIER = "default"

# OpenAI limits (CreateChatCompletionRequest / CreateEmbeddingRequest).
MAX_N = 128
MAX_STOP_SEQUENCES = 4
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_DIMENSIONS = 8192
DEFAULT_EMBEDDING_DIMENSIONS = 1536  # text-embedding-3-small, ada-002
# Most values (inputs x dimensions) one embeddings answer holds: about 5 MiB of
# JSON.  Without it a 10 kB request asked for 2048 x 8192 floats, a 361 MB answer.
MAX_EMBEDDING_VALUES = 1 << 18
# Longest reply text per choice, in characters: the echo of a 32 MiB prompt (times
# up to MAX_N choices) must not become an answer of gigabytes.  A longer reply is
# cut and ends with finish_reason "length", as a token limit would.
MAX_REPLY_CHARS = 64 * 1024
# A long echo must not turn into thousands of frames; 64 pieces still exercise every reassembly
# path of a client.
MAX_STREAM_PIECES = 64

_ROLES = frozenset(("system", "developer", "user", "assistant", "tool", "function"))
_PART_NOTES = {"image_url": "[image]", "input_audio": "[audio]", "file": "[file]"}
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_TRIGGER = re.compile(r"\b(?:call|use)\b", re.IGNORECASE)
_WORD_PIECES = re.compile(r"\s*\S+|\s+")
_ARG_PIECES = re.compile(r"\w+|\W+")
_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_JSON_DECODER = json.JSONDecoder()
_SCALAR_PLACEHOLDERS = {"integer": 0, "number": 0, "boolean": False, "null": None}

_PROMPT_DETAILS = {"cached_tokens": 0, "audio_tokens": 0}
_COMPLETION_DETAILS = {
    "reasoning_tokens": 0,
    "audio_tokens": 0,
    "accepted_prediction_tokens": 0,
    "rejected_prediction_tokens": 0,
}


class LoopbackError(Exception):
    """Invalid request for the loopback model; the server answers it in OpenAI error format."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        status: int = 400,
        code: str | None = "invalid_value",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code

    def openai_error(self) -> dict:
        """The JSON body OpenAI sends with this status (§1.6): all four keys, always."""
        return {
            "error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": self.code,
            }
        }


# ---------------------------------------------------------------------------------------------
# Small helpers


def tokens_for_bytes(nbytes: int) -> int:
    return (nbytes + 3) // 4


def utf8_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _invalid_type(param: str, expected: str, value: object) -> LoopbackError:
    return LoopbackError(
        f"Invalid type for '{param}': expected {expected}, but got {type(value).__name__} instead.",
        param=param,
        code="invalid_type",
    )


def optional_int(body: dict, key: str, low: int, high: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if type(value) is not int or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"of at least {low}"
        raise LoopbackError(f"Invalid value for '{key}': expected an integer {bound}.", param=key)
    return value


def _content_text(content: object, param: str, *, allow_none: bool) -> str:
    if type(content) is str:
        return content
    if content is None:
        if allow_none:
            return ""
        raise LoopbackError(f"Missing required parameter: '{param}'.", param=param,
                            code="missing_required_parameter")
    if type(content) is not list:
        raise _invalid_type(param, "a string or an array of content parts", content)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if type(part) is dict else None
        if type(kind) is not str:
            raise _invalid_type(f"{param}[{j}]", "an object with a string 'type'", part)
        if kind == "text" or kind == "refusal":
            text = part.get(kind)
            if type(text) is not str:
                raise _invalid_type(f"{param}[{j}].{kind}", "a string", text)
            texts.append(text)
        else:
            texts.append(_PART_NOTES.get(kind) or f"[{kind}]")
    return "\n".join(texts)


def _call_id(request_id: str, choice: int, index: int) -> str:
    # Imported by the first tool call: hashlib lists OpenSSL's digests when imported,
    # 0.65 MiB of a gateway that never needs one.
    import hashlib

    seed = f"{request_id}\x00{choice}\x00{index}".encode()
    digest = hashlib.blake2b(seed, digest_size=24).digest()
    return "call_" + "".join([_ID_ALPHABET[b % 62] for b in digest])


# ---------------------------------------------------------------------------------------------
# Tool calls


def _placeholder(schema: object, depth: int = 0) -> object:
    """A value that satisfies the simple parts of a JSON schema (see the module docstring)."""
    if type(schema) is not dict or depth > 16:
        return "loopback"
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if type(enum) is list and enum:
        return enum[0]
    kind = schema.get("type")
    if type(kind) is list:
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or (kind is None and "properties" in schema):
        return _placeholder_object(schema, depth)
    if kind == "array":
        return []
    # A malformed "type" (an object, a nested list) names no kind: a string stands in.
    return _SCALAR_PLACEHOLDERS.get(kind, "loopback") if type(kind) is str else "loopback"


def _placeholder_object(schema: object, depth: int = 0) -> dict:
    if type(schema) is not dict:
        return {}
    required = schema.get("required")
    props = schema.get("properties")
    if type(required) is not list or type(props) is not dict:
        return {}
    return {name: _placeholder(props.get(name), depth + 1)
            for name in required if type(name) is str}


@lru_cache(maxsize=256)
def _names_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so that of "get" and "get_time" the longer one wins at the same position.
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9_-])(?:{alternatives})(?![A-Za-z0-9_-])")


def _scan_calls(text: str, start: int, names: tuple[str, ...]) -> list[tuple[str, dict | None]]:
    """Tool names after ``start`` in ``text``, each with the JSON object that follows it."""
    pattern = _names_pattern(names)
    found: list[tuple[str, dict | None]] = []
    match = pattern.search(text, start)
    while match is not None:
        following = pattern.search(text, match.end())
        end = following.start() if following is not None else len(text)
        args = None
        brace = text.find("{", match.end(), end)
        if brace != -1:
            try:
                value, stop = _JSON_DECODER.raw_decode(text, brace)
            except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
                value = None
            if type(value) is dict:
                args = value
                if stop > end:  # skip names quoted inside the arguments
                    following = pattern.search(text, stop)
        found.append((match.group(), args))
        match = following
    return found


def _plan_calls(
    body: dict, functions: dict, last_user: str | None, ends_with_tool: bool
) -> tuple[list[tuple[str, str]], str] | None:
    """The (name, arguments JSON) pairs to call and the finish reason, or None for a text reply."""
    choice = body.get("tool_choice")
    callable_names = tuple(functions)
    mode = "auto"
    if choice is None or choice == "auto":
        pass
    elif choice == "none":
        return None
    elif choice == "required":
        mode = "required"
    elif type(choice) is dict and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if type(fn) is dict else None
        if name not in functions:
            raise LoopbackError(
                f"Invalid value for 'tool_choice': no function named {name!r} in 'tools'.",
                param="tool_choice",
            )
        mode = "named"
        callable_names = (name,)
    elif type(choice) is dict and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools")
        if type(allowed) is not dict or allowed.get("mode", "auto") not in ("auto", "required") \
                or type(allowed.get("tools")) is not list:
            raise LoopbackError("Invalid value for 'tool_choice.allowed_tools'.",
                                param="tool_choice")
        picked = set()
        for tool in allowed["tools"]:
            fn = tool.get("function") if type(tool) is dict else None
            if type(fn) is dict:
                picked.add(fn.get("name"))
        callable_names = tuple(n for n in functions if n in picked)
        mode = allowed.get("mode", "auto")
    else:
        raise LoopbackError(
            "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a function "
            "tool choice.",
            param="tool_choice",
        )

    if mode != "auto" and not callable_names:
        raise LoopbackError(
            "Invalid value for 'tool_choice': it requires a tool call but no function is "
            "available in 'tools'.",
            param="tool_choice",
        )
    if not callable_names:
        return None

    text = last_user or ""
    if mode == "auto":
        if ends_with_tool or last_user is None:
            return None
        trigger = _TRIGGER.search(text)
        if trigger is None:
            return None
        found = _scan_calls(text, trigger.end(), callable_names)
        if not found:
            return None
    else:
        found = _scan_calls(text, 0, callable_names)
        if mode == "named":
            found = found[:1]
        if not found:
            found = [(callable_names[0], None)]

    calls: list[tuple[str, str]] = []
    for name, args in found:
        if args is None:
            args = _placeholder_object(functions[name].get("parameters"))
        call = (name, json.dumps(args, separators=(",", ":"), ensure_ascii=False))
        if call not in calls:
            calls.append(call)
    if body.get("parallel_tool_calls") is False:
        calls = calls[:1]
    return calls, ("stop" if mode == "named" else "tool_calls")


# ---------------------------------------------------------------------------------------------
# Planning: everything about a chat answer except the ids


class _Plan:
    __slots__ = ("model", "n", "text", "calls", "finish", "prompt_tokens", "completion_tokens",
                 "include_usage")

    model: str
    n: int
    text: str | None
    calls: list[tuple[str, str]] | None
    finish: str
    prompt_tokens: int
    completion_tokens: int
    include_usage: bool


def _tool_reply(messages: list, first: int) -> str:
    names: dict[str, str] = {}
    for message in messages[:first]:
        if message["role"] == "assistant" and type(message.get("tool_calls")) is list:
            for call in message["tool_calls"]:
                fn = call.get("function") if type(call) is dict else None
                if type(fn) is dict and type(call.get("id")) is str and type(fn.get("name")) is str:
                    names[call["id"]] = fn["name"]
    parts = []
    for i in range(first, len(messages)):
        message = messages[i]
        call_id = message.get("tool_call_id")
        name = names.get(call_id) if type(call_id) is str else None
        if name is None:
            name = message.get("name") if type(message.get("name")) is str else call_id
        content = _content_text(message.get("content"), f"messages[{i}].content", allow_none=True)
        parts.append(f"tool {name if name is not None else 'unknown'} returned: {content}")
    return REPLY_PREFIX + "; ".join(parts)


def checked_request(body: object) -> tuple[dict[str, Any], str]:
    """The body, checked to be an object, and its model: the start of every loopback request."""
    if type(body) is not dict:
        raise _invalid_type("body", "a JSON object", body)
    model = body.get("model")
    if type(model) is not str or not model:
        raise LoopbackError("Missing required parameter: 'model'.", param="model",
                            code="missing_required_parameter")
    return body, model


def _plan(body: object) -> _Plan:
    body, model = checked_request(body)
    messages = body.get("messages")
    if type(messages) is not list:
        if messages is None:
            raise LoopbackError("Missing required parameter: 'messages'.", param="messages",
                                code="missing_required_parameter")
        raise _invalid_type("messages", "an array of objects", messages)
    if not messages:
        raise LoopbackError("Invalid 'messages': empty array. Expected an array with minimum "
                            "length 1, but got an empty array instead.", param="messages",
                            code="empty_array")

    n = optional_int(body, "n", 1, MAX_N) or 1
    limit = optional_int(body, "max_completion_tokens", 1, None)
    legacy_limit = optional_int(body, "max_tokens", 1, None)
    if legacy_limit is not None and (limit is None or legacy_limit < limit):
        limit = legacy_limit

    stop = body.get("stop")
    if stop is None:
        stops: tuple = ()
    elif type(stop) is str:
        stops = (stop,)
    elif (type(stop) is list and len(stop) <= MAX_STOP_SEQUENCES
          and all(type(s) is str for s in stop)):
        stops = tuple(stop)
    else:
        raise LoopbackError("Invalid value for 'stop': expected a string or an array of at most "
                            f"{MAX_STOP_SEQUENCES} strings.", param="stop")

    options = body.get("stream_options")
    if options is not None and type(options) is not dict:
        raise _invalid_type("stream_options", "an object", options)
    include_usage = bool(options and options.get("include_usage"))

    # Function tools, by name, in the order offered.
    tools = body.get("tools")
    functions: dict[str, dict] = {}
    prompt_bytes = 0
    if tools is not None:
        if type(tools) is not list:
            raise _invalid_type("tools", "an array of objects", tools)
        for i, tool in enumerate(tools):
            kind = tool.get("type") if type(tool) is dict else None
            if kind == "function":
                fn = tool.get("function")
                name = fn.get("name") if type(fn) is dict else None
                if type(name) is not str or not _TOOL_NAME.match(name):
                    raise LoopbackError(
                        f"Invalid 'tools[{i}].function.name': expected 1 to 64 characters from "
                        "[a-zA-Z0-9_-].", param=f"tools[{i}].function.name")
                functions.setdefault(name, fn)
            elif kind != "custom":
                raise LoopbackError(f"Invalid value for 'tools[{i}].type': expected 'function' "
                                    "or 'custom'.", param=f"tools[{i}].type")
        if tools:
            prompt_bytes = len(orjson.dumps(tools))

    # One pass over the messages: validation, prompt size, last user text.
    last_user: str | None = None
    for i, message in enumerate(messages):
        role = message.get("role") if type(message) is dict else None
        if role not in _ROLES:
            if type(message) is not dict:
                raise _invalid_type(f"messages[{i}]", "an object", message)
            raise LoopbackError(f"Invalid value for 'messages[{i}].role': expected one of "
                                f"{', '.join(sorted(_ROLES))}.", param=f"messages[{i}].role")
        text = _content_text(message.get("content"), f"messages[{i}].content",
                             allow_none=role == "assistant")
        prompt_bytes += utf8_bytes(text)
        if role == "user":
            last_user = text
        elif role == "assistant":
            calls = message.get("tool_calls")
            if calls:
                if type(calls) is not list:
                    raise _invalid_type(f"messages[{i}].tool_calls", "an array", calls)
                for call in calls:
                    fn = call.get("function") if type(call) is dict else None
                    if type(fn) is dict:
                        prompt_bytes += utf8_bytes(str(fn.get("name", "")))
                        prompt_bytes += utf8_bytes(str(fn.get("arguments", "")))

    first_tool = len(messages)
    while first_tool > 0 and messages[first_tool - 1]["role"] == "tool":
        first_tool -= 1
    ends_with_tool = first_tool < len(messages)

    plan = _Plan()
    plan.model = model
    plan.n = n
    plan.include_usage = include_usage
    plan.prompt_tokens = tokens_for_bytes(prompt_bytes) + 3 * len(messages)

    planned = _plan_calls(body, functions, last_user, ends_with_tool) if functions or \
        body.get("tool_choice") not in (None, "auto", "none") else None
    if planned is not None:
        calls, finish = planned
        budget = limit * 4 if limit is not None else None
        used = 0
        if budget is not None and sum(len(nm) + utf8_bytes(args) for nm, args in calls) > budget:
            kept = []
            for name, args in calls:
                room = budget - used - len(name)
                if room >= utf8_bytes(args):
                    kept.append((name, args))
                    used += len(name) + utf8_bytes(args)
                    continue
                cut = args.encode()[:max(room, 0)].decode("utf-8", "ignore")
                kept.append((name, cut))
                break
            calls, finish = kept, "length"
        plan.text, plan.calls, plan.finish = None, calls, finish
        size = sum(len(nm) + utf8_bytes(args) for nm, args in calls)
        completion = max(1, tokens_for_bytes(size))
        plan.completion_tokens = min(completion, limit) if limit is not None else completion
        return plan

    if ends_with_tool:
        text = _tool_reply(messages, first_tool)
    elif last_user is not None:
        text = REPLY_PREFIX + last_user
    else:
        text = NO_USER_MESSAGE_REPLY
    finish = "stop"
    for s in stops:
        if s:
            at = text.find(s)
            if at != -1:
                text = text[:at]
    if len(text) > MAX_REPLY_CHARS:
        text = text[:MAX_REPLY_CHARS]
        finish = "length"
    size = utf8_bytes(text)
    if limit is not None and tokens_for_bytes(size) > limit:
        text = text.encode()[: limit * 4].decode("utf-8", "ignore")
        size = utf8_bytes(text)
        finish = "length"
    plan.text, plan.calls, plan.finish = text, None, finish
    plan.completion_tokens = max(1, tokens_for_bytes(size))
    return plan


def _usage(plan: _Plan) -> dict:
    completion = plan.completion_tokens * plan.n
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": plan.prompt_tokens + completion,
        "prompt_tokens_details": dict(_PROMPT_DETAILS),
        "completion_tokens_details": dict(_COMPLETION_DETAILS),
    }


# ---------------------------------------------------------------------------------------------
# Chat Completions


def chat_usage(body: dict) -> dict:
    """The usage (OpenAI shape) that ``chat_completion``/``chat_stream`` report for ``body``."""
    return _usage(_plan(body))


def chat_completion(body: dict, *, request_id: str, created: int) -> dict:
    """A ``chat.completion`` object (§1.4) answering ``body``."""
    plan = _plan(body)
    choices = []
    for c in range(plan.n):
        message: dict[str, Any]
        if plan.calls is None:
            message = {"role": "assistant", "content": plan.text, "refusal": None,
                       "annotations": []}
        else:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": _call_id(request_id, c, k), "type": "function",
                     "function": {"name": name, "arguments": args}}
                    for k, (name, args) in enumerate(plan.calls)
                ],
                "refusal": None,
                "annotations": [],
            }
        choices.append({"index": c, "message": message, "logprobs": None,
                        "finish_reason": plan.finish})
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": plan.model,
        "choices": choices,
        "usage": _usage(plan),
        "service_tier": SERVICE_TIER,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def _pieces(pattern: re.Pattern[str], text: str) -> list[str]:
    pieces = pattern.findall(text)
    if len(pieces) > MAX_STREAM_PIECES:
        step = -(-len(pieces) // MAX_STREAM_PIECES)
        pieces = ["".join(pieces[i:i + step]) for i in range(0, len(pieces), step)]
    return pieces


def chat_stream(body: dict, *, request_id: str, created: int) -> list[bytes]:
    """Every SSE frame of the streamed answer to ``body`` (§1.5), ``[DONE]`` included."""
    plan = _plan(body)
    head = orjson.dumps({
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": plan.model,
        "service_tier": SERVICE_TIER,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    })
    # Every chunk is the same header, one choice and the tail; only the choice is serialised.
    prefix = b"data: " + head[:-1] + b',"choices":['
    suffix = b'],"usage":null}\n\n' if plan.include_usage else b"]}\n\n"
    dumps = orjson.dumps

    def frame(index: int, delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return prefix + dumps(choice) + suffix

    frames = []
    for c in range(plan.n):
        if plan.calls is None:
            assert plan.text is not None  # a plan has either text or calls
            frames.append(frame(c, {"role": "assistant", "content": "", "refusal": None}))
            for piece in _pieces(_WORD_PIECES, plan.text):
                frames.append(frame(c, {"content": piece}))
        else:
            for k, (name, args) in enumerate(plan.calls):
                header = [{"index": k, "id": _call_id(request_id, c, k), "type": "function",
                           "function": {"name": name, "arguments": ""}}]
                if k == 0:  # the first call rides in the role chunk, as in current captures
                    frames.append(frame(c, {"role": "assistant", "content": None,
                                            "tool_calls": header, "refusal": None}))
                else:
                    frames.append(frame(c, {"tool_calls": header}))
                for piece in _pieces(_ARG_PIECES, args):
                    delta = {"index": k, "function": {"arguments": piece}}
                    frames.append(frame(c, {"tool_calls": [delta]}))
        frames.append(frame(c, {}, plan.finish))
    if plan.include_usage:
        frames.append(prefix + b'],"usage":' + dumps(_usage(plan)) + b"}\n\n")
    frames.append(b"data: [DONE]\n\n")
    return frames
