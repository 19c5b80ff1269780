"""Rebuild the vendored schema files in this folder from the providers' published documents.

Not run by the tests: it is how openai.json and anthropic.json were made, kept so that a
newer document can be vendored the same way (README.md beside this file names the
sources, commits and dates).

    python tests/schemas/vendor.py openai OPENAPI_JSON
    python tests/schemas/vendor.py anthropic MESSAGES_PAGE_MD
    python tests/schemas/vendor.py gemini GOOGLEAPIS_CHECKOUT/google/ai/generativelanguage/v1beta

Only the component schemas that responses and stream events reach are kept, and only their
validating keywords: descriptions, titles and examples are dropped, which takes the
OpenAI extract from 243 kB to a quarter of that. OpenAPI 3.0's ``nullable: true`` (still
found in places of OpenAI's 3.1 document) becomes a JSON Schema type list with "null".
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PREFIX = "#/components/schemas/"
# Keywords that do not take part in validation (JSON Schema 2020-12 §9, OpenAPI 3.1 §4.8.24).
DROP = {"description", "title", "example", "examples", "deprecated", "externalDocs",
        "x-oaiMeta", "x-oaiTypeLabel", "x-oaiExpandable", "x-stainless-const",
        "x-stainless-naming", "x-stainless-skip", "x-stainless-any", "x-unionTitle",
        "x-unionDisplay", "discriminator", "readOnly", "writeOnly", "xml"}

# The documents' roots: what a response body or a stream event is.
OPENAI_ROOTS = ("CreateChatCompletionResponse", "CreateChatCompletionStreamResponse",
                "ErrorResponse", "Response", "ResponseStreamEvent")
ANTHROPIC_ROOTS = ("ResponseTextBlock", "ResponseThinkingBlock",
                   "ResponseRedactedThinkingBlock", "ResponseToolUseBlock", "Usage")


def clean(node: Any, in_properties: bool = False) -> Any:
    """``node`` with non-validating keywords dropped, refs pointed at ``$defs`` and
    ``nullable`` turned into a type list. Keys of a ``properties`` map are field names,
    never keywords, so they are all kept."""
    if isinstance(node, list):
        return [clean(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if in_properties:
            out[k] = clean(v)
        elif k in DROP or k.startswith("x-"):
            continue
        elif k == "$ref" and isinstance(v, str) and v.startswith(PREFIX):
            out[k] = "#/$defs/" + v[len(PREFIX):]
        else:
            out[k] = clean(v, in_properties=k in ("properties", "patternProperties"))
    if not in_properties and out.pop("nullable", False):
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        elif t is None:
            out = {"anyOf": [out, {"type": "null"}]}
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def closure(schemas: dict[str, Any], roots: tuple[str, ...]) -> dict[str, Any]:
    """The named schemas reachable from ``roots`` through ``$ref``, cleaned."""
    seen: dict[str, Any] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen[name] = recursive_to_ref(clean(schemas[name]), name)
        stack.extend(refs(seen[name]))
    return dict(sorted(seen.items()))


def recursive_to_ref(node: Any, name: str) -> Any:
    """Draft 2019-09's ``$recursiveAnchor``/``$recursiveRef: "#"`` (OpenAI's
    CompoundFilter nests itself so) as the 2020-12 equivalent here: a plain ``$ref`` to
    the definition itself."""
    if isinstance(node, list):
        return [recursive_to_ref(v, name) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: recursive_to_ref(v, name) for k, v in node.items() if k != "$recursiveAnchor"}
    if out.pop("$recursiveRef", None) == "#":
        out["$ref"] = "#/$defs/" + name
    return out


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = []
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                out.append(v[len("#/$defs/"):])
            else:
                out.extend(refs(v))
        return out
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def openai(path: str) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text())
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": closure(doc["components"]["schemas"], OPENAI_ROOTS)}


def anthropic(path: str) -> dict[str, Any]:
    """The Messages page of the API reference carries the OpenAPI operation for
    ``POST /v1/messages`` in a fenced block: its 200 and 4XX answers in the docs site's
    own layout (``schemaArray``: each property wrapped in ``allOf``, the required list
    as ``requiredProperties``) and the referenced ``components.schemas`` as written in
    the OpenAPI document. The two answers become ``Message`` and ``ErrorResponse``."""
    import yaml  # only needed to vendor; PyYAML comes with the test extra's schemathesis

    text = Path(path).read_text()
    block = text.split("````yaml post /v1/messages\n", 1)[1].split("\n````", 1)[0]
    doc = yaml.safe_load(block)
    schemas = dict(doc["components"]["schemas"])
    answers = doc["paths"]["response"]
    schemas["Message"] = unwrap(answers["200"]["application/json"]["schemaArray"][0])
    schemas["ErrorResponse"] = unwrap(answers["4XX"]["application/json"]["schemaArray"][0])
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": closure(schemas, ("Message", "ErrorResponse", *ANTHROPIC_ROOTS))}


def unwrap(page: dict[str, Any]) -> dict[str, Any]:
    props = {}
    for name, wrapped in page["properties"].items():
        [inner] = wrapped["allOf"]
        props[name] = inner
    return {"type": "object", "properties": props, "required": page["requiredProperties"]}


# -- Gemini: the API's protocol buffers, in their JSON mapping ------------------------------

#: Scalar types in the proto3 JSON mapping (https://protobuf.dev/programming-guides/proto3/#json):
#: 64-bit integers are written as strings and read from either.
SCALARS: dict[str, dict[str, Any]] = {
    **{t: {"type": "integer"} for t in ("int32", "uint32", "sint32", "fixed32", "sfixed32")},
    **{t: {"type": ["string", "integer"]} for t in ("int64", "uint64", "sint64", "fixed64",
                                                      "sfixed64")},
    "float": {"type": "number"}, "double": {"type": "number"}, "bool": {"type": "boolean"},
    "string": {"type": "string"}, "bytes": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"}, "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Timestamp": {"type": "string"}, "google.protobuf.Duration": {"type": "string"},
    "google.type.Date": {"type": "object", "additionalProperties": False, "properties": {
        "year": {"type": "integer"}, "month": {"type": "integer"}, "day": {"type": "integer"}}},
    "google.type.LatLng": {"type": "object", "additionalProperties": False, "properties": {
        "latitude": {"type": "number"}, "longitude": {"type": "number"}}},
    "google.type.Interval": {"type": "object", "additionalProperties": False, "properties": {
        "startTime": {"type": "string"}, "endTime": {"type": "string"}}},
}
GEMINI_ROOTS = ("GenerateContentResponse",)


def proto_tokens(text: str) -> list[str]:
    text = re.sub(r"//[^\n]*|/\*.*?\*/", " ", text, flags=re.S)
    return re.findall(r'"(?:[^"\\]|\\.)*"|[A-Za-z_][\w.]*|-?\d+|[{}\[\]<>=;,()]', text)


def proto_definitions(folder: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Every message and enum of the folder's .proto files: ``{qualified name: fields or
    enum values}`` (messages as ``[(label, type, name)]``), names without the package."""
    defs: dict[str, Any] = {}
    for path in sorted(Path(folder).glob("*.proto")):
        toks = proto_tokens(path.read_text())
        i = 0
        while i < len(toks):
            if toks[i] in ("message", "enum"):
                i = _proto_block(toks, i, "", defs)
            else:
                i += 1
    enums = {k: v for k, v in defs.items() if v and isinstance(v[0], str)}
    return {k: v for k, v in defs.items() if k not in enums}, enums


def _skip_statement(toks: list[str], i: int) -> int:
    depth = 0
    while True:
        t = toks[i]
        depth += t == "{"
        depth -= t == "}"
        i += 1
        if t == ";" and depth == 0 or t == "}" and depth == 0:
            return i


def _proto_block(toks: list[str], i: int, scope: str, defs: dict[str, Any]) -> int:
    """Read the message or enum at ``i`` (and those nested in it) into ``defs``; returns
    the index after its closing brace."""
    kind, name = toks[i], toks[i + 1]
    full = f"{scope}.{name}" if scope else name
    assert toks[i + 2] == "{", (full, toks[i + 2])
    i += 3
    items: list[Any] = []
    defs[full] = items
    while toks[i] != "}":
        t = toks[i]
        if t in ("message", "enum"):
            i = _proto_block(toks, i, full, defs)
        elif t in ("option", "reserved", "extensions"):
            i = _skip_statement(toks, i)
        elif t == "oneof":  # oneof NAME { fields }: its fields belong to the message
            i += 3
            while toks[i] != "}":
                i = _skip_statement(toks, i) if toks[i] == "option" else _field(toks, i, items)
            i += 1
        elif kind == "enum":
            items.append(t)
            i = _skip_statement(toks, i)
        else:
            i = _field(toks, i, items)
    return i + 1


def _field(toks: list[str], i: int, items: list[Any]) -> int:
    """``[repeated|optional] TYPE NAME = N [options];`` or ``map<K, V> NAME = N;``."""
    if toks[i] == "map":
        items.append(("map", toks[i + 4], toks[i + 6]))
    else:
        label = toks[i] if toks[i] in ("repeated", "optional") else ""
        j = i + (1 if label else 0)
        items.append((label, toks[j], toks[j + 1]))
    return _skip_statement(toks, i)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def gemini(folder: str) -> dict[str, Any]:
    """JSON Schemas for the messages a ``GenerateContentResponse`` reaches, from the API's
    own protocol buffers as Google publishes them (the discovery document is generated
    from them). Field names are the JSON names (lowerCamelCase), enums their value
    names; every field is optional (proto3) and no other field is allowed."""
    messages, enums = proto_definitions(folder)
    out: dict[str, Any] = {}
    stack = list(GEMINI_ROOTS)
    while stack:
        name = stack.pop()
        if name in out:
            continue
        props: dict[str, Any] = {}
        for label, ftype, fname in messages[name]:
            if label == "map":  # (map, value type, name)
                value = _field_schema(name, ftype, messages, enums, stack)
                props[camel(fname)] = {"type": "object", "additionalProperties": value}
                continue
            schema = _field_schema(name, ftype, messages, enums, stack)
            props[camel(fname)] = {"type": "array", "items": schema} if label == "repeated" \
                else schema
        out[name] = {"type": "object", "properties": props, "additionalProperties": False}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": dict(sorted(out.items()))}


def _field_schema(scope: str, ftype: str, messages: dict[str, Any], enums: dict[str, Any],
                  stack: list[str]) -> dict[str, Any]:
    if ftype in SCALARS:
        return dict(SCALARS[ftype])
    ftype = ftype.removeprefix("google.ai.generativelanguage.v1beta.")
    parts = scope.split(".")
    for n in range(len(parts), -1, -1):
        cand = ".".join([*parts[:n], ftype])
        if cand in enums:
            return {"type": "string", "enum": enums[cand]}
        if cand in messages:
            stack.append(cand)
            return {"$ref": "#/$defs/" + cand}
    raise KeyError(f"{ftype} (in {scope})")


if __name__ == "__main__":
    which, src = sys.argv[1], sys.argv[2]
    schema = {"openai": openai, "anthropic": anthropic, "gemini": gemini}[which](src)
    (HERE / f"{which}.json").write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
