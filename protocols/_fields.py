"""Small helpers the four format modules share (private to ``protocols``).

* ``Fields``: the validators of a client's request body (string, object, array, number,
  integer and boolean fields). Each format answers in its provider's own wording, so a
  ``Fields`` is built from message templates, one per provider (``OPENAI_FIELDS``,
  ``ANTHROPIC_FIELDS``, ``GEMINI_FIELDS``); every error is a ``ClientProtocolError``
  whose ``param`` names the field.
* Extras and context helpers: ``other_fields``, ``extras_entry``, ``public``,
  ``client_name``, ``foreign``, ``translated``, ``sha256_hex``.
* Custom (freeform) tools: ``custom_tool_names``, ``unwrap_custom_input``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from . import ir, jsonio
from .errors import ClientProtocolError

__all__ = [
    "ANTHROPIC_FIELDS",
    "GEMINI_FIELDS",
    "OPENAI_FIELDS",
    "Fields",
    "client_name",
    "custom_tool_names",
    "extras_entry",
    "foreign",
    "other_fields",
    "public",
    "sha256_hex",
    "translated",
    "unwrap_custom_input",
]


class Fields:
    """Validators raising ``ClientProtocolError`` in one format's wording.

    ``invalid`` formats ``{param}`` and ``{what}`` (what is wrong, one of the other
    templates); ``missing`` formats ``{param}``; ``number`` formats ``{lo}`` and ``{hi}``
    and ``integer`` formats ``{lo}``. A validator returns the value, or ``None`` when the
    field is absent (or ``null``) and not required. ``param`` defaults to ``key``.
    """

    __slots__ = ("_invalid", "_missing", "_string", "_object", "_array", "_boolean",
                 "_number", "_integer")

    def __init__(self, *, invalid: str, missing: str, string: str, object: str, array: str,
                 boolean: str, number: str, integer: str) -> None:
        self._invalid = invalid
        self._missing = missing
        self._string = string
        self._object = object
        self._array = array
        self._boolean = boolean
        self._number = number
        self._integer = integer

    def bad(self, param: str, what: str) -> ClientProtocolError:
        """The error for field ``param``, which is ``what`` (in the format's wording)."""
        return ClientProtocolError(self._invalid.format(param=param, what=what), param=param)

    def missing(self, param: str) -> ClientProtocolError:
        return ClientProtocolError(self._missing.format(param=param), param=param)

    def string(self, obj: dict[str, Any], key: str, param: str, *,
               required: bool = False) -> str | None:
        v = obj.get(key)
        if v is None:
            if required:
                raise self.missing(param)
            return None
        if type(v) is not str:
            raise self.bad(param, self._string)
        return v

    def object(self, v: Any, param: str) -> dict[str, Any]:
        if type(v) is not dict:
            raise self.bad(param, self._object)
        return v

    def array(self, v: Any, param: str) -> list[Any]:
        if type(v) is not list:
            raise self.bad(param, self._array)
        return v

    def boolean(self, obj: dict[str, Any], key: str, param: str | None = None) -> bool | None:
        v = obj.get(key)
        if v is None:
            return None
        if type(v) is not bool:
            raise self.bad(param or key, self._boolean)
        return v

    def number(self, obj: dict[str, Any], key: str, lo: float, hi: float,
               param: str | None = None) -> float | None:
        v = obj.get(key)
        if v is None:
            return None
        if type(v) not in (int, float) or not lo <= v <= hi:
            raise self.bad(param or key, self._number.format(lo=lo, hi=hi))
        number: float = v
        return number

    def integer(self, obj: dict[str, Any], key: str, lo: int = 0, *, required: bool = False,
                param: str | None = None) -> int | None:
        v = obj.get(key)
        param = param or key
        if v is None:
            if required:
                raise self.missing(param)
            return None
        if type(v) is not int or v < lo:
            raise self.bad(param, self._integer.format(lo=lo))
        return v


#: The providers' own wording (their 400 bodies), so a client reads errors as its SDK
#: would get them from the provider. Chat Completions and Responses share OpenAI's, and
#: Gemini says what is wrong in the same words.
_EXPECTED = {
    "string": "expected a string.",
    "object": "expected an object.",
    "array": "expected an array.",
    "boolean": "expected a boolean.",
    "number": "expected a number between {lo:g} and {hi:g}.",
    "integer": "expected an integer >= {lo}.",
}
OPENAI_FIELDS = Fields(invalid="Invalid '{param}': {what}",
                       missing="Missing required parameter: '{param}'.", **_EXPECTED)
GEMINI_FIELDS = Fields(invalid="Invalid value at '{param}': {what}",
                       missing="Missing required field '{param}'.", **_EXPECTED)
ANTHROPIC_FIELDS = Fields(
    invalid="{param}: {what}",
    missing="{param}: Field required",
    string="Input should be a valid string",
    object="Input should be a valid dictionary",
    array="Input should be a valid list",
    boolean="Input should be a valid boolean",
    number="Input should be a number between {lo:g} and {hi:g}",
    integer="Input should be an integer >= {lo}",
)


def other_fields(obj: dict[str, Any], known: frozenset[str] | set[str]) -> dict[str, Any]:
    """The fields of ``obj`` outside ``known`` (kept in extras for a round trip)."""
    if obj.keys() <= known:
        return {}  # the usual case, told by one subset test in C
    return {k: v for k, v in obj.items() if k not in known}


def extras_entry(fmt: str, obj: dict[str, Any], known: frozenset[str] | set[str],
                 hints: dict[str, Any] | None = None) -> ir.Extras:
    """The fields of ``obj`` outside ``known`` as ``fmt``'s extras (``None`` when there
    are none). ``hints`` are round-trip notes for ``fmt``'s own encoder: their keys start
    with ``_`` and are never written to the wire (``public``)."""
    if obj.keys() <= known:
        # The usual case (nothing unknown), told by one subset test in C.
        return {fmt: dict(hints)} if hints else None
    fields = {k: v for k, v in obj.items() if k not in known}
    if hints:
        fields.update(hints)
    return {fmt: fields} if fields else None


def public(fields: dict[str, Any]) -> dict[str, Any]:
    """Wire fields kept in extras, without the private round-trip markers (keys starting
    with ``_``), which are never written to the wire."""
    return {k: v for k, v in fields.items() if not k.startswith("_")}


def client_name(ctx: ir.Context | None, name: str) -> str:
    """The client's name for a tool the upstream request encoder had to rename."""
    if ctx is None or not ctx.tool_names:
        return name
    return ctx.tool_names.get(name, name)


def foreign(ctx: ir.Context | None, fmt: str) -> bool:
    """True when ``ctx`` says the upstream speaks another format than ``fmt``."""
    return ctx is not None and ctx.upstream_format not in ("", fmt)


def translated(ctx: ir.Context | None, fmt: str) -> bool:
    """True when an encoder of ``fmt`` works for a client of another format."""
    return ctx is not None and ctx.client_format not in ("", fmt)


def sha256_hex(text: str) -> str:
    """SHA-256 of ``text`` (lone surrogates kept) in hex: the deterministic part of the
    ids and names the encoders have to make up or shorten."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def custom_tool_names(ctx: ir.Context | None) -> frozenset[str]:
    """Names of the client's custom (freeform) tools: calls to them carry a raw string,
    which formats with only function tools wrap as ``{"input": raw}``
    (``ir.CUSTOM_INPUT_KEY``)."""
    req = ctx.client_request if ctx is not None else None
    if req is None or not req.tools:
        return frozenset()
    return frozenset(t.name for t in req.tools if type(t) is ir.CustomTool)


def unwrap_custom_input(arguments: str) -> str:
    """The raw input of a custom-tool call from the arguments of the function call that
    stood for it (``{"input": raw}``); ``arguments`` itself when they are not that shape."""
    try:
        obj: Any = jsonio.loads(arguments)
    except jsonio.JSONDecodeError:
        return arguments
    raw = obj.get(ir.CUSTOM_INPUT_KEY) if type(obj) is dict else None
    return raw if type(raw) is str else arguments
