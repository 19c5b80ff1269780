"""Routes: the file's [[routes]], then TOKENWAY_ROUTES or the shortcut defaults.

All routes are first collected as written, each with a label naming where it came
from ("routes[0]", "TOKENWAY_ROUTES[1]", "default for TOKENWAY_OPENAI_API_KEY"), then
validated by one function, so a route reads the same whatever its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from .fields import ConfigError, Fields, check_keys
from .model import LOOPBACK_MODEL, VENDOR_DEFAULT_ROUTES, ProviderConfig, Route, Target

ROUTE_KEYS = ("match", "to", "weights")


class RawRoute(NamedTuple):
    """A route as written, before validation."""

    label: str
    match: object
    to: object
    weights: object = None


def build_routes(
    fields: Fields,
    doc: Mapping[str, Any],
    providers: Mapping[str, ProviderConfig],
    shortcut_vendors: Mapping[str, str],
) -> tuple[Route, ...]:
    """File routes first; then TOKENWAY_ROUTES if set, else the default routes of
    each provider defined by a TOKENWAY_<VENDOR>_* shortcut."""
    raw = file_routes(doc)
    env_routes = fields.getenv("TOKENWAY_ROUTES")
    if env_routes is not None:
        raw += parse_env_routes(env_routes)
    else:
        raw += default_routes(shortcut_vendors)
    return tuple(build_route(r, providers) for r in raw)


def file_routes(doc: Mapping[str, Any]) -> list[RawRoute]:
    """The [[routes]] tables, their shape checked (not yet their values)."""
    entries = doc.get("routes", [])
    if not isinstance(entries, list):
        raise ConfigError("routes", "must be an array of tables ([[routes]])")
    raw = []
    for i, entry in enumerate(entries):
        label = f"routes[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(label, "must be a table with match and to")
        check_keys(entry, label, ROUTE_KEYS)
        if "match" not in entry:
            raise ConfigError(f"{label}.match", "is required")
        if "to" not in entry:
            raise ConfigError(f"{label}.to", "is required")
        raw.append(RawRoute(label, entry["match"], entry["to"], entry.get("weights")))
    return raw


def parse_env_routes(text: str) -> list[RawRoute]:
    """TOKENWAY_ROUTES: comma-separated ``GLOB=>TARGET|TARGET...``; whitespace around
    items and targets is dropped, empty items are skipped."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    raw = []
    for i, item in enumerate(items):
        label = f"TOKENWAY_ROUTES[{i}]"
        match, sep, targets = item.partition("=>")
        if not sep:
            raise ConfigError(label, f"expected GLOB=>TARGET|TARGET (got {item!r})")
        raw.append(RawRoute(label, match.strip(), [t.strip() for t in targets.split("|")]))
    return raw


def default_routes(shortcut_vendors: Mapping[str, str]) -> list[RawRoute]:
    """VENDOR_DEFAULT_ROUTES for each vendor defined by a shortcut, in vendor order."""
    return [
        RawRoute(f"default for {var}", glob, [vendor])
        for vendor, var in shortcut_vendors.items()
        for glob in VENDOR_DEFAULT_ROUTES[vendor]
    ]


def build_route(raw: RawRoute, providers: Mapping[str, ProviderConfig]) -> Route:
    label, match = raw.label, raw.match
    if not isinstance(match, str) or not match:
        raise ConfigError(
            f"{label}.match", f"must be a non-empty glob string (got {match!r})"
        )
    if match == LOOPBACK_MODEL:
        raise ConfigError(
            f"{label}.match",
            f"{LOOPBACK_MODEL!r} is the built-in model and cannot be routed",
        )
    targets = _targets(label, raw.to, providers)
    weights = _weights(label, raw.weights, len(targets))
    return Route(match=match, targets=targets, origin=label, weights=weights)


def _targets(
    label: str, to: object, providers: Mapping[str, ProviderConfig]
) -> tuple[Target, ...]:
    """``"PROVIDER"`` or ``"PROVIDER:model"`` items (a string is a list of one)."""
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list):
        raise ConfigError(f"{label}.to", f"must be a list of targets (got {to!r})")
    if not to:
        raise ConfigError(f"{label}.to", "needs at least one target")
    targets = []
    for j, spec in enumerate(to):
        key = f"{label}.to[{j}]"
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(
                key, f'must be "PROVIDER" or "PROVIDER:model" (got {spec!r})'
            )
        name, sep, model = spec.strip().partition(":")
        if sep and not model:
            raise ConfigError(key, f"empty model after ':' in {spec!r}")
        if name not in providers:
            known = ", ".join(providers) if providers else "none"
            raise ConfigError(key, f"unknown provider {name!r} (defined: {known})")
        targets.append(Target(provider=name, model=model if sep else None))
    return tuple(targets)


def _weights(label: str, weights: object, count: int) -> tuple[float, ...]:
    """One number >= 0 per target, at least one > 0; None: no weights."""
    if weights is None:
        return ()
    if (not isinstance(weights, list) or len(weights) != count
            or not all(isinstance(w, int | float) and not isinstance(w, bool)
                       and w >= 0 for w in weights)
            or not any(w > 0 for w in weights)):
        raise ConfigError(
            f"{label}.weights",
            f"must be a list of {count} numbers >= 0 (one per target, "
            f"at least one > 0), got {weights!r}")
    return tuple(float(w) for w in weights)
