"""Rebuild the vendored schema files in this folder from the providers' published documents.

It is how the JSON files were made, kept so that a newer document can be vendored the
same way (README.md beside this file names the sources, commits and dates); the tests
run only its Anthropic reader, on the extract kept in sources/.

    python tests/schemas/vendor.py openai OPENAPI_JSON
    python tests/schemas/vendor.py anthropic SDK_CHECKOUT
    python tests/schemas/vendor.py anthropic tests/schemas/sources/anthropic-sdk-typescript.ts
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


# -- Anthropic: the official TypeScript SDK's declarations -------------------------------

#: Where the SDK declares the types: the Messages resource and the shared error types.
ANTHROPIC_SDK_FILES = ("src/resources/messages/messages.ts", "src/resources/shared.ts")
#: What a reply body, a stream event or an error body is.
ANTHROPIC_ROOTS = ("Message", "RawMessageStreamEvent", "ErrorResponse")
#: The extract of the declarations those reach, kept here so this can be re-run offline.
ANTHROPIC_EXTRACT = HERE / "sources" / "anthropic-sdk-typescript.ts"
#: A declaration at the start of a line, as the SDK's generator writes them.
TS_DECLARATION = re.compile(r"^export (interface|type|namespace) (\w+)", re.M)
#: The next statement: a line that starts unindented, but for a closing brace.
TS_STATEMENT = re.compile(r"^(?!\})\S", re.M)
TS_TOKEN = re.compile(r"/\*.*?\*/|//[^\n]*|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
                      r"|-?\d+(?:\.\d+)?|[A-Za-z_$][\w$]*|\S", re.S)
TS_SCALARS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"}, "number": {"type": "number"},
    "boolean": {"type": "boolean"}, "null": {"type": "null"}, "unknown": {}, "any": {},
    "true": {"type": "boolean", "const": True}, "false": {"type": "boolean", "const": False},
}


def anthropic(source: str) -> dict[str, Any]:
    """JSON Schemas for the Message, the stream events and the error body, from the
    type declarations of Anthropic's TypeScript SDK (https://github.com/anthropics/
    anthropic-sdk-typescript), which its generator writes from the API's OpenAPI
    document: a property without ``?`` is required, ``| null`` makes it nullable.

    ``source`` is a checkout of the SDK (then the extract of what the roots reach is
    written to ``ANTHROPIC_EXTRACT`` too) or that extract."""
    path = Path(source)
    texts = ([(path / f).read_text() for f in ANTHROPIC_SDK_FILES] if path.is_dir()
             else [path.read_text()])
    decls: dict[str, tuple[str, list[str], str]] = {}
    for text in texts:
        decls.update(ts_declarations(text))
    defs = ts_schemas(decls, ANTHROPIC_ROOTS)
    if path.is_dir():
        ANTHROPIC_EXTRACT.parent.mkdir(exist_ok=True)
        body = "\n\n".join(dict.fromkeys(decls[n][2] for n in defs))
        ANTHROPIC_EXTRACT.write_text(
            "// The declarations of https://github.com/anthropics/anthropic-sdk-typescript\n"
            f"// ({', '.join(ANTHROPIC_SDK_FILES)}) that {', '.join(ANTHROPIC_ROOTS)}\n"
            "// reach, comments dropped; tests/schemas/vendor.py reads them (README.md).\n\n"
            + body + "\n")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": defs}


def ts_declarations(text: str) -> dict[str, tuple[str, list[str], str]]:
    """``{name: (scope, tokens, text)}`` for every exported interface and type alias,
    those of a namespace as ``Namespace.Name`` with scope ``Namespace``. A declaration
    runs to the next line that starts a statement (the generator indents the rest)."""
    out: dict[str, tuple[str, list[str], str]] = {}
    for m in TS_DECLARATION.finditer(text):
        nxt = TS_STATEMENT.search(text, m.end())
        region = text[m.start():nxt.start() if nxt else len(text)].rstrip()
        toks = ts_tokens(region)
        shown = re.sub(r"\n\s*\n", "\n", re.sub(r"[ \t]*/\*.*?\*/", "", region, flags=re.S))
        if m.group(1) != "namespace":
            out[m.group(2)] = ("", toks, shown)
            continue
        i = 4  # export namespace NAME {
        while toks[i] != "}":
            assert toks[i] == "export", (m.group(2), toks[i:i + 5])
            j = _ts_skip_declaration(toks, i + 1)
            out[f"{m.group(2)}.{toks[i + 2]}"] = (m.group(2), toks[i:j], shown)
            i = j
    return out


def ts_tokens(text: str) -> list[str]:
    return [t for t in TS_TOKEN.findall(text) if not t.startswith(("/*", "//"))]


def _ts_skip_declaration(toks: list[str], i: int) -> int:
    """The index after the interface (its closing brace) or type alias (its semicolon)
    whose keyword is at ``i``."""
    end = "}" if toks[i] == "interface" else ";"
    depth = 0
    while True:
        t = toks[i]
        i += 1
        if t in "{(<[":
            depth += 1
        elif t in "})>]":
            depth -= 1
        if depth == 0 and t == end:
            return i


class _TsParser:
    """Turns one declaration's tokens into a JSON Schema. Grammar (the subset the
    generator writes): ``interface N [extends A, B] { [readonly] p[?]: T; ... }`` and
    ``type N = T;`` with T a union (``|``) of intersections (``&``) of postfix types
    (``T[]``) over ``string``/``number``/``boolean``/``null``/``unknown``, literals,
    ``Array<T>``, ``Record<K, T>``, object types (with ``[key: string]: T``), ``(T)``
    and references, qualified or not (``MessagesAPI.Container``)."""

    def __init__(self, toks: list[str], resolve: Any) -> None:
        self.toks, self.i, self.resolve = toks, 0, resolve

    def peek(self) -> str:
        return self.toks[self.i] if self.i < len(self.toks) else ""

    def take(self, expect: str | None = None) -> str:
        t = self.toks[self.i]
        if expect is not None and t != expect:
            raise SyntaxError(f"expected {expect!r}, got {t!r} in {' '.join(self.toks[:40])}")
        self.i += 1
        return t

    def declaration(self) -> dict[str, Any]:
        if self.peek() == "export":
            self.take()
        kind = self.take()
        self.take()  # the name
        if kind == "type":
            self.take("=")
            return self.union()
        parents = []
        if self.peek() == "extends":
            self.take()
            parents.append(self.reference())
            while self.peek() == ",":
                self.take()
                parents.append(self.reference())
        own = self.object_type()
        return {"allOf": [*parents, own]} if parents else own

    def object_type(self) -> dict[str, Any]:
        self.take("{")
        props: dict[str, Any] = {}
        required: list[str] = []
        extra: dict[str, Any] | None = None
        while self.peek() != "}":
            if self.peek() == "readonly":
                self.take()
            if self.peek() == "[":  # [key: string]: T
                self.i = self.toks.index("]", self.i) + 1
                self.take(":")
                extra = self.union()
            else:
                name = self.take().strip("'\"")
                optional = self.peek() == "?"
                if optional:
                    self.take()
                self.take(":")
                props[name] = self.union()
                if not optional:
                    required.append(name)
            if self.peek() in (";", ","):
                self.take()
        self.take("}")
        out: dict[str, Any] = {"type": "object"}
        if props:
            out["properties"] = props
        if required:
            out["required"] = sorted(required)
        if extra:  # an index signature of ``unknown`` allows anything: nothing to say
            out["additionalProperties"] = extra
        return out

    def union(self) -> dict[str, Any]:
        if self.peek() == "|":
            self.take()
        members = [self.intersection()]
        while self.peek() == "|":
            self.take()
            members.append(self.intersection())
        return ts_union(members)

    def intersection(self) -> dict[str, Any]:
        parts = [self.postfix()]
        while self.peek() == "&":
            self.take()
            parts.append(self.postfix())
        # ``string & {}`` is the generator's "any string" that keeps the literals
        # offered to editors (the ``Model`` type): an empty object type adds nothing.
        parts = [p for p in parts if p != {"type": "object"}] or parts[:1]
        return parts[0] if len(parts) == 1 else {"allOf": parts}

    def postfix(self) -> dict[str, Any]:
        out = self.primary()
        while self.peek() == "[" and self.toks[self.i + 1] == "]":
            self.i += 2
            out = {"type": "array", "items": out}
        return out

    def primary(self) -> dict[str, Any]:
        t = self.peek()
        if t in TS_SCALARS:
            self.take()
            return dict(TS_SCALARS[t])
        if t[:1] in "'\"":
            self.take()
            return {"type": "string", "const": t[1:-1]}
        if re.fullmatch(r"-?\d+(?:\.\d+)?", t):
            self.take()
            return {"type": "number", "const": json.loads(t)}
        if t == "(":
            self.take()
            out = self.union()
            self.take(")")
            return out
        if t == "{":
            return self.object_type()
        if t in ("Array", "ReadonlyArray"):
            self.take()
            self.take("<")
            items = self.union()
            self.take(">")
            return {"type": "array", "items": items}
        if t == "Record":
            self.take()
            self.take("<")
            self.union()
            self.take(",")
            values = self.union()
            self.take(">")
            return {"type": "object", "additionalProperties": values} if values \
                else {"type": "object"}
        return self.reference()

    def reference(self) -> dict[str, Any]:
        name = self.take()
        while self.peek() == ".":
            self.take()
            name += "." + self.take()
        return {"$ref": "#/$defs/" + self.resolve(name)}


def ts_union(members: list[dict[str, Any]]) -> dict[str, Any]:
    """One schema for a union: string literals (and null) as an enum; a union that
    takes any string absorbs its literals; plain types as a type list; else ``anyOf``."""
    flat: list[dict[str, Any]] = []
    for m in members:
        flat.extend(m["anyOf"] if list(m) == ["anyOf"] else [m])
    if {"type": "string"} in flat:
        flat = [m for m in flat if not (m.get("type") == "string" and "const" in m)]
    nullable = {"type": "null"} in flat
    rest = [m for m in flat if m != {"type": "null"}]
    if len(flat) == 1:
        return flat[0]
    if rest and all(m.get("type") == "string" and "const" in m for m in rest):
        values: list[Any] = [m["const"] for m in rest]
        return {"type": ["string", "null"] if nullable else "string",
                "enum": values + [None] if nullable else values}
    if all(list(m) == ["type"] and isinstance(m["type"], str) for m in flat):
        return {"type": [m["type"] for m in flat]}
    return {"anyOf": flat}


def ts_schemas(decls: dict[str, tuple[str, list[str], str]],
               roots: tuple[str, ...]) -> dict[str, Any]:
    """The JSON Schema of every declaration ``roots`` reach. A name is looked up in its
    declaration's namespace first, then as written, then without its qualifier (an
    import alias such as ``MessagesAPI.``, or the resource's own namespace)."""
    out: dict[str, Any] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in out:
            continue
        scope, toks, _ = decls[name]

        def resolve(ref: str, scope: str = scope, name: str = name) -> str:
            for cand in (f"{scope}.{ref}" if scope else "", ref, ref.split(".", 1)[-1]):
                if cand in decls:
                    stack.append(cand)
                    return cand
            raise KeyError(f"{ref} (in {name})")

        out[name] = _TsParser(toks, resolve).declaration()
    return dict(sorted(out.items()))


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
