"""Model routing: requested model name -> ordered (provider, upstream model) targets.

Pure: no I/O, no clock. Routes are tried in config order and the first whose glob
matches the requested model wins (``fnmatch.fnmatchcase`` semantics: case-sensitive,
``*``, ``?``, ``[seq]``). A target without a rename sends the requested model as is.

The built-in model ``loopback``, when enabled (``loopback_enabled``), never routes:
the server answers it before asking the router, and ``resolve("loopback")`` returns
None even when a ``*`` route exists.  When it is off, ``loopback`` is a model name
like any other.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass

from proxy.config import LOOPBACK_MODEL, Config, ProviderConfig, Route, loopback_enabled

__all__ = [
    "MAX_CACHED_MODELS",
    "MAX_CACHED_MODEL_CHARS",
    "ResolvedRoute",
    "Router",
    "is_glob",
]

# Distinct model names remembered by Router.resolve. Real traffic uses a handful of
# names, so this is never reached in practice; the bound only stops a client that
# sends random names from growing memory without limit.
MAX_CACHED_MODELS = 4096

# Longer names are resolved but not cached, so the cache holds at most
# MAX_CACHED_MODELS * MAX_CACHED_MODEL_CHARS characters (1 Mi) whatever clients send.
# The longest real model ids (dated, with provider prefixes) are under 100 characters.
MAX_CACHED_MODEL_CHARS = 256

_GLOB_CHARS = frozenset("*?[")
_MISS = object()


def is_glob(pattern: str) -> bool:
    """True when ``pattern`` has fnmatch wildcards, i.e. is not one literal name."""
    return not _GLOB_CHARS.isdisjoint(pattern)


@dataclass(frozen=True, slots=True)
class ResolvedRoute:
    """The matching route and its targets in failover order: (provider, model sent)."""

    route: Route
    targets: tuple[tuple[ProviderConfig, str], ...]


class Router:
    """First-match router over ``config.routes`` with a bounded exact-name cache.

    ``resolve`` costs one dict lookup for a model seen before; the first lookup of a
    name scans the routes (precompiled regexes) once.
    """

    __slots__ = ("_cache", "_compiled", "_routes", "loopback")

    def __init__(self, config: Config) -> None:
        self._routes = config.routes
        self.loopback = loopback_enabled(config)
        # (route, compiled matcher, targets with the provider config looked up once)
        self._compiled: list[
            tuple[
                Route,
                Callable[[str], object],
                tuple[tuple[ProviderConfig, str | None], ...],
            ]
        ] = []
        for route in config.routes:
            matcher = re.compile(fnmatch.translate(route.match)).match
            missing = [
                t.provider for t in route.targets if t.provider not in config.providers
            ]
            if missing:
                raise ValueError(
                    f"route {route.match!r}: unknown provider {missing[0]!r}"
                )
            targets = tuple(
                (config.providers[t.provider], t.model) for t in route.targets
            )
            self._compiled.append((route, matcher, targets))
        self._cache: dict[str, ResolvedRoute | None] = {}

    def resolve(self, model: str) -> ResolvedRoute | None:
        """The first route matching ``model`` with its targets, or None."""
        hit = self._cache.get(model, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        resolved = self._resolve_uncached(model)
        if len(model) <= MAX_CACHED_MODEL_CHARS:
            if len(self._cache) >= MAX_CACHED_MODELS:
                # Evict the oldest entry (dicts keep insertion order): O(1) and no
                # per-hit bookkeeping, unlike an LRU, so hits stay a single lookup.
                del self._cache[next(iter(self._cache))]
            self._cache[model] = resolved
        return resolved

    def _resolve_uncached(self, model: str) -> ResolvedRoute | None:
        if model == LOOPBACK_MODEL and self.loopback:
            return None
        for route, matcher, targets in self._compiled:
            if matcher(model):
                return ResolvedRoute(
                    route=route,
                    targets=tuple(
                        (provider, model if rename is None else rename)
                        for provider, rename in targets
                    ),
                )
        return None

    def models(self) -> list[str]:
        """Names for GET /v1/models: literal route patterns, renamed target models and
        ``loopback``, in config order without duplicates."""
        names: dict[str, None] = {}
        for route in self._routes:
            if not is_glob(route.match):
                names[route.match] = None
            for target in route.targets:
                if target.model is not None:
                    names[target.model] = None
        if self.loopback:
            names[LOOPBACK_MODEL] = None
        return list(names)

    def explain(self, model: str) -> list[str]:
        """Human-readable lines saying how ``model`` is routed and why."""
        if model == LOOPBACK_MODEL and self.loopback:
            return [
                f"model {model!r}: the built-in loopback model, answered by the "
                "gateway itself; routes are not consulted"
            ]
        lines = [f"model {model!r}:"]
        resolved = self.resolve(model)
        for index, route in enumerate(self._routes, start=1):
            where = f" ({route.origin})" if route.origin else ""
            if resolved is None or route is not resolved.route:
                lines.append(f"  route {index} {route.match!r}{where}: no match")
                continue
            kind = "glob" if is_glob(route.match) else "exact name"
            lines.append(
                f"  route {index} {route.match!r}{where}: matches ({kind}); "
                "first match wins, later routes are not consulted"
            )
            pairs = zip(resolved.targets, route.targets, strict=True)
            for n, ((provider, sent), target) in enumerate(pairs, start=1):
                why = (
                    "requested model, no rename"
                    if target.model is None
                    else f"renamed by target {str(target)!r}"
                )
                role = "first choice" if n == 1 else "failover"
                lines.append(
                    f"    {n}. provider {provider.name!r} ({provider.kind}, "
                    f"{provider.base_url}) model {sent!r}: {why}; {role}"
                )
                fits = []
                cap = provider.output_cap_for(sent)
                if cap is not None:
                    fits.append(f"output tokens capped at {cap}")
                if not provider.reasoning_for(sent):
                    fits.append("reasoning controls left out (no_reasoning)")
                if fits:
                    lines.append(f"       fitted to the model: {'; '.join(fits)}")
            return lines
        if not self._routes:
            lines.append("  no routes are configured")
        lines.append(f"  no route matches {model!r}; the request cannot be served")
        return lines
