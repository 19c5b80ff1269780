"""Helpers shared by the tests/proxy/test_config*.py modules: write a TOML file,
load it with an explicit env, and catch the ConfigError it raises.

Modules take the ``write`` fixture by importing ``write_fixture``.
"""

from __future__ import annotations

import textwrap

import pytest

from proxy.config import ConfigError, load_config

# The smallest valid provider table, for tests that need one provider to exist.
PROVIDER = '[providers.p]\nkind = "openai"\n'


@pytest.fixture(name="write")
def write_fixture(tmp_path):
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

