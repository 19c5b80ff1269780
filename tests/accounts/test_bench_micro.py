"""bench/micro/accounts.py keeps working: it runs the gateway's own accounting path
(no figures are judged here; bench/RESULTS.md holds them)."""

from __future__ import annotations

from bench.micro.accounts import measure


def test_the_accounts_micro_bench_runs_the_real_path() -> None:
    res = measure(requests=500, repeat=1)
    assert res["requests"] == 500 and len(res["cases"]) == 3
    for case in res["cases"]:
        assert len(case["keyed_runs_us"]) == 1 and case["keyed_us"] > 0
