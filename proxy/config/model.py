"""The frozen configuration objects and their defaults.

Every default is a named constant with its unit in the name (``_S`` seconds, ``_BYTES``
bytes) and a comment on where the number comes from; the loader and the dataclasses
both read these constants, so a default is written once.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

from .values import is_loopback_host, parse_listen, split_base_url

# --- choices --------------------------------------------------------------------

KINDS = ("openai", "anthropic", "gemini")
PARSERS = ("httptools", "h11")
AUTH_MODES = ("inject", "passthrough")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
DISCONNECT_MODES = ("cancel", "drain")
COUNT_TOKENS_MODES = ("upstream", "local")
ACCESS_FORMATS = ("json", "logfmt")
# The two words [logging] destinations take besides a file path.
LOG_OFF = "off"
LOG_STDERR = "stderr"

# The built-in model answered by the gateway itself; never routed to a provider.
LOOPBACK_MODEL = "loopback"

# --- [server] and [ledger] defaults -----------------------------------------------

# Loopback only: a fresh install must not expose provider keys to the network.
# 8081 keeps clear of the 8080 that many local dev servers take.
DEFAULT_LISTEN = "127.0.0.1:8081"
# httptools (llhttp, C) is the fast path; h11 is the strict pure-Python one.
DEFAULT_PARSER = "httptools"
# Relative to the working directory (a path written in the config file is relative
# to the file's directory instead).
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

# Longest silence while a request body arrives: nginx's client_body_timeout (60 s).
DEFAULT_BODY_TIMEOUT_S = 60.0

# Longest time for a whole request body, however it trickles: 32 MiB (the body
# limit) at 1 Mbit/s takes about 270 s.
DEFAULT_BODY_DEADLINE_S = 300.0

# Longest time a client may read nothing of its answer: nginx's send_timeout (60 s).
DEFAULT_SEND_TIMEOUT_S = 60.0

# Open client connections per process; more are answered 503 and closed.  Also
# capped by the file limit (see proxy.server.connection_limit).
DEFAULT_MAX_CLIENT_CONNECTIONS = 4096

# HTTP/2 streams open at once on one client connection (SETTINGS_MAX_CONCURRENT_STREAMS,
# RFC 9113 §6.5.2): the spec's recommended floor, nginx's http2_max_concurrent_streams
# default (128) rounded to it, and h2's own default.
DEFAULT_MAX_CONCURRENT_STREAMS = 100

# The built-in loopback model's switch: "auto", "on" or "off".
LOOPBACK_MODES = ("auto", "on", "off")
DEFAULT_LOOPBACK_MODEL = "auto"

# --- [logging] defaults (docs/logging.md) ----------------------------------------

# No access log unless asked for: the ledger already keeps every request
# (losslessly, with more columns) and `gateway tail` follows it live, so the
# access log is an extra stream for log collectors, and off costs the request
# path one attribute check.
DEFAULT_ACCESS_LOG = LOG_OFF
# JSON lines: what log collectors (Vector, Fluent Bit, Loki, CloudWatch) parse
# without a configured pattern.
DEFAULT_ACCESS_FORMAT = "json"
DEFAULT_DAEMON_LOG = LOG_STDERR
# A log file is renamed to FILE.1 once it reaches this size, a gateway choice:
# at about 450 bytes an access line, some 230 000 requests a file, still quick
# to grep.
DEFAULT_LOG_ROTATE_BYTES = 100 * 1024 * 1024
# Rotated files kept (FILE.1 .. FILE.5): 5 x 100 MiB bounds the disk a log uses.
DEFAULT_LOG_KEEP = 5
# Most rotated files kept: every rotation renames each of them once.
MAX_LOG_KEEP = 1000

# --- [providers.NAME] defaults ----------------------------------------------------

# Public base URLs, used when a provider gives no base_url.
VENDOR_BASE_URLS: Mapping[str, str] = MappingProxyType(
    {
        "openai": "https://api.openai.com/v1",
        "anthropic": "https://api.anthropic.com",
        "gemini": "https://generativelanguage.googleapis.com",
    }
)

# Model globs routed to a provider defined by the TOKENWAY_<VENDOR>_* shortcut: the
# prefixes of each vendor's public model ids.
VENDOR_DEFAULT_ROUTES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "openai": ("gpt-*", "o[0-9]*", "chatgpt-*", "text-embedding-*"),
        "anthropic": ("claude*",),
        "gemini": ("gemini*",),
    }
)

# Send the provider's own key and drop the client's credentials: clients then need
# only a gateway key, never a provider key.
DEFAULT_AUTH_MODE = "inject"

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

# Most open connections to one provider: Envoy's default for a cluster's
# max_connections circuit breaker (1024, https://www.envoyproxy.io/docs/envoy/latest/
# api-v3/config/cluster/v3/circuit_breaker.proto). A client library's 100 (httpx's
# Limits) is too few for a gateway: an LLM stream holds its connection for seconds to
# minutes, so the 101st concurrent stream waited for one to end (512 paced streams:
# first byte after 5 s at the median, bench/RESULTS.md, 2026-12-07) or got a 503.
DEFAULT_MAX_CONNECTIONS = 1024

# Whole-request limit, streaming included: none (0). An agent's stream can rightly
# run for many minutes; a stuck one is already cut by the idle timeout above and
# by routing.deadline before its first byte.
DEFAULT_REQUEST_TIMEOUT_S = 0.0

# In-flight requests per provider: unlimited (0) unless the operator knows the
# provider's own limit; the queue settings below only apply under a limit.
DEFAULT_MAX_CONCURRENCY = 0

# Requests that may wait for a concurrency slot, and for how long, before 503 +
# Retry-After: a gateway choice, not an outside default. 64 waiters bound the queue's
# memory (each holds one request body, at most max_body_bytes); 30 s stays well under
# the SDKs' 10-minute request timeout, so the client is still there to read the 503.
DEFAULT_QUEUE_SIZE = 64
DEFAULT_QUEUE_TIMEOUT_S = 30.0


def default_count_tokens(kind: str) -> str:
    """Only the Anthropic API has a token-counting endpoint to ask
    (POST /v1/messages/count_tokens); every other kind estimates locally."""
    return "upstream" if kind == "anthropic" else "local"


# --- [routing] defaults -----------------------------------------------------------

# Failover: three attempts in all (first target, next target, one more) is what
# the OpenAI and Anthropic SDKs do by default (max_retries=2).
DEFAULT_MAX_ATTEMPTS = 3
# Jittered exponential backoff before retrying a target already tried
# (the SDKs start at 0.5 s; a gateway retrying on a different key can be faster).
DEFAULT_BACKOFF_S = 0.2
DEFAULT_BACKOFF_MAX_S = 5.0
# Total time to get a response head across all attempts: the OpenAI and Anthropic
# SDKs' 10-minute request timeout, so the gateway gives up no earlier than they would.
DEFAULT_DEADLINE_S = 600.0
# Circuit breaker: 5 consecutive failures open a target for 30 s, doubling on
# each failed half-open probe up to 5 minutes (envoy outlier detection defaults:
# 5 consecutive 5xx, 30 s base ejection, 300 s max).
DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOLDOWN_S = 30.0
DEFAULT_COOLDOWN_MAX_S = 300.0
# Cancel the provider request when the client goes away: nobody reads the answer,
# so the provider should stop spending tokens on it.
DEFAULT_ON_CLIENT_DISCONNECT = "cancel"
# Keep-alives during silent streams (thinking models): well under every
# client's idle timeout (Codex 300 s, most proxies 60 s).
DEFAULT_HEARTBEAT_S = 15.0

# --- [agent_safety] defaults ------------------------------------------------------

# Duplicate tool-call thresholds, a gateway choice: the same call 3 times in a row
# gets the model a warning, 5 times stops the loop (0 turns either off).
DEFAULT_TOOL_LOOP_WARN = 3
DEFAULT_TOOL_LOOP_STOP = 5

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
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    body_deadline_s: float = DEFAULT_BODY_DEADLINE_S
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CLIENT_CONNECTIONS
    max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    # Off: listening beyond loopback without gateway keys is refused at start.
    allow_unauthenticated: bool = False
    # The built-in loopback model: "auto" serves it only on a loopback address
    # without gateway keys (a development convenience, not for strangers).
    loopback_model: str = DEFAULT_LOOPBACK_MODEL
    log_level: str = DEFAULT_LOG_LEVEL

    @property
    def listen(self) -> str:
        """``HOST:PORT`` as written in config, e.g. ``[::1]:8081``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# The endpoint sets a listener can serve (``[[listeners]] endpoints``):
# openai: /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models;
# anthropic: /v1/messages (+ count_tokens), /anthropic/..., /v1/models;
# gemini: /v1beta/models/...; health: /health and /; admin: /admin/...;
# metrics: /metrics.
ENDPOINT_GROUPS = ("openai", "anthropic", "gemini", "health", "admin", "metrics")


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    host: str
    port: int
    endpoints: tuple[str, ...] = ENDPOINT_GROUPS
    tls_cert: str | None = None  # PEM paths; both or neither
    tls_key: str | None = None

    @property
    def listen(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    """``path``: the SQLite file, or with PostgreSQL where this gateway keeps its local
    spill journal (``PATH.spill``) and pid file. ``database_url``: the PostgreSQL URI
    (``[storage] url``), None for SQLite; it may hold a password, so it is left out of
    ``repr`` and ``shown`` is what may be printed."""

    path: str = DEFAULT_LEDGER_PATH
    database_url: str | None = field(default=None, repr=False)
    shown: str | None = None

    @property
    def where(self) -> str:
        """The database as logs name it."""
        return self.shown if self.shown is not None else self.path


@dataclass(frozen=True, slots=True, repr=False)
class AuthConfig:
    """Gateway keys clients must present. No keys means authentication is off."""

    keys: tuple[str, ...] = ()
    # Whether the accounts tables hold any key (set by the daemon from its
    # database, not read from the file): then authentication is on as well.
    stored_keys: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.keys) or self.stored_keys

    def __repr__(self) -> str:
        return f"AuthConfig(keys=<{len(self.keys)} hidden>, stored_keys={self.stored_keys})"


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
    auth_mode: str = DEFAULT_AUTH_MODE
    ca_bundle: str | None = None
    verify_tls: bool = True  # certificate and host name checks on https
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    first_byte_timeout_s: float = DEFAULT_FIRST_BYTE_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    # Most open connections to this provider; requests beyond it wait (bounded) for
    # one to free up, then get 503.
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    # "off" (HTTP/1.1), "on" (HTTP/2 only) or "auto" (https: ALPN offers both).
    # With HTTP/2 one connection carries many requests; max_connections still caps
    # the connections.
    http2: str = "off"
    # OpenAI kind: forward Responses clients to the provider's own /responses
    # (OpenAI, vLLM, Ollama, llama.cpp serve it); false translates to Chat.
    responses_api: bool = True
    # Ask the provider for its model list, for glob routes in GET /v1/models
    # (proxy/model_catalog.py). The loader's default: off for auth = "passthrough".
    list_models: bool = True
    # Whole-request limit, streaming included (0: none; streams are bounded by
    # the idle timeout instead).
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    # In-flight requests to this provider (0: unlimited), and how many more may
    # wait for a slot, for how long, before getting 503 + Retry-After.
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    queue_size: int = DEFAULT_QUEUE_SIZE
    queue_timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S
    # Anthropic kind: "upstream" asks the provider's count_tokens, "local" estimates;
    # other kinds always estimate. The loader's default is default_count_tokens(kind).
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
class PriceConfig:
    """``[prices."MODEL-GLOB"]``: USD per million tokens; a cache price left out is
    the input price (proxy/accounts/prices.py)."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_s: float = DEFAULT_BACKOFF_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    deadline_s: float = DEFAULT_DEADLINE_S
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    cooldown_s: float = DEFAULT_COOLDOWN_S
    cooldown_max_s: float = DEFAULT_COOLDOWN_MAX_S
    on_client_disconnect: str = DEFAULT_ON_CLIENT_DISCONNECT
    heartbeat_s: float = DEFAULT_HEARTBEAT_S  # 0: off
    # Another provider's built-in tool the target cannot run: "drop" it (logged,
    # counted in the row's dropped_tools) or "refuse" the request with a 400.
    builtin_tools: str = "drop"


BUILTIN_TOOL_MODES = ("drop", "refuse")


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """``[logging]``: where the access log and the daemon log go (``"off"``,
    ``"stderr"`` or a file path) and how their files rotate (docs/logging.md)."""

    access_log: str = DEFAULT_ACCESS_LOG
    access_format: str = DEFAULT_ACCESS_FORMAT
    daemon_log: str = DEFAULT_DAEMON_LOG
    rotate_bytes: int = DEFAULT_LOG_ROTATE_BYTES  # 0: no rotation by size
    rotate_daily: bool = False  # rotate at UTC midnight
    keep: int = DEFAULT_LOG_KEEP


# --- [limits] (docs/fleet.md, "Shared limits with Redis") --------------------------
REDIS_DOWN_MODES = ("open", "closed")
DEFAULT_ON_REDIS_DOWN = "open"
# A Redis round trip on a LAN takes 0.1-1 ms; 100 ms means Redis is not answering, and
# is what a request waits at most before the on_redis_down policy decides for it.
DEFAULT_REDIS_TIMEOUT_S = 0.1
DEFAULT_REDIS_PREFIX = "tokenway:"


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """``[limits]``: where the rpm/tpm/budget counters live. ``redis_url`` None keeps
    them in each process; it may hold a password, so it is left out of ``repr`` and
    ``shown`` is what may be printed."""

    redis_url: str | None = field(default=None, repr=False)
    shown: str | None = None
    on_redis_down: str = DEFAULT_ON_REDIS_DOWN
    timeout_s: float = DEFAULT_REDIS_TIMEOUT_S
    key_prefix: str = DEFAULT_REDIS_PREFIX


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    # The first one is ``server.host``/``server.port``; empty means just that one.
    listeners: tuple[ListenerConfig, ...] = ()
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    providers: Mapping[str, ProviderConfig] = field(
        default_factory=lambda: MappingProxyType({})
    )
    routes: tuple[Route, ...] = ()
    source: str | None = None  # the file that was loaded, if any
    agent_safety: AgentSafetyConfig = field(default_factory=AgentSafetyConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    # Model glob -> price, over the database's and the bundled prices.
    prices: Mapping[str, PriceConfig] = field(default_factory=lambda: MappingProxyType({}))
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)


def loopback_enabled(config: Config) -> bool:
    """Whether the built-in ``loopback`` model answers: ``on``/``off`` as set;
    ``auto`` only on a loopback address without gateway keys.  Its answers cost
    the gateway CPU and memory and no provider anything, so a gateway strangers
    can reach does not offer it unless asked to."""
    mode = config.server.loopback_model
    if mode == "auto":
        return not config.auth.enabled and all(
            is_loopback_host(lst.host) for lst in listeners_of(config))
    return mode == "on"


def listeners_of(config: Config) -> tuple[ListenerConfig, ...]:
    """The listeners of ``config``: ``[[listeners]]``, or the one ``[server] listen``.
    ``server.host``/``server.port`` is always the first one's address."""
    server = config.server
    if not config.listeners:
        return (ListenerConfig(server.host, server.port),)
    first = config.listeners[0]
    if (first.host, first.port) != (server.host, server.port):
        first = ListenerConfig(server.host, server.port, first.endpoints, first.tls_cert,
                               first.tls_key)
    return (first, *config.listeners[1:])


def check_listen_safety(config: Config) -> str | None:
    """An error message when the gateway would listen beyond loopback without keys.

    Anyone who can reach such a port could spend the configured provider keys. Returns
    None when every listener is on loopback, keys are configured, or the operator
    opted out.
    """
    server = config.server
    if config.auth.enabled or server.allow_unauthenticated:
        return None
    for lst in listeners_of(config):
        if not is_loopback_host(lst.host):
            return (
                f"refusing to listen on {lst.listen} without gateway keys: anyone who can "
                "reach this address could use the configured provider keys. Set "
                'TOKENWAY_API_KEYS=key1,key2 (or keys_env = "VAR" under [auth] in the config '
                "file, naming a variable that holds comma-separated keys), or listen on "
                "127.0.0.1, or pass --allow-unauthenticated "
                "(server.allow_unauthenticated = true) to accept the risk."
            )
    return None
