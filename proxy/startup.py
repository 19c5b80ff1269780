"""What ``gatewayd`` says when it starts, and the check that its port is free.

The summary is for the person who just typed ``gatewayd``: where it listens,
where the ledger is, whether requests need a key, which providers and routes
were loaded (or that only the built-in ``loopback`` model is there), and one
curl line that works against what was loaded. Never a secret: provider keys and
gateway keys are not printed, only counted.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Routes listed one per line at start; the rest are counted (`gateway routes` has all).
MAX_ROUTES_SHOWN = 8
_GLOB_CHARS = "*?["
# Names tried against glob routes for the example request.
_COMMON_MODELS = ("gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash", "o4-mini",
                  "llama3.1")


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on right now (None: it can). Checked
    before the ledger file is created, so a second ``gatewayd`` on a busy port
    leaves nothing behind. Binds as the server will (SO_REUSEADDR), then lets go."""
    if port == 0:
        return None
    try:
        # An ASCII name as bytes: a str goes through the idna codec, whose import
        # (stringprep, unicodedata) costs 0.24 MiB for the usual "127.0.0.1".
        name = host.encode("ascii") if host and host.isascii() else host or None
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror or exc}"
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            why = exc.strerror or str(exc)
            hint = (" (is another gatewayd running? pick another port with --listen "
                    "HOST:PORT)") if exc.errno == 98 else ""
            return f"cannot listen on {host}:{port}: {why}{hint}"
    return None


def summary(url: str, state: Any) -> list[str]:
    """The lines logged once the gateway listens."""
    config = state.config
    accounts = state.accounts
    ledger = config.ledger
    if ledger.database_url is None:
        lines = [f"ledger: {os.path.abspath(ledger.path)} (SQLite)"]
    else:  # `where` shows the URL with its password masked
        lines = [f"ledger: {ledger.where} (PostgreSQL; spill journal "
                 f"{os.path.abspath(ledger.path)}.spill)"]
    if accounts.required:
        where = []
        if config.auth.keys:
            where.append(f"{len(config.auth.keys)} configured")
        if accounts.has_stored:
            where.append("stored with 'gateway key create'")
        lines.append(f"auth: on: every request needs a gateway key ({', '.join(where)})")
    else:
        lines.append("auth: off (loopback address and no gateway key exists; "
                     "'gateway key create' turns it on)")
    providers = config.providers
    if providers:
        lines.append("providers: " + ", ".join(
            f"{name} ({p.kind}, {_shown_url(p.base_url)})" for name, p in providers.items()))
    routes = config.routes
    for route in routes[:MAX_ROUTES_SHOWN]:
        targets = ", ".join(t.provider + (f":{t.model}" if t.model else "")
                            for t in route.targets)
        lines.append(f"route: {route.match} -> {targets}")
    if len(routes) > MAX_ROUTES_SHOWN:
        lines.append(f"... and {len(routes) - MAX_ROUTES_SHOWN} more routes "
                     "('gateway routes' lists them)")
    loopback = state.router.loopback
    if not providers:
        lines.append("no provider configured: only the built-in 'loopback' model answers"
                     if loopback else "no provider configured and the 'loopback' model is "
                                      "off: every model request gets 404")
    elif loopback:
        lines.append("model 'loopback': built in, answers locally")
    model = "loopback" if loopback else _example_model(routes)
    if model is not None:
        lines.append("try: " + _curl(url, model, accounts.required))
    return lines


def _shown_url(url: str) -> str:
    """``url`` without what may hold a secret: user:password@ and the query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _example_model(routes: Any) -> str | None:
    """A model name the routes send somewhere: the first exact route, else a common
    name that the first matching glob route takes."""
    for route in routes:
        if not any(c in route.match for c in _GLOB_CHARS):
            return str(route.match)
    for route in routes:
        for name in _COMMON_MODELS:
            if fnmatch.fnmatchcase(name, route.match):
                return name
    return None


def _curl(url: str, model: str, keyed: bool) -> str:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hello"}]},
                      separators=(",", ":"))
    parts = ["curl", "-s", f"{url}/v1/chat/completions", "-H",
             "content-type: application/json"]
    line = shlex.join(parts)
    if keyed:
        line += ' -H "authorization: Bearer $TOKENWAY_KEY"'
    return line + " -d " + shlex.quote(body)
