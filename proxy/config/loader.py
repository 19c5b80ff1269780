"""`load_config`: read the file, lay the environment and CLI overrides over it, and
build the frozen `Config` section by section.

The sections are built in a fixed order (server, ledger, auth, providers, routes,
agent_safety, routing, prices, logging, limits), so a file with several errors always
reports the same one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from .fields import ConfigError, Fields, check_keys, get_table
from .listeners import build_listeners
from .model import Config
from .providers import build_providers
from .routes import build_routes
from .sections import (
    AGENT_SAFETY_KEYS,
    AUTH_KEYS,
    LEDGER_KEYS,
    LIMITS_KEYS,
    LOGGING_KEYS,
    ROUTING_KEYS,
    SERVER_KEYS,
    STORAGE_KEYS,
    build_agent_safety,
    build_auth,
    build_ledger,
    build_limits,
    build_logging,
    build_prices,
    build_routing,
    build_server,
)

_TOP_KEYS = ("server", "listeners", "ledger", "storage", "auth", "providers", "routes",
             "agent_safety", "routing", "prices", "logging", "limits")

# Environment variables that override one key of [server], [ledger], [storage],
# [logging] or [limits].
_ENV_OVERRIDES = (
    ("TOKENWAY_LISTEN", "server.listen"),
    ("TOKENWAY_PARSER", "server.parser"),
    ("TOKENWAY_LOG_LEVEL", "server.log_level"),
    ("TOKENWAY_MAX_BODY_BYTES", "server.max_body_bytes"),
    ("TOKENWAY_DB", "ledger.path"),
    ("TOKENWAY_DATABASE_URL", "storage.url"),
    ("TOKENWAY_ACCESS_LOG", "logging.access_log"),
    ("TOKENWAY_ACCESS_FORMAT", "logging.access_format"),
    ("TOKENWAY_DAEMON_LOG", "logging.daemon_log"),
    ("TOKENWAY_REDIS_URL", "limits.redis_url"),
)

# CLI overrides: each sets the key named here, the others the [server] key of the
# same name.
_OVERRIDE_TARGETS = {"db": "ledger.path", "database_url": "storage.url",
                     "access_log": "logging.access_log",
                     "access_format": "logging.access_format",
                     "daemon_log": "logging.daemon_log"}
_OVERRIDE_KEYS = ("listen", "db", "database_url", "log_level", "parser",
                  "allow_unauthenticated", "access_log", "access_format", "daemon_log")


def load_config(
    path: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Build the validated `Config` from defaults, the file, ``env`` and ``overrides``.

    ``path`` falls back to ``$TOKENWAY_CONFIG``; with neither, no file is read. ``env``
    defaults to ``os.environ``. See the package docstring for the keys and precedence.
    """
    fields = Fields(os.environ if env is None else env)
    if path is not None:
        source: str | None = path
        label = path
    else:
        source = fields.getenv("TOKENWAY_CONFIG")
        label = f"{source} (from TOKENWAY_CONFIG)"
    doc = read_file(source, label)
    check_keys(doc, "", _TOP_KEYS)
    base_dir = os.path.dirname(os.path.abspath(source)) if source else None

    tables = {
        "server": get_table(doc, "server", SERVER_KEYS),
        "ledger": get_table(doc, "ledger", LEDGER_KEYS),
        "logging": get_table(doc, "logging", LOGGING_KEYS),
        "storage": get_table(doc, "storage", STORAGE_KEYS),
        "limits": get_table(doc, "limits", LIMITS_KEYS),
    }
    auth = get_table(doc, "auth", AUTH_KEYS)
    apply_env(fields, tables)
    apply_overrides(fields, tables, overrides or {})

    server = build_server(fields, tables["server"])
    listeners = build_listeners(fields, doc, tables["server"], server.host, server.port,
                                base_dir)
    first = listeners[0]
    server = replace(server, host=first.host, port=first.port)
    ledger = build_ledger(fields, tables["ledger"], tables["storage"], base_dir)
    auth_cfg = build_auth(fields, auth)
    providers, shortcut_vendors = build_providers(fields, doc, base_dir)
    routes = build_routes(fields, doc, providers, shortcut_vendors)
    agent_safety = build_agent_safety(
        fields, get_table(doc, "agent_safety", AGENT_SAFETY_KEYS)
    )
    routing = build_routing(fields, get_table(doc, "routing", ROUTING_KEYS))
    prices = build_prices(fields, doc)
    logging = build_logging(fields, tables["logging"], base_dir)
    limits = build_limits(fields, tables["limits"])
    return Config(
        server=server,
        listeners=listeners,
        ledger=ledger,
        auth=auth_cfg,
        providers=MappingProxyType(providers),
        routes=routes,
        source=source,
        agent_safety=agent_safety,
        routing=routing,
        prices=prices,
        logging=logging,
        limits=limits,
    )


def read_file(path: str | None, label: str) -> dict[str, Any]:
    """The parsed TOML document ({} without a path); errors are keyed by ``label``."""
    if path is None:
        return {}
    import tomllib  # only when there is a file

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(label, "config file not found") from None
    except OSError as exc:
        raise ConfigError(label, f"cannot read config file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(label, f"invalid TOML: {exc}") from None


def apply_env(fields: Fields, tables: dict[str, dict[str, Any]]) -> None:
    """TOKENWAY_LISTEN, _PARSER, _LOG_LEVEL, _MAX_BODY_BYTES, _DB, _DATABASE_URL,
    _ACCESS_LOG, _ACCESS_FORMAT, _DAEMON_LOG and _REDIS_URL over the file."""
    for var, dotted in _ENV_OVERRIDES:
        value = fields.getenv(var)
        if value is not None:
            fields.set_from(tables[dotted.split(".", 1)[0]], dotted, value, var)


def apply_overrides(
    fields: Fields, tables: dict[str, dict[str, Any]], overrides: Mapping[str, object]
) -> None:
    """CLI values over the environment; None means the flag was not given."""
    for key, value in overrides.items():
        if key not in _OVERRIDE_KEYS:
            raise ConfigError(
                f"overrides.{key}",
                f"unknown override (expected one of: {', '.join(_OVERRIDE_KEYS)})",
            )
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        dotted = _OVERRIDE_TARGETS.get(key, f"server.{key}")
        fields.set_from(tables[dotted.split(".", 1)[0]], dotted, value, flag)
