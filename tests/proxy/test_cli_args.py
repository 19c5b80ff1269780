"""The shared argument types of the gateway commands."""

from __future__ import annotations

import argparse

import pytest

from proxy.cli_args import count, finite, number_arg, whole_number


def test_numbers_pass_their_check_or_name_what_was_expected() -> None:
    assert whole_number("3") == 3 and count("0") == 0
    usd = number_arg(float, finite(lambda v: v > 0), "an amount in USD above 0")
    assert usd("2.5") == 2.5
    for conv, text in ((whole_number, "0"), (whole_number, "x"), (count, "-1"),
                       (usd, "nan"), (usd, "inf"), (usd, "0"), (usd, "")):
        with pytest.raises(argparse.ArgumentTypeError, match=f"got {text!r}"):
            conv(text)
