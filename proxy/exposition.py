"""The Prometheus text exposition format, version 0.0.4: escaping and the lines
of one metric family.

https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
(section "Text format details"): label values escape backslash, double quote
and line feed as ``\\\\``, ``\\"`` and ``\\n``; ``# HELP`` text escapes backslash
and line feed; sample values are Go floats (``+Inf``, ``-Inf``, ``NaN``); a
histogram is its cumulative ``_bucket`` series ending with ``le="+Inf"``, then
``_sum`` and ``_count``, all of one label set together.

Pure: strings in, strings out.  ``proxy.metrics`` keeps the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_HELP_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n"})


def escape_label(value: str) -> str:
    """A label value as it goes between the double quotes."""
    return value.translate(_LABEL_ESCAPES)


def escape_help(text: str) -> str:
    return text.translate(_HELP_ESCAPES)


def label_text(names: Sequence[str], values: Sequence[str]) -> str:
    """``name="value",...`` (no braces), values escaped: built once per series."""
    return ",".join(f'{n}="{escape_label(v)}"' for n, v in zip(names, values, strict=True))


def format_value(value: float) -> str:
    """A sample value: integers without a fraction, floats as Python's shortest
    repr (which Go's ParseFloat reads back exactly), infinities and NaN spelled
    as the format says."""
    if type(value) is int:
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def header(out: list[str], name: str, kind: str, help_text: str) -> None:
    """The ``# HELP`` and ``# TYPE`` lines of a family."""
    out.append(f"# HELP {name} {escape_help(help_text)}\n# TYPE {name} {kind}\n")


def samples(out: list[str], name: str, series: Iterable[tuple[str, float]]) -> None:
    """One line per (label text, value); an empty label text gives a bare name."""
    for labels, value in series:
        if labels:
            out.append(f"{name}{{{labels}}} {format_value(value)}\n")
        else:
            out.append(f"{name} {format_value(value)}\n")


def histogram(out: list[str], name: str, labels: str, bounds: Sequence[str],
              counts: Sequence[int], total: float) -> None:
    """One label set of a histogram: ``counts`` per bucket, not cumulative, the
    last one for values above every bound (``len(bounds) + 1`` of them);
    ``bounds`` already formatted.  Writes the cumulative buckets, ``+Inf``,
    ``_sum`` and ``_count``."""
    prefix = f"{name}_bucket{{{labels}," if labels else f"{name}_bucket{{"
    running = 0
    for bound, n in zip(bounds, counts, strict=False):
        running += n
        out.append(f'{prefix}le="{bound}"}} {running}\n')
    running += counts[len(bounds)]
    out.append(f'{prefix}le="+Inf"}} {running}\n')
    tail = f"{{{labels}}}" if labels else ""
    out.append(f"{name}_sum{tail} {format_value(total)}\n{name}_count{tail} {running}\n")
