"""Fuzz target for the JSON Schema → Gemini ``Schema`` converter
(``protocols.gemini.schema``), the one place a small request can ask for exponential
work (``$ref`` inlining).

Invariants:

1. Whatever the JSON, ``to_gemini_schema`` returns a dict or raises
   ``UnsupportedFeature`` (a 400 naming the schema); nothing else escapes.
2. Work is bounded: the nodes it makes stay within ``MAX_SCHEMA_NODES`` (plus the one
   that tripped the bound) and the bytes it copies within ``MAX_SCHEMA_OUTPUT_BYTES``,
   so its output serialises to a bounded size.
3. The output uses only keys of the Gemini ``Schema`` subset, and every ``required``
   name is a property.

Input layout: byte 0 picks the mode, the rest is the payload (JSON):

* mode 0: the payload is the schema itself;
* mode 1: the payload is a list of definitions; the schema refers to the last one, and
  definition *i* may refer to any earlier one (a ``$ref`` diamond when it refers to the
  previous one twice).

``python -m fuzz.run gemini_schema`` runs it long; every failing input belongs in
``fuzz/corpus/gemini_schema/``, which the normal test run replays.
"""

from __future__ import annotations

from typing import Any

from protocols import jsonio
from protocols.errors import UnsupportedFeature
from protocols.gemini import schema as gs

#: Keys the converter may write (the Gemini ``Schema`` subset, docs/protocols.md §4).
ALLOWED = gs._SCHEMA_KEYS


def _check_output(out: Any) -> None:
    if type(out) is not dict:
        return
    assert set(out) <= ALLOWED, set(out) - ALLOWED
    props = out.get("properties")
    if "required" in out:
        assert type(props) is dict and all(r in props for r in out["required"])
    for v in (props or {}).values():
        _check_output(v)
    if "items" in out:
        _check_output(out["items"])
    for v in out.get("anyOf") or ():
        _check_output(v)


def _schema_of(mode: int, payload: bytes) -> Any:
    try:
        value = jsonio.loads(payload)
    except jsonio.JSONDecodeError:
        return None
    if mode % 2 == 0 or type(value) is not list or not value:
        return value
    defs = {f"d{i}": d for i, d in enumerate(value)}
    return {"$defs": defs, "$ref": f"#/$defs/d{len(value) - 1}"}


def check(data: bytes) -> None:
    if not data:
        return
    schema = _schema_of(data[0], data[1:])
    budget = gs.SchemaBudget("tool 'fuzz'")
    try:
        out = gs.to_gemini_schema(schema, budget)
    except UnsupportedFeature as e:
        assert "tool 'fuzz'" in e.message and e.status_hint == 400
        out = None
    assert budget.nodes <= gs.MAX_SCHEMA_NODES + 1
    assert budget.output_bytes <= gs.MAX_SCHEMA_OUTPUT_BYTES + len(data)
    if out is not None:
        assert type(out) is dict
        _check_output(out)


def strategy() -> Any:
    """Schema-shaped inputs for ``fuzz.run``: a mode byte, then JSON built from JSON
    Schema vocabulary with ``$ref``s into ``$defs``."""
    from hypothesis import strategies as st

    refs = st.integers(0, 6).map(lambda i: {"$ref": f"#/$defs/d{i}"})
    leaf = st.one_of(refs, st.fixed_dictionaries({"type": st.sampled_from(
        ["string", "integer", "number", "boolean", "null", ["string", "null"]])}),
        st.fixed_dictionaries({"enum": st.lists(st.text(max_size=8), max_size=4)}),
        st.fixed_dictionaries({"const": st.text(max_size=8)}))
    node = st.recursive(leaf, lambda kids: st.one_of(
        st.fixed_dictionaries({"type": st.just("object"),
                               "properties": st.dictionaries(st.text(max_size=6), kids,
                                                             max_size=4)},
                              optional={"required": st.lists(st.text(max_size=6), max_size=3)}),
        st.fixed_dictionaries({"type": st.just("array"), "items": kids}),
        st.fixed_dictionaries({"anyOf": st.lists(kids, max_size=3)}),
        st.fixed_dictionaries({"oneOf": st.lists(kids, max_size=3)})), max_leaves=12)
    body = st.one_of(node, st.lists(node, min_size=1, max_size=7))
    return st.tuples(st.integers(0, 1), body).map(lambda t: bytes([t[0]]) + jsonio.dumps(t[1]))
