"""Gateway configuration: read a TOML file, apply env and CLI overrides, validate once.

The result is a frozen `Config` built at startup; nothing on the request path parses or
validates configuration again. Every error is a `ConfigError` whose message starts with
the dotted path of the offending key (``providers.openai.kind: ...``), followed by
``(from TOKENWAY_X)`` or ``(from --flag)`` when the value came from the environment or
the command line; when the file itself cannot be read or parsed, the message starts
with the file's path instead. Unknown keys are errors too, so a typo never silently
turns into a default.

File format (every section is optional; a value shown is the key's default, or an
example when the key has no default)::

    [server]
    listen = "127.0.0.1:8081"      # HOST:PORT; IPv6 as "[::1]:8081"
    parser = "httptools"           # or "h11" (strict pure-Python HTTP/1.1 backend)
    max_header_bytes = "64KiB"     # sizes: int bytes, or a number with a unit:
    max_body_bytes = "32MiB"       #   B, KB, MB, GB (x1000), KiB, MiB, GiB (x1024)
    header_timeout = "30s"         # durations: seconds, or "500ms", "30s", "5m", "1h"
    keepalive_timeout = "75s"
    body_timeout = "60s"           # longest silence while a request body arrives
    body_deadline = "300s"         # longest time for a whole request body
    send_timeout = "60s"           # a client that reads nothing of its answer for
                                   # this long is disconnected
    max_connections = 4096         # open client connections; more get 503 and are
                                   # closed (also capped by the file limit)
    max_concurrent_streams = 100   # HTTP/2 streams open at once per connection
    shutdown_grace = "30s"         # SIGTERM/SIGINT: in-flight requests get this
                                   # long to finish
    allow_unauthenticated = false  # true allows a non-loopback listen without keys
    loopback_model = "auto"        # the built-in loopback model: "auto" serves it
                                   # only on a loopback address without keys;
                                   # "on" or "off" decide
    log_level = "info"             # debug, info, warning, error, critical

    [[listeners]]                  # several addresses, each with its own endpoints
    address = "127.0.0.1:8081"     # (instead of [server] listen; --listen moves
                                   # the first one)
    endpoints = ["openai", "anthropic", "gemini", "health", "admin", "metrics"]
                                   # the default: all; a path outside the set is 404
    tls_cert = "cert.pem"          # PEM chain and key: HTTPS on this address (TLS
    tls_key = "key.pem"            # 1.2+); re-read on reload (SIGHUP)

    [ledger]
    path = "tokenway.db"           # written in the file: relative to the file's
                                   # directory; the default, TOKENWAY_DB and --db:
                                   # relative to the working directory. With
                                   # PostgreSQL: where the local spill journal
                                   # (PATH.spill) and pid file (PATH.pid) go

    [storage]
    url = "postgresql://tokenway@db.internal/tokenway"
                                   # the database, when set: sqlite:///PATH, a
                                   # path, or a postgresql:// URI (docs/fleet.md);
                                   # env TOKENWAY_DATABASE_URL, flag --database-url

    [auth]                         # no keys at all: authentication is off
    keys_env = "TOKENWAY_GATEWAY_KEYS"  # env var holding comma-separated gateway
                                   # keys; it must be set and non-empty
    keys = ["k1"]                  # inline keys work too, but then the file holds
                                   # secrets: prefer keys_env. Both are combined.

    [providers.NAME]               # NAME: letters, digits, "_" and "-" (at most 64)
    kind = "openai"                # required: "openai" | "anthropic" | "gemini"
    base_url = "https://api.openai.com/v1"
                                   # default: the vendor's public URL for `kind`.
                                   # OpenAI kind ends in /v1; Anthropic and Gemini
                                   # kinds are the bare host (the gateway appends
                                   # the versioned API path itself).
    api_key_env = "OPENAI_API_KEY" # or api_key = "..." inline (not both);
                                   # neither: no key is sent (local servers)
    headers = { "X-Extra" = "v" }  # extra headers sent upstream on every request
    auth = "inject"                # "inject": send the provider key and drop client
                                   # credentials; "passthrough": forward the
                                   # client's Authorization / x-api-key /
                                   # x-goog-api-key instead
    ca_bundle = "/path/ca.pem"     # PEM file to verify an https provider with
                                   # (relative: to the file's directory)
    verify_tls = true
    connect_timeout = "10s"
    first_byte_timeout = "300s"    # request sent -> first response byte
    idle_timeout = "300s"          # longest silence between two body chunks
    list_models = true             # glob routes: list this provider's own models in
                                   # GET /v1/models (default false with
                                   # auth = "passthrough")
    max_connections = 1024         # most open connections to this provider; requests
                                   # beyond it wait (bounded) for one to free up,
                                   # then get 503
    http2 = false                  # true: HTTP/2 (many requests on one connection;
                                   # ALPN "h2" alone on https, prior knowledge on
                                   # http); "auto" (https only): ALPN offers h2 and
                                   # http/1.1, the provider picks
    request_timeout = 0            # whole request, streaming included (0: none)
    max_concurrency = 0            # in-flight requests to this provider (0: no limit)
    queue_size = 64                # requests that may wait for a slot beyond that...
    queue_timeout = "30s"          # ...and for how long, before 503 + Retry-After
    responses_api = true           # openai kind: Responses clients go to the
                                   # provider's /responses (false: through Chat)
    count_tokens = "upstream"      # anthropic kind (default there): ask the
                                   # provider's count_tokens; "local" estimates, as
                                   # every other kind always does
    max_output_tokens = 4096       # requested output limits above this are lowered
                                   # to it; or a table of model glob -> cap (first
                                   # match wins). Default: no cap
    no_reasoning = ["gpt-4o*"]     # model globs sent without reasoning controls

    [[routes]]                     # first match in file order wins
    match = "gpt-*"                # glob on the requested model (fnmatchcase)
    to = ["NAME", "OTHER:upstream-model"]  # ordered targets; ":model" renames
    weights = [3, 1]               # one number per target (default: none): the first
                                   # target is drawn by weight, the rest follow in
                                   # order as failover

    [routing]                      # failover and circuit breaking, every provider
    max_attempts = 3               # attempts in all, across targets
    backoff = "200ms"              # before retrying a target already tried,
    backoff_max = "5s"             #   doubling each time, jittered, up to this
    deadline = "600s"              # total time to get a response head
    failure_threshold = 5          # consecutive failures that open a circuit...
    cooldown = "30s"               # ...for this long, doubling on each failed
    cooldown_max = "300s"          #   half-open probe, up to this
    on_client_disconnect = "cancel"  # or "drain": read the provider's answer to its
                                   # end, for its real usage
    heartbeat = "15s"              # keep-alives in silent streams (0 or "off": none)
    builtin_tools = "drop"         # another provider's built-in tool (Codex's
                                   # web_search, tool_search) the target cannot run:
                                   # "drop" it (web search is mapped where the target
                                   # has one) or "refuse" the request with a 400

    [agent_safety]                 # the same tool call with the same arguments, in
    tool_loop_warn = 3             # a row: this many times warns the model,
    tool_loop_stop = 5             # this many refuses the request (400); 0: off

    [prices."gpt-4o*"]             # USD per million tokens for models matching the
    input = 2.5                    # glob (fnmatchcase); input and output required,
    output = 10.0                  # the cache prices default to input. These come
    cache_read = 1.25              # before prices set with `gateway price set` and
    cache_write = 2.5              # the bundled table; the most specific glob wins

    [logging]                      # docs/logging.md
    access_log = "off"             # one line per request: "off", "stderr" or a file
                                   # (relative: to the file's directory)
    access_format = "json"         # or "logfmt"
    daemon_log = "stderr"          # the gateway's own messages: "stderr" or a file
    rotate_bytes = "100MiB"        # a log file past this size becomes FILE.1
                                   # (0 or "off": no rotation by size)
    rotate_daily = false           # true: also rotate at UTC midnight
    keep = 5                       # rotated files kept (FILE.1 newest .. FILE.5)

    [limits]                       # docs/fleet.md, "Shared limits with Redis"
    redis_url = "redis://redis.internal:6379/0"  # rpm/tpm/budget counters shared by
                                   # every gateway (redis://, rediss://, unix://);
                                   # unset: each process counts on its own
    on_redis_down = "open"         # or "closed": refuse limited keys' requests (503)
    timeout = "100ms"              # longest wait on Redis before on_redis_down decides
    key_prefix = "tokenway:"       # what every counter's Redis key starts with

Precedence, lowest first: built-in defaults, the file, environment variables, CLI
overrides. Environment variables set to the empty string (or only whitespace) count as
unset, so ``TOKENWAY_API_KEYS=`` in a compose file cannot switch authentication off by
accident.

Environment variables:

* ``TOKENWAY_CONFIG``: path of the file, used when no path is passed in.
* ``TOKENWAY_LISTEN``, ``TOKENWAY_DB``, ``TOKENWAY_DATABASE_URL``, ``TOKENWAY_LOG_LEVEL``,
  ``TOKENWAY_PARSER``, ``TOKENWAY_MAX_BODY_BYTES``: override ``server.listen``,
  ``ledger.path``, ``storage.url``, ``server.log_level``, ``server.parser`` and
  ``server.max_body_bytes``.
* ``TOKENWAY_ACCESS_LOG``, ``TOKENWAY_ACCESS_FORMAT``, ``TOKENWAY_DAEMON_LOG``:
  override ``logging.access_log``, ``logging.access_format`` and
  ``logging.daemon_log``.
* ``TOKENWAY_REDIS_URL``: overrides ``limits.redis_url``.
* ``TOKENWAY_API_KEYS=k1,k2``: gateway keys; replaces both ``keys`` and ``keys_env``
  from ``[auth]``.
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
``parser``, ``allow_unauthenticated``, ``access_log``, ``access_format`` and
``daemon_log``; ``None`` values are ignored (an argparse
flag that was not given).

Secrets (gateway keys, provider keys, extra header values) never appear in the
``repr``/``str`` of the config objects nor in ``ConfigError`` messages.

Modules: ``values`` (pure value parsers), ``model`` (the frozen objects and their
defaults), ``fields`` (typed, labelled key reads and `ConfigError`), ``loader``
(file, env and CLI layers; section order), ``sections`` (server, ledger, auth,
routing, agent_safety, prices, logging), ``providers`` (provider tables and env shortcuts),
``routes`` (routes and ``TOKENWAY_ROUTES``).
"""

from __future__ import annotations

from .fields import ConfigError
from .listeners import server_tls_context
from .loader import load_config
from .model import (
    AUTH_MODES,
    COUNT_TOKENS_MODES,
    DEFAULT_AUTH_MODE,
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_BACKOFF_S,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_COOLDOWN_MAX_S,
    DEFAULT_COOLDOWN_S,
    DEFAULT_DEADLINE_S,
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_FIRST_BYTE_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_HEARTBEAT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    DEFAULT_LEDGER_PATH,
    DEFAULT_LISTEN,
    DEFAULT_LOG_LEVEL,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_ON_CLIENT_DISCONNECT,
    DEFAULT_PARSER,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_QUEUE_TIMEOUT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_SHUTDOWN_GRACE_S,
    DEFAULT_TOOL_LOOP_STOP,
    DEFAULT_TOOL_LOOP_WARN,
    DISCONNECT_MODES,
    ENDPOINT_GROUPS,
    KINDS,
    LOG_LEVELS,
    LOOPBACK_MODEL,
    PARSERS,
    VENDOR_BASE_URLS,
    VENDOR_DEFAULT_ROUTES,
    AgentSafetyConfig,
    AuthConfig,
    Config,
    LedgerConfig,
    LimitsConfig,
    ListenerConfig,
    LoggingConfig,
    PriceConfig,
    ProviderConfig,
    Route,
    RoutingConfig,
    ServerConfig,
    Target,
    check_listen_safety,
    default_count_tokens,
    listeners_of,
    loopback_enabled,
)
from .values import (
    is_loopback_host,
    parse_duration,
    parse_listen,
    parse_size,
    split_base_url,
)

__all__ = [
    "AUTH_MODES",
    "COUNT_TOKENS_MODES",
    "DEFAULT_AUTH_MODE",
    "DEFAULT_BACKOFF_MAX_S",
    "DEFAULT_BACKOFF_S",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_COOLDOWN_MAX_S",
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_DEADLINE_S",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_FIRST_BYTE_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_KEEPALIVE_TIMEOUT_S",
    "DEFAULT_LEDGER_PATH",
    "DEFAULT_LISTEN",
    "DEFAULT_LOG_LEVEL",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_ON_CLIENT_DISCONNECT",
    "DEFAULT_PARSER",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_QUEUE_TIMEOUT_S",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "DEFAULT_SHUTDOWN_GRACE_S",
    "DEFAULT_TOOL_LOOP_STOP",
    "DEFAULT_TOOL_LOOP_WARN",
    "DISCONNECT_MODES",
    "ENDPOINT_GROUPS",
    "KINDS",
    "LOG_LEVELS",
    "LOOPBACK_MODEL",
    "PARSERS",
    "VENDOR_BASE_URLS",
    "VENDOR_DEFAULT_ROUTES",
    "AgentSafetyConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "LedgerConfig",
    "ListenerConfig",
    "LimitsConfig",
    "LoggingConfig",
    "PriceConfig",
    "ProviderConfig",
    "Route",
    "RoutingConfig",
    "ServerConfig",
    "Target",
    "check_listen_safety",
    "default_count_tokens",
    "is_loopback_host",
    "listeners_of",
    "loopback_enabled",
    "load_config",
    "parse_duration",
    "parse_listen",
    "parse_size",
    "server_tls_context",
    "split_base_url",
]
