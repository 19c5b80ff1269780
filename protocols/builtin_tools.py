"""A provider's built-in tools sent to another provider.

Clients send tools their own provider runs on its side: Codex sends Responses'
``web_search`` and ``tool_search``, Claude Code Anthropic's ``web_search_20250305``,
Gemini clients ``google_search``.  Only that provider executes them.  When the
request goes elsewhere, each one is

* mapped, when the target runs an equivalent: a web search becomes Anthropic's
  server-side web search tool
  (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/web-search-tool),
  Gemini's Google Search grounding (https://ai.google.dev/gemini-api/docs/grounding)
  or Responses' ``web_search``
  (https://platform.openai.com/docs/guides/tools-web-search);
* otherwise dropped, and named in ``Context.dropped_tools`` (the gateway logs it
  and counts it in the ledger), or refused with ``UnsupportedFeature`` when
  ``Context.builtin_tools`` is ``"refuse"``.

The answers need nothing from here: the decoders already pass over the server
tool blocks a provider adds (Anthropic's ``server_tool_use`` and
``web_search_tool_result``), and the text around them is what the client reads.
"""

from __future__ import annotations

from typing import Any

from .errors import UnsupportedFeature
from .ir import (
    FORMAT_ANTHROPIC_MESSAGES,
    FORMAT_GEMINI,
    FORMAT_OPENAI_RESPONSES,
    Context,
    NativeTool,
)

# Each format's web search tool types (the dated variants included).
_WEB_SEARCH_PREFIX = {
    FORMAT_OPENAI_RESPONSES: ("web_search",),
    FORMAT_ANTHROPIC_MESSAGES: ("web_search_",),
    FORMAT_GEMINI: ("google_search", "googleSearch"),
}
ANTHROPIC_WEB_SEARCH = "web_search_20250305"
# Anthropic's web search is billed per search: a bound the client did not set.
ANTHROPIC_MAX_USES = 5


def is_web_search(tool: NativeTool) -> bool:
    prefixes = _WEB_SEARCH_PREFIX.get(tool.provider, ())
    return any(tool.type.startswith(p) for p in prefixes)


def _allowed_domains(tool: NativeTool) -> list[str] | None:
    spec = tool.spec
    if tool.provider == FORMAT_OPENAI_RESPONSES:
        filters = spec.get("filters")
        domains = filters.get("allowed_domains") if type(filters) is dict else None
    elif tool.provider == FORMAT_ANTHROPIC_MESSAGES:
        domains = spec.get("allowed_domains")
    else:
        domains = None
    if type(domains) is list and domains and all(type(d) is str for d in domains):
        return list(domains)
    return None


def foreign_tool(tool: NativeTool, target: str, ctx: Context | None) -> dict[str, Any] | None:
    """The ``target`` format's wire entry for another provider's built-in ``tool``,
    or None when it is dropped (``UnsupportedFeature`` when the policy refuses)."""
    if is_web_search(tool):
        domains = _allowed_domains(tool)
        if target == FORMAT_ANTHROPIC_MESSAGES:
            out: dict[str, Any] = {"type": ANTHROPIC_WEB_SEARCH, "name": "web_search",
                                   "max_uses": ANTHROPIC_MAX_USES}
            if domains:
                out["allowed_domains"] = domains
            return out
        if target == FORMAT_GEMINI:
            return {"google_search": {}}
        if target == FORMAT_OPENAI_RESPONSES:
            out = {"type": "web_search"}
            if domains:
                out["filters"] = {"allowed_domains": domains}
            return out
    if ctx is not None and ctx.builtin_tools == "refuse":
        raise UnsupportedFeature("tools", f"the {tool.provider} built-in tool {tool.type!r} "
                                          f"has no equivalent on this provider")
    if ctx is not None:
        ctx.dropped_tools.append(tool.type)
    return None
