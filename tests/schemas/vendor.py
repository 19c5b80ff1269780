"""Rebuild the vendored schema files in this folder from the providers' published documents.

Not run by the tests: it is how openai.json and anthropic.json were made, kept so that a
newer document can be vendored the same way (README.md beside this file names the
sources, commits and dates).

    python tests/schemas/vendor.py openai OPENAPI_JSON
    python tests/schemas/vendor.py anthropic MESSAGES_PAGE_MD

Only the component schemas that responses and stream events reach are kept, and only their
validating keywords: descriptions, titles and examples are dropped, which takes the
OpenAI extract from 243 kB to a quarter of that. OpenAPI 3.0's ``nullable: true`` (still
found in places of OpenAI's 3.1 document) becomes a JSON Schema type list with "null".
"""

from __future__ import annotations

import json
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


if __name__ == "__main__":
    which, src = sys.argv[1], sys.argv[2]
    schema = openai(src) if which == "openai" else anthropic(src)
    (HERE / f"{which}.json").write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
