"""A reader of the Prometheus text format for the tests: sample lines to
(name, labels, value), label values unescaped as the format says
(https://prometheus.io/docs/instrumenting/exposition_formats/#text-format-details)."""

from __future__ import annotations

import re

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def unescape(value: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], value)


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        assert m, f"bad label text at {text[pos:]!r}"
        labels[m.group(1)] = unescape(m.group(2))
        pos = m.end()
    return labels


def samples(body: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out.append((m.group(1), parse_labels(m.group(2) or ""), float(m.group(3))))
    return out


def series(body: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(labels, value) for n, labels, value in samples(body) if n == name]
