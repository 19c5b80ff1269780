"""OpenAI Chat Completions: constants and maps (finish reasons, request fields the IR
models, field validators in OpenAI's wording).

Section marks (§) refer to docs/protocols.md.
"""

from __future__ import annotations

from functools import partial

from .. import ir
from .._fields import OPENAI_FIELDS, extras_entry
from ..ir import (
    StopReason,
)

FORMAT = ir.FORMAT_OPENAI_CHAT
#: ``stop`` takes a string or an array of 1–4 strings (§1.2, §5.8 case 13).
MAX_STOP_SEQUENCES = 4
#: Chat accepts ``temperature`` in 0–2 (§1.2).
MAX_TEMPERATURE = 2.0

# Request fields the IR models; everything else goes to extras (kept for a Chat upstream,
# ignored by other formats, as Anthropic's own compatibility layer does, §5.1).
_MODELED = frozenset(
    {
        "model", "messages", "max_completion_tokens", "max_tokens", "temperature",
        "top_p", "stop", "stream", "stream_options", "tools", "tool_choice",
        "parallel_tool_calls", "response_format", "reasoning_effort", "user",
        "metadata",
    }
)

_FINISH_TO_STOP = {
    "stop": StopReason.END_TURN,
    "length": StopReason.MAX_TOKENS,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.CONTENT_FILTER,
}

# §5.4: pause_turn has no Chat equivalent (stop, the caller re-sends); a model error and
# a context-window stop have none either.
_STOP_TO_FINISH = {
    StopReason.END_TURN: "stop",
    StopReason.STOP_SEQUENCE: "stop",
    StopReason.MAX_TOKENS: "length",
    StopReason.CONTEXT_WINDOW: "length",
    StopReason.TOOL_USE: "tool_calls",
    StopReason.CONTENT_FILTER: "content_filter",
    StopReason.PAUSE: "stop",
    StopReason.ERROR: "stop",
}


# ---------------------------------------------------------------------------------------
# Small validation helpers (client side: ClientProtocolError naming the param)
# ---------------------------------------------------------------------------------------


_bad, _missing = OPENAI_FIELDS.bad, OPENAI_FIELDS.missing
_str, _dict, _list = OPENAI_FIELDS.string, OPENAI_FIELDS.object, OPENAI_FIELDS.array
_num, _int, _bool = OPENAI_FIELDS.number, OPENAI_FIELDS.integer, OPENAI_FIELDS.boolean


#: ``_rest(obj, known, hints=None)``: the fields of ``obj`` outside ``known`` as this
#: format's extras (``_fields.extras_entry``).
_rest = partial(extras_entry, FORMAT)
