"""Model routing: first-match order, globs, renames, cache, models(), explain()."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from proxy import routing
from proxy.config import Config, ProviderConfig, Route, Target, load_config
from proxy.routing import MAX_CACHED_MODEL_CHARS, MAX_CACHED_MODELS, Router, is_glob


def make_config(*routes: tuple[str, list[str]]) -> Config:
    providers = {
        "openai": ProviderConfig(
            name="openai", kind="openai", base_url="https://api.openai.com/v1"
        ),
        "anthropic": ProviderConfig(
            name="anthropic", kind="anthropic", base_url="https://api.anthropic.com"
        ),
        "local": ProviderConfig(
            name="local", kind="openai", base_url="http://127.0.0.1:8000/v1"
        ),
    }
    built = []
    for index, (match, to) in enumerate(routes):
        targets = []
        for spec in to:
            name, sep, model = spec.partition(":")
            targets.append(Target(name, model if sep else None))
        built.append(Route(match, tuple(targets), origin=f"routes[{index}]"))
    return Config(providers=MappingProxyType(providers), routes=tuple(built))


def names(resolved) -> list[tuple[str, str]]:
    return [(provider.name, model) for provider, model in resolved.targets]


def test_glob_match_sends_requested_model():
    router = Router(make_config(("gpt-*", ["openai"])))
    resolved = router.resolve("gpt-4o")
    assert resolved is not None
    assert resolved.route.match == "gpt-*"
    assert names(resolved) == [("openai", "gpt-4o")]
    assert resolved.targets[0][0] is router.resolve("gpt-4o").targets[0][0]


def test_no_match_returns_none():
    router = Router(make_config(("gpt-*", ["openai"])))
    assert router.resolve("claude-3") is None
    assert router.resolve("") is None


def test_first_match_in_config_order_wins():
    config = make_config(
        ("gpt-4o-mini", ["local"]),
        ("gpt-*", ["openai"]),
        ("*", ["anthropic"]),
    )
    router = Router(config)
    assert names(router.resolve("gpt-4o-mini")) == [("local", "gpt-4o-mini")]
    assert names(router.resolve("gpt-4o")) == [("openai", "gpt-4o")]
    assert names(router.resolve("anything")) == [("anthropic", "anything")]

    # The same routes in the opposite order: the catch-all shadows everything.
    reversed_router = Router(make_config(("*", ["anthropic"]), ("gpt-*", ["openai"])))
    assert names(reversed_router.resolve("gpt-4o")) == [("anthropic", "gpt-4o")]


def test_rename_and_ordered_failover_targets():
    router = Router(
        make_config(
            ("fast", ["openai:gpt-4o-mini", "local", "anthropic:claude-3-5-haiku"])
        )
    )
    assert names(router.resolve("fast")) == [
        ("openai", "gpt-4o-mini"),
        ("local", "fast"),
        ("anthropic", "claude-3-5-haiku"),
    ]


@pytest.mark.parametrize(
    ("pattern", "model", "matches"),
    [
        ("claude*", "claude-sonnet-4", True),
        ("claude*", "Claude-sonnet-4", False),  # case-sensitive (fnmatchcase)
        ("o[0-9]*", "o3-mini", True),
        ("o[0-9]*", "omni", False),
        ("gpt-4?", "gpt-4o", True),
        ("gpt-4?", "gpt-4o-mini", False),
        ("exact", "exact", True),
        ("exact", "exact-2", False),
        ("a.b", "axb", False),  # regex metacharacters are literal
        ("*", "multi\nline", True),
    ],
)
def test_glob_semantics(pattern, model, matches):
    router = Router(make_config((pattern, ["openai"])))
    assert (router.resolve(model) is not None) is matches


def test_loopback_never_routes():
    router = Router(make_config(("*", ["openai"])))
    assert router.resolve("loopback") is None
    assert router.resolve("loopback-2") is not None


def test_cache_returns_same_result_and_is_correct_per_model():
    router = Router(make_config(("gpt-*", ["openai"]), ("*", ["local:default"])))
    first = router.resolve("gpt-4o")
    assert router.resolve("gpt-4o") is first  # served from the cache
    assert names(router.resolve("gpt-5")) == [("openai", "gpt-5")]
    assert names(router.resolve("other")) == [("local", "default")]
    assert router.resolve("gpt-4o") is first


def test_cache_remembers_misses():
    router = Router(make_config(("gpt-*", ["openai"])))
    assert router.resolve("nope") is None
    assert "nope" in router._cache
    assert router.resolve("nope") is None


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(routing, "MAX_CACHED_MODELS", 8)
    router = Router(make_config(("m-*", ["openai"])))
    for i in range(50):
        resolved = router.resolve(f"m-{i}")
        assert names(resolved) == [("openai", f"m-{i}")]
    assert len(router._cache) == 8
    # The oldest entries were evicted; the newest are kept; evicted names still resolve.
    assert "m-49" in router._cache and "m-0" not in router._cache
    assert names(router.resolve("m-0")) == [("openai", "m-0")]


def test_default_cache_bound():
    router = Router(make_config(("*", ["openai"])))
    for i in range(MAX_CACHED_MODELS + 100):
        router.resolve(f"model-{i}")
    assert len(router._cache) == MAX_CACHED_MODELS


def test_long_model_names_resolve_but_are_not_cached():
    router = Router(make_config(("*", ["openai"])))
    long_name = "x" * (MAX_CACHED_MODEL_CHARS + 1)
    assert names(router.resolve(long_name)) == [("openai", long_name)]
    assert long_name not in router._cache


def test_unknown_provider_in_hand_built_config():
    config = Config(routes=(Route("x", (Target("ghost"),)),))
    with pytest.raises(ValueError, match="unknown provider 'ghost'"):
        Router(config)


def test_is_glob():
    assert is_glob("gpt-*") and is_glob("o[0-9]") and is_glob("gpt-4?")
    assert not is_glob("gpt-4o") and not is_glob("claude-3.5")


def test_models_lists_literals_renames_and_loopback():
    config = make_config(
        ("gpt-*", ["openai", "local:llama3"]),
        ("fast", ["openai:gpt-4o-mini"]),
        ("claude-sonnet-4", ["anthropic"]),
        ("gpt-4o-mini", ["openai"]),
    )
    assert Router(config).models() == [
        "llama3",
        "fast",
        "gpt-4o-mini",
        "claude-sonnet-4",
        "loopback",
    ]


def test_models_with_no_routes():
    assert Router(Config()).models() == ["loopback"]


def test_router_from_loaded_env_config():
    env = {
        "TOKENWAY_OPENAI_API_KEY": "o",
        "TOKENWAY_ANTHROPIC_API_KEY": "a",
        "TOKENWAY_GEMINI_API_KEY": "g",
    }
    router = Router(load_config(env=env))
    for model, provider in [
        ("gpt-4o", "openai"),
        ("o3-mini", "openai"),
        ("chatgpt-4o-latest", "openai"),
        ("text-embedding-3-small", "openai"),
        ("claude-opus-4-1", "anthropic"),
        ("gemini-2.5-pro", "gemini"),
    ]:
        assert names(router.resolve(model)) == [(provider, model)]
    assert router.resolve("llama3") is None


def test_router_from_tokenway_routes():
    env = {
        "TOKENWAY_OPENAI_API_KEY": "o",
        "TOKENWAY_ANTHROPIC_BASE_URL": "http://localhost:9000",
        "TOKENWAY_ROUTES": "claude*=>anthropic,gpt-*=>openai:gpt-4o-mini|anthropic",
    }
    router = Router(load_config(env=env))
    assert names(router.resolve("gpt-5")) == [
        ("openai", "gpt-4o-mini"),
        ("anthropic", "gpt-5"),
    ]
    assert names(router.resolve("claude-x")) == [("anthropic", "claude-x")]
    assert router.resolve("o3") is None  # the default openai routes were replaced


def test_explain_match():
    config = make_config(
        ("claude*", ["anthropic"]),
        ("gpt-*", ["openai", "local:llama3"]),
        ("*", ["local"]),
    )
    lines = Router(config).explain("gpt-4o")
    assert lines[0] == "model 'gpt-4o':"
    assert lines[1] == "  route 1 'claude*' (routes[0]): no match"
    assert lines[2].startswith(
        "  route 2 'gpt-*' (routes[1]): matches (glob); first match wins"
    )
    assert lines[3] == (
        "    1. provider 'openai' (openai, https://api.openai.com/v1) model 'gpt-4o': "
        "requested model, no rename; first choice"
    )
    assert lines[4] == (
        "    2. provider 'local' (openai, http://127.0.0.1:8000/v1) model 'llama3': "
        "renamed by target 'local:llama3'; failover"
    )
    assert len(lines) == 5  # routes after the match are not consulted


def test_explain_exact_name():
    lines = Router(make_config(("fast", ["openai:gpt-4o-mini"]))).explain("fast")
    assert "matches (exact name)" in lines[1]


def test_explain_no_match_and_loopback():
    router = Router(make_config(("gpt-*", ["openai"])))
    lines = router.explain("mistral")
    assert lines[-2] == "  route 1 'gpt-*' (routes[0]): no match"
    assert lines[-1] == "  no route matches 'mistral'; the request cannot be served"
    assert "no routes are configured" in Router(Config()).explain("x")[1]
    (line,) = router.explain("loopback")
    assert "built-in loopback model" in line


def test_explain_says_how_a_target_is_fitted_to_its_model():
    from dataclasses import replace

    config = make_config(("gpt-*", ["openai", "local:llama3"]))
    providers = dict(config.providers)
    providers["openai"] = replace(providers["openai"], no_reasoning=("gpt-4.1*",),
                                  max_output_tokens=(("gpt-4*", 16384),))
    config = replace(config, providers=providers)
    lines = Router(config).explain("gpt-4.1-mini")
    assert lines[3] == ("       fitted to the model: output tokens capped at 16384; "
                        "reasoning controls left out (no_reasoning)")
    assert not any("fitted" in line for line in Router(config).explain("gpt-5"))
