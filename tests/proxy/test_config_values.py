"""Configuration value parsers (sizes, durations, listen addresses), loopback
detection and the listen-safety check."""

from __future__ import annotations

import pytest

from proxy.config import (
    Config,
    ServerConfig,
    check_listen_safety,
    is_loopback_host,
    load_config,
    parse_duration,
    parse_listen,
    parse_size,
)

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

