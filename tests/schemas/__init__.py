"""Validate wire bodies against the providers' published schemas (vendored beside this file).

``check_body(fmt, body)`` and ``check_stream(fmt, data)`` return the list of problems
(empty when the body or every event validates); the tests assert it is empty. ``fmt`` is
a client wire format as protocols/registry.py names it. README.md beside this file says
where each document came from, and which parts of a format no published schema covers
(those are checked against the real provider's transcripts instead).

The validator is jsonschema-rs (JSON Schema 2020-12, which OpenAPI 3.1 schemas are): it
compiles the OpenAI document's 300 definitions once and checks a stream event in
microseconds, so every golden and every SDK-matrix exchange can be validated.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema_rs

from protocols.openai_responses.tables import CODEX_ERROR_CODES
from tests.integration.providers import sse_events

HERE = Path(__file__).resolve().parent
CHAT, RESPONSES = "openai_chat", "openai_responses"
ANTHROPIC, GEMINI = "anthropic_messages", "gemini"
#: The client formats whose published documents are vendored here.
VALIDATED = (CHAT, RESPONSES, ANTHROPIC, GEMINI)
DOCUMENT = {CHAT: "openai", RESPONSES: "openai", ANTHROPIC: "anthropic", GEMINI: "gemini"}

#: A complete (non-stream) reply body of each format; a Gemini stream event is one too.
REPLY = {CHAT: "CreateChatCompletionResponse", RESPONSES: "Response", ANTHROPIC: "Message",
         GEMINI: "GenerateContentResponse"}
#: An error body of each format (Google's error body is not in the protocol buffers the
#: Gemini schema comes from: README.md).
ERROR = {CHAT: "ErrorResponse", RESPONSES: "ErrorResponse", ANTHROPIC: "ErrorResponse"}


@functools.cache
def document(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((HERE / f"{name}.json").read_text())
    if name == "openai":
        apply_real_api(doc["$defs"])
    elif name == "anthropic":
        add_request_too_large(doc["$defs"])
        add_ping(doc["$defs"])
    return doc


def add_request_too_large(defs: dict[str, Any]) -> None:
    """Anthropic's error types include ``request_too_large`` (HTTP 413,
    https://docs.anthropic.com/en/api/errors), which the SDK's ``ErrorObject`` union
    does not list: it is added as one more member shaped like the others."""
    member = copy.deepcopy(defs["InvalidRequestError"])
    member["properties"]["type"] = {"const": "request_too_large", "type": "string"}
    defs["RequestTooLargeError"] = member
    defs["ErrorObject"]["anyOf"].append({"$ref": "#/$defs/RequestTooLargeError"})


#: The keep-alive event of an Anthropic stream, ``{"type": "ping"}``
#: (https://docs.anthropic.com/en/docs/build-with-claude/streaming, "Ping events"), which
#: the SDK reads past without declaring a type for it (src/core/streaming.ts skips
#: ``event: ping``), so ``RawMessageStreamEvent`` lacks it.
PING_EVENT = {"type": "object", "properties": {"type": {"const": "ping", "type": "string"}},
              "required": ["type"]}


def add_ping(defs: dict[str, Any]) -> None:
    defs["PingEvent"] = copy.deepcopy(PING_EVENT)


#: Where OpenAI's API departs from its own document the gateway writes what the API
#: writes. Each entry is (definition, property) made nullable; test_schemas.py holds
#: them to the real transcripts, so one the API no longer needs fails there.
#: ``user`` is null when the request had none; ``usage`` is null until the response is
#: done (``response.created``, ``response.in_progress``).
REAL_API_NULLS = (("ModelResponseProperties", "user"), ("Response", "usage"))


def apply_real_api(defs: dict[str, Any]) -> None:
    """Patch the loaded OpenAI document with ``REAL_API_NULLS`` and with the
    ``response.failed`` error codes the API sends beyond ``ResponseErrorCode``'s enum
    and Codex matches on (``context_length_exceeded``, ``insufficient_quota``,
    ``server_is_overloaded``...: codex-rs/core/src/client.rs in
    https://github.com/openai/codex); the gateway writes them for Codex
    (docs/protocols.md §2.7)."""
    for definition, prop in REAL_API_NULLS:
        schema = defs[definition]
        holder = next(p for p in [schema, *schema.get("allOf", [])]
                      if prop in p.get("properties", {}))
        holder["properties"][prop] = {"anyOf": [holder["properties"][prop],
                                                {"type": "null"}]}
    codes = defs["ResponseErrorCode"]["enum"]
    codes.extend(sorted(CODEX_ERROR_CODES - set(codes)))


@functools.cache
def validator(doc: str, definition: str) -> Any:
    defs = document(doc)["$defs"]
    if definition not in defs:
        raise KeyError(f"{definition} is not in tests/schemas/{doc}.json")
    return jsonschema_rs.Draft202012Validator(
        {"$defs": defs, "$ref": f"#/$defs/{definition}"})


def problems(doc: str, definition: str, instance: Any, where: str) -> list[str]:
    return [f"{where}: {definition}{_path(e.instance_path)}: {e.message}"
            for e in validator(doc, definition).iter_errors(instance)]


def _path(path: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


@functools.cache
def responses_event_types() -> dict[str, str]:
    """Responses stream event ``type`` -> its definition in the document, read from the
    members of ``ResponseStreamEvent`` (validating one member gives errors that name the
    field, where the 50-way union would only say that no member matched)."""
    defs = document("openai")["$defs"]
    out: dict[str, str] = {}
    for member in defs["ResponseStreamEvent"]["anyOf"]:
        name = member["$ref"].rsplit("/", 1)[1]
        for t in defs[name]["properties"]["type"].get("enum", []):
            out[t] = name
    return out


def required_fields(doc: str, definition: str) -> list[str]:
    schema = document(doc)["$defs"][definition]
    return list(schema.get("required", []))


def check_body(fmt: str, body: bytes | dict[str, Any], *, error: bool = False) -> list[str]:
    """Problems of a complete reply (or, with ``error``, an error body) of format ``fmt``."""
    obj = json.loads(body) if isinstance(body, bytes | bytearray) else body
    definition = (ERROR if error else REPLY).get(fmt)
    if definition is None:
        return []
    return problems(DOCUMENT[fmt], definition, obj, "body")


def check_stream(fmt: str, data: bytes,
                 skip: Callable[[str], bool] | None = None) -> list[str]:
    """Problems of every event of an SSE body of format ``fmt`` (but those whose data
    ``skip`` accepts)."""
    if fmt not in VALIDATED:
        return []
    out: list[str] = []
    for i, (event, text) in enumerate(sse_events(data)):
        if text == "[DONE]" or (skip is not None and skip(text)):
            continue
        out += check_event(fmt, event, json.loads(text), f"event {i}")
    return out


def check_event(fmt: str, event: str | None, obj: dict[str, Any], where: str) -> list[str]:
    if fmt == CHAT:
        name = "ErrorResponse" if "error" in obj else "CreateChatCompletionStreamResponse"
        return problems("openai", name, obj, where)
    if fmt == GEMINI:
        name = "GenerateContentResponse"
        if "error" in obj:
            return []  # the error body has no schema here (ERROR)
        return problems("gemini", name, obj, where)
    if fmt == RESPONSES:
        kind = obj.get("type")
        name = responses_event_types().get(str(kind))
        if name is None or event != kind:
            return [f"{where}: event {event!r} with type {kind!r} is not a Responses event"]
        return problems("openai", name, obj, where)
    return anthropic_event(event, obj, where)


@functools.cache
def members_by_type(doc: str, union: str, prop: str | None = None) -> dict[str, str]:
    """``type`` value -> member definition of a union (a definition, or its property
    ``prop``) whose members each fix their ``type`` (validating the member gives errors
    that name the field, where the union would only say that no member matched)."""
    defs = document(doc)["$defs"]
    schema = defs[union] if prop is None else defs[union]["properties"][prop]
    members = schema["anyOf"]
    out: dict[str, str] = {}
    for member in members:
        name = member["$ref"].rsplit("/", 1)[1]
        out[defs[name]["properties"]["type"]["const"]] = name
    return out


def anthropic_event(event: str | None, obj: dict[str, Any], where: str) -> list[str]:
    """An event of an Anthropic stream against its member of the SDK's
    ``RawMessageStreamEvent``; ``ping`` against ``PingEvent`` (README.md) and ``error``
    against ``ErrorResponse``, the body the SDK reads from it (src/core/streaming.ts
    raises it as the APIError). The ``event:`` name is the data's ``type``."""
    kind = obj.get("type")
    if event != kind:
        return [f"{where}: event {event!r} carries type {kind!r}"]
    names = {**members_by_type("anthropic", "RawMessageStreamEvent"),
             "ping": "PingEvent", "error": "ErrorResponse"}
    name = names.get(str(kind))
    if name is None:
        return [f"{where}: {kind!r} is not an Anthropic stream event"]
    out = problems("anthropic", name, obj, where)
    if out and kind == "content_block_start":
        # The block's own definition says which field is wrong.
        block = obj.get("content_block")
        blocks = members_by_type("anthropic", "RawContentBlockStartEvent", "content_block")
        member = blocks.get(str(block.get("type"))) if isinstance(block, dict) else None
        if member is not None:
            out += problems("anthropic", member, block, where + ".content_block")
    return out
