"""The soak's pieces that need no running gateway: the fake upstream's fault knobs, the
generated tokenway config (it must load, with its fault routes), and the soak report."""

from __future__ import annotations

from pathlib import Path

from bench import fake_upstream as fu
from bench.report import checks_text, soak_text
from bench.targets import TokenwayTarget
from proxy.config import load_config


def _req(model: str, stream: bool = False, path: bytes = b"/v1/chat/completions") -> fu.Request:
    body = fu._dumps({"model": model, "messages": [{"role": "user", "content": "hi"}],
                      **({"stream": True} if stream else {})})
    return fu.Request(b"POST", path, {}, body, True, True)


def test_fault_knobs_in_the_model_name() -> None:
    plan = fu.plan_for("gpt-bench-n20-i2-x5", {}, fu.Defaults())
    assert (plan.chunks, plan.interval_ms, plan.cut, plan.error) == (20, 2.0, 5, 0)
    assert fu.plan_for("gpt-bench-e500", {}, fu.Defaults()).error == 500
    assert fu.plan_for("gpt-bench-e200", {}, fu.Defaults()).error == 0  # not an error status
    assert fu.plan_for("gpt-bench", {}, fu.Defaults()).cut == -1


def test_error_answers_carry_status_and_retry_after() -> None:
    app = fu.App(fu.Defaults())
    out = app.respond(_req("gpt-bench-e500"))
    assert isinstance(out, bytes) and out.startswith(b"HTTP/1.1 500 ")
    assert b"retry-after" not in out
    out = app.respond(_req("gpt-bench-e429"))
    assert isinstance(out, bytes) and out.startswith(b"HTTP/1.1 429 ")
    assert b"retry-after: 1\r\n" in out
    out = app.respond(_req("gpt-bench-e529", path=b"/v1/messages"))
    assert isinstance(out, bytes) and b'"overloaded_error"' in out


def test_cut_streams_stop_after_n_deltas_and_abort() -> None:
    app = fu.App(fu.Defaults())
    job = app.respond(_req("gpt-bench-n20-x5", stream=True))
    assert isinstance(job, fu.AsyncJob) and job.cut and job.events is not None
    assert sum(1 for _, is_delta in job.events if is_delta) == 5
    job = app.respond(_req("gpt-bench-x5"))
    assert isinstance(job, fu.AsyncJob) and job.cut and job.events is None


def test_generated_config_loads_with_the_fault_routes(tmp_path: Path) -> None:
    t = TokenwayTarget()
    conf = tmp_path / "tokenway.toml"
    conf.write_text(t.config_text("http://127.0.0.1:9/v1"))
    cfg = load_config(conf)
    matches = [r.match for r in cfg.routes]
    assert matches.index("weighted-*") < matches.index("fault-500-*")
    for name in ("flaky", "limited", "cutter", "dead"):
        assert name in cfg.providers


def _soak_result(ok: bool) -> dict:
    cell = {
        "duration_s": 100.0, "rps": 5000.0, "cpu_us_per_req": 100.0,
        "rss_before_kib": 38000, "rss_q1_kib": 42000, "rss_half_kib": 42500,
        "rss_end_kib": 43000 if ok else 50000, "rss_after_kib": 41000, "rss_max_kib": 50000,
        "rss_growth_q1_end_kib": 1000 if ok else 8000, "rss_growth_pct": 2.4 if ok else 19.0,
        "rss_flat": ok, "rss_flat_10pct": ok, "fds_before": 36, "fds_q1": 170,
        "fds_half": 171, "fds_end": 172, "fds_after": 75, "fds_max": 176,
        "fds_other_before": 19, "fds_other_after": 19, "fds_growth": 0, "fds_flat": True,
        "conns_before": 1, "conns_after": 1, "upstream_open_before": 16,
        "upstream_open_after": 55, "tasks_before": 1, "tasks_q1": 2, "tasks_half": 2,
        "tasks_end": 2, "tasks_after": 1, "tasks_max": 4, "tasks_ok": True,
        "task_slack": 16, "fd_slack": 8, "soak_ok": ok, "faults_ok": True,
        "failures": {"fail_500": {"what": "chat -> 500", "expected": "5xx", "count": 3,
                                  "outcomes": {"503": 2, "500": 1}, "unexpected": 0,
                                  "max_s": 0.5}},
        "hostile": {"slowloris": {"what": "partial head", "expected": "408 or closed",
                                  "count": 2, "outcomes": {"408": 2}, "unexpected": 0,
                                  "max_s": 30.1}},
        "drivers": {},
    }
    return {"scenarios": [{"id": "soak", "driver": "soak", "duration_s": 100.0,
                           "results": {"tokenway": cell}}], "targets": {}}


def test_soak_report_shows_faults_fds_tasks_and_the_verdict() -> None:
    text = soak_text(_soak_result(True))
    for needle in ("+2.4%", "36/170/171/172/75", "1/2/2/2/1", "fail_500", "503 x2",
                   "slowloris", "408 x2", "no keyless case"):
        assert needle in text, needle
    assert "PASS  tokenway soak 100 s" in checks_text(_soak_result(True))
    bad = checks_text(_soak_result(False))
    assert "FAIL  tokenway soak 100 s" in bad and "+19.0%" in bad


def test_checks_without_the_direct_target_still_print() -> None:
    """A run limited to some targets (``--only tokenway,floor``) has no "direct" figure
    for the translated stream's first byte: the check says what it has (it raised)."""
    cell = {"ttfb_p50_ms": 3.2, "vs_ref": {"added_ms": {"ttfb_p50_ms": 1.25}},
            "added_ms": {"ttfb_p50_ms": {}}}
    res = {"scenarios": [{"id": "xlate_messages_ttfb_c16", "results": {"tokenway": cell}}],
           "targets": {}}
    text = checks_text(res)
    assert "translated messages->chat stream TTFB p50 3.200 ms: +1.250 ms vs passthrough " \
           "(c=16)" in text
