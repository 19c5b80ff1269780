"""Configuration loading: file, env and CLI layers, validation messages, units."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from proxy.config import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_FIRST_BYTE_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_SHUTDOWN_GRACE_S,
    VENDOR_BASE_URLS,
    AuthConfig,
    Config,
    ConfigError,
    ProviderConfig,
    Route,
    ServerConfig,
    Target,
    check_listen_safety,
    is_loopback_host,
    load_config,
    parse_duration,
    parse_listen,
    parse_size,
)


@pytest.fixture
def write(tmp_path):
    """Write a TOML file and return its path."""

    def _write(text: str, name: str = "tokenway.toml") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    return _write


def load(text: str | None = None, *, env=None, overrides=None, write=None):
    path = write(text) if text is not None else None
    return load_config(path, env=env or {}, overrides=overrides)


def error_of(write, text: str, env=None, overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, write=write, env=env, overrides=overrides)
    return str(info.value)


# --- defaults -------------------------------------------------------------------------


def test_defaults_without_file_or_env():
    config = load_config(env={})
    assert config.source is None
    assert config.server == ServerConfig()
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8081)
    assert config.server.parser == "httptools"
    assert config.server.max_header_bytes == DEFAULT_MAX_HEADER_BYTES == 64 * 1024
    assert config.server.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 32 * 1024 * 1024
    assert config.server.header_timeout_s == DEFAULT_HEADER_TIMEOUT_S
    assert config.server.keepalive_timeout_s == DEFAULT_KEEPALIVE_TIMEOUT_S == 75.0
    assert config.server.shutdown_grace_s == DEFAULT_SHUTDOWN_GRACE_S
    assert config.server.allow_unauthenticated is False
    assert config.server.log_level == "info"
    assert config.ledger.path == "tokenway.db"
    assert config.auth.keys == () and not config.auth.enabled
    assert dict(config.providers) == {}
    assert config.routes == ()


def test_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("TOKENWAY_LISTEN", "127.0.0.1:9999")
    assert load_config().server.port == 9999


def test_config_is_frozen():
    config = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.providers["x"] = None  # type: ignore[index]


# --- full file ------------------------------------------------------------------------

FULL = """
    [server]
    listen = "[::1]:9000"
    parser = "h11"
    max_header_bytes = "16KiB"
    max_body_bytes = 1048576
    header_timeout = "500ms"
    keepalive_timeout = 5
    shutdown_grace = "1m"
    allow_unauthenticated = true
    log_level = "DEBUG"

    [ledger]
    path = "data/ledger.db"

    [auth]
    keys = ["inline-key"]
    keys_env = "GW_KEYS"

    [providers.openai]
    kind = "openai"
    base_url = "https://api.openai.com/v1/"
    api_key_env = "OPENAI_API_KEY"
    headers = { "X-Extra" = "v" }
    connect_timeout = "2s"
    first_byte_timeout = "2m"
    idle_timeout = 30.5
    max_connections = 7

    [providers.local]
    kind = "openai"
    base_url = "http://[::1]:8000/v1"
    auth = "passthrough"
    verify_tls = false

    [providers.claude]
    kind = "anthropic"
    api_key = "sk-ant-inline"

    [[routes]]
    match = "gpt-*"
    to = ["openai", "local:llama3:8b"]

    [[routes]]
    match = "claude*"
    to = "claude"
"""


def test_full_file(write, tmp_path):
    env = {"OPENAI_API_KEY": "sk-openai", "GW_KEYS": "a, b,,a"}
    config = load_config(write(FULL), env=env)
    s = config.server
    assert (s.host, s.port, s.parser) == ("::1", 9000, "h11")
    assert s.listen == "[::1]:9000"
    assert s.max_header_bytes == 16384 and s.max_body_bytes == 1048576
    assert s.header_timeout_s == 0.5 and s.keepalive_timeout_s == 5.0
    assert s.shutdown_grace_s == 60.0
    assert s.allow_unauthenticated is True and s.log_level == "debug"
    # Relative paths in the file are relative to the file.
    assert config.ledger.path == str(tmp_path / "data" / "ledger.db")
    assert config.auth.keys == ("inline-key", "a", "b")
    assert config.source == str(tmp_path / "tokenway.toml")

    openai = config.providers["openai"]
    assert openai.kind == "openai" and openai.api_key == "sk-openai"
    assert (openai.scheme, openai.host, openai.port) == ("https", "api.openai.com", 443)
    assert openai.base_path == "/v1" and openai.tls is True
    assert openai.authority == "api.openai.com"
    assert openai.headers == (("X-Extra", "v"),)
    assert openai.auth_mode == "inject" and openai.verify_tls is True
    assert openai.connect_timeout_s == 2.0 and openai.first_byte_timeout_s == 120.0
    assert openai.idle_timeout_s == 30.5 and openai.max_connections == 7

    local = config.providers["local"]
    assert (local.scheme, local.host, local.port) == ("http", "::1", 8000)
    assert local.tls is False and local.authority == "[::1]:8000"
    assert local.api_key is None and local.auth_mode == "passthrough"
    assert local.verify_tls is False

    claude = config.providers["claude"]
    assert (
        claude.base_url == VENDOR_BASE_URLS["anthropic"] == "https://api.anthropic.com"
    )
    assert claude.base_path == "" and claude.api_key == "sk-ant-inline"
    assert claude.connect_timeout_s == DEFAULT_CONNECT_TIMEOUT_S
    assert claude.first_byte_timeout_s == DEFAULT_FIRST_BYTE_TIMEOUT_S
    assert claude.idle_timeout_s == DEFAULT_IDLE_TIMEOUT_S
    assert claude.max_connections == DEFAULT_MAX_CONNECTIONS

    assert config.routes == (
        Route("gpt-*", (Target("openai"), Target("local", "llama3:8b"))),
        Route("claude*", (Target("claude"),)),
    )
    assert [r.origin for r in config.routes] == ["routes[0]", "routes[1]"]


def test_provider_config_constructed_directly_derives_fields():
    p = ProviderConfig(
        name="x", kind="gemini", base_url="https://example.com:8443/a/b/"
    )
    assert (p.scheme, p.host, p.port, p.base_path, p.tls) == (
        "https",
        "example.com",
        8443,
        "/a/b",
        True,
    )
    assert p.authority == "example.com:8443"
    with pytest.raises(ValueError):
        ProviderConfig(name="x", kind="openai", base_url="ftp://example.com")


def test_default_ledger_path_is_not_rebased(write):
    config = load_config(write("[server]\n"), env={})
    assert config.ledger.path == "tokenway.db"


def test_memory_ledger_path_is_kept(write):
    config = load_config(write('[ledger]\npath = ":memory:"\n'), env={})
    assert config.ledger.path == ":memory:"


# --- precedence -----------------------------------------------------------------------


def test_precedence_file_env_overrides(write):
    path = write(
        """
        [server]
        listen = "127.0.0.1:1000"
        parser = "h11"
        log_level = "error"
        max_body_bytes = "1MiB"
        [ledger]
        path = "/file.db"
        """
    )
    config = load_config(path, env={})
    assert config.server.port == 1000 and config.server.parser == "h11"

    env = {
        "TOKENWAY_LISTEN": "127.0.0.1:2000",
        "TOKENWAY_PARSER": "httptools",
        "TOKENWAY_LOG_LEVEL": "warning",
        "TOKENWAY_MAX_BODY_BYTES": "2MiB",
        "TOKENWAY_DB": "env.db",
    }
    config = load_config(path, env=env)
    assert config.server.port == 2000
    assert config.server.parser == "httptools"
    assert config.server.log_level == "warning"
    assert config.server.max_body_bytes == 2 * 1024 * 1024
    assert config.ledger.path == "env.db"  # env paths are not rebased on the file

    overrides = {
        "listen": "0.0.0.0:3000",
        "parser": "h11",
        "log_level": "debug",
        "db": "cli.db",
        "allow_unauthenticated": True,
    }
    config = load_config(path, env=env, overrides=overrides)
    assert (config.server.host, config.server.port) == ("0.0.0.0", 3000)
    assert config.server.parser == "h11"
    assert config.server.log_level == "debug"
    assert config.ledger.path == "cli.db"
    assert config.server.allow_unauthenticated is True
    assert config.server.max_body_bytes == 2 * 1024 * 1024


def test_none_overrides_are_ignored():
    config = load_config(
        env={"TOKENWAY_LISTEN": "127.0.0.1:2000"},
        overrides={"listen": None, "db": None},
    )
    assert config.server.port == 2000


def test_unknown_override_rejected():
    with pytest.raises(ConfigError, match=r"^overrides\.lissen: unknown override"):
        load_config(env={}, overrides={"lissen": "x"})


def test_tokenway_config_env_names_the_file(write):
    path = write('[server]\nlisten = "127.0.0.1:4321"\n')
    config = load_config(env={"TOKENWAY_CONFIG": path})
    assert config.server.port == 4321 and config.source == path
    # An explicit path wins over TOKENWAY_CONFIG.
    other = write('[server]\nlisten = "127.0.0.1:1234"\n', name="other.toml")
    assert load_config(other, env={"TOKENWAY_CONFIG": path}).server.port == 1234


def test_missing_file(tmp_path):
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_config(missing, env={})
    assert str(info.value).startswith(missing)
    with pytest.raises(
        ConfigError, match=r"\(from TOKENWAY_CONFIG\): config file not found"
    ):
        load_config(env={"TOKENWAY_CONFIG": missing})


def test_invalid_toml(write):
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write("[server\n"), env={})


def test_empty_env_values_count_as_unset(write):
    path = write('[auth]\nkeys = ["file-key"]\n[server]\nlisten = "127.0.0.1:1000"\n')
    config = load_config(path, env={"TOKENWAY_API_KEYS": "", "TOKENWAY_LISTEN": "  "})
    assert config.auth.keys == ("file-key",)
    assert config.server.port == 1000


def test_env_error_names_key_and_variable():
    with pytest.raises(ConfigError) as info:
        load_config(env={"TOKENWAY_MAX_BODY_BYTES": "12XB"})
    assert str(info.value).startswith(
        "server.max_body_bytes (from TOKENWAY_MAX_BODY_BYTES): bad size '12XB'"
    )


def test_override_error_names_flag():
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides={"allow_unauthenticated": "yes"})
    assert str(info.value).startswith(
        "server.allow_unauthenticated (from --allow-unauthenticated): must be true or false"
    )


# --- auth -----------------------------------------------------------------------------


def test_api_keys_env_replaces_file_keys(write):
    path = write('[auth]\nkeys = ["file-key"]\nkeys_env = "UNSET_VAR"\n')
    config = load_config(path, env={"TOKENWAY_API_KEYS": "k1, k2,k1,"})
    assert config.auth.keys == ("k1", "k2")
    assert config.auth.enabled


def test_keys_env_must_be_set(write):
    message = error_of(write, '[auth]\nkeys_env = "GW_KEYS"\n')
    assert message.startswith(
        "auth.keys_env: environment variable 'GW_KEYS' is not set"
    )


def test_bad_key_message_hides_the_key(write):
    message = error_of(write, '[auth]\nkeys = ["good", "bad key-secret"]\n')
    assert message.startswith("auth.keys[1]: must not contain whitespace")
    assert "secret" not in message


# --- providers and env shortcuts ------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "globs"),
    [
        ("openai", ["gpt-*", "o[0-9]*", "chatgpt-*", "text-embedding-*"]),
        ("anthropic", ["claude*"]),
        ("gemini", ["gemini*"]),
    ],
)
def test_vendor_shortcut_api_key_alone(vendor, globs):
    var = f"TOKENWAY_{vendor.upper()}_API_KEY"
    config = load_config(env={var: "secret-key"})
    provider = config.providers[vendor]
    assert provider.name == vendor and provider.kind == vendor
    assert provider.base_url == VENDOR_BASE_URLS[vendor]
    assert provider.api_key == "secret-key"
    assert [r.match for r in config.routes] == globs
    assert all(r.targets == (Target(vendor),) for r in config.routes)
    assert all(r.origin == f"default for {var}" for r in config.routes)


def test_vendor_public_base_urls():
    assert VENDOR_BASE_URLS == {
        "openai": "https://api.openai.com/v1",
        "anthropic": "https://api.anthropic.com",
        "gemini": "https://generativelanguage.googleapis.com",
    }


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "gemini"])
def test_vendor_shortcut_base_url_alone_needs_no_key(vendor):
    url = (
        "http://127.0.0.1:11434/v1" if vendor == "openai" else "http://127.0.0.1:11434"
    )
    config = load_config(env={f"TOKENWAY_{vendor.upper()}_BASE_URL": url})
    provider = config.providers[vendor]
    assert provider.base_url == url and provider.api_key is None
    assert (provider.host, provider.port, provider.tls) == ("127.0.0.1", 11434, False)
    assert config.routes  # default routes come with it


def test_all_three_shortcuts_route_in_vendor_order():
    env = {
        "TOKENWAY_GEMINI_API_KEY": "g",
        "TOKENWAY_ANTHROPIC_API_KEY": "a",
        "TOKENWAY_OPENAI_BASE_URL": "http://localhost:8000/v1",
        "TOKENWAY_OPENAI_API_KEY": "o",
    }
    config = load_config(env=env)
    assert [r.targets[0].provider for r in config.routes] == ["openai"] * 4 + [
        "anthropic",
        "gemini",
    ]
    assert config.routes[0].origin == "default for TOKENWAY_OPENAI_*"


def test_shortcut_routes_follow_file_routes(write):
    path = write(
        """
        [providers.local]
        kind = "openai"
        base_url = "http://localhost:8000/v1"
        [[routes]]
        match = "gpt-4o"
        to = ["local"]
        """
    )
    config = load_config(path, env={"TOKENWAY_OPENAI_API_KEY": "k"})
    assert [r.match for r in config.routes][:2] == ["gpt-4o", "gpt-*"]


def test_shortcut_overrides_file_provider_of_same_name(write):
    path = write(
        """
        [providers.openai]
        kind = "openai"
        base_url = "https://file.example/v1"
        api_key_env = "UNSET_BECAUSE_ENV_WINS"
        max_connections = 3
        """
    )
    env = {
        "TOKENWAY_OPENAI_API_KEY": "env-key",
        "TOKENWAY_OPENAI_BASE_URL": "https://env.example/v1",
    }
    provider = load_config(path, env=env).providers["openai"]
    assert provider.api_key == "env-key"
    assert provider.base_url == "https://env.example/v1"
    assert provider.max_connections == 3


def test_shortcut_conflicting_kind(write):
    text = '[providers.openai]\nkind = "anthropic"\n'
    message = error_of(write, text, env={"TOKENWAY_OPENAI_API_KEY": "k"})
    assert message.startswith("providers.openai.kind: is 'anthropic' in the file")


def test_shortcut_bad_url_names_variable():
    with pytest.raises(ConfigError) as info:
        load_config(env={"TOKENWAY_ANTHROPIC_BASE_URL": "localhost:8000"})
    assert str(info.value).startswith(
        "providers.anthropic.base_url (from TOKENWAY_ANTHROPIC_BASE_URL): scheme must be"
    )


def test_api_key_env_resolved_and_required(write):
    text = '[providers.p]\nkind = "openai"\napi_key_env = "MY_KEY"\n'
    config = load_config(write(text), env={"MY_KEY": "sk-1"})
    assert config.providers["p"].api_key == "sk-1"
    message = error_of(write, text)
    assert message.startswith(
        "providers.p.api_key_env: environment variable 'MY_KEY' is not set"
    )


def test_ca_bundle_relative_to_file(write, tmp_path):
    (tmp_path / "ca.pem").write_text("pem")
    text = '[providers.p]\nkind = "openai"\nca_bundle = "ca.pem"\n'
    assert load_config(write(text), env={}).providers["p"].ca_bundle == str(
        tmp_path / "ca.pem"
    )


# --- routes from TOKENWAY_ROUTES ------------------------------------------------------


def test_tokenway_routes_syntax():
    env = {
        "TOKENWAY_ANTHROPIC_API_KEY": "a",
        "TOKENWAY_OPENAI_API_KEY": "o",
        "TOKENWAY_GEMINI_BASE_URL": "http://localhost:9000",
        "TOKENWAY_ROUTES": " claude*=>anthropic , gpt-*=>openai:gpt-4o-mini|gemini|openai ,",
    }
    config = load_config(env=env)
    # TOKENWAY_ROUTES replaces the shortcut default routes.
    assert config.routes == (
        Route("claude*", (Target("anthropic"),)),
        Route(
            "gpt-*",
            (Target("openai", "gpt-4o-mini"), Target("gemini"), Target("openai")),
        ),
    )
    assert [r.origin for r in config.routes] == [
        "TOKENWAY_ROUTES[0]",
        "TOKENWAY_ROUTES[1]",
    ]


def test_tokenway_routes_follow_file_routes_and_use_file_providers(write):
    path = write(
        """
        [providers.local]
        kind = "openai"
        base_url = "http://localhost:8000/v1"
        [[routes]]
        match = "a"
        to = ["local"]
        """
    )
    config = load_config(path, env={"TOKENWAY_ROUTES": "b=>local:ollama:llama3"})
    assert config.routes == (
        Route("a", (Target("local"),)),
        Route("b", (Target("local", "ollama:llama3"),)),
    )


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ("gpt-*", "TOKENWAY_ROUTES[0]: expected GLOB=>TARGET|TARGET (got 'gpt-*')"),
        ("a=>openai,b=>nope", "TOKENWAY_ROUTES[1].to[0]: unknown provider 'nope'"),
        (
            "a=>openai|",
            'TOKENWAY_ROUTES[0].to[1]: must be "PROVIDER" or "PROVIDER:model"',
        ),
        ("=>openai", "TOKENWAY_ROUTES[0].match: must be a non-empty glob"),
        ("a=>openai:", "TOKENWAY_ROUTES[0].to[0]: empty model after ':'"),
    ],
)
def test_tokenway_routes_errors(routes, expected):
    with pytest.raises(ConfigError) as info:
        load_config(env={"TOKENWAY_OPENAI_API_KEY": "k", "TOKENWAY_ROUTES": routes})
    assert str(info.value).startswith(expected)


# --- validation: every error names its key --------------------------------------------

PROVIDER = '[providers.p]\nkind = "openai"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[server]\nlisten = "nohost"\n', "server.listen: bad listen address 'nohost'"),
        ('[server]\nlisten = ":8081"\n', "server.listen: bad listen address ':8081'"),
        (
            '[server]\nlisten = "::1:8081"\n',
            "server.listen: bad listen address '::1:8081' (put IPv6",
        ),
        (
            '[server]\nlisten = "[::1]8081"\n',
            "server.listen: bad listen address '[::1]8081'",
        ),
        ('[server]\nlisten = "[nothex]:80"\n', "server.listen: bad IPv6 address"),
        (
            '[server]\nlisten = "h:99999"\n',
            "server.listen: port must be 0..65535 (got 99999)",
        ),
        ('[server]\nlisten = "h:-1"\n', "server.listen: bad port"),
        ("[server]\nlisten = 8081\n", "server.listen: must be a string HOST:PORT"),
        (
            '[server]\nparser = "llhttp"\n',
            "server.parser: must be one of httptools, h11 (got 'llhttp')",
        ),
        (
            '[server]\nmax_body_bytes = "12XB"\n',
            "server.max_body_bytes: bad size '12XB'",
        ),
        ("[server]\nmax_header_bytes = 0\n", "server.max_header_bytes: must be > 0"),
        (
            '[server]\nheader_timeout = "soon"\n',
            "server.header_timeout: bad duration 'soon'",
        ),
        ("[server]\nkeepalive_timeout = 0\n", "server.keepalive_timeout: must be > 0"),
        ("[server]\nshutdown_grace = -1\n", "server.shutdown_grace: must be > 0"),
        (
            '[server]\nallow_unauthenticated = "yes"\n',
            "server.allow_unauthenticated: must be true or false",
        ),
        (
            '[server]\nlog_level = "loud"\n',
            "server.log_level: must be one of debug, info",
        ),
        ("[ledger]\npath = 3\n", "ledger.path: must be a string"),
        ('[ledger]\npath = ""\n', "ledger.path: must not be empty"),
        ('[auth]\nkeys = "k1"\n', "auth.keys: must be a list of strings"),
        ("[auth]\nkeys = [1]\n", "auth.keys[0]: must be a string"),
        ('[auth]\nkeys = [""]\n', "auth.keys[0]: must not be empty"),
        (
            '[providers.openai]\nkind = "foo"\n',
            "providers.openai.kind: must be one of openai, anthropic, gemini (got 'foo')",
        ),
        ('[providers.p]\nbase_url = "http://x"\n', "providers.p.kind: is required"),
        (
            '[providers."a:b"]\nkind = "openai"\n',
            "providers.a:b: provider names use letters",
        ),
        ("providers = { p = 3 }\n", "providers.p: must be a table"),
        (
            PROVIDER + 'base_url = "ftp://x/v1"\n',
            "providers.p.base_url: scheme must be http or https",
        ),
        (PROVIDER + 'base_url = "https:///v1"\n', "providers.p.base_url: needs a host"),
        (
            PROVIDER + 'base_url = "https://h:99999/v1"\n',
            "providers.p.base_url: bad port",
        ),
        (
            PROVIDER + 'base_url = "https://h /v1"\n',
            "providers.p.base_url: must not contain whitespace",
        ),
        (
            '[providers.p]\nkind = "anthropic"\nbase_url = "https://api.anthropic.com/v1"\n',
            "providers.p.base_url: anthropic base_url is the bare host",
        ),
        (
            '[providers.p]\nkind = "gemini"\nbase_url = "https://h/v1beta/"\n',
            "providers.p.base_url: gemini base_url is the bare host",
        ),
        (
            PROVIDER + 'api_key = "a"\napi_key_env = "B"\n',
            "providers.p.api_key: set either api_key or api_key_env",
        ),
        (PROVIDER + "api_key = 5\n", "providers.p.api_key: must be a string"),
        (
            PROVIDER + 'auth = "forward"\n',
            "providers.p.auth: must be one of inject, passthrough (got 'forward')",
        ),
        (PROVIDER + 'headers = "x"\n', "providers.p.headers: must be a table"),
        (
            PROVIDER + 'headers = { "Bad Name" = "v" }\n',
            "providers.p.headers.Bad Name: not a valid header name",
        ),
        (
            PROVIDER + 'headers = { "Host" = "v" }\n',
            "providers.p.headers.Host: is set by the gateway",
        ),
        (
            PROVIDER + 'headers = { "X-A" = 1 }\n',
            "providers.p.headers.X-A: must be a string",
        ),
        (
            PROVIDER + 'headers = { "X-A" = "v\\r\\nX-B: w" }\n',
            "providers.p.headers.X-A: value must not contain CR, LF",
        ),
        (
            PROVIDER + 'verify_tls = "no"\n',
            "providers.p.verify_tls: must be true or false",
        ),
        (
            PROVIDER + 'ca_bundle = "/nonexistent/ca.pem"\n',
            "providers.p.ca_bundle: file not found",
        ),
        (
            '[providers.p]\nkind = "openai"\nbase_url = "http://h/v1"\nca_bundle = "x.pem"\n',
            "providers.p.ca_bundle: only applies to an https base_url",
        ),
        (
            PROVIDER + 'verify_tls = false\nca_bundle = "x.pem"\n',
            "providers.p.ca_bundle: is unused when verify_tls = false",
        ),
        (
            PROVIDER + 'connect_timeout = "0s"\n',
            "providers.p.connect_timeout: must be > 0",
        ),
        (
            PROVIDER + 'first_byte_timeout = "5 years"\n',
            "providers.p.first_byte_timeout: bad duration '5 years'",
        ),
        (PROVIDER + "idle_timeout = -3\n", "providers.p.idle_timeout: must be > 0"),
        (
            PROVIDER + "max_connections = 0\n",
            "providers.p.max_connections: must be an integer >= 1",
        ),
        (
            PROVIDER + "max_connections = true\n",
            "providers.p.max_connections: must be an integer >= 1",
        ),
        ('[routes]\nmatch = "x"\n', "routes: must be an array of tables"),
        (PROVIDER + '[[routes]]\nto = ["p"]\n', "routes[0].match: is required"),
        (PROVIDER + '[[routes]]\nmatch = "x"\n', "routes[0].to: is required"),
        (
            PROVIDER + '[[routes]]\nmatch = ""\nto = ["p"]\n',
            "routes[0].match: must be a non-empty glob",
        ),
        (
            PROVIDER + '[[routes]]\nmatch = "loopback"\nto = ["p"]\n',
            "routes[0].match: 'loopback' is the built-in model",
        ),
        (
            PROVIDER + '[[routes]]\nmatch = "x"\nto = []\n',
            "routes[0].to: needs at least one target",
        ),
        (
            PROVIDER + '[[routes]]\nmatch = "x"\nto = 3\n',
            "routes[0].to: must be a list of targets",
        ),
        (
            PROVIDER
            + '[[routes]]\nmatch="a"\nto=["p"]\n[[routes]]\nmatch="b"\nto=["p"]\n[[routes]]\nmatch="c"\nto=["x"]\n',
            "routes[2].to[0]: unknown provider 'x' (defined: p)",
        ),
        (
            '[[routes]]\nmatch = "c"\nto = ["x"]\n',
            "routes[0].to[0]: unknown provider 'x' (defined: none)",
        ),
        (
            PROVIDER + '[[routes]]\nmatch = "x"\nto = ["p", 4]\n',
            'routes[0].to[1]: must be "PROVIDER"',
        ),
    ],
)
def test_validation_errors_name_the_key(write, text, expected):
    assert error_of(write, text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[sever]\n", "sever: unknown key (did you mean 'server'?"),
        (
            '[server]\nlisten_addr = "x"\n',
            "server.listen_addr: unknown key (did you mean 'listen'?",
        ),
        ('[ledger]\nfile = "x"\n', "ledger.file: unknown key (expected one of: path)"),
        ('[auth]\nkey = ["x"]\n', "auth.key: unknown key (did you mean 'keys'?"),
        (
            PROVIDER + 'apikey = "x"\n',
            "providers.p.apikey: unknown key (did you mean 'api_key'?",
        ),
        (
            PROVIDER + '[[routes]]\nmatch = "x"\nto = ["p"]\nfallback = ["p"]\n',
            "routes[0].fallback: unknown key",
        ),
    ],
)
def test_unknown_keys_rejected(write, text, expected):
    assert error_of(write, text).startswith(expected)


def test_config_error_has_key_and_reason(write):
    with pytest.raises(ConfigError) as info:
        load_config(write('[server]\nparser = "x"\n'), env={})
    assert info.value.key == "server.parser"
    assert info.value.reason.startswith("must be one of")


# --- secrets --------------------------------------------------------------------------

SECRET = "sk-SECRET-VALUE-123"


def test_secrets_not_in_repr_or_str(write):
    path = write(
        f"""
        [auth]
        keys = ["{SECRET}-gw"]
        [providers.p]
        kind = "openai"
        api_key = "{SECRET}"
        headers = {{ "X-Api-Token" = "{SECRET}-hdr" }}
        """
    )
    config = load_config(path, env={"TOKENWAY_ANTHROPIC_API_KEY": SECRET + "-env"})
    for text in (
        repr(config),
        str(config),
        repr(config.providers["p"]),
        str(config.auth),
    ):
        assert "SECRET" not in text
    assert "X-Api-Token" in repr(config.providers["p"])
    assert "api_key=<hidden>" in repr(config.providers["p"])
    assert "api_key=None" in repr(
        ProviderConfig(name="n", kind="openai", base_url="http://h")
    )
    assert repr(AuthConfig(("a", "b"))) == "AuthConfig(keys=<2 hidden>)"


def test_base_url_with_secrets_not_echoed(write):
    for url in (f"https://user:{SECRET}@h/v1", f"https://h/v1?key={SECRET}"):
        message = error_of(write, PROVIDER + f'base_url = "{url}"\n')
        assert message.startswith("providers.p.base_url: must not")
        assert "SECRET" not in message


def test_bad_provider_key_not_echoed():
    with pytest.raises(ConfigError) as info:
        load_config(env={"TOKENWAY_OPENAI_API_KEY": f"{SECRET} x"})
    assert str(info.value).startswith(
        "providers.openai.api_key (from TOKENWAY_OPENAI_API_KEY)"
    )
    assert "SECRET" not in str(info.value)


# --- unit parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1024, 1024),
        (2048.0, 2048),
        ("100", 100),
        ("100B", 100),
        ("64KiB", 65536),
        ("64 KiB", 65536),
        ("64kib", 65536),
        ("1.5KiB", 1536),
        ("32MiB", 32 * 1024 * 1024),
        ("2GiB", 2 * 1024**3),
        ("10KB", 10_000),
        ("0.1KB", 100),
        ("3MB", 3_000_000),
        ("1GB", 10**9),
    ],
)
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    "value", ["12XB", "", "KiB", "1.5B", "-1KiB", "1e3", True, None, 1.5, [1]]
)
def test_parse_size_rejects(value):
    with pytest.raises(ValueError, match="bad size"):
        parse_size(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, 30.0),
        (0.25, 0.25),
        ("30", 30.0),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (" 2 S ", 2.0),
    ],
)
def test_parse_duration(value, expected):
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value", ["soon", "", "5d", "-5s", "1m30s", True, None, float("inf"), float("nan")]
)
def test_parse_duration_rejects(value):
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8081", ("127.0.0.1", 8081)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:8081", ("::1", 8081)),
        ("[::]:80", ("::", 80)),
        ("gateway.internal:443", ("gateway.internal", 443)),
    ],
)
def test_parse_listen(value, expected):
    assert parse_listen(value) == expected


# --- loopback detection and listen safety ---------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1.2.3",
        "127.255.255.255",
        "::1",
        "[::1]",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "::ffff:127.0.0.1",
    ],
)
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",
        "::",
        "",
        "10.0.0.1",
        "128.0.0.1",
        "192.168.1.1",
        "example.com",
        "localhost.example.com",
        "::2",
        "::ffff:10.0.0.1",
    ],
)
def test_non_loopback_hosts(host):
    assert not is_loopback_host(host)


def test_listen_safety():
    assert check_listen_safety(load_config(env={})) is None
    assert check_listen_safety(load_config(env={"TOKENWAY_LISTEN": "[::1]:80"})) is None

    exposed = load_config(env={"TOKENWAY_LISTEN": "0.0.0.0:8081"})
    message = check_listen_safety(exposed)
    assert message is not None
    assert "0.0.0.0:8081" in message
    assert "TOKENWAY_API_KEYS" in message
    assert "keys_env" in message
    assert "--allow-unauthenticated" in message

    keyed = load_config(
        env={"TOKENWAY_LISTEN": "0.0.0.0:8081", "TOKENWAY_API_KEYS": "k"}
    )
    assert check_listen_safety(keyed) is None
    allowed = load_config(
        env={"TOKENWAY_LISTEN": "0.0.0.0:8081"},
        overrides={"allow_unauthenticated": True},
    )
    assert check_listen_safety(allowed) is None


def test_listen_safety_ipv6_any():
    config = Config(server=ServerConfig(host="::", port=8081))
    message = check_listen_safety(config)
    assert message is not None and "[::]:8081" in message


# --- output-token caps ------------------------------------------------------------------

def test_max_output_tokens_one_number_or_a_table_of_globs(write):
    config = load("""
        [providers.openai]
        kind = "openai"
        base_url = "http://127.0.0.1:9/v1"
        max_output_tokens = { "gpt-4o*" = 16384, "o*" = 100000, "*" = 32768 }

        [providers.local]
        kind = "openai"
        base_url = "http://127.0.0.1:8/v1"
        max_output_tokens = 4096
        """, write=write)
    assert config.providers["openai"].max_output_tokens == (
        ("gpt-4o*", 16384), ("o*", 100000), ("*", 32768))
    assert config.providers["local"].max_output_tokens == (("*", 4096),)


@pytest.mark.parametrize("value, where", [
    ("0", "providers.p.max_output_tokens: must be an integer >= 1 (got 0)"),
    ('"big"', "providers.p.max_output_tokens: must be an integer >= 1 (got 'big')"),
    ('{ "gpt-*" = -5 }', "providers.p.max_output_tokens.gpt-*: must be an integer >= 1 (got -5)"),
])
def test_max_output_tokens_rejects_what_is_not_a_positive_integer(write, value, where):
    msg = error_of(write, f"""
        [providers.p]
        kind = "openai"
        base_url = "http://127.0.0.1:9/v1"
        max_output_tokens = {value}
        """)
    assert where in msg


def test_no_reasoning_globs(write):
    config = load("""
        [providers.openai]
        kind = "openai"
        base_url = "http://127.0.0.1:9/v1"
        no_reasoning = ["gpt-4o*", "gpt-4.1*"]
        """, write=write)
    assert config.providers["openai"].no_reasoning == ("gpt-4o*", "gpt-4.1*")
    msg = error_of(write, """
        [providers.p]
        kind = "openai"
        base_url = "http://127.0.0.1:9/v1"
        no_reasoning = [1]
        """)
    assert "providers.p.no_reasoning: must be a list of model globs (got [1])" in msg
