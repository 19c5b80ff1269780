"""Configuration of routes: [[routes]] tables and TOKENWAY_ROUTES."""

from __future__ import annotations

import pytest

from proxy.config import ConfigError, Route, Target, load_config
from tests.proxy.config_files import PROVIDER, error_of, write_fixture  # noqa: F401 (the write fixture)

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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
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
            + '[[routes]]\nmatch="a"\nto=["p"]\n[[routes]]\nmatch="b"\nto=["p"]\n'
            + '[[routes]]\nmatch="c"\nto=["x"]\n',
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
def test_route_errors_name_the_key(write, text, expected):
    assert error_of(write, text).startswith(expected)



# --- weights ----------------------------------------------------------------------------

TWO = '[providers.a]\nkind = "openai"\n[providers.b]\nkind = "openai"\n'


def test_route_weights(write):
    text = TWO + '[[routes]]\nmatch = "x"\nto = ["a", "b"]\nweights = [3, 0.5]\n'
    route = load_config(write(text), env={}).routes[0]
    assert route.weights == (3.0, 0.5)
    text = TWO + '[[routes]]\nmatch = "x"\nto = ["a", "b"]\n'
    assert load_config(write(text), env={}).routes[0].weights == ()


@pytest.mark.parametrize("weights", ["[1]", "[0, 0]", "[1, -1]", "[true, 1]", '"1,1"'])
def test_route_weights_rejected(write, weights):
    text = TWO + f'[[routes]]\nmatch = "x"\nto = ["a", "b"]\nweights = {weights}\n'
    assert error_of(write, text).startswith(
        "routes[0].weights: must be a list of 2 numbers >= 0 (one per target, "
        "at least one > 0), got "
    )
