"""``gateway audit``: silent degradation of a provider, read from the ledger.

A provider can get worse without failing outright: slower first bytes, slower
generation, more 5xx answers, another model answering than the one asked for,
streams that end early. This module compares each (provider, requested model)
group over a recent window with the same group over a baseline window before it
and reports every change beyond a threshold as a finding.

Per group and window it computes (``summarize``):

- ``requests``: rows in the window. Rows without a provider (requests the
  gateway refused or answered itself before choosing one) are not read.
- ``error_rate``: errors / requests. A row is an error (``is_error``) when its
  status is 500 or more, or when its ``error_kind`` is ``upstream_error``,
  ``upstream_timeout`` or ``upstream_unreachable`` and its status is not a
  4xx other than 429 (a provider's 400/401/404 refusal relayed to the client
  is the request's fault; a 429 is the provider shedding load). Streams cut
  short (``stream_cut``) are not errors here: they have their own share.
- ``latency_p50_ms``/``latency_p95_ms`` and ``ttfb_p50_ms``/``ttfb_p95_ms``:
  nearest-rank percentiles (``percentile``) of ``latency_ms`` and ``ttfb_ms``
  over the rows that have them, errors included.
- ``output_tokens_per_s``: the median over successful streamed rows (no
  ``error_kind``, status below 400) with ``output_tokens`` > 0 and
  ``latency_ms`` > ``ttfb_ms`` of ``output_tokens / ((latency_ms - ttfb_ms) /
  1000)``. Only streams: a non-streamed answer is sent in one piece, so its
  latency minus its TTFB says nothing about generation speed.
- ``served_model_changed_share``: among rows with both ``model`` and
  ``served_model``, the share whose served model is another model than the
  one requested (``served_model_differs``).
- ``stream_cut_share``: among streamed rows, the share with ``error_kind``
  ``stream_cut``.

Findings (``compare``) use ``Thresholds``; a group with fewer than
``min_requests`` rows in either window is reported as skipped, never compared,
and a figure computed from fewer than ``MIN_SAMPLES`` values in either window
is not compared. A steady provider raises nothing.

The reading (``read_ledger``) is one SQL query per window selecting only the
columns needed, over the ``ts`` index, iterated from the database cursor
(``LedgerBackend.scan``): a million rows need no more memory than their latency,
TTFB and tokens/s figures.
"""

from __future__ import annotations

import functools
import math
import re
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from proxy.ledger import StorageURL, open_backend

# error_kind values that name the provider's failure (proxy/exchange.py).
UPSTREAM_ERROR_KINDS = frozenset({"upstream_error", "upstream_timeout", "upstream_unreachable"})
STREAM_CUT = "stream_cut"

# A percentile or median taken from fewer values than this is too noisy to compare.
MIN_SAMPLES = 10

_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.ASCII)

# What may follow a model name in the name a provider reports and still be the
# same model: a date or version (gpt-4o-2024-08-06, claude-sonnet-4-20250514,
# gemini-1.5-pro-002, claude-sonnet-4@20250514, ...-v2:0) or "-latest".
_VERSION_SUFFIX = re.compile(r"(?:[-@]\d[\d.\-]*|-latest)?(?:-v\d+(?::\d+)?)?", re.ASCII)


def parse_duration(text: str) -> float:
    """A duration such as ``90s``, ``15m``, ``1h``, ``7d``, ``1w`` in seconds (> 0)."""
    m = _DURATION.fullmatch(text.strip().lower())
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)] if m else 0.0
    if seconds <= 0:
        raise ValueError(f"cannot read {text!r} as a duration: use 30m, 1h, 24h, 7d")
    return seconds


# -- row rules -----------------------------------------------------------------


def is_error(status: int | None, error_kind: str | None) -> bool:
    """Status >= 500, or an upstream error_kind unless the status is a 4xx other than 429."""
    if status is not None and status >= 500:
        return True
    if error_kind in UPSTREAM_ERROR_KINDS:
        return not (status is not None and 400 <= status < 500 and status != 429)
    return False


def _family_name(name: str) -> str:
    # "models/gemini-1.5-pro" (Gemini) or "openai/gpt-4o": the part after the last "/".
    return name.strip().lower().rsplit("/", 1)[-1]


def served_model_differs(model: str | None, served: str | None) -> bool | None:
    """Whether ``served`` is another model than ``model``; None when either is unknown.

    Both are compared in lower case, each without any prefix up to its last
    "/". They are the same model when equal, or when one is the other followed
    by a date or version suffix (``-2024-08-06``, ``-20250514``, ``-002``,
    ``@20250514``, ``-latest``, ``-v2:0``). Anything else differs; in
    particular a served name that does not start with the requested one, and a
    longer name of another size (``gpt-4o`` answered by ``gpt-4o-mini``).
    A route that maps an alias ("fast") onto a model differs on every row, in
    both windows alike: only a change of the share is a finding.
    """
    if not model or not served:
        return None
    a, b = _family_name(model), _family_name(served)
    if a == b:
        return False
    short, long = (a, b) if len(a) < len(b) else (b, a)
    if long.startswith(short) and _VERSION_SUFFIX.fullmatch(long[len(short):]):
        return False
    return True


# A ledger holds few distinct (model, served model) pairs: remember the answers.
_served_differs = functools.lru_cache(maxsize=4096)(served_model_differs)


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of values sorted ascending: the value at rank
    ceil(p/100 * n), 1-based (p50 of 1..4 is 2, p95 of 1..100 is 95); None if empty."""
    n = len(ordered)
    if not n:
        return None
    rank = max(1, math.ceil(p / 100.0 * n))
    return float(ordered[min(rank, n) - 1])


# -- aggregation ---------------------------------------------------------------

# The columns read, in this order (read_ledger's SELECT and aggregate).
COLUMNS = ("provider", "model", "served_model", "status", "error_kind", "stream",
           "output_tokens", "latency_ms", "ttfb_ms")


@dataclass
class Group:
    """Running counts and samples of one (provider, model) in one window."""

    requests: int = 0
    errors: int = 0
    streams: int = 0
    stream_cuts: int = 0
    served_compared: int = 0
    served_changed: int = 0
    latency: array[float] = field(default_factory=lambda: array("d"))
    ttfb: array[float] = field(default_factory=lambda: array("d"))
    tokens_per_s: array[float] = field(default_factory=lambda: array("d"))

    def add(self, model: str | None, served: str | None, status: int | None,
            error_kind: str | None, stream: int | None, output_tokens: int | None,
            latency_ms: float | None, ttfb_ms: float | None) -> None:
        self.requests += 1
        if is_error(status, error_kind):
            self.errors += 1
        if stream:
            self.streams += 1
            if error_kind == STREAM_CUT:
                self.stream_cuts += 1
        differs = _served_differs(model, served)
        if differs is not None:
            self.served_compared += 1
            self.served_changed += differs
        if latency_ms is not None:
            self.latency.append(latency_ms)
        if ttfb_ms is not None:
            self.ttfb.append(ttfb_ms)
        if (stream and error_kind is None and (status is None or status < 400)
                and output_tokens and latency_ms is not None and ttfb_ms is not None
                and latency_ms > ttfb_ms):
            self.tokens_per_s.append(output_tokens * 1000.0 / (latency_ms - ttfb_ms))


def summarize(g: Group) -> dict[str, Any]:
    """The figures of one group in one window (the ``--json`` shape)."""
    lat, ttfb, tps = sorted(g.latency), sorted(g.ttfb), sorted(g.tokens_per_s)

    def share(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    return {
        "requests": g.requests,
        "errors": g.errors,
        "error_rate": share(g.errors, g.requests),
        "latency_p50_ms": percentile(lat, 50),
        "latency_p95_ms": percentile(lat, 95),
        "latency_samples": len(lat),
        "ttfb_p50_ms": percentile(ttfb, 50),
        "ttfb_p95_ms": percentile(ttfb, 95),
        "ttfb_samples": len(ttfb),
        "output_tokens_per_s": percentile(tps, 50),
        "tokens_per_s_samples": len(tps),
        "served_compared": g.served_compared,
        "served_changed": g.served_changed,
        "served_model_changed_share": share(g.served_changed, g.served_compared),
        "streams": g.streams,
        "stream_cuts": g.stream_cuts,
        "stream_cut_share": share(g.stream_cuts, g.streams),
    }


Key = tuple[str, str | None]


def aggregate(rows: Iterable[Sequence[Any]]) -> dict[Key, Group]:
    """Rows of ``COLUMNS`` values grouped by (provider, requested model); rows
    without a provider are left out."""
    groups: dict[Key, Group] = {}
    for provider, model, served, status, kind, stream, out, lat, ttfb in rows:
        if provider is None:
            continue
        key = (provider, model)
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group()
        g.add(model, served, status, kind, stream, out, lat, ttfb)
    return groups


def read_ledger(path: str | StorageURL,
                windows: Sequence[tuple[float, float]]) -> list[dict[Key, Group]]:
    """The groups of each (start, end) window (rows with ``start <= ts < end``),
    read over one read-only connection to the ledger at ``path`` (a SQLite path or
    a URL, as ``open_backend`` takes): one query per window for ``COLUMNS`` only.
    Raises ``LedgerError`` when the database is missing or is not a ledger; never
    creates or changes it."""
    backend = open_backend(path, readonly=True)
    backend.open()
    try:
        return [aggregate(backend.scan(COLUMNS, start=start, end=end))
                for start, end in windows]
    finally:
        backend.close()


# -- findings ------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """When a change is a finding (each a flag of ``gateway audit``)."""

    ttfb_p95_rise: float = 0.50  # TTFB p95 up by this fraction (0.5: +50 %)
    latency_p95_rise: float = 0.50  # latency p95 up by this fraction
    error_ratio: float = 2.0  # error rate multiplied by at least this...
    error_points: float = 2.0  # ...and up by at least this many percentage points
    served_points: float = 10.0  # served-model-changed share up by percentage points
    cut_points: float = 5.0  # stream-cut share up by percentage points
    tps_drop: float = 0.30  # output tokens/s down by this fraction (0.3: -30 %)
    min_requests: int = 20  # fewer rows than this in either window: group skipped


def _rise(metric: str, w: float | None, b: float | None, limit: float, label: str,
          w_n: int, b_n: int) -> dict[str, Any] | None:
    if w is None or b is None or b <= 0 or min(w_n, b_n) < MIN_SAMPLES:
        return None
    change = w / b - 1.0
    if change < limit:
        return None
    return {"metric": metric, "window": w, "baseline": b, "change": change,
            "text": f"{label} {b:.0f} -> {w:.0f} ms (+{change:.0%})"}


def _points(metric: str, w: float | None, b: float | None, limit: float,
            label: str) -> dict[str, Any] | None:
    if w is None or b is None:
        return None
    change = (w - b) * 100.0
    if change < limit:
        return None
    return {"metric": metric, "window": w, "baseline": b, "change": change,
            "text": f"{label} {b:.1%} -> {w:.1%} (+{change:.1f} pts)"}


def compare(w: dict[str, Any], b: dict[str, Any], t: Thresholds) -> list[dict[str, Any]]:
    """The findings of one group: ``w`` (window) against ``b`` (baseline), both from
    ``summarize``. Each finding has ``metric``, ``window``, ``baseline``,
    ``change`` (a fraction for ms and tokens/s, percentage points for shares) and
    a one-line ``text``."""
    found: list[dict[str, Any] | None] = [
        _rise("ttfb_p95_ms", w["ttfb_p95_ms"], b["ttfb_p95_ms"], t.ttfb_p95_rise,
              "TTFB p95", w["ttfb_samples"], b["ttfb_samples"]),
        _rise("latency_p95_ms", w["latency_p95_ms"], b["latency_p95_ms"], t.latency_p95_rise,
              "latency p95", w["latency_samples"], b["latency_samples"]),
    ]
    we, be = w["error_rate"], b["error_rate"]
    if (we is not None and be is not None and we >= be * t.error_ratio
            and (we - be) * 100.0 >= t.error_points):
        ratio = f"x{we / be:.1f}" if be else "from none"
        found.append({"metric": "error_rate", "window": we, "baseline": be,
                      "change": (we - be) * 100.0,
                      "text": f"errors {be:.1%} -> {we:.1%} ({ratio})"})
    if min(w["served_compared"], b["served_compared"]) >= MIN_SAMPLES:
        found.append(_points("served_model_changed_share", w["served_model_changed_share"],
                             b["served_model_changed_share"], t.served_points,
                             "other model served"))
    if min(w["streams"], b["streams"]) >= MIN_SAMPLES:
        found.append(_points("stream_cut_share", w["stream_cut_share"], b["stream_cut_share"],
                             t.cut_points, "streams cut"))
    wt, bt = w["output_tokens_per_s"], b["output_tokens_per_s"]
    if (wt is not None and bt and min(w["tokens_per_s_samples"],
                                      b["tokens_per_s_samples"]) >= MIN_SAMPLES):
        drop = 1.0 - wt / bt
        if drop >= t.tps_drop:
            found.append({"metric": "output_tokens_per_s", "window": wt, "baseline": bt,
                          "change": -drop,
                          "text": f"output tokens/s {bt:.1f} -> {wt:.1f} (-{drop:.0%})"})
    return [f for f in found if f is not None]


def build_report(window: dict[Key, Group], baseline: dict[Key, Group],
                 window_span: tuple[float, float], baseline_span: tuple[float, float],
                 t: Thresholds) -> dict[str, Any]:
    """The whole audit (the ``--json`` object): ``window`` and ``baseline`` spans,
    ``thresholds``, ``groups`` (each with both windows' figures, ``skipped``
    with a reason or its ``findings``) and every ``findings`` flattened, each
    naming its provider and model."""
    empty = Group()
    groups: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    keys = sorted(set(window) | set(baseline), key=lambda k: (k[0], k[1] or ""))
    for provider, model in keys:
        w = summarize(window.get((provider, model), empty))
        b = summarize(baseline.get((provider, model), empty))
        entry: dict[str, Any] = {"provider": provider, "model": model,
                                 "window": w, "baseline": b}
        few = [f"{n} in the {name}" for n, name in ((w["requests"], "window"),
                                                    (b["requests"], "baseline"))
               if n < t.min_requests]
        if few:
            entry["skipped"] = (f"too few requests ({', '.join(few)}; "
                                f"--min-requests {t.min_requests})")
            entry["findings"] = []
        else:
            entry["skipped"] = None
            entry["findings"] = compare(w, b, t)
            findings += [{"provider": provider, "model": model, **f}
                         for f in entry["findings"]]
        groups.append(entry)
    return {
        "window": {"start": window_span[0], "end": window_span[1]},
        "baseline": {"start": baseline_span[0], "end": baseline_span[1]},
        "thresholds": asdict(t),
        "min_samples": MIN_SAMPLES,
        "groups": groups,
        "skipped": sum(1 for g in groups if g["skipped"]),
        "findings": findings,
    }


def audit(path: str | StorageURL, *, end: float, window_s: float, baseline_s: float,
          thresholds: Thresholds) -> dict[str, Any]:
    """Read the ledger at ``path`` and audit the window ``[end - window_s, end)``
    against the baseline ``[end - window_s - baseline_s, end - window_s)``."""
    start = end - window_s
    base_start = start - baseline_s
    window, baseline = read_ledger(path, [(start, end), (base_start, start)])
    return build_report(window, baseline, (start, end), (base_start, start), thresholds)
