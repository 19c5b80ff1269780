"""Gateway configuration: read a TOML file, apply env and CLI overrides, validate once.

The result is a frozen `Config` built at startup; nothing on the request path parses or
validates configuration again. Every error is a `ConfigError` whose message starts with
the dotted path of the offending key (``providers.openai.kind: ...``). Unknown keys are
errors too, so a typo never silently turns into a default.

File format (every section is optional)::

    [server]
    listen = "127.0.0.1:8081"      # HOST:PORT; IPv6 as "[::1]:8081"
    parser = "httptools"           # or "h11" (strict pure-Python HTTP/1.1 backend)
    max_header_bytes = "64KiB"     # sizes: int bytes, or a number with a unit:
    max_body_bytes = "32MiB"       #   B, KB, MB, GB (x1000), KiB, MiB, GiB (x1024)
    header_timeout = "30s"         # durations: seconds, or "500ms", "30s", "5m", "1h"
    keepalive_timeout = "75s"
    shutdown_grace = "30s"
    allow_unauthenticated = false  # non-loopback listen without gateway keys
    log_level = "info"             # debug, info, warning, error, critical

    [ledger]
    path = "tokenway.db"           # relative to the config file's directory

    [auth]
    keys_env = "TOKENWAY_GATEWAY_KEYS"  # env var holding comma-separated gateway keys
    keys = ["k1"]                  # inline keys work too, but then the file holds
                                   # secrets: prefer keys_env. Both are combined.

    [providers.NAME]               # NAME: letters, digits, "_" and "-"
    kind = "openai"                # "openai" | "anthropic" | "gemini"
    base_url = "https://api.openai.com/v1"
                                   # default: the vendor's public URL for `kind`.
                                   # OpenAI kind ends in /v1; Anthropic and Gemini
                                   # kinds are the bare host (the gateway appends
                                   # the versioned API path itself).
    api_key_env = "OPENAI_API_KEY" # or api_key = "..." inline (not both)
    headers = { "X-Extra" = "v" }  # extra headers sent upstream on every request
    auth = "inject"                # "inject": send the provider key and drop client
                                   # credentials; "passthrough": forward the
                                   # client's Authorization / x-api-key instead
    ca_bundle = "/path/ca.pem"     # optional PEM file for https
    verify_tls = true
    connect_timeout = "10s"
    first_byte_timeout = "300s"
    idle_timeout = "300s"          # longest silence between two body chunks
    max_connections = 100          # pool size for this provider

    [[routes]]                     # first match in file order wins
    match = "gpt-*"                # glob on the requested model (fnmatchcase)
    to = ["NAME", "OTHER:upstream-model"]  # ordered targets; ":model" renames

Precedence, lowest first: built-in defaults, the file, environment variables, CLI
overrides. Environment variables set to the empty string count as unset, so
``TOKENWAY_API_KEYS=`` in a compose file cannot switch authentication off by accident.

Environment variables:

* ``TOKENWAY_CONFIG``: path of the file, used when no path is passed in.
* ``TOKENWAY_LISTEN``, ``TOKENWAY_DB``, ``TOKENWAY_LOG_LEVEL``, ``TOKENWAY_PARSER``,
  ``TOKENWAY_MAX_BODY_BYTES``: override ``server.listen``, ``ledger.path``,
  ``server.log_level``, ``server.parser`` and ``server.max_body_bytes``.
* ``TOKENWAY_API_KEYS=k1,k2``: gateway keys; replaces the keys from ``[auth]``.
* ``TOKENWAY_{OPENAI,ANTHROPIC,GEMINI}_{BASE_URL,API_KEY}``: define (or override the
  URL and key of) a provider of that kind named ``openai``, ``anthropic`` or
  ``gemini``. An API key alone uses the vendor's public URL; a base URL alone suits
  keyless local servers (vLLM, Ollama). Each such provider also gets default routes,
  appended after the file's routes: ``gpt-*``, ``o[0-9]*``, ``chatgpt-*`` and
  ``text-embedding-*`` to ``openai``; ``claude*`` to ``anthropic``; ``gemini*`` to
  ``gemini``.
* ``TOKENWAY_ROUTES``: routes in short form, appended after the file's routes in place
  of the default routes above. Syntax: comma-separated ``GLOB=>TARGET|TARGET...``,
  each target being ``PROVIDER`` or ``PROVIDER:upstream-model``, for example
  ``claude*=>anthropic,gpt-*=>openai:gpt-4o-mini|backup``. Whitespace around items
  is ignored. Globs and model names containing ``,``, ``|`` or ``=>`` cannot be
  written in this form; use the file.

CLI overrides come in as a dict with the keys ``listen``, ``db``, ``log_level``,
``parser`` and ``allow_unauthenticated``; ``None`` values are ignored (an argparse
flag that was not given).

Secrets (gateway keys, provider keys, extra header values) never appear in the
``repr``/``str`` of the config objects nor in ``ConfigError`` messages.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from fractions import Fraction
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "AUTH_MODES",
    "KINDS",
    "LOG_LEVELS",
    "LOOPBACK_MODEL",
    "PARSERS",
    "VENDOR_BASE_URLS",
    "VENDOR_DEFAULT_ROUTES",
    "AuthConfig",
    "Config",
    "ConfigError",
    "LedgerConfig",
    "ProviderConfig",
    "Route",
    "ServerConfig",
    "Target",
    "check_listen_safety",
    "is_loopback_host",
    "load_config",
    "parse_duration",
    "parse_listen",
    "parse_size",
    "split_base_url",
]

# --- defaults -------------------------------------------------------------------

# Loopback only: a fresh install must not expose provider keys to the network.
# 8081 keeps clear of the 8080 that many local dev servers take.
DEFAULT_LISTEN = "127.0.0.1:8081"
DEFAULT_PARSER = "httptools"
DEFAULT_LEDGER_PATH = "tokenway.db"
DEFAULT_LOG_LEVEL = "info"

# Largest request head (request line + headers). h11's
# DEFAULT_MAX_INCOMPLETE_EVENT_SIZE is 16 KiB (h11 0.16), which uvicorn inherits, and
# nginx accepts up to 4 x 8 KiB (large_client_header_buffers). 64 KiB sits above both,
# so a head that got through a front proxy is never refused here, while still
# bounding per-connection memory.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024

# Anthropic documents a 32 MB request limit for the Messages API. Images and PDFs
# travel base64-encoded inside the JSON body, so smaller limits break real agent
# sessions; 32 MiB is slightly above 32 MB, leaving the final word to the provider.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024

# Time allowed to receive a complete request head: half of nginx's
# client_header_timeout (60 s). Real clients send the head in one write; this only
# bounds slowloris-style clients.
DEFAULT_HEADER_TIMEOUT_S = 30.0

# Idle keep-alive connection lifetime: nginx's default keepalive_timeout (75 s).
DEFAULT_KEEPALIVE_TIMEOUT_S = 75.0

# Drain time after SIGTERM before open streams are cut: Kubernetes' default
# terminationGracePeriodSeconds (30 s), after which the pod is killed anyway.
DEFAULT_SHUTDOWN_GRACE_S = 30.0

# TCP + TLS connect to a provider. The OpenAI and Anthropic Python SDKs use 5 s
# (DEFAULT_TIMEOUT connect=5.0); the gateway is a second hop behind the client's own
# connect, so it gets twice that.
DEFAULT_CONNECT_TIMEOUT_S = 10.0

# Request sent -> first response byte. Thinking models can sit silent for minutes
# before the response head on non-streaming requests; the OpenAI and Anthropic SDKs
# allow 600 s for a whole request, and 300 s matches the idle timeout below.
DEFAULT_FIRST_BYTE_TIMEOUT_S = 300.0

# Longest silence between two response body chunks: Codex's default
# stream_idle_timeout_ms (300000). A shorter gateway timeout would cut streams that
# Codex itself still waits for.
DEFAULT_IDLE_TIMEOUT_S = 300.0

# Connections per provider pool: httpx's default Limits(max_connections=100).
DEFAULT_MAX_CONNECTIONS = 100

KINDS = ("openai", "anthropic", "gemini")
PARSERS = ("httptools", "h11")
AUTH_MODES = ("inject", "passthrough")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# The built-in model answered by the gateway itself; never routed to a provider.
LOOPBACK_MODEL = "loopback"

# Public base URLs, used when a provider gives no base_url.
VENDOR_BASE_URLS: Mapping[str, str] = MappingProxyType(
    {
        "openai": "https://api.openai.com/v1",
        "anthropic": "https://api.anthropic.com",
        "gemini": "https://generativelanguage.googleapis.com",
    }
)

# Model globs routed to a provider defined by the TOKENWAY_<VENDOR>_* shortcut.
VENDOR_DEFAULT_ROUTES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "openai": ("gpt-*", "o[0-9]*", "chatgpt-*", "text-embedding-*"),
        "anthropic": ("claude*",),
        "gemini": ("gemini*",),
    }
)

# Headers that the gateway computes per request (framing, hop-by-hop); configuring them
# would corrupt the upstream exchange.
_MANAGED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
    }
)

# Last path segments that mean an API version was put in an Anthropic/Gemini base_url,
# which the gateway appends itself (/v1/messages, /v1beta/models/...).
_VERSION_SEGMENTS = frozenset({"v1", "v1beta", "v1alpha"})

_TOP_KEYS = ("server", "ledger", "auth", "providers", "routes", "agent_safety", "routing")
_AGENT_SAFETY_KEYS = ("tool_loop_warn", "tool_loop_stop")
_ROUTING_KEYS = ("max_attempts", "backoff", "backoff_max", "deadline", "failure_threshold",
                 "cooldown", "cooldown_max", "on_client_disconnect", "heartbeat")
# Failover: three attempts in all (first target, next target, one more) is what
# the OpenAI and Anthropic SDKs do by default (max_retries=2).
DEFAULT_MAX_ATTEMPTS = 3
# Jittered exponential backoff before retrying a target already tried
# (the SDKs start at 0.5 s; a gateway retrying on a different key can be faster).
DEFAULT_BACKOFF_S = 0.2
DEFAULT_BACKOFF_MAX_S = 5.0
# Total time to get a response head across all attempts.
DEFAULT_DEADLINE_S = 600.0
# Circuit breaker: 5 consecutive failures open a target for 30 s, doubling on
# each failed half-open probe up to 5 minutes (envoy outlier detection defaults:
# 5 consecutive 5xx, 30 s base ejection, 300 s max).
DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOLDOWN_S = 30.0
DEFAULT_COOLDOWN_MAX_S = 300.0
# Keep-alives during silent streams (thinking models): well under every
# client's idle timeout (Codex 300 s, most proxies 60 s).
DEFAULT_HEARTBEAT_S = 15.0
DISCONNECT_MODES = ("cancel", "drain")
# Duplicate tool-call thresholds: the same call 3 times in a row gets the
# model a warning, 5 times stops the loop (0 turns either off).
DEFAULT_TOOL_LOOP_WARN = 3
DEFAULT_TOOL_LOOP_STOP = 5
_SERVER_KEYS = (
    "listen",
    "parser",
    "max_header_bytes",
    "max_body_bytes",
    "header_timeout",
    "keepalive_timeout",
    "shutdown_grace",
    "allow_unauthenticated",
    "log_level",
)
_LEDGER_KEYS = ("path",)
_AUTH_KEYS = ("keys_env", "keys")
_PROVIDER_KEYS = (
    "kind",
    "request_timeout",
    "max_concurrency",
    "queue_size",
    "queue_timeout",
    "responses_api",
    "count_tokens",
    "max_output_tokens",
    "no_reasoning",
    "base_url",
    "api_key_env",
    "api_key",
    "headers",
    "auth",
    "ca_bundle",
    "verify_tls",
    "connect_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "max_connections",
)
_ROUTE_KEYS = ("match", "to", "weights")
_OVERRIDE_KEYS = ("listen", "db", "log_level", "parser", "allow_unauthenticated")

_PROVIDER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# RFC 9110 section 5.6.2 token.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_DURATION_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_DURATION_UNITS = {
    "": Fraction(1),
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
}
_PORT_RE = re.compile(r"[0-9]{1,5}")


class ConfigError(Exception):
    """A configuration value is missing, malformed or inconsistent.

    ``str(err)`` is ``"<key path>: <reason>"``; ``key`` and ``reason`` hold the parts.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


# --- value parsers --------------------------------------------------------------


def parse_size(value: object) -> int:
    """Bytes from an int or a string like ``"64KiB"``, ``"32 MiB"``, ``"1.5MB"``.

    Units (case-insensitive): B, KB, MB, GB (powers of 1000) and KiB, MiB, GiB (powers
    of 1024); no unit means bytes.
    The result must be a whole number of bytes. Raises ValueError("bad size ...").
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.fullmatch(value)
        if m is not None:
            unit = _SIZE_UNITS.get(m[2].lower())
            if unit is not None:
                n = Fraction(m[1]) * unit
                if n.denominator == 1:
                    return int(n)
    raise ValueError(
        f"bad size {value!r} (use bytes or a number with B, KB, MB, GB, KiB, MiB, GiB)"
    )


def parse_duration(value: object) -> float:
    """Seconds from a number or a string: ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``.

    Raises ValueError("bad duration ...").
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.fullmatch(value)
        if m is not None:
            unit = _DURATION_UNITS.get(m[2].lower())
            if unit is not None:
                return float(Fraction(m[1]) * unit)
    raise ValueError(
        f"bad duration {value!r} (use seconds or a number with ms, s, m, h)"
    )


def parse_listen(value: object) -> tuple[str, int]:
    """``"HOST:PORT"`` or ``"[IPv6]:PORT"`` -> (host, port), IPv6 hosts unbracketed."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string HOST:PORT (got {value!r})")
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(
                f"bad listen address {value!r} (expected [IPv6]:PORT, e.g. [::1]:8081)"
            )
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad IPv6 address in {value!r}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(
                f"bad listen address {value!r} "
                "(expected HOST:PORT, e.g. 127.0.0.1:8081)"
            )
        if ":" in host:
            raise ValueError(
                f"bad listen address {value!r} "
                "(put IPv6 addresses in brackets, e.g. [::1]:8081)"
            )
        if any(c.isspace() or c in "/[]@" for c in host):
            raise ValueError(f"bad host in listen address {value!r}")
    if not _PORT_RE.fullmatch(port_text):
        raise ValueError(f"bad port in listen address {value!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port must be 0..65535 (got {port})")
    return host, port


def split_base_url(url: str) -> tuple[str, str, int, str]:
    """``base_url`` -> (scheme, host, port, base_path), validated.

    ``host`` is lowercased and unbracketed (ready for connect and SNI), ``port``
    defaults to the scheme's, ``base_path`` is the path without its trailing slash
    ("" for a bare host). Raises ValueError; messages never echo a URL that may carry
    credentials.
    """
    if not isinstance(url, str):
        raise ValueError(f"must be a string URL (got {type(url).__name__})")
    if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in url):
        raise ValueError("must not contain whitespace or control characters")
    parts = urlsplit(url)
    # Checked before anything echoes the URL: both can carry secrets (Gemini's ?key=).
    if "@" in parts.netloc:
        raise ValueError("must not contain credentials; use api_key_env or api_key")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(
            "must not have a query string or fragment; use headers or api_key"
        )
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"scheme must be http or https (got {url!r})")
    host = parts.hostname
    if not host:
        raise ValueError(f"needs a host (got {url!r})")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if port is None:
        port = 443 if scheme == "https" else 80
    elif port == 0:
        raise ValueError(f"bad port in {url!r}")
    return scheme, host, port, parts.path.rstrip("/")


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also bracketed or IPv4-mapped) and ``localhost``."""
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h.rstrip(".").lower() == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(h)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


# --- config objects -------------------------------------------------------------

_DEFAULT_HOST, _DEFAULT_PORT = parse_listen(DEFAULT_LISTEN)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = _DEFAULT_HOST
    port: int = _DEFAULT_PORT
    parser: str = DEFAULT_PARSER
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    allow_unauthenticated: bool = False
    log_level: str = DEFAULT_LOG_LEVEL

    @property
    def listen(self) -> str:
        """``HOST:PORT`` as written in config, e.g. ``[::1]:8081``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    path: str = DEFAULT_LEDGER_PATH


@dataclass(frozen=True, slots=True, repr=False)
class AuthConfig:
    """Gateway keys clients must present. No keys means authentication is off."""

    keys: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def __repr__(self) -> str:
        return f"AuthConfig(keys=<{len(self.keys)} hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class ProviderConfig:
    """One upstream provider.

    ``scheme``, ``host``, ``port``, ``base_path``, ``tls`` and ``authority`` are derived
    from ``base_url`` at construction, so the request path never parses URLs.
    """

    name: str
    kind: str
    base_url: str
    api_key: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    auth_mode: str = "inject"
    ca_bundle: str | None = None
    verify_tls: bool = True
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    first_byte_timeout_s: float = DEFAULT_FIRST_BYTE_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    # OpenAI kind: forward Responses clients to the provider's own /responses
    # (OpenAI, vLLM, Ollama, llama.cpp serve it); false translates to Chat.
    responses_api: bool = True
    # Whole-request limit, streaming included (0: none; streams are bounded by
    # the idle timeout instead).
    request_timeout_s: float = 0.0
    # In-flight requests to this provider (0: unlimited), and how many more may
    # wait for a slot, for how long, before getting 503 + Retry-After.
    max_concurrency: int = 0
    queue_size: int = 64
    queue_timeout_s: float = 30.0
    # Anthropic kind: "upstream" asks the provider's count_tokens, "local" estimates.
    count_tokens: str = "upstream"
    # Output-token caps by model glob, first match wins: a request asking for more is
    # lowered to the cap before it is sent (protocols/model_limits.py).
    max_output_tokens: tuple[tuple[str, int], ...] = ()
    # Model globs without reasoning: their requests go without reasoning controls.
    no_reasoning: tuple[str, ...] = ()
    scheme: str = field(init=False)
    host: str = field(init=False)  # unbracketed, for connect() and SNI
    port: int = field(init=False)
    base_path: str = field(init=False)  # "" or "/v1": request paths are appended to it
    tls: bool = field(init=False)
    # Host header value: brackets around IPv6, ":port" only when not the default.
    authority: str = field(init=False)

    def __post_init__(self) -> None:
        scheme, host, port, base_path = split_base_url(self.base_url)
        tls = scheme == "https"
        bracketed = f"[{host}]" if ":" in host else host
        authority = bracketed if port == (443 if tls else 80) else f"{bracketed}:{port}"
        for name, value in (
            ("scheme", scheme),
            ("host", host),
            ("port", port),
            ("base_path", base_path),
            ("tls", tls),
            ("authority", authority),
        ):
            object.__setattr__(self, name, value)

    def output_cap_for(self, model: str) -> int | None:
        """The ``max_output_tokens`` cap of ``model`` (first matching glob), or None."""
        return next((cap for glob, cap in self.max_output_tokens
                     if fnmatch.fnmatchcase(model, glob)), None)

    def reasoning_for(self, model: str) -> bool:
        """False when ``model`` matches a ``no_reasoning`` glob."""
        return not any(fnmatch.fnmatchcase(model, glob) for glob in self.no_reasoning)

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            if not f.init:
                continue
            value = getattr(self, f.name)
            if f.name == "api_key":
                shown = "None" if value is None else "<hidden>"
            elif f.name == "headers":
                shown = repr(tuple((k, "<hidden>") for k, _ in value))
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"ProviderConfig({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class Target:
    """A provider name and an optional model rename (None: send the requested model)."""

    provider: str
    model: str | None = None

    def __str__(self) -> str:
        return self.provider if self.model is None else f"{self.provider}:{self.model}"


@dataclass(frozen=True, slots=True)
class Route:
    match: str
    targets: tuple[Target, ...]
    # Optional relative weights, one per target: the first target of each request
    # is drawn by weight (spreading load over keys or base URLs), the rest follow
    # in config order as failover.  Empty: strict config order.
    weights: tuple[float, ...] = ()
    # Where the route came from ("routes[0]", "TOKENWAY_ROUTES[1]", ...), for explain.
    origin: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class AgentSafetyConfig:
    tool_loop_warn: int = DEFAULT_TOOL_LOOP_WARN
    tool_loop_stop: int = DEFAULT_TOOL_LOOP_STOP


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_s: float = DEFAULT_BACKOFF_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    deadline_s: float = DEFAULT_DEADLINE_S
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    cooldown_s: float = DEFAULT_COOLDOWN_S
    cooldown_max_s: float = DEFAULT_COOLDOWN_MAX_S
    on_client_disconnect: str = "cancel"
    heartbeat_s: float = DEFAULT_HEARTBEAT_S  # 0: off


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    providers: Mapping[str, ProviderConfig] = field(
        default_factory=lambda: MappingProxyType({})
    )
    routes: tuple[Route, ...] = ()
    source: str | None = None  # the file that was loaded, if any
    agent_safety: AgentSafetyConfig = field(default_factory=AgentSafetyConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)


def check_listen_safety(config: Config) -> str | None:
    """An error message when the gateway would listen beyond loopback without keys.

    Anyone who can reach such a port could spend the configured provider keys. Returns
    None when the listen host is loopback, keys are configured, or the operator opted
    out.
    """
    server = config.server
    if (
        config.auth.enabled
        or server.allow_unauthenticated
        or is_loopback_host(server.host)
    ):
        return None
    return (
        f"refusing to listen on {server.listen} without gateway keys: anyone who can "
        "reach this address could use the configured provider keys. Set "
        'TOKENWAY_API_KEYS=key1,key2 (or keys_env = "VAR" under [auth] in the config '
        "file, naming a variable that holds comma-separated keys), or listen on "
        "127.0.0.1, or pass --allow-unauthenticated "
        "(server.allow_unauthenticated = true) to accept the risk."
    )


# --- loading --------------------------------------------------------------------


def load_config(
    path: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Build the validated `Config` from defaults, the file, ``env`` and ``overrides``.

    ``path`` falls back to ``$TOKENWAY_CONFIG``; with neither, no file is read. ``env``
    defaults to ``os.environ``. See the module docstring for the keys and precedence.
    """
    return _Loader(path, os.environ if env is None else env, overrides or {}).load()


def _getenv(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_keys(table: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            import difflib  # only on a config error

            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                _join(path, key),
                f"unknown key ({hint}expected one of: {', '.join(allowed)})",
            )


def _split_keys(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


class _Loader:
    """One load: merges the layers into plain dicts, remembering which keys came
    from the environment or the CLI so that errors name the source, then validates."""

    def __init__(
        self, path: str | None, env: Mapping[str, str], overrides: Mapping[str, object]
    ) -> None:
        self.env = env
        self.overrides = overrides
        self.path = path if path is not None else _getenv(env, "TOKENWAY_CONFIG")
        self.path_label = (
            self.path if path is not None else f"{self.path} (from TOKENWAY_CONFIG)"
        )
        self.origins: dict[str, str] = {}  # dotted key -> "TOKENWAY_X" or "--flag"

    def label(self, key: str) -> str:
        origin = self.origins.get(key)
        return f"{key} (from {origin})" if origin else key

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.label(key), reason)

    # -- file --

    def read_file(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        where = self.path_label
        import tomllib  # only when there is a file

        try:
            with open(self.path, "rb") as fh:
                return tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(where, "config file not found") from None
        except OSError as exc:
            raise ConfigError(
                where, f"cannot read config file: {exc.strerror or exc}"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(where, f"invalid TOML: {exc}") from None

    def table(
        self, doc: Mapping[str, Any], key: str, allowed: tuple[str, ...] | None
    ) -> dict[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a table ([{key}])")
        if allowed is not None:
            _check_keys(value, key, allowed)
        return dict(value)

    def set_from(
        self, table: dict[str, Any], dotted: str, value: object, origin: str
    ) -> None:
        table[dotted.rsplit(".", 1)[1]] = value
        self.origins[dotted] = origin

    def load(self) -> Config:
        doc = self.read_file()
        _check_keys(doc, "", _TOP_KEYS)
        base_dir = os.path.dirname(os.path.abspath(self.path)) if self.path else None

        server = self.table(doc, "server", _SERVER_KEYS)
        ledger = self.table(doc, "ledger", _LEDGER_KEYS)
        auth = self.table(doc, "auth", _AUTH_KEYS)

        for var, dotted in (
            ("TOKENWAY_LISTEN", "server.listen"),
            ("TOKENWAY_PARSER", "server.parser"),
            ("TOKENWAY_LOG_LEVEL", "server.log_level"),
            ("TOKENWAY_MAX_BODY_BYTES", "server.max_body_bytes"),
        ):
            value = _getenv(self.env, var)
            if value is not None:
                self.set_from(server, dotted, value, var)
        db = _getenv(self.env, "TOKENWAY_DB")
        if db is not None:
            self.set_from(ledger, "ledger.path", db, "TOKENWAY_DB")

        for key, value in self.overrides.items():
            if key not in _OVERRIDE_KEYS:
                raise ConfigError(
                    f"overrides.{key}",
                    f"unknown override (expected one of: {', '.join(_OVERRIDE_KEYS)})",
                )
            if value is None:
                continue
            flag = "--" + key.replace("_", "-")
            if key == "db":
                self.set_from(ledger, "ledger.path", value, flag)
            else:
                self.set_from(server, f"server.{key}", value, flag)

        server_cfg = self.build_server(server)
        ledger_cfg = self.build_ledger(ledger, base_dir)
        auth_cfg = self.build_auth(auth)
        providers, shortcut_vendors = self.build_providers(doc, base_dir)
        routes = self.build_routes(doc, providers, shortcut_vendors)
        safety = self.table(doc, "agent_safety", _AGENT_SAFETY_KEYS)
        thresholds = {}
        for key, default in (("tool_loop_warn", DEFAULT_TOOL_LOOP_WARN),
                             ("tool_loop_stop", DEFAULT_TOOL_LOOP_STOP)):
            value = safety.get(key, default)
            if type(value) is not int or value < 0:
                raise ConfigError(f"agent_safety.{key}",
                                  f"must be an integer >= 0, 0 turns it off (got {value!r})")
            thresholds[key] = value
        routing = self.build_routing(self.table(doc, "routing", _ROUTING_KEYS))
        return Config(
            routing=routing,
            agent_safety=AgentSafetyConfig(**thresholds),
            server=server_cfg,
            ledger=ledger_cfg,
            auth=auth_cfg,
            providers=MappingProxyType(providers),
            routes=routes,
            source=self.path,
        )

    # -- typed getters --

    def get_str(
        self, table: Mapping[str, Any], path: str, key: str, default: str | None = None
    ) -> str | None:
        value = table.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(_join(path, key), f"must be a string (got {value!r})")
        return value

    def get_choice(
        self,
        table: Mapping[str, Any],
        path: str,
        key: str,
        choices: tuple[str, ...],
        default: str,
    ) -> str:
        value = table.get(key, default)
        folded = value.lower() if isinstance(value, str) else value
        if folded not in choices:
            raise self.fail(
                _join(path, key), f"must be one of {', '.join(choices)} (got {value!r})"
            )
        return folded

    def get_bool(
        self, table: Mapping[str, Any], path: str, key: str, default: bool
    ) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(_join(path, key), f"must be true or false (got {value!r})")
        return value

    def get_size(
        self, table: Mapping[str, Any], path: str, key: str, default: int
    ) -> int:
        if key not in table:
            return default
        try:
            size = parse_size(table[key])
        except ValueError as exc:
            raise self.fail(_join(path, key), str(exc)) from None
        if size <= 0:
            raise self.fail(_join(path, key), f"must be > 0 (got {table[key]!r})")
        return size

    def get_duration(
        self, table: Mapping[str, Any], path: str, key: str, default: float
    ) -> float:
        if key not in table:
            return default
        try:
            seconds = parse_duration(table[key])
        except ValueError as exc:
            raise self.fail(_join(path, key), str(exc)) from None
        if seconds <= 0:
            raise self.fail(_join(path, key), f"must be > 0 (got {table[key]!r})")
        return seconds

    def get_path(self, value: str, dotted: str, base_dir: str | None) -> str:
        """File-given relative paths are relative to the config file, not the cwd."""
        value = os.path.expanduser(value)
        from_file = dotted not in self.origins
        if (
            from_file
            and base_dir
            and not os.path.isabs(value)
            and not value.startswith(":")
            and "://" not in value
        ):
            value = os.path.join(base_dir, value)
        return value

    # -- sections --

    def build_routing(self, t: dict[str, Any]) -> RoutingConfig:
        def count(key: str, default: int, low: int) -> int:
            value = t.get(key, default)
            if type(value) is not int or value < low:
                raise self.fail(f"routing.{key}", f"must be an integer >= {low} (got {value!r})")
            return value

        heartbeat = t.get("heartbeat", DEFAULT_HEARTBEAT_S)
        heartbeat_s = 0.0 if heartbeat in (0, "0", "off", False) else self.get_duration(
            t, "routing", "heartbeat", DEFAULT_HEARTBEAT_S)
        return RoutingConfig(
            max_attempts=count("max_attempts", DEFAULT_MAX_ATTEMPTS, 1),
            backoff_s=self.get_duration(t, "routing", "backoff", DEFAULT_BACKOFF_S),
            backoff_max_s=self.get_duration(t, "routing", "backoff_max", DEFAULT_BACKOFF_MAX_S),
            deadline_s=self.get_duration(t, "routing", "deadline", DEFAULT_DEADLINE_S),
            failure_threshold=count("failure_threshold", DEFAULT_FAILURE_THRESHOLD, 1),
            cooldown_s=self.get_duration(t, "routing", "cooldown", DEFAULT_COOLDOWN_S),
            cooldown_max_s=self.get_duration(t, "routing", "cooldown_max", DEFAULT_COOLDOWN_MAX_S),
            on_client_disconnect=self.get_choice(t, "routing", "on_client_disconnect",
                                                 DISCONNECT_MODES, "cancel"),
            heartbeat_s=heartbeat_s,
        )

    def build_server(self, t: dict[str, Any]) -> ServerConfig:
        listen = t.get("listen", DEFAULT_LISTEN)
        try:
            host, port = parse_listen(listen)
        except ValueError as exc:
            raise self.fail("server.listen", str(exc)) from None
        return ServerConfig(
            host=host,
            port=port,
            parser=self.get_choice(t, "server", "parser", PARSERS, DEFAULT_PARSER),
            max_header_bytes=self.get_size(
                t, "server", "max_header_bytes", DEFAULT_MAX_HEADER_BYTES
            ),
            max_body_bytes=self.get_size(
                t, "server", "max_body_bytes", DEFAULT_MAX_BODY_BYTES
            ),
            header_timeout_s=self.get_duration(
                t, "server", "header_timeout", DEFAULT_HEADER_TIMEOUT_S
            ),
            keepalive_timeout_s=self.get_duration(
                t, "server", "keepalive_timeout", DEFAULT_KEEPALIVE_TIMEOUT_S
            ),
            shutdown_grace_s=self.get_duration(
                t, "server", "shutdown_grace", DEFAULT_SHUTDOWN_GRACE_S
            ),
            allow_unauthenticated=self.get_bool(
                t, "server", "allow_unauthenticated", False
            ),
            log_level=self.get_choice(
                t, "server", "log_level", LOG_LEVELS, DEFAULT_LOG_LEVEL
            ),
        )

    def build_ledger(self, t: dict[str, Any], base_dir: str | None) -> LedgerConfig:
        path = self.get_str(t, "ledger", "path", DEFAULT_LEDGER_PATH)
        if not path or not path.strip():
            raise self.fail("ledger.path", "must not be empty")
        if "path" in t:  # the default stays relative to the working directory
            path = self.get_path(path, "ledger.path", base_dir)
        return LedgerConfig(path=path)

    def check_secret(self, value: object, key: str) -> str:
        """Validate a key or token without ever putting it in a message."""
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string (got {type(value).__name__})")
        if not value:
            raise self.fail(key, "must not be empty")
        if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in value):
            raise self.fail(key, "must not contain whitespace or control characters")
        return value

    def build_auth(self, t: dict[str, Any]) -> AuthConfig:
        env_keys = _getenv(self.env, "TOKENWAY_API_KEYS")
        keys: list[str] = []
        if env_keys is not None:
            for i, key in enumerate(_split_keys(env_keys)):
                keys.append(self.check_secret(key, f"TOKENWAY_API_KEYS[{i}]"))
        else:
            inline = t.get("keys", [])
            if not isinstance(inline, list):
                raise self.fail("auth.keys", "must be a list of strings")
            for i, key in enumerate(inline):
                keys.append(self.check_secret(key, f"auth.keys[{i}]"))
            var = self.get_str(t, "auth", "keys_env")
            if var is not None:
                value = _getenv(self.env, var)
                if value is None:
                    raise self.fail(
                        "auth.keys_env",
                        f"environment variable {var!r} is not set or empty",
                    )
                for i, key in enumerate(_split_keys(value)):
                    keys.append(self.check_secret(key, f"auth.keys_env ({var}[{i}])"))
        return AuthConfig(keys=tuple(dict.fromkeys(keys)))

    def build_providers(
        self, doc: Mapping[str, Any], base_dir: str | None
    ) -> tuple[dict[str, ProviderConfig], dict[str, str]]:
        raw = self.table(doc, "providers", None)
        tables: dict[str, dict[str, Any]] = {}
        for name, table in raw.items():
            path = f"providers.{name}"
            if not isinstance(table, dict):
                raise ConfigError(path, f"must be a table ([{path}])")
            if not _PROVIDER_NAME_RE.fullmatch(name):
                raise ConfigError(
                    path, "provider names use letters, digits, '_' and '-' (at most 64)"
                )
            _check_keys(table, path, _PROVIDER_KEYS)
            tables[name] = dict(table)

        # TOKENWAY_<VENDOR>_{BASE_URL,API_KEY}: vendor -> the variable(s) that were set.
        shortcut_vendors: dict[str, str] = {}
        for vendor in KINDS:
            prefix = f"TOKENWAY_{vendor.upper()}_"
            base_url = _getenv(self.env, prefix + "BASE_URL")
            api_key = _getenv(self.env, prefix + "API_KEY")
            if base_url is None and api_key is None:
                continue
            if base_url is None:
                shortcut_vendors[vendor] = prefix + "API_KEY"
            elif api_key is None:
                shortcut_vendors[vendor] = prefix + "BASE_URL"
            else:
                shortcut_vendors[vendor] = prefix + "*"
            path = f"providers.{vendor}"
            table = tables.setdefault(vendor, {})
            kind = table.get("kind")
            if isinstance(kind, str):
                kind = kind.lower()
            if kind is None:
                self.set_from(table, f"{path}.kind", vendor, shortcut_vendors[vendor])
            elif kind != vendor:
                raise ConfigError(
                    f"{path}.kind",
                    f"is {kind!r} in the file, but {shortcut_vendors[vendor]} defines "
                    f"the {vendor!r} provider as kind {vendor!r}",
                )
            if base_url is not None:
                self.set_from(table, f"{path}.base_url", base_url, prefix + "BASE_URL")
            if api_key is not None:
                table.pop("api_key_env", None)
                self.set_from(table, f"{path}.api_key", api_key, prefix + "API_KEY")

        providers = {
            name: self.build_provider(name, table, base_dir)
            for name, table in tables.items()
        }
        return providers, shortcut_vendors

    def build_provider(
        self, name: str, t: dict[str, Any], base_dir: str | None
    ) -> ProviderConfig:
        path = f"providers.{name}"
        if "kind" not in t:
            raise self.fail(f"{path}.kind", f"is required (one of {', '.join(KINDS)})")
        kind = self.get_choice(t, path, "kind", KINDS, "")

        base_url = self.get_str(t, path, "base_url", VENDOR_BASE_URLS[kind])
        assert base_url is not None
        try:
            scheme, _, _, base_path = split_base_url(base_url)
        except ValueError as exc:
            raise self.fail(f"{path}.base_url", str(exc)) from None
        if (
            kind != "openai"
            and base_path.rsplit("/", 1)[-1].lower() in _VERSION_SEGMENTS
        ):
            raise self.fail(
                f"{path}.base_url",
                f"{kind} base_url is the bare host, e.g. {VENDOR_BASE_URLS[kind]!r}; "
                f"the gateway appends the API version path itself (got {base_url!r})",
            )

        if "api_key" in t and "api_key_env" in t:
            raise self.fail(
                f"{path}.api_key", "set either api_key or api_key_env, not both"
            )
        api_key: str | None = None
        if "api_key" in t:
            api_key = self.check_secret(t["api_key"], f"{path}.api_key")
        elif "api_key_env" in t:
            var = self.get_str(t, path, "api_key_env")
            assert var is not None
            value = _getenv(self.env, var)
            if value is None:
                raise self.fail(
                    f"{path}.api_key_env",
                    f"environment variable {var!r} is not set or empty",
                )
            api_key = self.check_secret(value, f"{path}.api_key_env ({var})")

        headers: list[tuple[str, str]] = []
        raw_headers = t.get("headers", {})
        if not isinstance(raw_headers, dict):
            raise self.fail(f"{path}.headers", 'must be a table of name = "value"')
        for hname, hvalue in raw_headers.items():
            hpath = f"{path}.headers.{hname}"
            if not _HEADER_NAME_RE.fullmatch(hname):
                raise self.fail(hpath, "not a valid header name")
            if hname.lower() in _MANAGED_HEADERS:
                raise self.fail(hpath, "is set by the gateway and cannot be configured")
            if not isinstance(hvalue, str):
                raise self.fail(
                    hpath, f"must be a string (got {type(hvalue).__name__})"
                )
            if any(c in "\r\n\0" for c in hvalue):
                raise self.fail(hpath, "value must not contain CR, LF or NUL")
            headers.append((hname, hvalue))

        tls = scheme == "https"
        verify_tls = self.get_bool(t, path, "verify_tls", True)
        ca_bundle = self.get_str(t, path, "ca_bundle")
        if ca_bundle is not None:
            if not tls:
                raise self.fail(
                    f"{path}.ca_bundle", "only applies to an https base_url"
                )
            if not verify_tls:
                raise self.fail(
                    f"{path}.ca_bundle", "is unused when verify_tls = false"
                )
            ca_bundle = self.get_path(ca_bundle, f"{path}.ca_bundle", base_dir)
            if not os.path.isfile(ca_bundle):
                raise self.fail(f"{path}.ca_bundle", f"file not found: {ca_bundle!r}")

        max_connections = t.get("max_connections", DEFAULT_MAX_CONNECTIONS)
        if (
            not isinstance(max_connections, int)
            or isinstance(max_connections, bool)
            or max_connections < 1
        ):
            raise self.fail(
                f"{path}.max_connections",
                f"must be an integer >= 1 (got {max_connections!r})",
            )

        def nonneg(key: str, default: int) -> int:
            value = t.get(key, default)
            if type(value) is not int or value < 0:
                raise self.fail(f"{path}.{key}", f"must be an integer >= 0 (got {value!r})")
            return value

        rt = t.get("request_timeout", 0)
        return ProviderConfig(
            max_output_tokens=self.output_caps(t, path),
            no_reasoning=self.globs(t, path, "no_reasoning"),
            request_timeout_s=0.0 if rt in (0, "0") else self.get_duration(
                t, path, "request_timeout", 0.0),
            max_concurrency=nonneg("max_concurrency", 0),
            queue_size=nonneg("queue_size", 64),
            queue_timeout_s=self.get_duration(t, path, "queue_timeout", 30.0),
            responses_api=self.get_bool(t, path, "responses_api", True),
            count_tokens=self.get_choice(
                t, path, "count_tokens", ("upstream", "local"),
                "upstream" if kind == "anthropic" else "local"),
            name=name,
            kind=kind,
            base_url=base_url,
            api_key=api_key,
            headers=tuple(headers),
            auth_mode=self.get_choice(t, path, "auth", AUTH_MODES, "inject"),
            ca_bundle=ca_bundle,
            verify_tls=verify_tls,
            connect_timeout_s=self.get_duration(
                t, path, "connect_timeout", DEFAULT_CONNECT_TIMEOUT_S
            ),
            first_byte_timeout_s=self.get_duration(
                t, path, "first_byte_timeout", DEFAULT_FIRST_BYTE_TIMEOUT_S
            ),
            idle_timeout_s=self.get_duration(
                t, path, "idle_timeout", DEFAULT_IDLE_TIMEOUT_S
            ),
            max_connections=max_connections,
        )

    def globs(self, t: Mapping[str, Any], path: str, key: str) -> tuple[str, ...]:
        """A list of model globs (a single string is taken as a list of one)."""
        raw = t.get(key)
        if raw is None:
            return ()
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(g, str) and g for g in raw):
            raise self.fail(f"{path}.{key}", f"must be a list of model globs (got {raw!r})")
        return tuple(raw)

    def output_caps(self, t: Mapping[str, Any], path: str) -> tuple[tuple[str, int], ...]:
        """``max_output_tokens``: one integer for every model, or a table of model glob
        -> integer (first match wins, in the table's order)."""
        raw = t.get("max_output_tokens")
        if raw is None:
            return ()
        single = not isinstance(raw, Mapping)
        items = [("*", raw)] if single else list(raw.items())
        out = []
        for glob, cap in items:
            where = f"{path}.max_output_tokens" + ("" if single else f".{glob}")
            if type(cap) is not int or cap < 1:
                raise self.fail(where, f"must be an integer >= 1 (got {cap!r})")
            out.append((str(glob), cap))
        return tuple(out)

    def build_routes(
        self,
        doc: Mapping[str, Any],
        providers: Mapping[str, ProviderConfig],
        shortcut_vendors: Mapping[str, str],
    ) -> tuple[Route, ...]:
        # (label, match, targets as written, weights)
        raw: list[tuple[str, object, object, object]] = []
        file_routes = doc.get("routes", [])
        if not isinstance(file_routes, list):
            raise ConfigError("routes", "must be an array of tables ([[routes]])")
        for i, entry in enumerate(file_routes):
            label = f"routes[{i}]"
            if not isinstance(entry, dict):
                raise ConfigError(label, "must be a table with match and to")
            _check_keys(entry, label, _ROUTE_KEYS)
            if "match" not in entry:
                raise ConfigError(f"{label}.match", "is required")
            if "to" not in entry:
                raise ConfigError(f"{label}.to", "is required")
            raw.append((label, entry["match"], entry["to"], entry.get("weights")))

        env_routes = _getenv(self.env, "TOKENWAY_ROUTES")
        if env_routes is not None:
            items = [item.strip() for item in env_routes.split(",") if item.strip()]
            for i, item in enumerate(items):
                label = f"TOKENWAY_ROUTES[{i}]"
                match, sep, targets = item.partition("=>")
                if not sep:
                    raise ConfigError(
                        label, f"expected GLOB=>TARGET|TARGET (got {item!r})"
                    )
                raw.append(
                    (label, match.strip(), [t.strip() for t in targets.split("|")], None)
                )
        else:
            for vendor, var in shortcut_vendors.items():
                for glob in VENDOR_DEFAULT_ROUTES[vendor]:
                    raw.append((f"default for {var}", glob, [vendor], None))

        return tuple(
            self.build_route(label, match, to, providers, weights)
            for label, match, to, weights in raw
        )

    def build_route(
        self,
        label: str,
        match: object,
        to: object,
        providers: Mapping[str, ProviderConfig],
        weights: object = None,
    ) -> Route:
        if not isinstance(match, str) or not match:
            raise ConfigError(
                f"{label}.match", f"must be a non-empty glob string (got {match!r})"
            )
        if match == LOOPBACK_MODEL:
            raise ConfigError(
                f"{label}.match",
                f"{LOOPBACK_MODEL!r} is the built-in model and cannot be routed",
            )
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list):
            raise ConfigError(f"{label}.to", f"must be a list of targets (got {to!r})")
        if not to:
            raise ConfigError(f"{label}.to", "needs at least one target")
        targets = []
        for j, spec in enumerate(to):
            key = f"{label}.to[{j}]"
            if not isinstance(spec, str) or not spec.strip():
                raise ConfigError(
                    key, f'must be "PROVIDER" or "PROVIDER:model" (got {spec!r})'
                )
            name, sep, model = spec.strip().partition(":")
            if sep and not model:
                raise ConfigError(key, f"empty model after ':' in {spec!r}")
            if name not in providers:
                known = ", ".join(providers) if providers else "none"
                raise ConfigError(key, f"unknown provider {name!r} (defined: {known})")
            targets.append(Target(provider=name, model=model if sep else None))
        wts: tuple[float, ...] = ()
        if weights is not None:
            if (not isinstance(weights, list) or len(weights) != len(targets)
                    or not all(isinstance(w, int | float) and not isinstance(w, bool)
                               and w >= 0 for w in weights)
                    or not any(w > 0 for w in weights)):
                raise ConfigError(
                    f"{label}.weights",
                    f"must be a list of {len(targets)} numbers >= 0 (one per target, "
                    f"at least one > 0), got {weights!r}")
            wts = tuple(float(w) for w in weights)
        return Route(match=match, targets=tuple(targets), origin=label, weights=wts)
