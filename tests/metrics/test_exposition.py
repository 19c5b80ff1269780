"""proxy/exposition.py and proxy/metrics.py without a server: escaping, the
histogram lines, and what one recorded request adds."""

from __future__ import annotations

import pytest

from proxy.exposition import escape_help, escape_label, format_value, histogram, label_text
from proxy.metrics import BUCKETS_S, MAX_SERIES, OTHER, GatewayMetrics
from proxy.request import RequestRecord
from tests.metrics.exposition_text import parse_labels, samples, series


@pytest.mark.parametrize(("raw", "escaped"), [
    ("plain", "plain"),
    ('say "hi"', 'say \\"hi\\"'),
    ("C:\\dir\\", "C:\\\\dir\\\\"),
    ("two\nlines", "two\\nlines"),
    ('\\"\n', '\\\\\\"\\n'),
    ("tab\tand ünicode", "tab\tand ünicode"),  # only \, " and line feed are escaped
])
def test_label_values_are_escaped_as_the_format_says(raw: str, escaped: str) -> None:
    assert escape_label(raw) == escaped
    assert parse_labels(label_text(("v",), (raw,))) == {"v": raw}  # and read back whole


def test_help_escapes_backslash_and_line_feed_only() -> None:
    assert escape_help('a\\b\n"c"') == 'a\\\\b\\n"c"'


@pytest.mark.parametrize(("value", "text"), [
    (3, "3"), (0, "0"), (2.0, "2"), (0.25, "0.25"), (1e-05, "1e-05"),
    (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (float("nan"), "NaN"),
])
def test_values_are_go_floats(value: float, text: str) -> None:
    assert format_value(value) == text


def test_histogram_buckets_are_cumulative_and_end_with_inf_sum_count() -> None:
    out: list[str] = []
    histogram(out, "h", 'a="1"', ("0.1", "1"), [2, 0, 3], 7.5)
    assert "".join(out).splitlines() == [
        'h_bucket{a="1",le="0.1"} 2',
        'h_bucket{a="1",le="1"} 2',
        'h_bucket{a="1",le="+Inf"} 5',
        'h_sum{a="1"} 7.5',
        'h_count{a="1"} 5',
    ]


def _metrics() -> GatewayMetrics:
    m = GatewayMetrics()
    m.set_endpoints(["/v1/chat/completions", "/v1/messages"],
                    {"/v1beta/models/": ("generateContent",), "/admin/": ()})
    m.set_names(["gpt-4o", "model-b"], ["a", "b"])
    return m


def _rec(path: str | None = "/v1/chat/completions", model: str | None = "gpt-4o",
         provider: str | None = "a", status: int = 200, latency_ms: float = 30.0,
         ttfb_ms: float | None = 20.0, **kw: object) -> RequestRecord:
    rec = RequestRecord(path, "openai_chat", "127.0.0.1:1", 10)
    rec.model, rec.provider, rec.status = model, provider, status
    rec.latency_ms, rec.ttfb_ms = latency_ms, ttfb_ms
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


def _render(m: GatewayMetrics) -> str:
    return m.render({"connections": 2, "requests_in_flight": 1, "streams_in_flight": 0,
                     "max_connections": 10, "admission": "open",
                     "ledger": {"queued": 3, "written": 7, "spilled": 1, "dropped": 0,
                                "journal_rows": 1}},
                    {"open": 4, "idle": 2, "waiting": 0},
                    {"a": {"state": "open"}, 'b"\n': {"state": "closed"}}, 1.5e9).decode()


def test_a_request_histogram_over_every_bucket() -> None:
    m = _metrics()
    # One observation in each bucket, the bounds themselves included (le is <=),
    # and one above the last.
    values_s = [*BUCKETS_S, BUCKETS_S[-1] * 2]
    for v in values_s:
        m.observe(_rec(latency_ms=v * 1000.0, ttfb_ms=None))
    body = _render(m)
    buckets = series(body, "tokenway_request_duration_seconds_bucket")
    assert [float(lb["le"]) for lb, _ in buckets] == [*BUCKETS_S, float("inf")]
    assert [v for _, v in buckets] == list(range(1, len(values_s) + 1))
    [(_, total)] = series(body, "tokenway_request_duration_seconds_sum")
    assert total == pytest.approx(sum(values_s))
    assert series(body, "tokenway_request_duration_seconds_count")[0][1] == len(values_s)
    # No first byte was recorded: the label set has its histogram, all zero.
    assert series(body, "tokenway_time_to_first_byte_seconds_count")[0][1] == 0


def test_one_request_adds_to_each_family_once() -> None:
    m = _metrics()
    m.observe(_rec(input_tokens=19, output_tokens=10, cached_tokens=4, reasoning_tokens=2,
                   cost_usd=0.25, attempts=3))
    body = _render(m)
    labels = {"endpoint": "/v1/chat/completions", "protocol": "openai_chat", "provider": "a",
              "model": "gpt-4o", "status": "2xx"}
    assert series(body, "tokenway_requests_total") == [(labels, 1)]
    assert {lb["type"]: v for lb, v in series(body, "tokenway_tokens_total")} == {
        "input": 19, "output": 10, "cached": 4, "reasoning": 2}
    assert series(body, "tokenway_cost_usd_total") == [(labels, 0.25)]
    assert series(body, "tokenway_upstream_attempts_total") == [(labels, 3)]
    assert series(body, "tokenway_upstream_failovers_total") == [(labels, 2)]
    circuits = {(lb["target"], lb["state"]): v for lb, v in series(body, "tokenway_circuit_state")}
    assert circuits[("a", "open")] == 1 and circuits[("a", "closed")] == 0
    assert circuits[('b"\n', "closed")] == 1  # a target name is escaped, and read back
    assert series(body, "tokenway_upstream_connections") == [
        ({"state": "open"}, 4), ({"state": "idle"}, 2)]
    assert series(body, "tokenway_ledger_rows_spilled_total") == [({}, 1)]
    assert series(body, "tokenway_requests_in_flight") == [({}, 1)]


def test_a_request_that_reached_no_provider_counts_no_attempt() -> None:
    m = _metrics()
    m.observe(_rec(provider=None, model=None, status=401))
    body = _render(m)
    [(labels, n)] = series(body, "tokenway_requests_total")
    assert (labels["provider"], labels["model"], labels["status"], n) == ("none", "none",
                                                                          "4xx", 1)
    assert series(body, "tokenway_upstream_attempts_total")[0][1] == 0


@pytest.mark.parametrize(("path", "label"), [
    ("/v1/messages", "/v1/messages"),
    ("/v1beta/models/gemini-2.5-pro:generateContent",
     "/v1beta/models/{model}:generateContent"),
    ("/v1beta/models/gemini-2.5-pro:nope", OTHER),
    ("/v1beta/models/gemini", OTHER),
    ("/admin/keys/k_123", "/admin/*"),
    ("/administrator", OTHER),
    ("/v1/chat/completions/", OTHER),
    (None, "none"),
])
def test_endpoint_labels_are_the_gateways_own(path: str | None, label: str) -> None:
    assert _metrics().endpoint_of(path) == label


def test_labels_are_bounded_whatever_clients_send() -> None:
    m = _metrics()
    for i in range(2000):
        m.observe(_rec(path=f"/junk/{i}\n\"", model=f"gpt-4o-{i}", status=200 + i % 400,
                       provider=f"p{i}"))
        m.observe(_rec(path=f"/v1beta/models/m{i}:x{i}", model=f"m{i}"))
    # every path, model and provider above falls in "other": 2 endpoints x 4 classes x ...
    assert m.series_count <= 2 * 6
    body = _render(m)
    assert "junk" not in body and "gpt-4o-" not in body


def test_series_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("proxy.metrics.MAX_SERIES", 3)
    m = _metrics()
    for status in (200, 300, 400, 500, 100):
        m.observe(_rec(status=status))
    assert m.series_count == 4  # three, then the one every later label set shares
    body = _render(m)
    assert sum(v for _, v in series(body, "tokenway_requests_total")) == 5
    assert MAX_SERIES >= 1000


def test_the_lookup_memo_is_bounded_and_counts_stay_right(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("proxy.metrics.MAX_RAW_KEYS", 3)
    m = _metrics()
    for i in range(10):
        m.observe(_rec(model=f"junk-{i}"))
        m.observe(_rec(model="gpt-4o"))
    assert len(m._by_raw) <= 3
    counts = {lb["model"]: n for lb, n in series(_render(m), "tokenway_requests_total")}
    assert counts == {"gpt-4o": 10, OTHER: 10}


def test_reload_names_new_models_and_keeps_old_series() -> None:
    m = _metrics()
    m.observe(_rec(model="gpt-5"))
    m.set_names(["gpt-5"], ["a"])
    m.observe(_rec(model="gpt-5"))
    models = sorted(lb["model"] for lb, _ in series(_render(m), "tokenway_requests_total"))
    assert models == ["gpt-5", OTHER]


def test_the_text_is_only_samples_help_and_type_lines() -> None:
    m = _metrics()
    m.observe(_rec())
    body = _render(m)
    assert body.endswith("\n")
    names = {n for n, _, _ in samples(body)}
    assert {"tokenway_requests_total", "tokenway_build_info",
            "tokenway_start_time_seconds"} <= names
    types = [line.split()[2] for line in body.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))  # each family once
