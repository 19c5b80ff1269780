"""bench/micro/metrics.py keeps working: it times the gateway's own recording path
(no figures are judged here; bench/RESULTS.md holds them)."""

from __future__ import annotations

from bench.micro.metrics import MIX, gateway_metrics, measure, measure_in_gateway, records


def test_the_metrics_micro_bench_runs_the_real_path() -> None:
    res = measure(requests=len(MIX) * 50, repeat=1)
    [own, *library] = res["cases"]
    assert own["case"].startswith("hand-written") and len(own["runs_us"]) == 1
    assert len(library) in (0, 2)  # prometheus_client only when installed
    # one label set per record of the mix but for those that differ only where no
    # label looks (streamed or not, tokens)
    key_of = gateway_metrics().key_of
    assert res["series"] == len({key_of(rec) for rec in records()}) == len(MIX) - 1
    assert res["scrape_bytes"] > 0


def test_the_in_gateway_timing_runs_a_real_gateway() -> None:
    res = measure_in_gateway(0.5, 2)
    assert res["calls"] > 0 and res["median_us"] <= res["p90_us"]
