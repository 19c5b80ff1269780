"""Typed, labelled reads of configuration keys, and the error they raise.

The loader merges the file, the environment and the CLI into plain dicts (one per
TOML table). `Fields` remembers which dotted keys were set by an environment variable
or a flag, so that an error about such a key names its source:
``server.listen (from TOKENWAY_LISTEN): ...``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .values import parse_duration, parse_size


class ConfigError(Exception):
    """A configuration value is missing, malformed or inconsistent.

    ``str(err)`` is ``"<key path>: <reason>"``; ``key`` and ``reason`` hold the parts.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def getenv(env: Mapping[str, str], name: str) -> str | None:
    """``env[name]`` stripped; unset, empty and blank values are all None."""
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def split_keys(text: str) -> list[str]:
    """``"k1, k2,,"`` -> ``["k1", "k2"]``."""
    return [k.strip() for k in text.split(",") if k.strip()]


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_keys(table: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> None:
    """Reject the first key of ``table`` not in ``allowed``, suggesting a close one."""
    for key in table:
        if key not in allowed:
            import difflib  # only on a config error

            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                join(path, key),
                f"unknown key ({hint}expected one of: {', '.join(allowed)})",
            )


def get_table(
    doc: Mapping[str, Any], key: str, allowed: tuple[str, ...] | None
) -> dict[str, Any]:
    """A copy of the top-level table ``[key]`` ({} when absent), keys checked unless
    ``allowed`` is None."""
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a table ([{key}])")
    if allowed is not None:
        check_keys(value, key, allowed)
    return dict(value)


class Fields:
    """One load's environment, the origin of every key set from outside the file,
    and getters that validate a key's type and name it (with its origin) on error."""

    __slots__ = ("env", "origins")

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.origins: dict[str, str] = {}  # dotted key -> "TOKENWAY_X" or "--flag"

    def getenv(self, name: str) -> str | None:
        return getenv(self.env, name)

    def label(self, key: str) -> str:
        origin = self.origins.get(key)
        return f"{key} (from {origin})" if origin else key

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.label(key), reason)

    def set_from(
        self, table: dict[str, Any], dotted: str, value: object, origin: str
    ) -> None:
        """Set ``dotted`` (its last part is the key in ``table``) from ``origin``."""
        table[dotted.rsplit(".", 1)[1]] = value
        self.origins[dotted] = origin

    # -- typed getters: the value of ``key`` in ``table`` (at ``path``), or ``default``

    def get_str(
        self, table: Mapping[str, Any], path: str, key: str, default: str | None = None
    ) -> str | None:
        value = table.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(join(path, key), f"must be a string (got {value!r})")
        return value

    def get_choice(
        self,
        table: Mapping[str, Any],
        path: str,
        key: str,
        choices: tuple[str, ...],
        default: str,
    ) -> str:
        """One of ``choices``, compared case-insensitively, returned lowercased."""
        value = table.get(key, default)
        folded = value.lower() if isinstance(value, str) else value
        if folded not in choices:
            raise self.fail(
                join(path, key), f"must be one of {', '.join(choices)} (got {value!r})"
            )
        return folded

    def get_bool(
        self, table: Mapping[str, Any], path: str, key: str, default: bool
    ) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(join(path, key), f"must be true or false (got {value!r})")
        return value

    def get_int(
        self,
        table: Mapping[str, Any],
        path: str,
        key: str,
        default: int,
        low: int,
        note: str = "",
    ) -> int:
        """An integer >= ``low`` (booleans are not integers here); ``note`` is added
        to the error after the bound, e.g. ``", 0 turns it off"``."""
        value = table.get(key, default)
        if type(value) is not int or value < low:
            raise self.fail(
                join(path, key), f"must be an integer >= {low}{note} (got {value!r})"
            )
        return value

    def get_size(
        self, table: Mapping[str, Any], path: str, key: str, default: int
    ) -> int:
        """Bytes > 0, as `parse_size` reads them."""
        if key not in table:
            return default
        try:
            size = parse_size(table[key])
        except ValueError as exc:
            raise self.fail(join(path, key), str(exc)) from None
        if size <= 0:
            raise self.fail(join(path, key), f"must be > 0 (got {table[key]!r})")
        return size

    def get_duration(
        self, table: Mapping[str, Any], path: str, key: str, default: float
    ) -> float:
        """Seconds > 0, as `parse_duration` reads them."""
        if key not in table:
            return default
        try:
            seconds = parse_duration(table[key])
        except ValueError as exc:
            raise self.fail(join(path, key), str(exc)) from None
        if seconds <= 0:
            raise self.fail(join(path, key), f"must be > 0 (got {table[key]!r})")
        return seconds

    def get_duration_or_off(
        self,
        table: Mapping[str, Any],
        path: str,
        key: str,
        default: float,
        off: tuple[object, ...],
    ) -> float:
        """Like `get_duration`, but a value in ``off`` gives 0.0 (the feature is off)."""
        if table.get(key, default) in off:
            return 0.0
        return self.get_duration(table, path, key, default)

    def get_path(self, value: str, dotted: str, base_dir: str | None) -> str:
        """``~`` expanded; a relative path written in the file is made relative to
        the file's directory, one from the environment or a flag stays relative to
        the working directory. ``:memory:``-style names and URIs are kept as given."""
        value = os.path.expanduser(value)
        from_file = dotted not in self.origins
        if (
            from_file
            and base_dir
            and not os.path.isabs(value)
            and not value.startswith(":")
            and "://" not in value
        ):
            value = os.path.join(base_dir, value)
        return value

    def check_secret(self, value: object, key: str) -> str:
        """Validate a key or token without ever putting it in a message."""
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string (got {type(value).__name__})")
        if not value:
            raise self.fail(key, "must not be empty")
        if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in value):
            raise self.fail(key, "must not contain whitespace or control characters")
        return value
