"""Configuration of providers: tables, the TOKENWAY_<VENDOR>_* shortcuts, validation."""

from __future__ import annotations

import pytest

from proxy.config import (
    VENDOR_BASE_URLS,
    ConfigError,
    ProviderConfig,
    Target,
    load_config,
)
from tests.proxy.config_files import PROVIDER, error_of, load, write_fixture  # noqa: F401 (the write fixture)

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



# --- validation: every error names its key --------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
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
    ],
)
def test_provider_errors_name_the_key(write, text, expected):
    assert error_of(write, text).startswith(expected)


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


# --- limits, timeouts and per-kind options ----------------------------------------------


def test_provider_limit_defaults(write):
    text = PROVIDER + '[providers.a]\nkind = "anthropic"\n[providers.g]\nkind = "gemini"\n'
    providers = load(text, write=write).providers
    for p in providers.values():
        assert (p.request_timeout_s, p.max_concurrency) == (0.0, 0)
        assert (p.queue_size, p.queue_timeout_s) == (64, 30.0)
        assert p.responses_api is True and p.auth_mode == "inject"
        assert (p.max_output_tokens, p.no_reasoning) == ((), ())
    # Only an Anthropic provider has a count_tokens endpoint to ask.
    assert [p.count_tokens for p in providers.values()] == ["local", "upstream", "local"]


def test_provider_limits_and_options(write):
    text = PROVIDER + (
        'request_timeout = "90s"\nmax_concurrency = 4\nqueue_size = 0\n'
        'queue_timeout = "500ms"\nresponses_api = false\ncount_tokens = "UPSTREAM"\n'
    )
    p = load(text, write=write).providers["p"]
    assert (p.request_timeout_s, p.max_concurrency) == (90.0, 4)
    assert (p.queue_size, p.queue_timeout_s) == (0, 0.5)
    assert p.responses_api is False and p.count_tokens == "upstream"


@pytest.mark.parametrize("value", ["0", "\"0\"", "0.0"])
def test_request_timeout_zero_means_none(write, value):
    p = load(PROVIDER + f"request_timeout = {value}\n", write=write).providers["p"]
    assert p.request_timeout_s == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('request_timeout = "0s"\n', "providers.p.request_timeout: must be > 0"),
        ('request_timeout = "later"\n', "providers.p.request_timeout: bad duration"),
        (
            "max_concurrency = -1\n",
            "providers.p.max_concurrency: must be an integer >= 0 (got -1)",
        ),
        ("queue_size = 1.5\n", "providers.p.queue_size: must be an integer >= 0 (got 1.5)"),
        ("queue_size = true\n", "providers.p.queue_size: must be an integer >= 0 (got True)"),
        ("queue_timeout = 0\n", "providers.p.queue_timeout: must be > 0"),
        ("responses_api = 1\n", "providers.p.responses_api: must be true or false (got 1)"),
        (
            'count_tokens = "remote"\n',
            "providers.p.count_tokens: must be one of upstream, local (got 'remote')",
        ),
    ],
)
def test_provider_limit_errors_name_the_key(write, text, expected):
    assert error_of(write, PROVIDER + text).startswith(expected)
