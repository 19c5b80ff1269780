"""``[[listeners]]``: the addresses the gateway listens on, each with its own
endpoint set and, optionally, TLS.

::

    [[listeners]]
    address = "127.0.0.1:8081"
    endpoints = ["openai", "anthropic", "gemini", "health"]   # default: all of them
    [[listeners]]
    address = "0.0.0.0:8443"
    endpoints = ["anthropic"]
    tls_cert = "certs/gateway.pem"  # PEM certificate chain; relative to this file
    tls_key = "certs/gateway.key"   # PEM private key (unencrypted)
    [[listeners]]
    address = "127.0.0.1:9090"
    endpoints = ["admin", "health", "metrics"]

Without ``[[listeners]]`` the gateway has one listener, ``[server] listen``,
serving every endpoint in clear text.  ``--listen`` / ``TOKENWAY_LISTEN``
move the first listener (keeping its endpoints and TLS).  The certificate and
key are loaded here, so a bad pair is a configuration error at start, and a
reload refuses it and keeps the running pair.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

from .fields import ConfigError, Fields, check_keys
from .model import ENDPOINT_GROUPS, ListenerConfig
from .values import parse_listen

LISTENER_KEYS = ("address", "endpoints", "tls_cert", "tls_key")
# A process holds one socket and one accept loop per listener.
MAX_LISTENERS = 16


def build_listeners(fields: Fields, doc: Mapping[str, Any], server_table: Mapping[str, Any],
                    host: str, port: int, base_dir: str | None) -> tuple[ListenerConfig, ...]:
    """The listeners, first one first.  ``host``/``port`` is ``[server] listen``
    (with its environment and flag overrides)."""
    raw = doc.get("listeners")
    if raw is None:
        return (ListenerConfig(host, port, ENDPOINT_GROUPS),)
    if not isinstance(raw, list) or not raw:
        raise ConfigError("listeners", "must be a non-empty array of tables ([[listeners]])")
    if len(raw) > MAX_LISTENERS:
        raise ConfigError("listeners", f"at most {MAX_LISTENERS} listeners")
    if "listen" in server_table and "server.listen" not in fields.origins:
        raise ConfigError("server.listen", "set either [server] listen or [[listeners]], "
                                           "not both")
    out: list[ListenerConfig] = []
    for i, t in enumerate(raw):
        path = f"listeners[{i}]"
        if not isinstance(t, dict):
            raise ConfigError(path, "must be a table")
        check_keys(t, path, LISTENER_KEYS)
        if i == 0 and "server.listen" in fields.origins:
            lhost, lport = host, port  # --listen / TOKENWAY_LISTEN moves the first one
        else:
            address = t.get("address")
            if address is None:
                raise ConfigError(f"{path}.address", "is required (HOST:PORT)")
            try:
                lhost, lport = parse_listen(address)
            except ValueError as exc:
                raise ConfigError(f"{path}.address", str(exc)) from None
        endpoints = _endpoints(t.get("endpoints"), f"{path}.endpoints")
        cert, key = _tls_pair(fields, t, path, base_dir)
        listener = ListenerConfig(lhost, lport, endpoints, cert, key)
        for other in out:
            if (other.host, other.port) == (lhost, lport) and lport != 0:
                raise ConfigError(f"{path}.address", f"{listener.listen} is already the "
                                                     f"address of another listener")
        out.append(listener)
    return tuple(out)


def _endpoints(raw: Any, path: str) -> tuple[str, ...]:
    if raw is None:
        return ENDPOINT_GROUPS
    if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
        raise ConfigError(path, f"must be a non-empty list of endpoint sets "
                                f"({', '.join(ENDPOINT_GROUPS)})")
    for name in raw:
        if name not in ENDPOINT_GROUPS:
            raise ConfigError(path, f"unknown endpoint set {name!r} (expected some of: "
                                    f"{', '.join(ENDPOINT_GROUPS)})")
    return tuple(g for g in ENDPOINT_GROUPS if g in raw)


def _tls_pair(fields: Fields, t: Mapping[str, Any], path: str,
              base_dir: str | None) -> tuple[str | None, str | None]:
    cert = fields.get_str(t, path, "tls_cert")
    key = fields.get_str(t, path, "tls_key")
    if cert is None and key is None:
        return None, None
    if cert is None or key is None:
        missing = "tls_cert" if cert is None else "tls_key"
        raise ConfigError(f"{path}.{missing}", "TLS needs both tls_cert and tls_key")
    cert = fields.get_path(cert, f"{path}.tls_cert", base_dir)
    key = fields.get_path(key, f"{path}.tls_key", base_dir)
    for name, file in (("tls_cert", cert), ("tls_key", key)):
        if not os.path.isfile(file):
            raise ConfigError(f"{path}.{name}", f"file not found: {file!r}")
    try:
        server_tls_context(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{path}.tls_cert", f"cannot load the certificate and key: "
                                              f"{getattr(exc, 'reason', None) or exc}") from None
    return cert, key


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server-side context with modern defaults: TLS 1.2 or newer, the
    ``ssl`` module's default cipher list (forward-secret AEAD suites first),
    no compression, ALPN ``h2`` then ``http/1.1`` (RFC 7301; RFC 9113 §3.2)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    ctx.load_cert_chain(cert, key)
    return ctx
