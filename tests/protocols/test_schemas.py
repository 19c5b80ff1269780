"""What the encoders write holds to the providers' published schemas (tests/schemas/).

* Every golden stream the gateway synthesises validates, event by event (Gemini's against
  the JSON mapping of its protocol buffers); a golden that is a provider's own bytes
  passed through unchanged is exempt (it is the provider's).
* Each encoder's reply, stream and error for a set of IR replies (text, tool calls,
  thinking, a cap reached, a failure) validates, whichever format the reply came from.
* Every field the schemas mark required is one the validator insists on: taking it out
  of an encoder's output fails, so an encoder that drops one fails here.
* Every field a real provider's transcript carries is present in what the gateway
  writes in that format (the transcripts cover what no document describes, such as
  Anthropic's stream envelopes).
* The exceptions tests/schemas/__init__.py makes for OpenAI's real API are still what
  the real transcripts show.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from protocols import ir
from protocols.context import Context
from protocols.ir import (
    ApiError,
    BlockKind,
    BlockStart,
    BlockStop,
    ErrorKind,
    MessageEnd,
    MessageStart,
    Ping,
    Reasoning,
    ReasoningDelta,
    Response,
    SignatureDelta,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    Usage,
    UsageUpdate,
)
from protocols.registry import format_module
from tests.integration.providers import sse_events
from tests.protocols.conftest import CREATED, GOLDEN, REQUEST_ID, transcript
from tests.protocols.test_translate_responses_gemini import REQUESTS
from tests.protocols.test_translate_responses_gemini import TRANSCRIPTS as TRANSCRIPT_FORMATS
from tests.schemas import (
    ANTHROPIC,
    CHAT,
    DOCUMENT,
    GEMINI,
    REAL_API_NULLS,
    REPLY,
    RESPONSES,
    VALIDATED,
    check_body,
    check_stream,
    document,
    vendor,
)

FORMATS = (CHAT, RESPONSES, ANTHROPIC, GEMINI)
assert set(VALIDATED) == set(FORMATS)

# -- goldens --------------------------------------------------------------------------------

GOLDENS = sorted(p.name for p in GOLDEN.glob("*.sse"))


def split_golden(name: str) -> tuple[str, str]:
    client, transcript_name = name.split("__", 1)
    return client, transcript_name


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_validates(name: str) -> None:
    client, transcript_name = split_golden(name)
    data = (GOLDEN / name).read_bytes()
    if client == TRANSCRIPT_FORMATS[transcript_name]:
        # Same format: observe mode relays the provider's bytes; nothing here is the
        # gateway's to validate, as long as it really is the provider's stream.
        assert data == transcript(transcript_name)
        return
    assert check_stream(client, data) == []


def test_every_client_format_with_a_document_has_goldens() -> None:
    formats = {split_golden(n)[0] for n in GOLDENS}
    assert set(VALIDATED) <= formats


# -- encoders over IR replies -----------------------------------------------------------------

USAGE = Usage(input_tokens=120, output_tokens=40, cached_tokens=20, cache_write_tokens=10,
              reasoning_tokens=8)
THINKING = Reasoning(text="Weighing the options.", signature="sig-abc",
                     provider=ir.FORMAT_ANTHROPIC_MESSAGES)
CALL = ToolCall(id="call_abc", name="get_weather", arguments='{"location":"Paris"}')
REPLIES: dict[str, Response] = {
    "text": Response("up-1", "up-model", (Text("Hello there."),), StopReason.END_TURN,
                     usage=USAGE),
    "tools": Response("up-2", "up-model", (Text("Calling."), CALL,
                                           ToolCall(id="call_def", name="get_time",
                                                    arguments="")),
                      StopReason.TOOL_USE, usage=USAGE),
    "thinking": Response("up-3", "up-model", (THINKING, Text("Done.")), StopReason.END_TURN,
                         usage=USAGE),
    "max_tokens": Response("up-4", "up-model", (Text("Cut"),), StopReason.MAX_TOKENS),
    "stop_sequence": Response("up-5", "up-model", (Text("Until"),), StopReason.STOP_SEQUENCE,
                              stop_sequence="END"),
    "content_filter": Response("up-6", "up-model", (), StopReason.CONTENT_FILTER),
    "failed": Response("up-7", "up-model", (), StopReason.ERROR),
    "empty": Response("up-8", "", (), StopReason.END_TURN),
}


def context(client: str, upstream: str = ir.FORMAT_GEMINI) -> Context:
    """A client request of ``client`` decoded into a fresh context (a translated reply:
    the upstream is another format)."""
    ctx = Context(request_id=REQUEST_ID, created=CREATED, client_format=client,
                  upstream_format=upstream)
    body = copy.deepcopy(REQUESTS[client])
    ctx.client_request = format_module(client).decode_request(body, ctx)
    return ctx


def stream_events(resp: Response) -> list[ir.StreamEvent]:
    """``resp`` as the stream events a decoder would give for it."""
    events: list[ir.StreamEvent] = [MessageStart(resp.id, resp.model)]
    for i, b in enumerate(resp.content):
        if type(b) is Text:
            events += [BlockStart(i, BlockKind.TEXT), TextDelta(i, b.text), BlockStop(i)]
        elif type(b) is ToolCall:
            events += [BlockStart(i, BlockKind.TOOL_CALL, tool_id=b.id, tool_name=b.name),
                       ToolArgsDelta(i, b.arguments), BlockStop(i)]
        elif type(b) is Reasoning:
            events += [BlockStart(i, BlockKind.REASONING, provider=b.provider),
                       ReasoningDelta(i, b.text),
                       SignatureDelta(i, b.signature or "", provider=b.provider),
                       BlockStop(i)]
    return [*events, Ping(), UsageUpdate(resp.usage),
            MessageEnd(resp.stop_reason, resp.stop_sequence)]


def encode_stream(client: str, events: list[ir.StreamEvent]) -> bytes:
    enc = format_module(client).StreamEncoder(context(client))
    return bytes(enc.encode(events)) + bytes(enc.close())


@pytest.mark.parametrize("client", VALIDATED)
@pytest.mark.parametrize("case", REPLIES)
def test_reply_validates(client: str, case: str) -> None:
    out = format_module(client).encode_response(REPLIES[case], context(client))
    assert check_body(client, out) == []


@pytest.mark.parametrize("client", VALIDATED)
@pytest.mark.parametrize("case", REPLIES)
def test_stream_validates(client: str, case: str) -> None:
    assert check_stream(client, encode_stream(client, stream_events(REPLIES[case]))) == []


@pytest.mark.parametrize("client", VALIDATED)
@pytest.mark.parametrize("kind", list(ErrorKind))
def test_errors_validate(client: str, kind: ErrorKind) -> None:
    """The HTTP error body, and the same failure mid-stream."""
    mod = format_module(client)
    _, body = mod.encode_error(ApiError(kind, "it broke", 500))
    assert check_body(client, body, error=True) == []
    events = [MessageStart("up", "up-model"), BlockStart(0, BlockKind.TEXT),
              TextDelta(0, "Hal"), StreamError(kind, "it broke")]
    assert check_stream(client, encode_stream(client, events)) == []


@pytest.mark.parametrize("client", VALIDATED)
def test_cut_stream_and_observe_events_validate(client: str) -> None:
    """A stream the upstream cut (the encoder's own error at close), the error event
    observe mode appends after a provider failed mid-stream, and the keep-alive."""
    mod = format_module(client)
    cut = encode_stream(client, [MessageStart("up", "up-model"),
                                 BlockStart(0, BlockKind.TEXT), TextDelta(0, "Hal")])
    assert check_stream(client, cut) == []
    for kind in ("timeout", "stream_cut"):
        assert check_stream(client, mod.stream_error_event("upstream failed", kind, 7)) == []
    enc = mod.StreamEncoder(context(client))
    started = enc.encode([MessageStart("up", "up-model")])
    beat = enc.keepalive()
    assert check_stream(client, bytes(started) + bytes(beat or b"")) == []


def test_responses_reply_does_not_depend_on_the_upstream() -> None:
    """A Responses reply has the same fields from every upstream: a Responses upstream's
    own body that leaves fields out (a round trip keeps its echo) included."""
    keys = []
    for upstream in (ir.FORMAT_GEMINI, ir.FORMAT_ANTHROPIC_MESSAGES, ir.FORMAT_OPENAI_CHAT):
        ctx = context(RESPONSES, upstream)
        keys.append(list(format_module(RESPONSES).encode_response(REPLIES["text"], ctx)))
    ctx = context(RESPONSES, RESPONSES)
    # Its items are whole (an item passes through as the upstream wrote it); the
    # response object around them leaves out every field it can.
    sparse = {"id": "resp_up", "object": "response", "status": "completed", "model": "m",
              "output": [{"type": "message", "id": "msg_1", "role": "assistant",
                          "status": "completed",
                          "content": [{"type": "output_text", "text": "Hi", "annotations": [],
                                       "logprobs": []}]}],
              "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4}}
    resp = format_module(RESPONSES).decode_response(sparse, ctx)
    round_trip = format_module(RESPONSES).encode_response(resp, ctx)
    assert check_body(RESPONSES, round_trip) == []
    assert all(k == keys[0] for k in keys)
    assert set(keys[0]) <= set(round_trip)


# -- required fields: dropping one fails ------------------------------------------------------

def required_of(doc: str, definition: str) -> set[str]:
    """The required properties of a definition, through its ``allOf`` parts."""
    defs = document(doc)["$defs"]
    schema = defs[definition]
    out = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        ref = part.get("$ref")
        out |= required_of(doc, ref.rsplit("/", 1)[1]) if ref else set(part.get("required", []))
    return out


#: Nested objects whose required fields are checked too: (path in the reply, definition).
NESTED = {
    CHAT: [(("choices", 0), None), (("usage",), "CompletionUsage")],
    RESPONSES: [(("usage",), "ResponseUsage"), (("output", 0), "OutputMessage")],
    ANTHROPIC: [(("usage",), "Usage"), (("content", 0), "TextBlock")],
}


def at(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


@pytest.mark.parametrize("client", list(NESTED))
def test_dropping_any_required_field_fails(client: str) -> None:
    """(Gemini's protocol buffers make every field optional: proto3 has no required.)"""
    out = format_module(client).encode_response(REPLIES["text"], context(client))
    targets = [((), REPLY[client])] + NESTED[client]
    checked = 0
    for path, definition in targets:
        node = at(out, path)
        names = (required_of(DOCUMENT[client], definition) if definition
                 else set(document("openai")["$defs"]["CreateChatCompletionResponse"]
                          ["properties"]["choices"]["items"]["required"]))
        assert names, (path, definition)
        for name in sorted(names):
            assert name in node, f"the encoder does not write required {path}.{name}"
            broken = copy.deepcopy(out)
            del at(broken, path)[name]
            assert check_body(client, broken) != [], f"{path}.{name} is not enforced"
            checked += 1
    assert checked >= 10


def test_gemini_output_has_no_field_its_schema_lacks() -> None:
    """The Gemini schema allows no unknown field and only the enum's finish reasons."""
    good = format_module(GEMINI).encode_response(REPLIES["tools"], context(GEMINI))
    assert check_body(GEMINI, good) == []
    for bad in ({**good, "finish_reason": "STOP"},
                {**good, "candidates": [{**good["candidates"][0], "finishReason": "DONE"}]},
                {**good, "usageMetadata": {"promptTokenCount": "12"}}):
        assert check_body(GEMINI, bad) != []


def test_the_fields_a_strict_anthropic_client_needs_are_required() -> None:
    """The fields clients generated from Anthropic's schema reject a Message without."""
    assert {"container", "usage", "stop_sequence", "stop_details"} <= required_of(
        "anthropic", "Message")
    assert {"cache_creation", "service_tier", "server_tool_use",
            "output_tokens_details"} <= required_of("anthropic", "Usage")
    assert "citations" in required_of("anthropic", "TextBlock")
    assert "caller" in required_of("anthropic", "ToolUseBlock")
    assert {"container", "stop_details"} <= required_of("anthropic", "RawMessageDeltaEvent.Delta")
    assert "request_id" in required_of("anthropic", "ErrorResponse")


def test_dropping_a_required_field_of_an_anthropic_event_fails() -> None:
    """The stream's envelopes are validated too: every required field of each event the
    encoder writes (the nested ones included) is enforced."""
    data = encode_stream(ANTHROPIC, stream_events(REPLIES["tools"]))
    data += encode_stream(ANTHROPIC, [MessageStart("up", "m"), StreamError(ErrorKind.SERVER, "x")])
    checked = set()
    for event, text in sse_events(data):
        obj = json.loads(text)
        for path in required_paths(obj, ANTHROPIC_EVENTS.get(obj["type"], "ErrorResponse")):
            broken = copy.deepcopy(obj)
            *head, last = path
            del at(broken, tuple(head))[last]
            frame = f"event: {event}\ndata: {json.dumps(broken)}\n\n".encode()
            assert check_stream(ANTHROPIC, frame) != [], f"{obj['type']} {path}"
            checked.add((obj["type"], path))
    kinds = {k for k, _ in checked}
    assert kinds == {*ANTHROPIC_EVENTS, "error"}, kinds
    assert ("message_delta", ("delta", "stop_details")) in checked
    assert ("content_block_start", ("content_block", "caller")) in checked


#: Anthropic stream event type -> its definition (RawMessageStreamEvent's members and
#: the keep-alive tests/schemas adds).
ANTHROPIC_EVENTS = {"message_start": "RawMessageStartEvent",
                    "content_block_start": "RawContentBlockStartEvent",
                    "content_block_delta": "RawContentBlockDeltaEvent",
                    "content_block_stop": "RawContentBlockStopEvent",
                    "message_delta": "RawMessageDeltaEvent", "message_stop": "RawMessageStopEvent",
                    "ping": "PingEvent"}


def required_paths(obj: Any, definition: str,
                   prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths of the required fields ``obj`` has under ``definition``, following
    references into nested objects (for a union, the member whose ``type`` matches)."""
    defs = document("anthropic")["$defs"]
    schema = defs[definition]
    out: list[tuple[Any, ...]] = []
    for name in schema.get("required", []):
        out.append((*prefix, name))
        value = obj.get(name)
        member = _member(schema["properties"][name], value)
        if isinstance(value, dict) and member is not None:
            out += required_paths(value, member, (*prefix, name))
    return out


def _member(prop: dict[str, Any], value: Any) -> str | None:
    """The definition ``value`` is held to under ``prop``: its reference, or, in a union
    (inline or named), the member whose ``type`` is the value's."""
    defs = document("anthropic")["$defs"]
    refs = [r["$ref"].rsplit("/", 1)[1] for r in [prop, *prop.get("anyOf", [])] if "$ref" in r]
    if len(refs) == 1 and "anyOf" in defs[refs[0]]:
        return _member(defs[refs[0]], value)
    if len(refs) == 1:
        return refs[0]
    kind = value.get("type") if isinstance(value, dict) else None
    match = [r for r in refs if defs[r].get("properties", {}).get("type", {}).get("const") == kind]
    return match[0] if match else None


# -- the real transcripts ---------------------------------------------------------------------

def key_paths(obj: Any, prefix: str = "") -> set[str]:
    """Every key path in ``obj`` (list items as ``[]``)."""
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(prefix + k)
            out |= key_paths(v, prefix + k + ".")
    elif isinstance(obj, list):
        for v in obj:
            out |= key_paths(v, prefix + "[].")
    return out


def event_kind(client: str, obj: dict[str, Any]) -> str:
    if client == CHAT:
        return "usage chunk" if obj.get("choices") == [] else str(obj.get("object"))
    if client == GEMINI:
        return "chunk"
    return str(obj.get("type"))


def paths_by_kind(client: str, streams: list[bytes]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for data in streams:
        for _event, text in sse_events(data):
            if text == "[DONE]":
                continue
            obj = json.loads(text)
            out.setdefault(event_kind(client, obj), set()).update(key_paths(obj))
    return out


#: Fields the real transcripts carry that the gateway leaves out (the last part of the
#: key path), and why. None is one the published schemas require.
NOT_WRITTEN = {
    # ``obfuscation``: random padding OpenAI adds against length side channels
    # (stream_options.include_obfuscation); it carries no content. ``system_fingerprint``:
    # the provider's backend configuration, which a translated reply has no honest value
    # for (the field is optional and deprecated).
    CHAT: {"obfuscation", "system_fingerprint"},
    RESPONSES: {"obfuscation"},
    # The prompt split by modality: no other format reports it, and calling every
    # prompt token TEXT would be wrong for an image prompt (the field is optional).
    GEMINI: {"promptTokensDetails", "modality", "tokenCount"},
}
#: Key paths that echo the client's request rather than the format (the goldens'
#: requests declare no tools; the transcripts' did).
REQUEST_ECHO = ("response.tools.[]",)


def encoder_streams(client: str) -> list[bytes]:
    """What the encoder writes for every IR reply and failure, beside the goldens."""
    out = [encode_stream(client, stream_events(r)) for r in REPLIES.values()]
    out += [encode_stream(client, [MessageStart("up", "m"), StreamError(kind, "x")])
            for kind in ErrorKind]
    return out


@pytest.mark.parametrize("client", FORMATS)
def test_translated_streams_carry_every_field_of_the_real_ones(client: str) -> None:
    real = [transcript(n) for n, f in TRANSCRIPT_FORMATS.items() if f == client]
    ours = [(GOLDEN / g).read_bytes() for g in GOLDENS
            if split_golden(g)[0] == client and TRANSCRIPT_FORMATS[split_golden(g)[1]] != client]
    assert real and ours
    have = paths_by_kind(client, ours + encoder_streams(client))
    skip = NOT_WRITTEN.get(client, set())
    missing = {kind: sorted(p for p in paths - have.get(kind, set())
                            if p.rsplit(".", 1)[-1] not in skip and not p.startswith(REQUEST_ECHO))
               for kind, paths in paths_by_kind(client, real).items()}
    assert {k: v for k, v in missing.items() if v} == {}


def test_the_real_api_exceptions_are_what_the_transcripts_show() -> None:
    """Each field tests/schemas makes nullable for OpenAI is null in a real transcript."""
    seen: set[tuple[str, str]] = set()
    for name, fmt in TRANSCRIPT_FORMATS.items():
        if fmt != RESPONSES:
            continue
        for _event, text in sse_events(transcript(name)):
            resp = json.loads(text).get("response") or {}
            seen |= {(d, p) for d, p in REAL_API_NULLS if p in resp and resp[p] is None}
    assert seen == set(REAL_API_NULLS)


def test_documents_are_the_vendored_ones() -> None:
    """The README names each document's source; the files are where it says."""
    readme = (Path(__file__).resolve().parents[1] / "schemas" / "README.md").read_text()
    for doc in set(DOCUMENT.values()):
        assert f"{doc}.json" in readme
        assert document(doc)["$defs"]


def test_the_real_anthropic_streams_agree_with_the_sdk_types() -> None:
    """The real transcripts predate fields the SDK's types now require (``container``,
    ``caller``, ``citations``, ``output_tokens_details``...: the gateway writes them),
    but every field and event they do carry is what the types say: each event validates
    once no field is required, ``ping`` and ``error`` included."""
    defs = copy.deepcopy(document("anthropic")["$defs"])
    for schema in defs.values():
        schema.pop("required", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("required", None)
    seen = set()
    for name, fmt in TRANSCRIPT_FORMATS.items():
        if fmt != ANTHROPIC:
            continue
        for _event, text in sse_events(transcript(name)):
            obj = json.loads(text)
            definition = {**ANTHROPIC_EVENTS, "error": "ErrorResponse"}[obj["type"]]
            v = jsonschema_rs.Draft202012Validator({"$defs": defs,
                                                    "$ref": f"#/$defs/{definition}"})
            assert [e.message for e in v.iter_errors(obj)] == [], (name, obj)
            # The error event is whole as the API sends it.
            if obj["type"] == "error":
                assert check_stream(ANTHROPIC, f"event: error\ndata: {text}\n\n".encode()) == []
            seen.add(obj["type"])
    assert seen == {*ANTHROPIC_EVENTS, "error"}


def test_the_anthropic_adjustments_are_still_needed() -> None:
    """What tests/schemas adds to the SDK's types is still missing from them: the
    ``ping`` event (the real streams send it: above) and the ``request_too_large`` error
    type, which the encoder writes for a body over the limit."""
    vendored = json.loads((Path(__file__).resolve().parents[1] / "schemas" /
                           "anthropic.json").read_text())["$defs"]
    events = {vendored[r["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"]
              for r in vendored["RawMessageStreamEvent"]["anyOf"]}
    assert "ping" not in events and "PingEvent" not in vendored
    errors = {vendored[r["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"]
              for r in vendored["ErrorObject"]["anyOf"]}
    assert "request_too_large" not in errors
    status, body = format_module(ANTHROPIC).encode_error(
        ApiError(ErrorKind.REQUEST_TOO_LARGE, "too big", 413))
    assert status == 413 and json.loads(body)["error"]["type"] == "request_too_large"
    assert check_body(ANTHROPIC, body, error=True) == []


def test_the_anthropic_document_is_what_vendor_reads_from_its_source() -> None:
    """anthropic.json is what vendor.py makes of the SDK declarations kept beside it
    (sources/), so neither is edited alone."""
    extract = vendor.ANTHROPIC_EXTRACT
    made = vendor.anthropic(str(extract))
    assert made == json.loads((extract.parents[1] / "anthropic.json").read_text())


def test_the_typescript_reader() -> None:
    """What vendor.py makes of each form the SDK's declarations use."""
    text = """
export interface A {
  /** a doc comment, with 'quotes' and // slashes */
  id: string;
  note?: string | null;
  kind: 'a' | 'b' | null;
  model: 'x' | (string & {});
  items: Array<B>;
  more: Array<string> | null;
  meta: { [key: string]: unknown };
  counts: { [key: string]: number };
  any: unknown;
  flag?: boolean;
  count: number;
  inner: Ns.C;
  either: B | Ns.C;
}

export type B = 'one';

export namespace Ns {
  export interface C {
    back: MessagesAPI.B;
  }
}
"""
    defs = vendor.ts_schemas(vendor.ts_declarations(text), ("A",))
    assert defs["A"] == {"type": "object", "required": [
        "any", "count", "counts", "either", "id", "inner", "items", "kind", "meta", "model",
        "more"],
        "properties": {
            "id": {"type": "string"}, "note": {"type": ["string", "null"]},
            "kind": {"type": ["string", "null"], "enum": ["a", "b", None]},
            "model": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": "#/$defs/B"}},
            "more": {"anyOf": [{"type": "array", "items": {"type": "string"}},
                               {"type": "null"}]},
            "meta": {"type": "object"}, "any": {},
            "counts": {"type": "object", "additionalProperties": {"type": "number"}},
            "flag": {"type": "boolean"}, "count": {"type": "number"},
            "inner": {"$ref": "#/$defs/Ns.C"},
            "either": {"anyOf": [{"$ref": "#/$defs/B"}, {"$ref": "#/$defs/Ns.C"}]}}}
    assert defs["B"] == {"type": "string", "const": "one"}
    assert defs["Ns.C"] == {"type": "object", "properties": {"back": {"$ref": "#/$defs/B"}},
                            "required": ["back"]}
    assert set(defs) == {"A", "B", "Ns.C"}
