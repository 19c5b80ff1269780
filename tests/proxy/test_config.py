"""Configuration loading: file, env and CLI layers, validation messages, secrets.

Providers and their env shortcuts are tested in test_config_providers.py, routes in
test_config_routes.py, the value parsers and listen safety in test_config_values.py.
"""

from __future__ import annotations

import dataclasses

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
    AgentSafetyConfig,
    AuthConfig,
    ConfigError,
    ProviderConfig,
    Route,
    RoutingConfig,
    ServerConfig,
    Target,
    load_config,
)
from tests.proxy.config_files import PROVIDER, error_of, write_fixture  # noqa: F401 (the write fixture)

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
    assert config.routing == RoutingConfig()
    assert config.agent_safety == AgentSafetyConfig()


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


# --- validation: every error names its key --------------------------------------------


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
    assert repr(AuthConfig(("a", "b"))) == "AuthConfig(keys=<2 hidden>, stored_keys=False)"


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



# --- [routing] and [agent_safety] -----------------------------------------------------


def test_routing_defaults():
    r = load_config(env={}).routing
    assert (r.max_attempts, r.backoff_s, r.backoff_max_s, r.deadline_s) == (3, 0.2, 5.0, 600.0)
    assert (r.failure_threshold, r.cooldown_s, r.cooldown_max_s) == (5, 30.0, 300.0)
    assert r.on_client_disconnect == "cancel" and r.heartbeat_s == 15.0


def test_routing_table(write):
    path = write(
        """
        [routing]
        max_attempts = 1
        backoff = "50ms"
        backoff_max = 2
        deadline = "1m"
        failure_threshold = 2
        cooldown = "10s"
        cooldown_max = "1h"
        on_client_disconnect = "DRAIN"
        heartbeat = "5s"
        """
    )
    assert load_config(path, env={}).routing == RoutingConfig(
        max_attempts=1,
        backoff_s=0.05,
        backoff_max_s=2.0,
        deadline_s=60.0,
        failure_threshold=2,
        cooldown_s=10.0,
        cooldown_max_s=3600.0,
        on_client_disconnect="drain",
        heartbeat_s=5.0,
    )


@pytest.mark.parametrize("value", ["0", "\"0\"", "\"off\"", "false"])
def test_routing_heartbeat_off(write, value):
    path = write(f"[routing]\nheartbeat = {value}\n")
    assert load_config(path, env={}).routing.heartbeat_s == 0.0


def test_agent_safety_table(write):
    path = write("[agent_safety]\ntool_loop_warn = 0\ntool_loop_stop = 9\n")
    assert load_config(path, env={}).agent_safety == AgentSafetyConfig(0, 9)
    assert AgentSafetyConfig() == AgentSafetyConfig(tool_loop_warn=3, tool_loop_stop=5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("routing = 3\n", "routing: must be a table ([routing])"),
        ("[routing]\nretries = 2\n", "routing.retries: unknown key"),
        (
            "[routing]\nmax_attempts = 0\n",
            "routing.max_attempts: must be an integer >= 1 (got 0)",
        ),
        (
            "[routing]\nfailure_threshold = true\n",
            "routing.failure_threshold: must be an integer >= 1 (got True)",
        ),
        ('[routing]\nbackoff = "soon"\n', "routing.backoff: bad duration 'soon'"),
        ("[routing]\nbackoff_max = 0\n", "routing.backoff_max: must be > 0"),
        ("[routing]\ndeadline = -1\n", "routing.deadline: must be > 0"),
        ('[routing]\ncooldown = "1d"\n', "routing.cooldown: bad duration '1d'"),
        ("[routing]\ncooldown_max = 0.0\n", "routing.cooldown_max: must be > 0"),
        ('[routing]\nheartbeat = "0s"\n', "routing.heartbeat: must be > 0"),
        (
            '[routing]\non_client_disconnect = "wait"\n',
            "routing.on_client_disconnect: must be one of cancel, drain (got 'wait')",
        ),
        ("agent_safety = []\n", "agent_safety: must be a table ([agent_safety])"),
        (
            "[agent_safety]\ntool_loop_warn = -1\n",
            "agent_safety.tool_loop_warn: must be an integer >= 0, 0 turns it off (got -1)",
        ),
        (
            '[agent_safety]\ntool_loop_stop = "5"\n',
            "agent_safety.tool_loop_stop: must be an integer >= 0, 0 turns it off (got '5')",
        ),
        ("[agent_safety]\nloop = 1\n", "agent_safety.loop: unknown key"),
    ],
)
def test_routing_and_agent_safety_errors_name_the_key(write, text, expected):
    assert error_of(write, text).startswith(expected)


def test_client_side_limits_have_keys_and_defaults(write) -> None:
    cfg = load_config(write('''
        [server]
        body_timeout = "5s"
        body_deadline = "1m"
        send_timeout = "2s"
        max_connections = 300
    '''), env={})
    s = cfg.server
    assert (s.body_timeout_s, s.body_deadline_s, s.send_timeout_s, s.max_connections) == (
        5.0, 60.0, 2.0, 300)
    d = load_config(None, env={}).server
    assert (d.body_timeout_s, d.body_deadline_s, d.send_timeout_s, d.max_connections) == (
        60.0, 300.0, 60.0, 4096)
    assert "server.max_connections" in error_of(write, "[server]\nmax_connections = 0\n")
    assert "server.body_timeout" in error_of(write, '[server]\nbody_timeout = "soon"\n')


@pytest.mark.parametrize("text, env, listen, enabled", [
    ("", {}, "127.0.0.1:8081", True),
    ("", {"TOKENWAY_API_KEYS": "k"}, "127.0.0.1:8081", False),
    ("[server]\nallow_unauthenticated = true\n", {}, "0.0.0.0:8081", False),
    ('[server]\nloopback_model = "on"\n', {"TOKENWAY_API_KEYS": "k"}, "127.0.0.1:8081", True),
    ("[server]\nloopback_model = true\n", {"TOKENWAY_API_KEYS": "k"}, "0.0.0.0:8081", True),
    ('[server]\nloopback_model = "off"\n', {}, "127.0.0.1:8081", False),
])
def test_loopback_model_switch(write, text, env, listen, enabled) -> None:
    from proxy.config import loopback_enabled

    cfg = load_config(write(text), env=env, overrides={"listen": listen})
    assert loopback_enabled(cfg) is enabled


def test_loopback_model_switch_is_checked(write) -> None:
    assert "server.loopback_model" in error_of(write, '[server]\nloopback_model = "maybe"\n')


@pytest.mark.parametrize(("value", "url", "mode"), [
    (None, "http://h/v1", "off"), ("false", "https://h/v1", "off"),
    ("true", "http://h/v1", "on"), ("true", "https://h/v1", "on"),
    ('"auto"', "https://h/v1", "auto"), ('"AUTO"', "https://h/v1", "auto"),
])
def test_provider_http2_modes(write, value, url, mode):
    line = f"http2 = {value}\n" if value else ""
    config = load_config(write(f'{PROVIDER}base_url = "{url}"\n{line}'), env={})
    assert config.providers["p"].http2 == mode


@pytest.mark.parametrize(("value", "url", "expected"), [
    ('"auto"', "http://h/v1", 'providers.p.http2: "auto" needs an https base_url'),
    ('"yes"', "https://h/v1", 'providers.p.http2: must be true, false or "auto"'),
    ("1", "https://h/v1", 'providers.p.http2: must be true, false or "auto"'),
])
def test_provider_http2_errors(write, value, url, expected):
    text = f'{PROVIDER}base_url = "{url}"\nhttp2 = {value}\n'
    assert error_of(write, text).startswith(expected)
