"""The gateway's Prometheus metrics (``GET /metrics``, docs/metrics.md).

Per-request counters and histograms are recorded once per finished request,
from its ledger record, by ``GatewayState.finish_record`` (``observe``); the
gauges (circuits, provider connections, ledger, requests in flight) are read
from their owners when Prometheus scrapes (``render``), never per request.

Every label value comes from a bounded set, so no client can grow the number
of series, whatever paths and model names it sends:

- ``endpoint``: the gateway's own endpoints (``set_endpoints``, from the
  dispatcher's table); a Gemini path becomes ``/v1beta/models/{model}:ACTION``
  for a known action, any other path ``other``;
- ``protocol``: the client protocol the gateway named (a fixed set in code);
- ``provider``: the configured providers and the gateway's own answers
  (``loopback``, ``local``), ``none`` when no provider was chosen;
- ``model``: the names the route table names (``Router.models()``: exact
  routes, target models, ``loopback``), any other requested name ``other``;
- ``status``: the status class, ``2xx`` to ``5xx``.

The series are further capped at ``MAX_SERIES`` (a reload that renames models
adds series; counters never drop one, so they can only grow with operator
changes): past it, new label sets are counted under ``other`` everywhere.

Recording is plain Python arithmetic on one list per label set, found with
one dict lookup keyed by the record's raw facts: 0.6 us of CPU per request in
the micro bench and a median of 1.4 us inside a gateway under load, against
4.4 us for the same metrics kept with ``prometheus_client`` (17.6 us calling
``.labels()`` per metric); ``python -m bench.micro.metrics``, bench/RESULTS.md.
"""

from __future__ import annotations

import gc
from bisect import bisect_left
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from . import __version__
from .config import LOOPBACK_MODEL
from .exposition import format_value, header, histogram, label_text, samples
from .request import RequestRecord

OTHER = "other"
NONE = "none"

# Label sets kept; endpoints x protocols x providers x models x 4 classes of a
# large configuration stays well under it.
MAX_SERIES = 10_000

# Distinct raw (endpoint, protocol, provider, model, status) remembered: real
# traffic has a few hundred; each entry holds at most 2 x 256 characters of
# client text (the record's path and model are cut there), so at most ~2 MiB.
MAX_RAW_KEYS = 4096

# Providers that are the gateway itself: the loopback model's answers and
# count_tokens' local estimate (proxy/endpoints/count_tokens.py).
OWN_PROVIDERS = (LOOPBACK_MODEL, "local")

# Histogram bounds in seconds, for the whole request and its first byte: the
# gateway's own answers take well under 1 ms, a provider's first token 0.2-5 s,
# a long generation minutes (the default deadline is 600 s).
BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
             30.0, 60.0, 120.0, 300.0, 600.0)
_BOUNDS_MS = tuple(b * 1000.0 for b in BUCKETS_S)
_BOUND_TEXT = tuple(format_value(b) for b in BUCKETS_S)
_NBUCKETS = len(BUCKETS_S) + 1  # and the one above every bound (+Inf)

LABELS = ("endpoint", "protocol", "provider", "model", "status")
_STATUS_CLASS = (OTHER, "1xx", "2xx", "3xx", "4xx", "5xx")

# One list per label set: its label text, then these counters, then the buckets.
_REQUESTS, _INPUT, _OUTPUT, _CACHED, _REASONING, _COST, _ATTEMPTS, _FAILOVERS = range(1, 9)
_LATENCY = 9
_LATENCY_SUM = _LATENCY + _NBUCKETS
_TTFB = _LATENCY_SUM + 1
_TTFB_SUM = _TTFB + _NBUCKETS
_SERIES_LEN = _TTFB_SUM + 1

_TOKEN_KINDS = (("input", _INPUT), ("output", _OUTPUT), ("cached", _CACHED),
                ("reasoning", _REASONING))

Key = tuple[str, str, str, str, str]


class GatewayMetrics:
    """Counters of finished requests, and the text Prometheus scrapes.  Used on
    the event loop's thread only (``observe`` and ``render`` both run there)."""

    def __init__(self) -> None:
        self._series: dict[Key, list[Any]] = {}
        # (endpoint, protocol, provider, model, status) as recorded -> its series.
        self._by_raw: dict[tuple[Any, ...], list[Any]] = {}
        self._endpoints: dict[str, str] = {}
        # prefix -> (label for any path under it, or {action: label})
        self._under: dict[str, str | dict[str, str]] = {}
        self._models: frozenset[str] = frozenset()
        self._providers: frozenset[str] = frozenset(OWN_PROVIDERS)

    # -- what the labels may be ----------------------------------------------------

    def set_endpoints(self, paths: Iterable[str],
                      under: Mapping[str, Collection[str]]) -> None:
        """The endpoints that get their own label: exact ``paths``, and for each
        prefix of ``under`` its actions (a path ending ``:ACTION``, labelled
        ``PREFIX{model}:ACTION``) or, with no actions, any path (``PREFIX*``)."""
        self._by_raw = {}
        self._endpoints = {p: p for p in paths}
        self._under = {prefix: {a: f"{prefix}{{model}}:{a}" for a in actions} if actions
                       else f"{prefix}*" for prefix, actions in under.items()}

    def set_names(self, models: Iterable[str], providers: Iterable[str]) -> None:
        """The models and providers of the running configuration (on each reload)."""
        self._by_raw = {}
        self._models = frozenset(models)
        self._providers = frozenset((*providers, *OWN_PROVIDERS))

    def endpoint_of(self, path: str | None) -> str:
        if path is None:
            return NONE  # the request's head never parsed
        label = self._endpoints.get(path)
        if label is not None:
            return label
        for prefix, named in self._under.items():
            if path.startswith(prefix):
                if isinstance(named, str):
                    return named
                _, sep, action = path.rpartition(":")
                return named.get(action, OTHER) if sep else OTHER
        return OTHER

    def key_of(self, rec: RequestRecord) -> Key:
        """The record's label values, each from its bounded set."""
        endpoint = self.endpoint_of(rec.endpoint)
        model = rec.model
        if model not in self._models:
            model = NONE if model is None else OTHER
        provider = rec.provider
        if provider not in self._providers:
            provider = NONE if provider is None else OTHER
        status = rec.status
        return (endpoint, rec.client_protocol, provider, model,
                _STATUS_CLASS[status // 100] if 100 <= status < 600 else OTHER)

    # -- recording -----------------------------------------------------------------

    def observe(self, rec: RequestRecord) -> None:
        """Count one finished request (``GatewayState.finish_record``, once each)."""
        # The record's raw facts find its series in one lookup; the labels are
        # worked out once per distinct facts (about 0.3 us saved per request).
        raw = (rec.endpoint, rec.client_protocol, rec.provider, rec.model, rec.status)
        s = self._by_raw.get(raw)
        if s is None:
            s = self._series_of(raw, rec)
        s[_REQUESTS] += 1
        v = rec.input_tokens
        if v:
            s[_INPUT] += v
        v = rec.output_tokens
        if v:
            s[_OUTPUT] += v
        v = rec.cached_tokens
        if v:
            s[_CACHED] += v
        v = rec.reasoning_tokens
        if v:
            s[_REASONING] += v
        cost = rec.cost_usd
        if cost:
            s[_COST] += cost
        if rec.provider is not None:  # attempts is 1 from the start, tried or not
            v = rec.attempts
            s[_ATTEMPTS] += v
            s[_FAILOVERS] += v - 1
        ms = rec.latency_ms
        if ms is not None:
            s[_LATENCY + bisect_left(_BOUNDS_MS, ms)] += 1
            s[_LATENCY_SUM] += ms
        ms = rec.ttfb_ms
        if ms is not None:
            s[_TTFB + bisect_left(_BOUNDS_MS, ms)] += 1
            s[_TTFB_SUM] += ms

    def _series_of(self, raw: tuple[Any, ...], rec: RequestRecord) -> list[Any]:
        key = self.key_of(rec)
        s = self._series.get(key)
        if s is None:
            s = self._add(key)
        by_raw = self._by_raw
        if len(by_raw) >= MAX_RAW_KEYS:
            by_raw.clear()  # a client inventing names: start over, never grow past it
        by_raw[raw] = s
        return s

    def _add(self, key: Key) -> list[Any]:
        if len(self._series) >= MAX_SERIES:
            key = (OTHER, OTHER, OTHER, OTHER, OTHER)
            s = self._series.get(key)
            if s is not None:
                return s
        s = [0] * _SERIES_LEN
        s[0] = label_text(LABELS, key)
        s[_COST] = s[_LATENCY_SUM] = s[_TTFB_SUM] = 0.0
        self._series[key] = s
        return s

    @property
    def series_count(self) -> int:
        """Label sets held (each is one sample line per per-request family)."""
        return len(self._series)

    # -- the scrape ----------------------------------------------------------------

    def render(self, server: Mapping[str, Any], pool: Mapping[str, Any],
               targets: Mapping[str, Mapping[str, Any]], started: float,
               limits: Mapping[str, Any] | None = None) -> bytes:
        """The exposition text: the request families, then the gauges of
        ``server`` (``Server.stats()``), ``pool`` (``UpstreamPool.stats()``),
        ``targets`` (``HealthBoard.snapshot()``) and ``limits``
        (``Accounts.limits_stats()``); ``started`` is the Unix time the gateway
        started."""
        out: list[str] = []
        series = sorted(self._series.values(), key=lambda s: s[0])
        header(out, "tokenway_requests_total", "counter",
               "Finished requests (the ledger's rows), by endpoint, client protocol, "
               "provider, requested model and status class.")
        samples(out, "tokenway_requests_total", ((s[0], s[_REQUESTS]) for s in series))
        header(out, "tokenway_tokens_total", "counter",
               "Tokens the providers reported: input (prompt, cached included), output "
               "(reasoning included), cached (input read from the provider's cache) and "
               "reasoning.")
        samples(out, "tokenway_tokens_total",
                ((f'{s[0]},type="{kind}"', s[i]) for s in series for kind, i in _TOKEN_KINDS))
        header(out, "tokenway_cost_usd_total", "counter",
               "What the requests cost in US dollars, at the gateway's prices.")
        samples(out, "tokenway_cost_usd_total", ((s[0], s[_COST]) for s in series))
        header(out, "tokenway_upstream_attempts_total", "counter",
               "Provider attempts made by requests that reached a provider.")
        samples(out, "tokenway_upstream_attempts_total", ((s[0], s[_ATTEMPTS]) for s in series))
        header(out, "tokenway_upstream_failovers_total", "counter",
               "Attempts after a request's first: a retry of the same target or a "
               "failover to the next one (attempts - 1 per request).")
        samples(out, "tokenway_upstream_failovers_total",
                ((s[0], s[_FAILOVERS]) for s in series))
        self._histogram(out, series, "tokenway_request_duration_seconds", _LATENCY,
                        "From the request's arrival to its last response byte.")
        self._histogram(out, series, "tokenway_time_to_first_byte_seconds", _TTFB,
                        "From the request's arrival to its first response byte.")
        _gauges(out, server, pool, targets, started)
        if limits and limits.get("store") == "redis":
            _redis_gauges(out, limits)
        return "".join(out).encode()

    @staticmethod
    def _histogram(out: list[str], series: list[list[Any]], name: str, first: int,
                   help_text: str) -> None:
        header(out, name, "histogram", help_text)
        for s in series:
            histogram(out, name, s[0], _BOUND_TEXT, s[first:first + _NBUCKETS],
                      s[first + _NBUCKETS] / 1000.0)


_CIRCUIT_STATES = ("closed", "open", "half_open")


def _gauges(out: list[str], server: Mapping[str, Any], pool: Mapping[str, Any],
            targets: Mapping[str, Mapping[str, Any]], started: float) -> None:
    def one(name: str, kind: str, help_text: str, value: float) -> None:
        header(out, name, kind, help_text)
        samples(out, name, (("", value),))

    one("tokenway_requests_in_flight", "gauge",
        "Requests being answered now (this scrape included).",
        server.get("requests_in_flight", 0))
    one("tokenway_streams_in_flight", "gauge", "Streamed responses being written now.",
        server.get("streams_in_flight", 0))
    one("tokenway_client_connections", "gauge", "Open client connections.",
        server.get("connections", 0))
    one("tokenway_client_connections_max", "gauge",
        "Client connections the gateway holds at most.", server.get("max_connections", 0))
    one("tokenway_admission_held", "gauge",
        "1 while new requests are held because the ledger is behind.",
        int(server.get("admission", "open") != "open"))
    header(out, "tokenway_upstream_connections", "gauge",
           "Connections to providers: open (idle included) and idle in the pool.")
    samples(out, "tokenway_upstream_connections",
            (('state="open"', pool.get("open", 0)), ('state="idle"', pool.get("idle", 0))))
    one("tokenway_upstream_connection_waiters", "gauge",
        "Requests waiting for a provider connection.", pool.get("waiting", 0))
    header(out, "tokenway_circuit_state", "gauge",
           "Each target's circuit breaker: 1 for its current state (closed, open, "
           "half_open), 0 for the others.")
    samples(out, "tokenway_circuit_state",
            ((label_text(("target", "state"), (name, st)), int(t.get("state") == st))
             for name, t in sorted(targets.items()) for st in _CIRCUIT_STATES))
    ledger = server.get("ledger") or {}
    if ledger:
        one("tokenway_ledger_rows_queued", "gauge",
            "Ledger rows recorded and not yet stored or journaled.", ledger.get("queued", 0))
        for name, field, help_text in (
                ("written", "written", "Ledger rows stored in the database."),
                ("spilled", "spilled",
                 "Ledger rows appended to the journal while the database failed."),
                ("dropped", "dropped", "Ledger rows lost; 0 in a healthy gateway.")):
            one(f"tokenway_ledger_rows_{name}_total", "counter", help_text,
                ledger.get(field, 0))
        one("tokenway_ledger_journal_rows", "gauge",
            "Rows the journal holds, not yet replayed into the database.",
            ledger.get("journal_rows", 0))
    one("tokenway_start_time_seconds", "gauge", "When the gateway started, Unix time.",
        started)
    _gc_counters(out)
    header(out, "tokenway_build_info", "gauge", "The gateway's version, as a label.")
    samples(out, "tokenway_build_info", ((label_text(("version",), (__version__,)), 1),))


# CPython's garbage collector, under the names prometheus_client's GCCollector gives
# them (dashboards know them): read from gc.get_stats() at the scrape.
_GC_FAMILIES = (
    ("python_gc_collections_total", "collections",
     "Number of times this generation was collected"),
    ("python_gc_objects_collected_total", "collected", "Objects collected during gc"),
    ("python_gc_objects_uncollectable_total", "uncollectable",
     "Uncollectable objects found during GC"),
)


def _gc_counters(out: list[str]) -> None:
    stats = gc.get_stats()
    for name, field, help_text in _GC_FAMILIES:
        header(out, name, "counter", help_text)
        samples(out, name, ((label_text(("generation",), (str(gen),)), s[field])
                            for gen, s in enumerate(stats)))


def _redis_gauges(out: list[str], limits: Mapping[str, Any]) -> None:
    """The shared limit store's state (docs/fleet.md, "Shared limits with Redis")."""
    header(out, "tokenway_limits_redis_up", "gauge",
           "1 while Redis answers for the shared rate limits and budgets, 0 while it is "
           "down and on_redis_down decides.")
    samples(out, "tokenway_limits_redis_up", (("", int(limits.get("state") == "up")),))
    header(out, "tokenway_limits_redis_outages_total", "counter",
           "Times Redis stopped answering (a timeout or a connection error).")
    samples(out, "tokenway_limits_redis_outages_total", (("", limits.get("outages", 0)),))
    header(out, "tokenway_limits_redis_down_decisions_total", "counter",
           "Requests of limited keys decided without Redis: admitted unmetered (open) or "
           "refused with 503 (closed).")
    samples(out, "tokenway_limits_redis_down_decisions_total",
            ((label_text(("decision",), (d,)), limits.get(d, 0)) for d in ("open", "closed")))
    header(out, "tokenway_limits_redis_round_trips_total", "counter",
           "Pipelined round trips to Redis (each carries the admissions and settlements "
           "queued meanwhile).")
    samples(out, "tokenway_limits_redis_round_trips_total",
            (("", limits.get("round_trips", 0)),))
