"""OpenAI Responses: constants and maps (item kinds, stop and error codes, the
``local_shell`` tool, request fields the IR models) and the small helpers every part uses.

Section marks (§) refer to docs/protocols.md.
"""

from __future__ import annotations

from typing import Any

from .. import ir
from .._fields import OPENAI_FIELDS
from ..ir import (
    ErrorKind,
    Role,
    StopReason,
    ToolKind,
)

FORMAT = ir.FORMAT_OPENAI_RESPONSES

#: Marks an ``encrypted_content`` written by this gateway (version 1 of the payload).
#: OpenAI's own blobs start with ``gAAAA`` (a Fernet token), so the two never collide.
REASONING_PAYLOAD_PREFIX = "tw1:"

#: The function name a ``local_shell`` tool gets when it travels to another provider,
#: and the parameters offered for it: the fields of the ``exec`` action (§2.2).
LOCAL_SHELL_TOOL_NAME = "local_shell"
LOCAL_SHELL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["exec"]},
        "command": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The program and its arguments (argv).",
        },
        "timeout_ms": {"type": "integer"},
        "working_directory": {"type": "string"},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "user": {"type": "string"},
    },
    "required": ["command"],
}
_LOCAL_SHELL_DESCRIPTION = "Run a command in a local shell and return its output."

#: ``response.error.code`` values Codex classifies (§2.7): these choose between a fatal
#: error, a quota message and a retry. Anything else is retried.
CODEX_ERROR_CODES = frozenset(
    {
        "context_length_exceeded",
        "insufficient_quota",
        "credit_balance_exhausted",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "usage_not_included",
        "server_is_overloaded",
        "rate_limit_exceeded",
        "slow_down",
        "invalid_prompt",
        "cyber_policy",
        "bio_policy",
        "server_error",
    }
)

#: Largest text or argument string of one output item, in characters (``len``, at most
#: 4 bytes each). The encoder must keep it to repeat it in ``*.done``,
#: ``output_item.done`` and ``response.completed`` (§2.5); 32 Mi characters is far above
#: any model's output limit (128k tokens ≈ 0.5 MiB of text).
MAX_ITEM_CHARS = 32 * 1024 * 1024

# Top-level request fields modelled by the IR; everything else goes to extras.
_MODELED = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
        "max_output_tokens", "temperature", "top_p", "text", "reasoning", "stream",
        "user", "metadata",
    }
)

# Item types the IR does not model but an OpenAI upstream understands (§2.2): kept
# verbatim as NativeBlocks. Anything else is rejected.
_NATIVE_ITEMS = frozenset(
    {
        "item_reference", "web_search_call", "file_search_call", "computer_call",
        "computer_call_output", "code_interpreter_call", "image_generation_call",
        "mcp_call", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response",
        "compaction", "shell_call", "shell_call_output", "apply_patch_call",
        "apply_patch_call_output", "tool_search_call", "tool_search_output",
        "additional_tools", "program", "program_output",
    }
)
_ASSISTANT_ITEMS = frozenset({"function_call", "custom_tool_call", "local_shell_call", "reasoning"})
_OUTPUT_ITEMS = frozenset({"function_call_output", "custom_tool_call_output",
                           "local_shell_call_output"})
_OUTPUT_KIND = {
    "function_call_output": ToolKind.FUNCTION,
    "custom_tool_call_output": ToolKind.CUSTOM,
    "local_shell_call_output": ToolKind.LOCAL_SHELL,
}
_KIND_OUTPUT = {v: k for k, v in _OUTPUT_KIND.items()}

_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM,
          "developer": Role.DEVELOPER}

# Terminal status → stop reason (§5.4).
_INCOMPLETE_TO_STOP = {
    "max_output_tokens": StopReason.MAX_TOKENS,
    "content_filter": StopReason.CONTENT_FILTER,
}

# response.error.code → error kind (§2.5 response.failed, §2.7).
_CODE_TO_KIND = {
    "server_error": ErrorKind.SERVER,
    "rate_limit_exceeded": ErrorKind.RATE_LIMIT,
    "slow_down": ErrorKind.OVERLOADED,
    "server_is_overloaded": ErrorKind.OVERLOADED,
    "insufficient_quota": ErrorKind.QUOTA,
    "credit_balance_exhausted": ErrorKind.QUOTA,
    "organization_spend_limit_exceeded": ErrorKind.QUOTA,
    "project_spend_limit_exceeded": ErrorKind.QUOTA,
    "usage_not_included": ErrorKind.QUOTA,
    "context_length_exceeded": ErrorKind.REQUEST_TOO_LARGE,
    "invalid_prompt": ErrorKind.INVALID_REQUEST,
    "cyber_policy": ErrorKind.INVALID_REQUEST,
    "bio_policy": ErrorKind.INVALID_REQUEST,
}
# error kind → (HTTP status it would have had, Codex error code).
_KIND_TO_CODE: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID_REQUEST: (400, "invalid_prompt"),
    ErrorKind.AUTHENTICATION: (401, "server_error"),
    ErrorKind.PERMISSION: (403, "server_error"),
    ErrorKind.NOT_FOUND: (404, "server_error"),
    ErrorKind.REQUEST_TOO_LARGE: (400, "context_length_exceeded"),
    ErrorKind.RATE_LIMIT: (429, "rate_limit_exceeded"),
    ErrorKind.QUOTA: (429, "insufficient_quota"),
    ErrorKind.OVERLOADED: (503, "server_is_overloaded"),
    ErrorKind.SERVER: (500, "server_error"),
    ErrorKind.TIMEOUT: (504, "server_error"),
    ErrorKind.UPSTREAM_PROTOCOL: (502, "server_error"),
}


# ---------------------------------------------------------------------------------------
# Validation helpers (client side: ClientProtocolError naming the param)
# ---------------------------------------------------------------------------------------


_bad, _missing = OPENAI_FIELDS.bad, OPENAI_FIELDS.missing
_str, _dict, _list = OPENAI_FIELDS.string, OPENAI_FIELDS.object, OPENAI_FIELDS.array
_num, _int, _bool = OPENAI_FIELDS.number, OPENAI_FIELDS.integer, OPENAI_FIELDS.boolean


def _ex(fields: dict[str, Any]) -> ir.Extras:
    return {FORMAT: fields} if fields else None


def _own(obj: Any) -> dict[str, Any]:
    return ir.extras_for(obj, FORMAT)


def _new_id(ctx: ir.Context | None, prefix: str, counter: list[int]) -> str:
    if ctx is not None:
        return ctx.new_id(prefix)
    counter[0] += 1
    return f"{prefix}{counter[0]}"
