"""The [prices."MODEL-GLOB"] tables of the configuration file."""

from __future__ import annotations

import pytest

from proxy.config import PriceConfig, load_config
from tests.proxy.config_files import error_of, write_fixture  # noqa: F401 (the write fixture)


def test_prices_table(write):
    path = write('[prices."gpt-4o*"]\ninput = 2.5\noutput = 10\ncache_read = 1.25\n'
                 '[prices.house-model]\ninput = 0\noutput = 0.5\n')
    prices = load_config(path, env={}).prices
    assert dict(prices) == {"gpt-4o*": PriceConfig(2.5, 10.0, 1.25, None),
                            "house-model": PriceConfig(0.0, 0.5)}
    assert isinstance(prices["gpt-4o*"].output, float)


def test_no_prices_by_default():
    assert dict(load_config(env={}).prices) == {}


@pytest.mark.parametrize(("text", "expected"), [
    ('[prices."gpt-4o*"]\noutput = 1\n', 'prices."gpt-4o*".input: required'),
    ('[prices."gpt-4o*"]\ninput = 1\n', 'prices."gpt-4o*".output: required'),
    ('[prices.m]\ninput = "cheap"\noutput = 1\n', "prices.m.input: must be a number"),
    ('[prices.m]\ninput = -1\noutput = 1\n', "prices.m.input: must be a number"),
    ('[prices.m]\ninput = 1\noutput = true\n', "prices.m.output: must be a number"),
    ('[prices.m]\ninput = 1\noutput = nan\n', "prices.m.output: must be a number"),
    ('[prices.m]\ninput = 1\noutput = 1\ncache_write = 2e6\n',
     "prices.m.cache_write: must be a number"),
    ('[prices.m]\ninput = 1\noutput = 1\ncache_reads = 1\n',
     "prices.m.cache_reads: unknown key (did you mean 'cache_read'?"),
    ('[prices]\nm = 3\n', "prices.m: must be a table"),
    ('prices = 3\n', "prices: must be a table"),
])
def test_bad_prices_name_the_key(write, text, expected):
    assert error_of(write, text).startswith(expected)
