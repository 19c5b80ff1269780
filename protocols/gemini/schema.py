"""JSON Schema ⇄ Gemini ``Schema`` (``FunctionDeclaration.parameters``,
``responseSchema``), docs/protocols.md §4."""

from __future__ import annotations

from typing import Any

from .. import jsonio
from ..errors import UnsupportedFeature

# The OpenAPI subset the ``parameters`` field accepts (Gemini ``Schema``). Anything else
# (``additionalProperties``, ``$schema``, ``$ref``, ``const``, ``exclusiveMinimum``…) is
# rejected with 400 "Unknown name", so it is dropped or rewritten (§4 "tools").
_SCHEMA_KEYS = frozenset(
    {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
     "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
     "pattern", "anyOf", "propertyOrdering", "items", "minimum", "maximum"})
_SCHEMA_FORMATS = {"string": {"enum", "date-time"}, "integer": {"int32", "int64"},
                   "number": {"float", "double"}}
_MAX_SCHEMA_DEPTH = 32

# ``$ref`` inlining can multiply a small schema: a definition that refers to the previous
# one twice, 30 deep, is a 2^30-node tree, and a 314-byte request once took 1.4 GB and
# froze the event loop. A conversion is therefore bounded by the schema objects it
# makes and the bytes of values it copies, and fails with a 400 naming the tool.
# The largest tool schema in the client captures the tests replay (Claude Code, Codex,
# the SDKs) is 2.1 KB with a few dozen objects, so the bounds sit orders of magnitude
# above real schemas while capping the work at a few milliseconds and a few MB.
#: Schema objects one converted schema may have (nodes, each a dict).
MAX_SCHEMA_NODES = 10_000
#: Bytes of copied values (descriptions, enums, patterns, property names…) one converted
#: schema may hold, counted as UTF-8 (JSON for non-strings): 1 MiB.
MAX_SCHEMA_OUTPUT_BYTES = 1024 * 1024


class SchemaBudget:
    """What one conversion may still make: ``nodes`` and ``output_bytes`` count what it
    made so far (read by tests and the fuzz harness), ``what`` names the schema in the
    error (``tool 'search'``)."""

    __slots__ = ("what", "param", "nodes", "output_bytes")

    def __init__(self, what: str = "schema", param: str = "tools") -> None:
        self.what = what
        self.param = param
        self.nodes = 0
        self.output_bytes = 0

    def node(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_SCHEMA_NODES:
            raise UnsupportedFeature(self.param, f"the schema of {self.what} expands to more "
                                     f"than {MAX_SCHEMA_NODES} schema objects (recursive or "
                                     f"repeated $ref); Gemini needs it inlined")

    def copy(self, value: Any) -> Any:
        """``value``, counted against ``MAX_SCHEMA_OUTPUT_BYTES``."""
        if type(value) is str:
            n = len(value.encode("utf-8", "surrogatepass"))
        else:
            try:
                n = len(jsonio.dumps(value))
            except (TypeError, ValueError):
                n = len(repr(value))
        self.output_bytes += n
        if self.output_bytes > MAX_SCHEMA_OUTPUT_BYTES:
            raise UnsupportedFeature(self.param, f"the schema of {self.what} expands to more "
                                     f"than {MAX_SCHEMA_OUTPUT_BYTES} bytes (recursive or "
                                     f"repeated $ref); Gemini needs it inlined")
        return value


# ---------------------------------------------------------------------------------------
# JSON Schema ⇄ Gemini Schema
# ---------------------------------------------------------------------------------------


def to_gemini_schema(schema: Any, budget: SchemaBudget | None = None) -> dict[str, Any]:
    """A JSON Schema cut down to what ``FunctionDeclaration.parameters`` accepts.

    ``$ref`` into ``$defs``/``definitions`` is inlined (to a bounded depth), ``type``
    lists with ``"null"`` become ``nullable``, ``const`` becomes a one-value ``enum``,
    ``oneOf`` becomes ``anyOf``, unsupported ``format`` values and every keyword outside
    the Gemini ``Schema`` fields are dropped, as are empty ``properties`` (Gemini rejects
    an object with no properties) and ``required`` names that are not properties.

    ``UnsupportedFeature`` (400) when the result would pass ``MAX_SCHEMA_NODES`` or
    ``MAX_SCHEMA_OUTPUT_BYTES`` (``budget`` names the schema and records the work).
    """
    if type(schema) is not dict:
        return {}
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if type(schema.get(key)) is dict:
            defs.update(schema[key])
    return _schema(schema, defs, 0, budget if budget is not None else SchemaBudget())


def _schema(s: Any, defs: dict[str, Any], depth: int, budget: SchemaBudget) -> dict[str, Any]:
    if type(s) is not dict or depth > _MAX_SCHEMA_DEPTH:
        return {}
    budget.node()
    ref = s.get("$ref")
    if type(ref) is str:
        name = ref.rsplit("/", 1)[-1]
        target = defs.get(name)
        merged = {**(target if type(target) is dict else {}),
                  **{k: v for k, v in s.items() if k != "$ref"}}
        return _schema(merged, defs, depth + 1, budget)
    out: dict[str, Any] = {}
    t = s.get("type")
    if type(t) is list:
        kinds = [k for k in t if k != "null"]
        if len(kinds) != len(t):
            out["nullable"] = True
        if len(kinds) == 1:
            t = kinds[0]
        elif kinds:
            out["anyOf"] = [{"type": k} for k in kinds if type(k) is str]
            t = None
        else:
            t = None
    if type(t) is str:
        out["type"] = t
    if "const" in s and type(s["const"]) is str:
        out["enum"] = [s["const"]]
    for k, v in s.items():
        if k not in _SCHEMA_KEYS and k != "oneOf":
            continue
        if k == "type":
            continue
        if k == "properties":
            if type(v) is dict and v:
                out["properties"] = {budget.copy(pk): _schema(pv, defs, depth + 1, budget)
                                     for pk, pv in v.items()}
        elif k == "items":
            out["items"] = _schema(v, defs, depth + 1, budget)
        elif k in ("anyOf", "oneOf"):
            if type(v) is list:
                out["anyOf"] = [_schema(x, defs, depth + 1, budget) for x in v]
        elif k == "enum":
            if type(v) is list and v and all(type(x) is str for x in v):
                out["enum"] = budget.copy(v)
        elif k == "format":
            kind = out.get("type", "")
            if type(kind) is str and type(v) is str and v in _SCHEMA_FORMATS.get(kind.lower(), ()):
                out["format"] = v
        elif k == "required":
            props = s.get("properties")
            if type(v) is list and type(props) is dict:
                req = [x for x in v if type(x) is str and x in props]
                if req:
                    out["required"] = budget.copy(req)
        else:
            out[k] = budget.copy(v)
    return out


def _from_gemini_schema(s: Any, depth: int = 0) -> Any:
    """A Gemini ``Schema`` as JSON Schema for other formats: lower-case ``type`` names
    (``OBJECT`` → ``object``) and ``nullable`` folded into the type."""
    if type(s) is not dict or depth > _MAX_SCHEMA_DEPTH:
        return s
    out: dict[str, Any] = {}
    for k, v in s.items():
        if k == "type" and type(v) is str:
            out["type"] = v.lower()
        elif k == "properties" and type(v) is dict:
            out[k] = {pk: _from_gemini_schema(pv, depth + 1) for pk, pv in v.items()}
        elif k == "items":
            out[k] = _from_gemini_schema(v, depth + 1)
        elif k == "anyOf" and type(v) is list:
            out[k] = [_from_gemini_schema(x, depth + 1) for x in v]
        elif k == "nullable":
            continue
        else:
            out[k] = v
    if s.get("nullable") is True and type(out.get("type")) is str:
        out["type"] = [out["type"], "null"]
    return out
