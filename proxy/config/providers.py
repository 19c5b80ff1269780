"""[providers.NAME] tables and the TOKENWAY_<VENDOR>_{BASE_URL,API_KEY} shortcuts.

A shortcut defines (or overrides the URL and key of) the provider named after its
vendor, of that vendor's kind; the vendors it was used for are returned so that
routes.py can add their default routes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from .fields import ConfigError, Fields, check_keys, get_table
from .model import (
    AUTH_MODES,
    COUNT_TOKENS_MODES,
    DEFAULT_AUTH_MODE,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_FIRST_BYTE_TIMEOUT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_QUEUE_TIMEOUT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    KINDS,
    VENDOR_BASE_URLS,
    ProviderConfig,
    default_count_tokens,
)
from .values import split_base_url

PROVIDER_KEYS = (
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
    "list_models",
    "http2",
)

_PROVIDER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# RFC 9110 section 5.6.2 token.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

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

# request_timeout values that mean "no whole-request limit".
_REQUEST_TIMEOUT_OFF = (0, "0")


def build_providers(
    fields: Fields, doc: Mapping[str, Any], base_dir: str | None
) -> tuple[dict[str, ProviderConfig], dict[str, str]]:
    """Providers by name (file order, then shortcut vendors not in the file), and
    vendor -> the shortcut variable(s) that defined it."""
    tables = _file_tables(doc)
    shortcut_vendors: dict[str, str] = {}
    for vendor in KINDS:
        var = _apply_shortcut(fields, tables, vendor)
        if var is not None:
            shortcut_vendors[vendor] = var
    providers = {
        name: build_provider(fields, name, table, base_dir)
        for name, table in tables.items()
    }
    return providers, shortcut_vendors


def _file_tables(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The [providers.NAME] tables as copies, their names and keys checked."""
    tables: dict[str, dict[str, Any]] = {}
    for name, table in get_table(doc, "providers", None).items():
        path = f"providers.{name}"
        if not isinstance(table, dict):
            raise ConfigError(path, f"must be a table ([{path}])")
        if not _PROVIDER_NAME_RE.fullmatch(name):
            raise ConfigError(
                path, "provider names use letters, digits, '_' and '-' (at most 64)"
            )
        check_keys(table, path, PROVIDER_KEYS)
        tables[name] = dict(table)
    return tables


def _apply_shortcut(
    fields: Fields, tables: dict[str, dict[str, Any]], vendor: str
) -> str | None:
    """Apply TOKENWAY_<VENDOR>_{BASE_URL,API_KEY} to the ``vendor`` provider's table
    (created if the file has none). Returns the variable that was set
    (``TOKENWAY_<VENDOR>_*`` for both), or None when neither was."""
    prefix = f"TOKENWAY_{vendor.upper()}_"
    base_url = fields.getenv(prefix + "BASE_URL")
    api_key = fields.getenv(prefix + "API_KEY")
    if base_url is None and api_key is None:
        return None
    if base_url is None:
        var = prefix + "API_KEY"
    elif api_key is None:
        var = prefix + "BASE_URL"
    else:
        var = prefix + "*"
    path = f"providers.{vendor}"
    table = tables.setdefault(vendor, {})
    kind = table.get("kind")
    if isinstance(kind, str):
        kind = kind.lower()
    if kind is None:
        fields.set_from(table, f"{path}.kind", vendor, var)
    elif kind != vendor:
        raise ConfigError(
            f"{path}.kind",
            f"is {kind!r} in the file, but {var} defines "
            f"the {vendor!r} provider as kind {vendor!r}",
        )
    if base_url is not None:
        fields.set_from(table, f"{path}.base_url", base_url, prefix + "BASE_URL")
    if api_key is not None:
        table.pop("api_key_env", None)
        fields.set_from(table, f"{path}.api_key", api_key, prefix + "API_KEY")
    return var


def build_provider(
    fields: Fields, name: str, t: dict[str, Any], base_dir: str | None
) -> ProviderConfig:
    """One provider. Keys are read in a fixed order, so with several bad keys the
    error is always about the same one."""
    path = f"providers.{name}"
    if "kind" not in t:
        raise fields.fail(f"{path}.kind", f"is required (one of {', '.join(KINDS)})")
    kind = fields.get_choice(t, path, "kind", KINDS, "")
    base_url, tls = _base_url(fields, t, path, kind)
    api_key = _api_key(fields, t, path)
    headers = _headers(fields, t, path)
    verify_tls = fields.get_bool(t, path, "verify_tls", True)
    ca_bundle = _ca_bundle(fields, t, path, tls, verify_tls, base_dir)
    max_connections = fields.get_int(t, path, "max_connections", DEFAULT_MAX_CONNECTIONS, 1)
    http2 = _http2(fields, t, path, tls)
    max_output_tokens = _output_caps(fields, t, path)
    no_reasoning = _globs(fields, t, path, "no_reasoning")
    request_timeout_s = fields.get_duration_or_off(
        t, path, "request_timeout", DEFAULT_REQUEST_TIMEOUT_S, _REQUEST_TIMEOUT_OFF
    )
    max_concurrency = fields.get_int(t, path, "max_concurrency", DEFAULT_MAX_CONCURRENCY, 0)
    queue_size = fields.get_int(t, path, "queue_size", DEFAULT_QUEUE_SIZE, 0)
    queue_timeout_s = fields.get_duration(t, path, "queue_timeout", DEFAULT_QUEUE_TIMEOUT_S)
    responses_api = fields.get_bool(t, path, "responses_api", True)
    count_tokens = fields.get_choice(
        t, path, "count_tokens", COUNT_TOKENS_MODES, default_count_tokens(kind)
    )
    auth_mode = fields.get_choice(t, path, "auth", AUTH_MODES, DEFAULT_AUTH_MODE)
    list_models = fields.get_bool(t, path, "list_models", auth_mode != "passthrough")
    return ProviderConfig(
        name=name,
        kind=kind,
        base_url=base_url,
        api_key=api_key,
        headers=headers,
        auth_mode=auth_mode,
        ca_bundle=ca_bundle,
        verify_tls=verify_tls,
        connect_timeout_s=fields.get_duration(
            t, path, "connect_timeout", DEFAULT_CONNECT_TIMEOUT_S
        ),
        first_byte_timeout_s=fields.get_duration(
            t, path, "first_byte_timeout", DEFAULT_FIRST_BYTE_TIMEOUT_S
        ),
        idle_timeout_s=fields.get_duration(t, path, "idle_timeout", DEFAULT_IDLE_TIMEOUT_S),
        max_connections=max_connections,
        http2=http2,
        responses_api=responses_api,
        list_models=list_models,
        request_timeout_s=request_timeout_s,
        max_concurrency=max_concurrency,
        queue_size=queue_size,
        queue_timeout_s=queue_timeout_s,
        count_tokens=count_tokens,
        max_output_tokens=max_output_tokens,
        no_reasoning=no_reasoning,
    )


def _base_url(
    fields: Fields, t: Mapping[str, Any], path: str, kind: str
) -> tuple[str, bool]:
    """``base_url`` (the vendor's public URL by default), and whether it is https."""
    base_url = fields.get_str(t, path, "base_url", VENDOR_BASE_URLS[kind])
    assert base_url is not None
    try:
        scheme, _, _, base_path = split_base_url(base_url)
    except ValueError as exc:
        raise fields.fail(f"{path}.base_url", str(exc)) from None
    if kind != "openai" and base_path.rsplit("/", 1)[-1].lower() in _VERSION_SEGMENTS:
        raise fields.fail(
            f"{path}.base_url",
            f"{kind} base_url is the bare host, e.g. {VENDOR_BASE_URLS[kind]!r}; "
            f"the gateway appends the API version path itself (got {base_url!r})",
        )
    return base_url, scheme == "https"


def _http2(fields: Fields, t: Mapping[str, Any], path: str, tls: bool) -> str:
    """``http2``: false (HTTP/1.1, the default), true (HTTP/2 only: offered alone by
    ALPN on https, prior knowledge on http, RFC 9113 §3.3) or "auto" (https only: both
    offered by ALPN, the provider picks). Returned as "off", "on" or "auto"."""
    value = t.get("http2", False)
    if value is True or value is False:
        return "on" if value else "off"
    if isinstance(value, str) and value.lower() == "auto":
        if not tls:
            raise fields.fail(
                f"{path}.http2",
                '"auto" needs an https base_url (HTTP/2 is chosen by TLS ALPN); '
                "use true for HTTP/2 with prior knowledge on http",
            )
        return "auto"
    raise fields.fail(f"{path}.http2", f'must be true, false or "auto" (got {value!r})')


def _api_key(fields: Fields, t: Mapping[str, Any], path: str) -> str | None:
    """The key from ``api_key``, or from the variable ``api_key_env`` names."""
    if "api_key" in t and "api_key_env" in t:
        raise fields.fail(f"{path}.api_key", "set either api_key or api_key_env, not both")
    if "api_key" in t:
        return fields.check_secret(t["api_key"], f"{path}.api_key")
    if "api_key_env" not in t:
        return None
    var = fields.get_str(t, path, "api_key_env")
    assert var is not None
    value = fields.getenv(var)
    if value is None:
        raise fields.fail(
            f"{path}.api_key_env", f"environment variable {var!r} is not set or empty"
        )
    return fields.check_secret(value, f"{path}.api_key_env ({var})")


def _headers(
    fields: Fields, t: Mapping[str, Any], path: str
) -> tuple[tuple[str, str], ...]:
    """Extra headers sent upstream on every request, in the table's order."""
    raw = t.get("headers", {})
    if not isinstance(raw, dict):
        raise fields.fail(f"{path}.headers", 'must be a table of name = "value"')
    headers: list[tuple[str, str]] = []
    for hname, hvalue in raw.items():
        hpath = f"{path}.headers.{hname}"
        if not _HEADER_NAME_RE.fullmatch(hname):
            raise fields.fail(hpath, "not a valid header name")
        if hname.lower() in _MANAGED_HEADERS:
            raise fields.fail(hpath, "is set by the gateway and cannot be configured")
        if not isinstance(hvalue, str):
            raise fields.fail(hpath, f"must be a string (got {type(hvalue).__name__})")
        if any(c in "\r\n\0" for c in hvalue):
            raise fields.fail(hpath, "value must not contain CR, LF or NUL")
        headers.append((hname, hvalue))
    return tuple(headers)


def _ca_bundle(
    fields: Fields,
    t: Mapping[str, Any],
    path: str,
    tls: bool,
    verify_tls: bool,
    base_dir: str | None,
) -> str | None:
    """The PEM file to verify an https provider with, which must exist."""
    ca_bundle = fields.get_str(t, path, "ca_bundle")
    if ca_bundle is None:
        return None
    if not tls:
        raise fields.fail(f"{path}.ca_bundle", "only applies to an https base_url")
    if not verify_tls:
        raise fields.fail(f"{path}.ca_bundle", "is unused when verify_tls = false")
    ca_bundle = fields.get_path(ca_bundle, f"{path}.ca_bundle", base_dir)
    if not os.path.isfile(ca_bundle):
        raise fields.fail(f"{path}.ca_bundle", f"file not found: {ca_bundle!r}")
    return ca_bundle


def _globs(fields: Fields, t: Mapping[str, Any], path: str, key: str) -> tuple[str, ...]:
    """A list of model globs (a single string is taken as a list of one)."""
    raw = t.get(key)
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(g, str) and g for g in raw):
        raise fields.fail(f"{path}.{key}", f"must be a list of model globs (got {raw!r})")
    return tuple(raw)


def _output_caps(
    fields: Fields, t: Mapping[str, Any], path: str
) -> tuple[tuple[str, int], ...]:
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
            raise fields.fail(where, f"must be an integer >= 1 (got {cap!r})")
        out.append((str(glob), cap))
    return tuple(out)
