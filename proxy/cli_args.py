"""What the ``gateway`` commands share: argument types (a number that must pass
a check, or argparse's usual error naming what was expected) and aligned tables."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
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


def aligned(rows: list[list[str]], right: Sequence[bool] | None = None, *,
            rule_before_last: bool = False) -> str:
    """``rows`` (the first is the header) as columns two spaces apart, each line
    right-trimmed; ``right[i]`` right-aligns column i; ``rule_before_last`` puts a
    line of dashes above the last row (a totals line)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    flags = list(right) if right is not None else [False] * len(widths)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cells, widths, flags, strict=True)).rstrip() + "\n"

    out = [line(r) for r in rows]
    if rule_before_last:
        out.insert(len(out) - 1, line(["-" * w for w in widths]))
    return "".join(out)
