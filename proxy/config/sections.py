"""Builders for the small tables: [server], [ledger], [auth], [routing], [agent_safety],
[prices], [logging], [limits].

Each takes the merged table (file values with env and CLI overrides already applied)
and returns its frozen config object. Providers and routes have modules of their own.
"""

from __future__ import annotations

import math
import os
from types import MappingProxyType
from typing import Any

from proxy.ledger.url import SQLITE, mask_url, parse_storage_url

from .fields import Fields, check_keys, split_keys
from .model import (
    ACCESS_FORMATS,
    BUILTIN_TOOL_MODES,
    DEFAULT_ACCESS_FORMAT,
    DEFAULT_ACCESS_LOG,
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_BACKOFF_S,
    DEFAULT_BODY_DEADLINE_S,
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_COOLDOWN_MAX_S,
    DEFAULT_COOLDOWN_S,
    DEFAULT_DAEMON_LOG,
    DEFAULT_DEADLINE_S,
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_HEARTBEAT_S,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    DEFAULT_LEDGER_PATH,
    DEFAULT_LISTEN,
    DEFAULT_LOG_KEEP,
    DEFAULT_LOG_LEVEL,
    DEFAULT_LOG_ROTATE_BYTES,
    DEFAULT_LOOPBACK_MODEL,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CLIENT_CONNECTIONS,
    DEFAULT_MAX_CONCURRENT_STREAMS,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_ON_CLIENT_DISCONNECT,
    DEFAULT_ON_REDIS_DOWN,
    DEFAULT_PARSER,
    DEFAULT_REDIS_PREFIX,
    DEFAULT_REDIS_TIMEOUT_S,
    DEFAULT_SEND_TIMEOUT_S,
    DEFAULT_SHUTDOWN_GRACE_S,
    DEFAULT_TOOL_LOOP_STOP,
    DEFAULT_TOOL_LOOP_WARN,
    DISCONNECT_MODES,
    LOG_LEVELS,
    LOG_OFF,
    LOG_STDERR,
    LOOPBACK_MODES,
    MAX_LOG_KEEP,
    PARSERS,
    REDIS_DOWN_MODES,
    AgentSafetyConfig,
    AuthConfig,
    LedgerConfig,
    LimitsConfig,
    LoggingConfig,
    PriceConfig,
    RoutingConfig,
    ServerConfig,
)
from .values import parse_listen

SERVER_KEYS = (
    "listen",
    "parser",
    "max_header_bytes",
    "max_body_bytes",
    "header_timeout",
    "keepalive_timeout",
    "body_timeout",
    "body_deadline",
    "send_timeout",
    "max_connections",
    "max_concurrent_streams",
    "shutdown_grace",
    "allow_unauthenticated",
    "loopback_model",
    "log_level",
)
LEDGER_KEYS = ("path",)
STORAGE_KEYS = ("url",)
AUTH_KEYS = ("keys_env", "keys")
ROUTING_KEYS = ("max_attempts", "backoff", "backoff_max", "deadline", "failure_threshold",
                "cooldown", "cooldown_max", "on_client_disconnect", "heartbeat",
                "builtin_tools")
AGENT_SAFETY_KEYS = ("tool_loop_warn", "tool_loop_stop")
LOGGING_KEYS = ("access_log", "access_format", "daemon_log", "rotate_bytes", "rotate_daily",
                "keep")
LIMITS_KEYS = ("redis_url", "on_redis_down", "timeout", "key_prefix")
# The URL schemes redis-py takes (redis.asyncio.from_url).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# A Redis key prefix is part of every counter's key: short, printable, no spaces.
MAX_REDIS_PREFIX_CHARS = 64
PRICE_KEYS = ("input", "output", "cache_read", "cache_write")
# The bounds AccountStore.set_price checks too (proxy/accounts/store.py).
MAX_PRICE_PATTERN_CHARS = 256
MAX_PRICE_PER_MTOK = 1e6

# Values that turn routing.heartbeat or logging.rotate_bytes off (TOML false too).
_OFF = (0, "0", "off", False)


def build_server(fields: Fields, t: dict[str, Any]) -> ServerConfig:
    listen = t.get("listen", DEFAULT_LISTEN)
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise fields.fail("server.listen", str(exc)) from None
    return ServerConfig(
        host=host,
        port=port,
        parser=fields.get_choice(t, "server", "parser", PARSERS, DEFAULT_PARSER),
        max_header_bytes=fields.get_size(
            t, "server", "max_header_bytes", DEFAULT_MAX_HEADER_BYTES
        ),
        max_body_bytes=fields.get_size(
            t, "server", "max_body_bytes", DEFAULT_MAX_BODY_BYTES
        ),
        header_timeout_s=fields.get_duration(
            t, "server", "header_timeout", DEFAULT_HEADER_TIMEOUT_S
        ),
        keepalive_timeout_s=fields.get_duration(
            t, "server", "keepalive_timeout", DEFAULT_KEEPALIVE_TIMEOUT_S
        ),
        body_timeout_s=fields.get_duration(
            t, "server", "body_timeout", DEFAULT_BODY_TIMEOUT_S
        ),
        body_deadline_s=fields.get_duration(
            t, "server", "body_deadline", DEFAULT_BODY_DEADLINE_S
        ),
        send_timeout_s=fields.get_duration(
            t, "server", "send_timeout", DEFAULT_SEND_TIMEOUT_S
        ),
        max_connections=fields.get_int(
            t, "server", "max_connections", DEFAULT_MAX_CLIENT_CONNECTIONS, 1
        ),
        max_concurrent_streams=fields.get_int(
            t, "server", "max_concurrent_streams", DEFAULT_MAX_CONCURRENT_STREAMS, 1
        ),
        shutdown_grace_s=fields.get_duration(
            t, "server", "shutdown_grace", DEFAULT_SHUTDOWN_GRACE_S
        ),
        allow_unauthenticated=fields.get_bool(
            t, "server", "allow_unauthenticated", False
        ),
        loopback_model=_loopback_mode(fields, t),
        log_level=fields.get_choice(
            t, "server", "log_level", LOG_LEVELS, DEFAULT_LOG_LEVEL
        ),
    )


def _loopback_mode(fields: Fields, t: dict[str, Any]) -> str:
    """``loopback_model``: "auto", "on"/true or "off"/false."""
    value = t.get("loopback_model", DEFAULT_LOOPBACK_MODEL)
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value not in LOOPBACK_MODES:
        raise fields.fail("server.loopback_model",
                          f'must be "auto", "on" or "off" (got {value!r})')
    return str(value)


def build_ledger(fields: Fields, t: dict[str, Any], storage: dict[str, Any],
                 base_dir: str | None) -> LedgerConfig:
    """``[storage] url`` names the database when set (a SQLite URL or path replaces
    ``[ledger] path``); with PostgreSQL, ``[ledger] path`` keeps naming where the
    local spill journal and pid file go."""
    path = fields.get_str(t, "ledger", "path", DEFAULT_LEDGER_PATH)
    if not path or not path.strip():
        raise fields.fail("ledger.path", "must not be empty")
    if "path" in t:  # the default stays relative to the working directory
        path = fields.get_path(path, "ledger.path", base_dir)
    url = storage.get("url")
    if url is None:
        return LedgerConfig(path=path)
    if not isinstance(url, str):
        raise fields.fail("storage.url", f"must be a string (got {type(url).__name__})")
    try:
        where = parse_storage_url(url)
    except ValueError as exc:  # the message masks any password
        raise fields.fail("storage.url", str(exc)) from None
    if where.kind == SQLITE:
        assert where.path is not None
        return LedgerConfig(path=fields.get_path(where.path, "storage.url", base_dir))
    return LedgerConfig(path=path, database_url=where.dsn, shown=where.shown)


def build_auth(fields: Fields, t: dict[str, Any]) -> AuthConfig:
    """TOKENWAY_API_KEYS, when set, replaces both ``keys`` and ``keys_env``;
    otherwise the two are combined. Duplicates are dropped, first one kept."""
    env_keys = fields.getenv("TOKENWAY_API_KEYS")
    keys: list[str] = []
    if env_keys is not None:
        for i, key in enumerate(split_keys(env_keys)):
            keys.append(fields.check_secret(key, f"TOKENWAY_API_KEYS[{i}]"))
        return AuthConfig(keys=tuple(dict.fromkeys(keys)))
    inline = t.get("keys", [])
    if not isinstance(inline, list):
        raise fields.fail("auth.keys", "must be a list of strings")
    for i, key in enumerate(inline):
        keys.append(fields.check_secret(key, f"auth.keys[{i}]"))
    var = fields.get_str(t, "auth", "keys_env")
    if var is not None:
        value = fields.getenv(var)
        if value is None:
            raise fields.fail(
                "auth.keys_env",
                f"environment variable {var!r} is not set or empty",
            )
        for i, key in enumerate(split_keys(value)):
            keys.append(fields.check_secret(key, f"auth.keys_env ({var}[{i}])"))
    return AuthConfig(keys=tuple(dict.fromkeys(keys)))


def build_routing(fields: Fields, t: dict[str, Any]) -> RoutingConfig:
    heartbeat_s = fields.get_duration_or_off(
        t, "routing", "heartbeat", DEFAULT_HEARTBEAT_S, _OFF
    )
    return RoutingConfig(
        max_attempts=fields.get_int(t, "routing", "max_attempts", DEFAULT_MAX_ATTEMPTS, 1),
        backoff_s=fields.get_duration(t, "routing", "backoff", DEFAULT_BACKOFF_S),
        backoff_max_s=fields.get_duration(t, "routing", "backoff_max", DEFAULT_BACKOFF_MAX_S),
        deadline_s=fields.get_duration(t, "routing", "deadline", DEFAULT_DEADLINE_S),
        failure_threshold=fields.get_int(
            t, "routing", "failure_threshold", DEFAULT_FAILURE_THRESHOLD, 1
        ),
        cooldown_s=fields.get_duration(t, "routing", "cooldown", DEFAULT_COOLDOWN_S),
        cooldown_max_s=fields.get_duration(
            t, "routing", "cooldown_max", DEFAULT_COOLDOWN_MAX_S
        ),
        on_client_disconnect=fields.get_choice(
            t, "routing", "on_client_disconnect", DISCONNECT_MODES,
            DEFAULT_ON_CLIENT_DISCONNECT,
        ),
        heartbeat_s=heartbeat_s,
        builtin_tools=fields.get_choice(t, "routing", "builtin_tools", BUILTIN_TOOL_MODES,
                                        "drop"),
    )


def build_logging(fields: Fields, t: dict[str, Any], base_dir: str | None) -> LoggingConfig:
    rotate = t.get("rotate_bytes", DEFAULT_LOG_ROTATE_BYTES)
    keep = fields.get_int(t, "logging", "keep", DEFAULT_LOG_KEEP, 0, ", 0 keeps none")
    if keep > MAX_LOG_KEEP:
        raise fields.fail("logging.keep", f"must be at most {MAX_LOG_KEEP} (got {keep})")
    return LoggingConfig(
        access_log=_log_target(fields, t, "access_log", DEFAULT_ACCESS_LOG, base_dir,
                               (LOG_OFF, LOG_STDERR)),
        access_format=fields.get_choice(t, "logging", "access_format", ACCESS_FORMATS,
                                        DEFAULT_ACCESS_FORMAT),
        daemon_log=_log_target(fields, t, "daemon_log", DEFAULT_DAEMON_LOG, base_dir,
                               (LOG_STDERR,)),
        rotate_bytes=0 if rotate in _OFF else fields.get_size(
            t, "logging", "rotate_bytes", DEFAULT_LOG_ROTATE_BYTES),
        rotate_daily=fields.get_bool(t, "logging", "rotate_daily", False),
        keep=keep,
    )


def _log_target(fields: Fields, t: dict[str, Any], key: str, default: str,
                base_dir: str | None, words: tuple[str, ...]) -> str:
    """One of ``words`` ("off", "stderr") or a file path (relative: to the config
    file's directory when written there, as ``ledger.path``)."""
    dotted = f"logging.{key}"
    value = fields.get_str(t, "logging", key, default)
    assert value is not None
    if value.lower() in words:
        return value.lower()
    if value.lower() == LOG_OFF:  # daemon_log: the gateway's own errors must land somewhere
        raise fields.fail(dotted, 'cannot be "off": use "stderr" or a file path')
    if not value.strip():
        raise fields.fail(dotted, f"must be {' or '.join(repr(w) for w in words)} or a "
                                  "file path (got an empty string)")
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise fields.fail(dotted, "a file path must not contain control characters")
    path = fields.get_path(value, dotted, base_dir)
    if value.endswith(("/", os.sep)) or os.path.isdir(path):
        raise fields.fail(dotted, f"{value!r} is a directory: name a file in it")
    return path


def build_agent_safety(fields: Fields, t: dict[str, Any]) -> AgentSafetyConfig:
    return AgentSafetyConfig(
        tool_loop_warn=fields.get_int(
            t, "agent_safety", "tool_loop_warn", DEFAULT_TOOL_LOOP_WARN, 0,
            ", 0 turns it off",
        ),
        tool_loop_stop=fields.get_int(
            t, "agent_safety", "tool_loop_stop", DEFAULT_TOOL_LOOP_STOP, 0,
            ", 0 turns it off",
        ),
    )


def build_prices(fields: Fields, doc: dict[str, Any]) -> MappingProxyType[str, PriceConfig]:
    """``[prices."MODEL-GLOB"]`` tables: ``input`` and ``output`` required, the cache
    prices optional, each a number of USD per million tokens."""
    table = doc.get("prices", {})
    if not isinstance(table, dict):
        raise fields.fail("prices", 'must be a table of model globs ([prices."gpt-4o*"])')
    out: dict[str, PriceConfig] = {}
    for pattern, entry in table.items():
        path = f"prices.{_quoted(pattern)}"
        if not pattern or len(pattern) > MAX_PRICE_PATTERN_CHARS:
            raise fields.fail(path, f"a model name or glob of 1 to {MAX_PRICE_PATTERN_CHARS} "
                                    "characters")
        if not isinstance(entry, dict):
            raise fields.fail(path, "must be a table: { input = ..., output = ... }")
        check_keys(entry, path, PRICE_KEYS)
        values: dict[str, float | None] = {}
        for key in PRICE_KEYS:
            value = entry.get(key)
            if value is None:
                if key in ("input", "output"):
                    raise fields.fail(f"{path}.{key}", "required (USD per million tokens)")
                values[key] = None
                continue
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or not 0 <= value <= MAX_PRICE_PER_MTOK):
                raise fields.fail(f"{path}.{key}", "must be a number of USD per million "
                                  f"tokens from 0 to {MAX_PRICE_PER_MTOK:g} (got {value!r})")
            values[key] = float(value)
        inp, outp = values["input"], values["output"]
        assert inp is not None and outp is not None
        out[pattern] = PriceConfig(inp, outp, values["cache_read"], values["cache_write"])
    return MappingProxyType(out)


def _quoted(pattern: str) -> str:
    """A TOML key as written: bare when it can be, quoted otherwise."""
    if pattern and all(c.isascii() and (c.isalnum() or c in "-_") for c in pattern):
        return pattern
    return '"' + pattern.replace("\\", "\\\\").replace('"', '\\"')[:80] + '"'


def build_limits(fields: Fields, t: dict[str, Any]) -> LimitsConfig:
    """``[limits]``: the Redis that holds the shared counters (docs/fleet.md)."""
    url = fields.get_str(t, "limits", "redis_url")
    shown = None
    if url is not None:
        url = url.strip()
        shown = mask_url(url)
        if not url:
            url = shown = None
        elif not url.lower().startswith(REDIS_SCHEMES):
            raise fields.fail("limits.redis_url", f"unsupported Redis URL {shown!r}: expected "
                                                  "redis://, rediss:// or unix://")
    timeout = fields.get_duration(t, "limits", "timeout", DEFAULT_REDIS_TIMEOUT_S)
    if timeout > 10:
        raise fields.fail("limits.timeout", f"must be at most 10s (got {timeout:g}s): every "
                                            "limited request may wait this long")
    prefix = fields.get_str(t, "limits", "key_prefix", DEFAULT_REDIS_PREFIX)
    assert prefix is not None
    if len(prefix) > MAX_REDIS_PREFIX_CHARS or not all(0x21 <= ord(c) < 0x7f for c in prefix):
        raise fields.fail("limits.key_prefix", f"must be at most {MAX_REDIS_PREFIX_CHARS} "
                                               "printable ASCII characters without spaces")
    return LimitsConfig(
        redis_url=url, shown=shown,
        on_redis_down=fields.get_choice(t, "limits", "on_redis_down", REDIS_DOWN_MODES,
                                        DEFAULT_ON_REDIS_DOWN),
        timeout_s=timeout, key_prefix=prefix)
