"""A configured provider plus what the hot path needs, computed once at start.

Which wire format the provider speaks for a given client format, the request
path for each format, and the headers to send are all decided here, so the
request path only concatenates bytes.
"""

from __future__ import annotations

from urllib.parse import quote

from protocols.ir import (
    FORMAT_ANTHROPIC_MESSAGES,
    FORMAT_GEMINI,
    FORMAT_OPENAI_CHAT,
    FORMAT_OPENAI_RESPONSES,
)

from .config import ProviderConfig

# Anthropic requires this header (docs/protocols.md §3.1); sent when the client gave none.
ANTHROPIC_VERSION = b"2023-06-01"

# Header families that belong to one vendor: sent only to a provider of that kind.
_VENDOR_PREFIXES = {
    "openai": (b"anthropic-", b"x-goog-"),
    "anthropic": (b"openai-", b"x-goog-"),
    "gemini": (b"anthropic-", b"openai-"),
}


class Provider:
    __slots__ = (
        "config", "name", "kind", "scheme", "host", "port", "ca_bundle", "verify_tls",
        "connect_timeout_s", "first_byte_timeout_s", "idle_timeout_s", "host_header",
        "base_path", "static_headers", "static_head", "passthrough_auth", "foreign_prefixes",
        "responses_api", "http2", "_limited", "_cap_of", "_reasoning_of",
    )

    def __init__(self, cfg: ProviderConfig) -> None:
        self.config = cfg
        self.name = cfg.name
        self.kind = cfg.kind
        self.scheme = cfg.scheme
        self.host = cfg.host
        self.port = cfg.port
        self.ca_bundle = cfg.ca_bundle
        self.verify_tls = cfg.verify_tls
        self.connect_timeout_s = cfg.connect_timeout_s
        self.first_byte_timeout_s = cfg.first_byte_timeout_s
        self.idle_timeout_s = cfg.idle_timeout_s
        self.http2 = cfg.http2  # "off", "on" or "auto": part of the pool's peer key
        self.host_header = cfg.authority.encode()
        self.base_path = cfg.base_path.encode()
        self.passthrough_auth = cfg.auth_mode == "passthrough"
        self.foreign_prefixes = _VENDOR_PREFIXES[cfg.kind]
        # OpenAI-kind providers get Responses clients natively (OpenAI, vLLM,
        # Ollama and llama.cpp serve /v1/responses) unless configured off.
        self.responses_api = getattr(cfg, "responses_api", True)
        # Model limits (ProviderConfig decides; answers cached per model name).
        self._limited = bool(getattr(cfg, "max_output_tokens", ())
                             or getattr(cfg, "no_reasoning", ()))
        self._cap_of: dict[str, int | None] = {}
        self._reasoning_of: dict[str, bool] = {}
        hs: list[tuple[bytes, bytes]] = [(b"accept-encoding", b"identity")]
        if cfg.api_key and not self.passthrough_auth:
            key = cfg.api_key.encode()
            if cfg.kind == "anthropic":
                hs.append((b"x-api-key", key))
            elif cfg.kind == "gemini":
                hs.append((b"x-goog-api-key", key))
            else:
                hs.append((b"authorization", b"Bearer " + key))
        for k, v in cfg.headers:
            hs.append((k.lower().encode(), v.encode()))
        self.static_headers = hs
        self.static_head = b"".join(k + b": " + v + b"\r\n" for k, v in hs)

    def output_cap(self, model: str) -> int | None:
        """The output-token cap configured for ``model``, or None."""
        if not self._limited:
            return None
        cap = self._cap_of.get(model, -1)
        if cap == -1:
            cap = self.config.output_cap_for(model)
            if len(self._cap_of) < 4096:  # bounded: model names come from clients
                self._cap_of[model] = cap
        return cap

    def reasoning(self, model: str) -> bool:
        """False when ``model`` is configured as having no reasoning."""
        if not self._limited:
            return True
        ok = self._reasoning_of.get(model)
        if ok is None:
            ok = self.config.reasoning_for(model)
            if len(self._reasoning_of) < 4096:  # bounded: model names come from clients
                self._reasoning_of[model] = ok
        return ok

    def upstream_format(self, client_format: str) -> str:
        if self.kind == "anthropic":
            return FORMAT_ANTHROPIC_MESSAGES
        if self.kind == "gemini":
            return FORMAT_GEMINI
        if client_format == FORMAT_OPENAI_RESPONSES and self.responses_api:
            return FORMAT_OPENAI_RESPONSES
        return FORMAT_OPENAI_CHAT

    def path(self, fmt: str, model: str, stream: bool) -> bytes:
        """The request target for ``fmt`` (base_url conventions: OpenAI kind ends in
        /v1, Anthropic and Gemini kinds are the bare host)."""
        if fmt == FORMAT_OPENAI_CHAT:
            return self.base_path + b"/chat/completions"
        if fmt == FORMAT_OPENAI_RESPONSES:
            return self.base_path + b"/responses"
        if fmt == FORMAT_ANTHROPIC_MESSAGES:
            return self.base_path + b"/v1/messages"
        action = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        return (self.base_path + b"/v1beta/models/" + quote(model, safe="").encode()
                + action.encode())

    def count_tokens_path(self) -> bytes:
        return self.base_path + b"/v1/messages/count_tokens"

    def embeddings_path(self, model: str) -> bytes:
        if self.kind == "gemini":
            return (self.base_path + b"/v1beta/models/" + quote(model, safe="").encode()
                    + b":batchEmbedContents")
        return self.base_path + b"/embeddings"
