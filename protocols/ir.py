# IR-STABLE
"""Provider-neutral intermediate representation (IR) shared by every wire format.

Four wire formats (OpenAI Chat Completions, OpenAI Responses, Anthropic Messages, Gemini)
meet here: each format module decodes its wire shape into these classes and encodes these
classes back into its wire shape, so adding a format costs one decoder and one encoder
instead of one translator per pair (docs/protocols.md §5).

Stability: field and class names below are frozen: changes must be backward compatible (new optional
fields with defaults, new classes, new enum members). Never rename or remove.

Conventions
-----------
* Every class is a frozen, slotted dataclass. Sequences are tuples. Optional values are
  ``None`` when the source did not say (so encoders can tell "absent" from a default).
* ``extras`` (on ``Request``, ``Message``, blocks, tools and ``Response``) holds fields that
  only one wire format understands. It is keyed by format name (``FORMAT_*`` below) and then
  by that format's own field name, e.g. ``{"anthropic_messages": {"context_management": …}}``.
  An encoder reads only its own key (``extras_for(obj, FORMAT)``) and ignores the rest; the
  decoder of the same format puts them there. This is how a same-format round trip keeps
  fields the IR has no name for without teaching every other format about them.
* Opaque provider data (Anthropic thinking signatures and redacted thinking, Responses
  ``encrypted_content``, Gemini ``thoughtSignature``) is only valid for the provider that
  issued it (docs/protocols.md §5.8 case 11). Such values carry ``provider`` = the issuing format
  name; an encoder for another format must drop them, never forward them.
* Token counts follow OpenAI semantics (docs/protocols.md §5.5): ``Usage.input_tokens`` is the
  whole prompt including cache reads and writes; ``output_tokens`` includes reasoning.

Stream event contract (what a decoder promises, what an encoder may assume)
--------------------------------------------------------------------------
1. ``MessageStart`` comes first, exactly once.
2. Blocks are numbered 0, 1, 2… in ``BlockStart`` order. Every delta names an open block.
3. Text and reasoning blocks never overlap any other block. Tool-call blocks may overlap
   other tool-call blocks (a Chat upstream is allowed to interleave tool indexes, §1.5),
   so an encoder whose format needs strictly nested blocks buffers the later tool block
   until the earlier one stops (docs/protocols.md §5.6, "Chat upstream → Anthropic client" 4).
4. ``UsageUpdate`` may come at any time and carries cumulative totals: the last one wins,
   consumers replace and never add. Decoders merge partial provider reports (Anthropic
   input usage at ``message_start`` plus output usage at ``message_delta``) before emitting.
5. Exactly one terminal event ends a stream: ``MessageEnd`` (clean end; usage is final
   because any ``UsageUpdate`` precedes it, and every block has been stopped) or
   ``StreamError`` (upstream error event, or upstream EOF without its terminal marker).
   Nothing follows a terminal event.
6. ``Ping`` is a keep-alive with no content; encoders may emit their own heartbeat or
   nothing.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from enum import StrEnum
from typing import Any, Literal, TypeAlias

__all__ = [
    "FORMAT_OPENAI_CHAT",
    "FORMAT_OPENAI_RESPONSES",
    "FORMAT_ANTHROPIC_MESSAGES",
    "FORMAT_GEMINI",
    "FORMATS",
    "Role",
    "StopReason",
    "BlockKind",
    "ToolKind",
    "ErrorKind",
    "CacheControl",
    "Text",
    "Image",
    "File",
    "ToolCall",
    "ToolResult",
    "Reasoning",
    "NativeBlock",
    "Block",
    "Message",
    "FunctionTool",
    "CustomTool",
    "NativeTool",
    "Tool",
    "ToolChoice",
    "ResponseFormat",
    "ReasoningConfig",
    "Request",
    "Usage",
    "Response",
    "ApiError",
    "MessageStart",
    "BlockStart",
    "TextDelta",
    "ToolArgsDelta",
    "ReasoningDelta",
    "SignatureDelta",
    "BlockStop",
    "UsageUpdate",
    "MessageEnd",
    "StreamError",
    "Ping",
    "StreamEvent",
    "extras_for",
    "parse_arguments",
    "RAW_ARGUMENTS_KEY",
    "CUSTOM_INPUT_KEY",
    "Context",
]

# Format names of the built-in four: the keys of ``extras`` and of the registry
# (``protocols.registry.FORMAT_MODULES``).
FORMAT_OPENAI_CHAT = "openai_chat"
FORMAT_OPENAI_RESPONSES = "openai_responses"
FORMAT_ANTHROPIC_MESSAGES = "anthropic_messages"
FORMAT_GEMINI = "gemini"
FORMATS = (
    FORMAT_OPENAI_CHAT,
    FORMAT_OPENAI_RESPONSES,
    FORMAT_ANTHROPIC_MESSAGES,
    FORMAT_GEMINI,
)

#: Format-private fields: ``{format_name: {wire_field: value}}`` (see module docstring).
Extras: TypeAlias = "dict[str, dict[str, Any]] | None"


class Role(StrEnum):
    """Message author. ``SYSTEM``/``DEVELOPER`` appear in ``Request.messages`` only for
    formats that allow instructions inside the conversation (Chat, Responses, and Claude
    Code's ``role:"system"`` messages, docs/protocols.md §3.2); an encoder for a format
    without them hoists them into its system slot (docs/protocols.md §5.8 case 1)."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    DEVELOPER = "developer"


class StopReason(StrEnum):
    """Why generation stopped, in neutral terms (docs/protocols.md §5.4)."""

    END_TURN = "end_turn"  # natural end (Chat "stop", Gemini STOP)
    MAX_TOKENS = "max_tokens"  # output cap (Chat "length", Responses incomplete)
    STOP_SEQUENCE = "stop_sequence"  # a stop sequence fired (see stop_sequence text)
    TOOL_USE = "tool_use"  # client tool calls to run
    CONTENT_FILTER = "content_filter"  # Anthropic "refusal", Gemini SAFETY etc.
    PAUSE = "pause"  # Anthropic pause_turn (server tool paused)
    ERROR = "error"  # the model failed (Responses failed, Gemini MALFORMED_…)
    CONTEXT_WINDOW = "context_window"  # Anthropic model_context_window_exceeded


class BlockKind(StrEnum):
    """Kind of a streamed content block (``BlockStart.kind``)."""

    TEXT = "text"
    TOOL_CALL = "tool_call"
    REASONING = "reasoning"


class ToolKind(StrEnum):
    """Kind of a tool call / tool definition.

    ``FUNCTION`` arguments are a JSON object text; ``CUSTOM`` (Responses freeform tools,
    e.g. Codex ``apply_patch``) input is a raw string; ``LOCAL_SHELL`` (Responses
    ``local_shell_call``) arguments are the JSON text of its ``action`` object.
    """

    FUNCTION = "function"
    CUSTOM = "custom"
    LOCAL_SHELL = "local_shell"


class ErrorKind(StrEnum):
    """Neutral error classes (docs/protocols.md §5.7). Each format maps its own status codes
    and error type strings to and from these."""

    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    REQUEST_TOO_LARGE = "request_too_large"
    RATE_LIMIT = "rate_limit"
    QUOTA = "quota"  # billing / insufficient quota: do not retry
    OVERLOADED = "overloaded"
    SERVER = "server"
    TIMEOUT = "timeout"
    # The upstream broke the protocol: EOF before its terminal marker, unparsable data.
    UPSTREAM_PROTOCOL = "upstream_protocol"


# ---------------------------------------------------------------------------------------
# Content blocks
# ---------------------------------------------------------------------------------------

#: Anthropic prompt-cache breakpoint, kept verbatim (``{"type":"ephemeral","ttl":"1h"}``).
#: Only the Anthropic encoder writes it; others drop it (docs/protocols.md §3.6).
CacheControl: TypeAlias = "dict[str, Any] | None"


@dataclass(frozen=True, slots=True)
class Text:
    """Plain text. ``cache_control``: see ``CacheControl``."""

    text: str
    cache_control: CacheControl = None
    extras: Extras = None


@dataclass(frozen=True, slots=True)
class Image:
    """An image, given inline (``media_type`` + base64 ``data``), by ``url`` or by a
    provider ``file_id``. Exactly one of ``data``/``url``/``file_id`` is set.

    ``detail`` is the OpenAI hint (``auto``/``low``/``high``/``original``); formats without
    it drop it (docs/protocols.md §5.8 case 10).
    """

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    file_id: str | None = None
    detail: str | None = None
    cache_control: CacheControl = None
    extras: Extras = None


@dataclass(frozen=True, slots=True)
class File:
    """A document or other file (Chat ``file`` part, Responses ``input_file``, Anthropic
    ``document``, Gemini ``inlineData``/``fileData`` for non-images). Same source rules as
    ``Image``; ``filename`` when the client named it."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    file_id: str | None = None
    filename: str | None = None
    cache_control: CacheControl = None
    extras: Extras = None


#: Key used to wrap tool arguments that are not a JSON object when a target format needs
#: an object (Anthropic ``tool_use.input``, Gemini ``args``); docs/protocols.md §5.2.
RAW_ARGUMENTS_KEY = "raw_arguments"


#: When a freeform (``CUSTOM``) tool has to be offered to a format that only has function
#: tools, it becomes a function with one required string parameter of this name, and the
#: call's raw input travels as ``{"input": "<raw>"}``.
CUSTOM_INPUT_KEY = "input"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call made by the assistant.

    ``arguments`` is the exact text the model produced: JSON object text for function
    calls (possibly invalid or truncated), the raw input string for custom tools, the JSON
    of ``action`` for local shell calls. ``input`` is the parsed object when the source
    format carried an object (Anthropic ``input``, Gemini ``args``) or when a decoder has
    already parsed it; ``None`` means "not parsed yet": use ``parse_arguments``.

    ``id`` is the id the client will send back with the result (Chat ``tool_calls[].id``,
    Responses ``call_id``, Anthropic ``tool_use.id``, Gemini ``functionCall.id`` or a
    synthesised one). Responses item ids (``fc_…``) belong in ``extras``.
    """

    id: str
    name: str
    arguments: str
    input: Any = None
    kind: ToolKind = ToolKind.FUNCTION
    cache_control: CacheControl = None
    extras: Extras = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The result of a tool call, sent by the client (in a ``USER`` message).

    ``content`` holds ``Text``/``Image``/``File`` blocks. ``name`` is the tool's name when
    known (Gemini ``functionResponse`` needs it; Chat and Anthropic do not carry it).
    ``kind`` tells Responses whether to write ``function_call_output``,
    ``custom_tool_call_output`` or ``local_shell_call_output``.
    """

    id: str
    content: tuple[Block, ...] = ()
    is_error: bool = False
    name: str | None = None
    kind: ToolKind = ToolKind.FUNCTION
    cache_control: CacheControl = None
    extras: Extras = None


@dataclass(frozen=True, slots=True)
class Reasoning:
    """Model reasoning (Anthropic thinking, Responses reasoning item, Gemini thought parts,
    de-facto Chat ``reasoning_content``).

    * ``text``: visible reasoning text (Anthropic ``thinking``, Gemini thought text,
      Responses ``reasoning_text`` content joined).
    * ``summary``: Responses summary parts (``summary_text``), one string per part.
      Formats without summaries may present them as ``text`` joined by a blank line.
    * ``signature``: Anthropic ``signature`` / Gemini ``thoughtSignature``.
    * ``redacted_data``: Anthropic ``redacted_thinking.data``.
    * ``encrypted``: Responses ``encrypted_content``.
    * ``id``: Responses reasoning item id (``rs_…``), if any.
    * ``provider``: the format that issued ``signature``/``redacted_data``/``encrypted``.
      Encoders for any other format must drop those values (and drop the block if nothing
      visible remains); docs/protocols.md §5.8 case 11.
    """

    text: str = ""
    summary: tuple[str, ...] = ()
    signature: str | None = None
    redacted_data: str | None = None
    encrypted: str | None = None
    id: str | None = None
    provider: str | None = None
    extras: Extras = None


@dataclass(frozen=True, slots=True)
class NativeBlock:
    """A provider-native content item the IR does not model (Anthropic
    ``server_tool_use``/``web_search_tool_result``, Responses ``web_search_call``,
    ``item_reference`` or ``compaction`` items, Gemini ``executableCode``). ``data`` is the
    wire object verbatim; only the encoder of ``provider`` may emit it, others drop it or
    raise ``UnsupportedFeature`` (docs/protocols.md §2.2: fail loudly rather than drop silently
    when the loss matters)."""

    provider: str
    type: str
    data: dict[str, Any]


Block: TypeAlias = "Text | Image | File | ToolCall | ToolResult | Reasoning | NativeBlock"


@dataclass(frozen=True, slots=True)
class Message:
    """One conversation turn.

    ``ToolCall`` blocks appear in ``ASSISTANT`` messages; ``ToolResult`` blocks in
    ``USER`` messages (a Chat ``tool`` message decodes to a ``USER`` message holding one
    ``ToolResult``). Decoders keep the source's message boundaries; encoders merge or split
    as their format requires (Anthropic merges consecutive tool results into one user turn
    with the results first, §5.8 case 6; Chat splits them into ``tool`` messages). Decoders
    should group the tool calls of one model turn into one assistant message.

    ``as_string`` records that the client sent ``content`` as a bare string rather than a
    list of parts; encoders that have the shorthand may use it.
    """

    role: Role
    content: tuple[Block, ...]
    name: str | None = None
    as_string: bool = False
    extras: Extras = None


# ---------------------------------------------------------------------------------------
# Tools and request options
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A client function tool with a JSON Schema for its arguments (``parameters`` is
    ``None`` when the client sent no schema)."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    cache_control: CacheControl = None
    extras: Extras = None


@dataclass(frozen=True, slots=True)
class CustomTool:
    """A freeform tool whose input is a raw string (Chat/Responses ``type:"custom"``).

    ``format`` is kept verbatim: ``{"type":"text"}`` or
    ``{"type":"grammar","syntax":"lark"|"regex","definition":…}``.
    """

    name: str
    description: str | None = None
    format: dict[str, Any] | None = None
    extras: Extras = None


@dataclass(frozen=True, slots=True)
class NativeTool:
    """A provider-native tool the IR does not model (Anthropic server tools such as
    ``web_search_20250305``, Responses ``web_search``/``local_shell``/``tool_search``,
    Gemini ``googleSearch``). ``spec`` is the wire entry verbatim; only the encoder of
    ``provider`` may emit it, others drop it or raise ``UnsupportedFeature``."""

    provider: str
    type: str
    spec: dict[str, Any]
    name: str | None = None


Tool: TypeAlias = "FunctionTool | CustomTool | NativeTool"

ToolChoiceMode: TypeAlias = Literal["auto", "any", "none", "tool"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """How the model must use tools (docs/protocols.md §5.1).

    * ``mode``: ``auto``; ``any`` (must call some tool: Chat ``required``); ``none``;
      ``tool`` (must call ``name``); ``None`` when only ``disable_parallel`` was given.
    * ``allowed``: restrict to these tool names (Chat ``allowed_tools``, Gemini
      ``allowedFunctionNames``); ``mode`` is then ``auto`` or ``any``.
    * ``disable_parallel``: ``True`` for Chat ``parallel_tool_calls:false`` / Anthropic
      ``disable_parallel_tool_use:true``; ``False`` when explicitly allowed; ``None`` unsaid.
    """

    mode: ToolChoiceMode | None = None
    name: str | None = None
    allowed: tuple[str, ...] | None = None
    disable_parallel: bool | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """Structured output request: ``type`` is ``text``, ``json_object`` or
    ``json_schema`` (then ``schema`` and optionally ``name``/``description``/``strict``)."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ReasoningConfig:
    """Reasoning / extended thinking settings (docs/protocols.md §3.5, §5.1).

    * ``mode``: ``enabled`` (a token budget), ``adaptive`` (model decides), ``disabled``,
      or ``None`` when only an effort was given.
    * ``effort``: ``none``/``minimal``/``low``/``medium``/``high``/``xhigh``/``max``.
    * ``budget_tokens``: Anthropic ``budget_tokens`` / Gemini ``thinkingBudget``.
    * ``summary``: Responses ``reasoning.summary`` (``auto``/``concise``/``detailed``).
    * ``display``: Anthropic ``thinking.display`` (``summarized``/``omitted``).
    """

    mode: Literal["enabled", "adaptive", "disabled"] | None = None
    effort: str | None = None
    budget_tokens: int | None = None
    summary: str | None = None
    display: str | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """A generation request.

    ``system`` holds the top-level instructions (Anthropic ``system``, Responses
    ``instructions``, Gemini ``systemInstruction``); system/developer messages inside the
    conversation stay in ``messages`` (see ``Role``). ``max_output_tokens`` is ``None``
    when the client gave no cap (an Anthropic encoder then supplies its default).
    ``stop`` is ``None`` when absent. ``include_usage`` is the Chat
    ``stream_options.include_usage`` flag as the client sent it.
    """

    model: str
    messages: tuple[Message, ...]
    system: tuple[Text, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] | None = None
    stream: bool = False
    include_usage: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning: ReasoningConfig | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    extras: Extras = None


# ---------------------------------------------------------------------------------------
# Responses and usage
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    """Token accounting in OpenAI semantics (docs/protocols.md §5.5).

    * ``input_tokens``: the whole prompt, **including** cache reads and writes
      (Anthropic: ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens``).
    * ``cached_tokens``: prompt tokens read from cache (subset of ``input_tokens``).
    * ``cache_write_tokens``: prompt tokens written to cache (subset of ``input_tokens``).
    * ``output_tokens``: everything generated, **including** ``reasoning_tokens``.
    * ``reasoning_tokens``: reasoning/thinking tokens (subset of ``output_tokens``).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Response:
    """A complete (non-streamed) model reply. ``content`` holds ``Text``, ``ToolCall``,
    ``Reasoning`` (and, for image-generating models, ``Image``) blocks in order."""

    id: str
    model: str
    content: tuple[Block, ...]
    stop_reason: StopReason
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    extras: Extras = None


@dataclass(frozen=True, slots=True)
class ApiError:
    """An error reply before streaming started (an HTTP error status and body).

    ``status`` is the HTTP status the error should carry in the *source* format;
    ``type_`` and ``code`` keep the source's own strings (``overloaded_error``,
    ``rate_limit_exceeded``) for logs and same-format replies.
    """

    kind: ErrorKind
    message: str
    status: int
    type_: str | None = None
    code: str | None = None
    param: str | None = None


# ---------------------------------------------------------------------------------------
# Stream events (see the contract in the module docstring)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageStart:
    """The reply began. ``usage`` is what the provider knew at the start (Anthropic input
    usage) or ``None``."""

    id: str
    model: str
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class BlockStart:
    """Block ``index`` opens.

    For ``TOOL_CALL``: ``tool_id``, ``tool_name`` and ``tool_kind`` are set (once, here;
    never repeated in deltas). For ``REASONING``: ``redacted_data`` carries a whole
    Anthropic ``redacted_thinking`` block and ``provider`` its issuer.
    """

    index: int
    kind: BlockKind
    tool_id: str | None = None
    tool_name: str | None = None
    tool_kind: ToolKind = ToolKind.FUNCTION
    redacted_data: str | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """More text for text block ``index``. May be empty; encoders skip empty deltas."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolArgsDelta:
    """A fragment of the arguments text for tool-call block ``index``. Fragments
    concatenate to ``ToolCall.arguments``; they are never parsed one by one (§5.8 case 5).
    """

    index: int
    arguments: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """More reasoning text for block ``index``. ``part`` numbers sub-parts (Responses
    ``summary_index``); formats without parts join parts with a blank line."""

    index: int
    text: str
    part: int = 0


@dataclass(frozen=True, slots=True)
class SignatureDelta:
    """Opaque continuity token for block ``index``, valid only for ``provider``: Anthropic
    ``signature_delta`` and Responses ``encrypted_content`` (reasoning blocks), Gemini
    ``thoughtSignature`` (which Gemini may attach to any part, so any block kind). It
    comes before the block's ``BlockStop``."""

    index: int
    signature: str
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class BlockStop:
    """Block ``index`` is complete."""

    index: int


@dataclass(frozen=True, slots=True)
class UsageUpdate:
    """Cumulative usage so far (replaces, never adds to, earlier updates)."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class MessageEnd:
    """Clean end of the reply (terminal). ``stop_sequence`` is the sequence that fired when
    the provider said which."""

    stop_reason: StopReason
    stop_sequence: str | None = None


@dataclass(frozen=True, slots=True)
class StreamError:
    """The stream failed (terminal): an upstream error event, or a cut stream
    (``kind=UPSTREAM_PROTOCOL``). ``status`` is the HTTP status the error would have had
    before streaming (529 for Anthropic ``overloaded_error``) when known; ``type_`` keeps
    the source's own error type string."""

    kind: ErrorKind
    message: str
    status: int | None = None
    type_: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """Keep-alive from upstream (Anthropic ``ping``)."""


StreamEvent: TypeAlias = (
    "MessageStart | BlockStart | TextDelta | ToolArgsDelta | ReasoningDelta"
    " | SignatureDelta | BlockStop | UsageUpdate | MessageEnd | StreamError | Ping"
)

#: Shared instance: ``Ping`` carries no data.
PING = Ping()


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def extras_for(obj: Any, fmt: str) -> dict[str, Any]:
    """Return ``obj.extras[fmt]`` or an empty dict (never ``None``)."""
    extras = obj.extras
    if not extras:
        return {}
    return extras.get(fmt) or {}


def parse_arguments(arguments: str, loads: Any = None) -> dict[str, Any]:
    """Parse tool-call ``arguments`` into an object for formats that need one.

    Returns the parsed object when ``arguments`` is a JSON object, ``{}`` when it is empty,
    and ``{RAW_ARGUMENTS_KEY: arguments}`` otherwise (invalid or non-object JSON), so a
    history replay keeps the call instead of dropping it (docs/protocols.md §5.2). ``loads`` is
    the JSON parser; it defaults to ``protocols.jsonio.loads``.
    """
    if not arguments or arguments.isspace():
        return {}
    if loads is None:
        from protocols.jsonio import loads
    try:
        value = loads(arguments)
    except Exception:  # any parser's error type: the text is simply not JSON
        return {RAW_ARGUMENTS_KEY: arguments}
    if isinstance(value, dict):
        return value
    return {RAW_ARGUMENTS_KEY: arguments}


class _Factory:
    """Default of a field with a default factory in a ``_fast_init`` signature."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"  # as dataclasses shows it


_FACTORY = _Factory()


def _fast_init(cls: type) -> None:
    """Give the frozen dataclass ``cls`` a quicker ``__init__`` with the same signature.

    The ``__init__`` that ``dataclass(frozen=True)`` writes sets each field through
    ``object.__setattr__`` (the class's own ``__setattr__`` raises). Calling each slot's
    descriptor directly stores the same values for about 40% less per field, and IR
    objects are made for every request, reply and stream event. Defaults and default
    factories behave as in the generated ``__init__``.
    """
    flds = fields(cls)
    if not flds or hasattr(cls, "__post_init__") or any(not f.init or f.kw_only for f in flds):
        return
    ns: dict[str, Any] = {"_FACTORY": _FACTORY}
    params, lines = [], []
    for f in flds:
        name = f.name
        if f.default is not MISSING:
            ns[f"_d_{name}"] = f.default
            params.append(f"{name}=_d_{name}")
        elif f.default_factory is not MISSING:
            ns[f"_f_{name}"] = f.default_factory
            params.append(f"{name}=_FACTORY")
            lines.append(f"    if {name} is _FACTORY:\n        {name} = _f_{name}()")
        else:
            params.append(name)
        ns[f"_set_{name}"] = cls.__dict__[name].__set__
        lines.append(f"    _set_{name}(self, {name})")
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(lines), ns)
    init = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    # mypy cannot type an __init__ built at run time; the dataclass fields are its signature.
    cls.__init__ = init  # type: ignore[misc]


for _cls in list(globals().values()):
    if isinstance(_cls, type) and is_dataclass(_cls) and _cls.__module__ == __name__:
        _fast_init(_cls)
del _cls


# The per-request Context lives in its own module; it is part of the IR's surface.
from .context import Context  # noqa: E402  (after the classes it refers to)
