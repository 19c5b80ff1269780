"""Argument types shared by the ``gateway`` commands: a number that must pass a
check, or argparse's usual error naming what was expected."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

N = TypeVar("N", int, float)


def number_arg(parse: Callable[[str], N], ok: Callable[[N], bool],
               expected: str) -> Callable[[str], N]:
    """An argparse ``type``: ``parse(text)`` when it parses and passes ``ok``,
    else ``expected a/an <expected>, got '<text>'``. NaN never passes."""

    def convert(text: str) -> N:
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or value != value or not ok(value):  # value != value: NaN
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    convert.__name__ = expected  # argparse names the type in some messages
    return convert


whole_number = number_arg(int, lambda n: n >= 1, "a whole number >= 1")
count = number_arg(int, lambda n: n >= 0, "a whole number >= 0")


def finite(check: Callable[[float], bool]) -> Callable[[float], bool]:
    return lambda v: math.isfinite(v) and check(v)
