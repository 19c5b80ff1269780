"""The [logging] section: defaults, paths, env and flag overrides, and errors that
name the key (docs/logging.md)."""

from __future__ import annotations

import os

import pytest

from proxy.config import LoggingConfig, load_config
from tests.proxy.config_files import error_of, load, write_fixture  # noqa: F401 (the write fixture)


def test_defaults() -> None:
    cfg = load_config(env={}).logging
    assert cfg == LoggingConfig()
    assert (cfg.access_log, cfg.access_format, cfg.daemon_log) == ("off", "json", "stderr")
    assert (cfg.rotate_bytes, cfg.rotate_daily, cfg.keep) == (100 * 1024 * 1024, False, 5)


def test_file_values_and_paths_relative_to_the_file(write) -> None:
    cfg = load('[logging]\naccess_log = "logs/access.log"\naccess_format = "LOGFMT"\n'
               'daemon_log = "/var/log/tokenway/daemon.log"\nrotate_bytes = "10MiB"\n'
               'rotate_daily = true\nkeep = 30\n', write=write).logging
    path = write("")
    assert cfg.access_log == os.path.join(os.path.dirname(path), "logs/access.log")
    assert cfg.access_format == "logfmt"
    assert cfg.daemon_log == "/var/log/tokenway/daemon.log"
    assert (cfg.rotate_bytes, cfg.rotate_daily, cfg.keep) == (10 * 1024 * 1024, True, 30)


@pytest.mark.parametrize("off", ["0", 0, "off", False])
def test_rotate_bytes_off(write, off) -> None:
    value = f'"{off}"' if isinstance(off, str) else str(off).lower()
    assert load(f"[logging]\nrotate_bytes = {value}\n", write=write).logging.rotate_bytes == 0


def test_env_then_flags_override_the_file(write) -> None:
    text = '[logging]\naccess_log = "stderr"\n'
    env = {"TOKENWAY_ACCESS_LOG": "/tmp/env.log", "TOKENWAY_ACCESS_FORMAT": "logfmt",
           "TOKENWAY_DAEMON_LOG": "rel.log"}
    cfg = load(text, env=env, write=write).logging
    # From the environment or a flag, a relative path is the working directory's.
    assert (cfg.access_log, cfg.access_format, cfg.daemon_log) == (
        "/tmp/env.log", "logfmt", "rel.log")
    cfg = load(text, env=env, write=write,
               overrides={"access_log": "off", "access_format": "json"}).logging
    assert (cfg.access_log, cfg.access_format) == ("off", "json")


@pytest.mark.parametrize(("text", "overrides", "expected"), [
    ('access_log = ""', None, "logging.access_log: must be 'off' or 'stderr' or a file path"),
    ("access_log = 3", None, "logging.access_log: must be a string"),
    ('access_log = "a\\nb.log"', None,
     "logging.access_log: a file path must not contain control characters"),
    ('access_log = "/tmp/"', None, "logging.access_log: '/tmp/' is a directory"),
    ('daemon_log = "off"', None, 'logging.daemon_log: cannot be "off"'),
    ('access_format = "xml"', None, "logging.access_format: must be one of json, logfmt"),
    ('rotate_bytes = "lots"', None, "logging.rotate_bytes: "),
    ('rotate_bytes = -5', None, "logging.rotate_bytes: "),
    ('rotate_daily = "yes"', None, "logging.rotate_daily: must be true or false"),
    ("keep = -1", None, "logging.keep: must be an integer >= 0, 0 keeps none"),
    ("keep = 5000", None, "logging.keep: must be at most 1000"),
    ("acess_log = 'x'", None, "logging.acess_log: unknown key (did you mean 'access_log'?"),
    ("", {"access_format": "yaml"}, "logging.access_format (from --access-format): "),
])
def test_errors_name_the_key(write, text, overrides, expected) -> None:
    assert error_of(write, f"[logging]\n{text}\n", overrides=overrides).startswith(expected)
