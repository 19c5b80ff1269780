"""``gateway audit``: silent degradation per provider/model, window against baseline.

Ledgers are real SQLite files written through the real ``Ledger``; each provider
below degrades in one known way (or not at all) between the baseline (the 24 h
before the window) and the window (the hour before ``NOW``).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import sqlite3
import subprocess
import sys
from typing import Any

import pytest

from proxy import audit_cli
from proxy.audit import (
    Group,
    Thresholds,
    aggregate,
    audit,
    build_report,
    compare,
    is_error,
    parse_duration,
    percentile,
    served_model_differs,
    summarize,
)
from proxy.cli import gateway_main
from tests.proxy.test_usage_cli import write_ledger

REPO = pathlib.Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0
HOUR = 3_600.0
WINDOW = (NOW - HOUR, NOW)
BASELINE = (NOW - 25 * HOUR, NOW - HOUR)


def traffic(provider: str, model: str, span: tuple[float, float], n: int, *,
            served: str | None = None, ttfb: float = 400.0, gen: float = 1000.0,
            out: int = 100, stream: bool = True, errors: int = 0, cuts: int = 0,
            others: int = 0, other_model: str = "other-model") -> list[dict[str, Any]]:
    """``n`` rows spread evenly over ``span``; the first ``errors`` are 502s, the next
    ``cuts`` are cut streams and the next ``others`` were served by ``other_model``.
    Times vary by up to +9 % from row to row, the same way in every window."""
    start, end = span
    rows = []
    for i in range(n):
        jitter = 1.0 + (i % 10) / 100.0
        row: dict[str, Any] = {
            "ts": start + (end - start) * (i + 0.5) / n,
            "request_id": f"{provider}-{start:.0f}-{i}",
            "endpoint": "/v1/chat/completions",
            "client_protocol": "openai_chat",
            "model": model,
            "served_model": served or f"{model}-2024-08-06",
            "provider": provider,
            "status": 200,
            "error_kind": None,
            "stream": stream,
            "input_tokens": 50,
            "output_tokens": out,
            "ttfb_ms": ttfb * jitter,
            "latency_ms": ttfb * jitter + gen * jitter,
        }
        if i < errors:
            row.update(status=502, error_kind="upstream_error", output_tokens=None,
                       served_model=None)
        elif i < errors + cuts:
            row.update(error_kind="stream_cut", output_tokens=None)
        elif i < errors + cuts + others:
            row.update(served_model=other_model)
        rows.append(row)
    return rows


def scenario() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for span, now in ((BASELINE, False), (WINDOW, True)):
        n = 240 if not now else 60
        # Steady: the same mix in both windows, a few errors and cuts included.
        rows += traffic("steady", "gpt-4o", span, n, errors=n // 60, cuts=n // 60,
                        others=n // 60)
        rows += traffic("slow-ttfb", "claude-sonnet-4", span, n, ttfb=900.0 if now else 400.0,
                        served="claude-sonnet-4-20250514")
        rows += traffic("failing", "gemini-1.5-pro", span, n, served="gemini-1.5-pro-002",
                        errors=n // 10 if now else n // 120)
        rows += traffic("swapped", "gpt-4o", span, n, others=n // 4 if now else 0,
                        other_model="gpt-4o-mini-2024-07-18")
        rows += traffic("cutting", "llama-3.1-70b", span, n, served="llama-3.1-70b",
                        cuts=n // 10 if now else 0)
        rows += traffic("slow-gen", "mistral-large", span, n, served="mistral-large-2411",
                        ttfb=1000.0, gen=1800.0 if now else 1000.0)
        # Too few requests in the window to judge.
        rows += traffic("rare", "gpt-4o", span, 5 if now else 100)
    # A refusal that never reached a provider is not read.
    rows.append({"ts": NOW - 60, "model": "gpt-4o", "provider": None, "status": 400,
                 "error_kind": "bad_request"})
    return rows


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("audit") / "audit.db")
    write_ledger(path, scenario())
    return path


def findings_by_provider(report: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {g["provider"]: [] for g in report["groups"]}
    for f in report["findings"]:
        found[f["provider"]].append(f["metric"])
    return found


# -- the report ------------------------------------------------------------------


def test_each_degradation_is_found_and_only_it(ledger: str) -> None:
    report = audit(ledger, end=NOW, window_s=HOUR, baseline_s=24 * HOUR,
                   thresholds=Thresholds())
    assert findings_by_provider(report) == {
        "steady": [],
        "slow-ttfb": ["ttfb_p95_ms"],
        "failing": ["error_rate"],
        "swapped": ["served_model_changed_share"],
        "cutting": ["stream_cut_share"],
        "slow-gen": ["output_tokens_per_s"],
        "rare": [],
    }
    assert report["window"] == {"start": NOW - HOUR, "end": NOW}
    assert report["baseline"] == {"start": NOW - 25 * HOUR, "end": NOW - HOUR}
    groups = {g["provider"]: g for g in report["groups"]}
    ttfb = next(f for f in report["findings"] if f["provider"] == "slow-ttfb")
    assert ttfb["model"] == "claude-sonnet-4"
    assert ttfb["baseline"] == pytest.approx(436.0) and ttfb["window"] == pytest.approx(981.0)
    assert ttfb["change"] == pytest.approx(981 / 436 - 1)
    failing = groups["failing"]
    assert failing["baseline"]["error_rate"] == pytest.approx(2 / 240)
    assert failing["window"]["error_rate"] == pytest.approx(6 / 60)
    assert groups["swapped"]["window"]["served_model_changed_share"] == pytest.approx(0.25)
    assert groups["swapped"]["baseline"]["served_model_changed_share"] == 0.0
    assert groups["cutting"]["window"]["stream_cut_share"] == pytest.approx(0.1)
    slow = groups["slow-gen"]
    assert slow["baseline"]["output_tokens_per_s"] == pytest.approx(100 / 1.05, rel=0.05)
    assert slow["window"]["output_tokens_per_s"] == pytest.approx(100 / 1.8 / 1.05, rel=0.05)
    # The refusal without a provider is not in any group.
    assert sum(g["window"]["requests"] for g in report["groups"]) == 6 * 60 + 5


def test_too_few_requests_is_skipped_and_said(ledger: str) -> None:
    report = audit(ledger, end=NOW, window_s=HOUR, baseline_s=24 * HOUR,
                   thresholds=Thresholds())
    rare = next(g for g in report["groups"] if g["provider"] == "rare")
    assert rare["skipped"] == "too few requests (5 in the window; --min-requests 20)"
    assert rare["findings"] == [] and report["skipped"] == 1
    assert rare["window"]["requests"] == 5 and rare["baseline"]["requests"] == 100
    lenient = audit(ledger, end=NOW, window_s=HOUR, baseline_s=24 * HOUR,
                    thresholds=Thresholds(min_requests=5))
    assert lenient["skipped"] == 0
    # With 80 requests needed, every window (60 requests) is skipped.
    strict = audit(ledger, end=NOW, window_s=HOUR, baseline_s=24 * HOUR,
                   thresholds=Thresholds(min_requests=80))
    assert strict["skipped"] == len(strict["groups"]) and strict["findings"] == []


def test_steady_provider_raises_nothing(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "steady.db")
    rows = traffic("a", "gpt-4o", BASELINE, 2000, errors=20, cuts=20, others=20)
    rows += traffic("a", "gpt-4o", WINDOW, 100, errors=1, cuts=1, others=1)
    rows += traffic("b", "claude-sonnet-4", BASELINE, 300, stream=False)
    rows += traffic("b", "claude-sonnet-4", WINDOW, 25, stream=False)
    write_ledger(path, rows)
    report = audit(path, end=NOW, window_s=HOUR, baseline_s=24 * HOUR,
                   thresholds=Thresholds())
    assert report["findings"] == [] and report["skipped"] == 0
    assert [g["findings"] for g in report["groups"]] == [[], []]


def test_thresholds_are_the_flags_limits() -> None:
    base = Group()
    win = Group()
    for i in range(100):
        base.add("m", "m", 200, None, 1, 100, 1000.0 + i, 200.0)
        win.add("m", "m", 200, None, 1, 100, 1300.0 + i, 200.0)  # latency p95 +27 %
    w, b = summarize(win), summarize(base)
    assert compare(w, b, Thresholds()) == []
    found = compare(w, b, Thresholds(latency_p95_rise=0.25, tps_drop=0.25))
    assert [f["metric"] for f in found] == ["latency_p95_ms", "output_tokens_per_s"]
    assert found[0]["text"] == "latency p95 1094 -> 1394 ms (+27%)"


def test_error_rate_needs_both_the_ratio_and_the_points() -> None:
    def rate(errors: int) -> dict[str, Any]:
        g = Group()
        for i in range(1000):
            g.add("m", "m", 503 if i < errors else 200, None, 0, 10, 100.0, 90.0)
        return summarize(g)

    t = Thresholds()
    assert compare(rate(15), rate(5), t) == []  # x3 but only +1 point
    assert compare(rate(110), rate(100), t) == []  # +1 point, x1.1
    assert [f["metric"] for f in compare(rate(30), rate(0), t)] == ["error_rate"]
    assert [f["metric"] for f in compare(rate(50), rate(20), t)] == ["error_rate"]


def test_groups_only_in_one_window_are_skipped() -> None:
    rows = [("p", "m", "m", 200, None, 1, 10, 100.0, 50.0)] * 30
    report = build_report(aggregate(rows), {}, WINDOW, BASELINE, Thresholds())
    assert report["groups"][0]["skipped"] == (
        "too few requests (0 in the baseline; --min-requests 20)")
    assert report["groups"][0]["baseline"]["ttfb_p95_ms"] is None


# -- the rules -------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([1, 2, 3, 4], 50) == 2.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 95) == 95.0 and percentile(values, 50) == 50.0
    assert percentile(values, 100) == 100.0 and percentile(values, 0) == 1.0
    assert percentile([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110], 95) == 110.0


@pytest.mark.parametrize(("status", "kind", "error"), [
    (200, None, False),
    (500, "internal", True),
    (503, "overloaded", True),
    (502, "upstream_error", True),
    (504, "upstream_timeout", True),
    (200, "upstream_error", True),  # the provider's error event inside a stream
    (200, "upstream_timeout", True),
    (429, "upstream_error", True),  # the provider shedding load
    (400, "upstream_error", False),  # the provider refused this request
    (401, "upstream_error", False),
    (200, "stream_cut", False),  # counted apart
    (400, "bad_request", False),
    (429, "rate_limited", False),  # the gateway's own limit
    (None, "upstream_unreachable", True),
])
def test_what_counts_as_an_error(status: int | None, kind: str | None, error: bool) -> None:
    assert is_error(status, kind) is error


@pytest.mark.parametrize(("model", "served", "differs"), [
    ("gpt-4o", "gpt-4o", False),
    ("gpt-4o", "gpt-4o-2024-08-06", False),
    ("gpt-4o-2024-08-06", "gpt-4o", False),
    ("claude-sonnet-4", "claude-sonnet-4-20250514", False),
    ("claude-sonnet-4", "claude-sonnet-4@20250514", False),
    ("gemini-1.5-pro", "models/gemini-1.5-pro-002", False),
    ("GPT-4o", "gpt-4o", False),
    ("gpt-4o", "gpt-4o-latest", False),
    ("gpt-4o", "gpt-4o-mini-2024-07-18", True),
    ("gpt-4o", "gpt-3.5-turbo", True),
    ("claude-opus-4", "claude-sonnet-4-20250514", True),
    ("fast", "gpt-4o-mini", True),
    ("gpt-4o", None, None),
    (None, "gpt-4o", None),
])
def test_served_model_rule(model: str | None, served: str | None,
                           differs: bool | None) -> None:
    assert served_model_differs(model, served) is differs


def test_tokens_per_second_uses_successful_streams_only() -> None:
    g = Group()
    g.add("m", "m", 200, None, 1, 100, 1500.0, 500.0)  # 100 tokens in 1 s
    g.add("m", "m", 200, None, 0, 100, 1500.0, 1499.0)  # not a stream
    g.add("m", "m", 200, "stream_cut", 1, 10, 1500.0, 500.0)
    g.add("m", "m", 502, "upstream_error", 1, 10, 1500.0, 500.0)
    g.add("m", "m", 200, None, 1, None, 1500.0, 500.0)  # tokens unknown
    g.add("m", "m", 200, None, 1, 100, 500.0, 500.0)  # no generation time
    assert list(g.tokens_per_s) == [100.0]
    s = summarize(g)
    assert s["stream_cut_share"] == pytest.approx(1 / 5) and s["errors"] == 1


def test_parse_duration() -> None:
    assert parse_duration("1h") == 3600 and parse_duration("90s") == 90
    assert parse_duration("1.5d") == 1.5 * 86_400
    for bad in ("", "h", "0h", "1y", "-1h", "2024-06-01"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# -- the command -------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = gateway_main(["audit", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_exits_1_on_findings(ledger: str, capsys) -> None:
    code, out, _ = run(capsys, "--db", ledger, "--until", str(NOW), "--json")
    assert code == 1
    report = json.loads(out)
    assert set(report) >= {"window", "baseline", "thresholds", "groups", "findings"}
    assert findings_by_provider(report)["failing"] == ["error_rate"]
    assert report["thresholds"]["min_requests"] == 20


def test_cli_table(ledger: str, capsys) -> None:
    code, out, _ = run(capsys, "--db", ledger, "--until", str(NOW))
    assert code == 1
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("PROVIDER"))
    assert header.split() == ["PROVIDER", "MODEL", "REQUESTS", "ERRORS", "TTFB_P95_MS",
                              "LATENCY_P95_MS", "OUT_TOK/S", "OTHER_MODEL", "STREAMS_CUT",
                              "FINDINGS"]
    row = {line.split()[0]: line for line in lines[lines.index(header) + 1:-1]}
    assert row["steady"].rstrip().endswith("ok")
    assert "60 / 240" in row["steady"]
    assert "TTFB p95 436 -> 981 ms (+125%)" in row["slow-ttfb"]
    assert "errors 0.8% -> 10.0% (x12.0)" in row["failing"]
    assert "other model served 0.0% -> 25.0% (+25.0 pts)" in row["swapped"]
    assert "streams cut 0.0% -> 10.0% (+10.0 pts)" in row["cutting"]
    assert "output tokens/s" in row["slow-gen"]
    assert "skipped: too few requests (5 in the window" in row["rare"]
    assert lines[-1] == ("5 findings in 6 provider/model groups compared; "
                         "1 skipped with fewer than 20 requests in a window")


def test_cli_thresholds_and_windows(ledger: str, capsys, monkeypatch) -> None:
    # Loose enough thresholds: nothing found, exit 0.
    code, out, _ = run(capsys, "--db", ledger, "--until", str(NOW), "--json",
                       "--ttfb-rise", "200%", "--error-ratio", "20", "--served-points", "30",
                       "--cut-points", "15", "--tps-drop", "60")
    assert code == 0 and json.loads(out)["findings"] == []
    # A window in the baseline's past holds no traffic: every group skipped.
    code, out, _ = run(capsys, "--db", ledger, "--until", str(NOW - 30 * HOUR), "--json")
    assert code == 0 and json.loads(out)["groups"] == []
    # A 2 h window takes in baseline rows too; the env variable names the ledger.
    monkeypatch.setenv("TOKENWAY_DB", ledger)
    code, out, _ = run(capsys, "--until", str(NOW), "--window", "2h", "--baseline",
                       "12h", "--min-requests", "5", "--json")
    report = json.loads(out)
    assert report["window"]["start"] == NOW - 2 * HOUR
    assert report["baseline"]["start"] == NOW - 14 * HOUR
    assert next(g for g in report["groups"] if g["provider"] == "steady")[
        "window"]["requests"] == 70


def test_cli_exit_0_when_steady(tmp_path: pathlib.Path, capsys) -> None:
    path = str(tmp_path / "ok.db")
    write_ledger(path, traffic("a", "gpt-4o", BASELINE, 200) + traffic("a", "gpt-4o",
                                                                         WINDOW, 30))
    code, out, _ = run(capsys, "--db", path, "--until", str(NOW))
    assert code == 0
    assert out.splitlines()[-1] == "0 findings in 1 provider/model group compared"


@pytest.mark.parametrize("argv", [
    ["--window", "soon"], ["--baseline", "0h"], ["--until", "yesterday"],
    ["--min-requests", "0"], ["--ttfb-rise", "-5"], ["--error-ratio", "0.5"],
    ["--tps-drop", "100"], ["--cut-points", "x"], ["--nope"],
])
def test_cli_bad_arguments_exit_2(argv: list[str], tmp_path: pathlib.Path, capsys) -> None:
    code, _, err = run(capsys, "--db", str(tmp_path / "none.db"), *argv)
    assert code == 2 and "gateway audit" in err


def test_cli_missing_database_is_not_created(tmp_path: pathlib.Path, capsys) -> None:
    path = tmp_path / "missing.db"
    code, out, err = run(capsys, "--db", str(path))
    assert code == 2 and out == ""
    assert "ledger database not found" in err and "gatewayd creates it" in err
    assert not path.exists()


def test_cli_plot_without_matplotlib_exits_2(ledger: str, tmp_path: pathlib.Path,
                                              capsys, monkeypatch) -> None:
    monkeypatch.setattr(audit_cli, "_load_pyplot", lambda: None)
    png = tmp_path / "audit.png"
    code, out, err = run(capsys, "--db", ledger, "--until", str(NOW), "--plot", str(png))
    assert code == 2 and out == "" and not png.exists()
    assert "--plot needs matplotlib" in err


def test_cli_help_lists_audit(capsys) -> None:
    assert gateway_main(["--help"]) == 0
    assert "audit" in capsys.readouterr().out
    assert gateway_main(["audit", "--help"]) == 0
    assert "--min-requests" in capsys.readouterr().out


def test_installed_command_in_its_own_process(ledger: str) -> None:
    script = pathlib.Path(sys.executable).with_name("gateway")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c",
                                                 "import sys; from proxy.cli import "
                                                 "gateway_main; sys.exit(gateway_main())"]
    done = subprocess.run([*cmd, "audit", "--db", ledger, "--until", str(NOW), "--json"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 1, done.stderr
    assert findings_by_provider(json.loads(done.stdout))["cutting"] == ["stream_cut_share"]
    done = subprocess.run([*cmd, "audit", "--db", ledger, "--window", "later"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2 and "cannot read 'later' as a duration" in done.stderr


def test_cli_file_that_is_not_a_ledger_exits_2(tmp_path: pathlib.Path, capsys) -> None:
    path = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE t (x)")
        db.commit()
    code, out, err = run(capsys, "--db", str(path))
    assert code == 2 and out == "" and "is not a tokenway ledger" in err


class FakeAxes:
    def __init__(self) -> None:
        self.bars: list[list[float]] = []
        self.title = ""

    def bar(self, xs: list[float], heights: list[float], **_: Any) -> None:
        self.bars.append(heights)

    def set_title(self, title: str, **_: Any) -> None:
        self.title = title

    def set_xticks(self, xs: list[int]) -> None:
        pass

    def set_xticklabels(self, labels: list[str], **_: Any) -> None:
        pass

    def legend(self, **_: Any) -> None:
        pass


class FakePyplot:
    """What write_plot uses of matplotlib.pyplot (the tests do not need matplotlib)."""

    def __init__(self) -> None:
        self.axes: list[list[FakeAxes]] = []
        self.saved: list[str] = []

    def subplots(self, rows: int, cols: int, **_: Any) -> tuple[Any, list[list[FakeAxes]]]:
        self.axes = [[FakeAxes() for _ in range(cols)] for _ in range(rows)]
        plt = self

        class Figure:
            def tight_layout(self) -> None:
                pass

            def savefig(self, path: str) -> None:
                plt.saved.append(path)

        return Figure(), self.axes

    def close(self, fig: Any) -> None:
        pass


def test_cli_plot_draws_window_against_baseline(ledger: str, tmp_path: pathlib.Path,
                                                 capsys, monkeypatch) -> None:
    fake = FakePyplot()
    monkeypatch.setattr(audit_cli, "_load_pyplot", lambda: fake)
    png = str(tmp_path / "audit.png")
    code, out, _ = run(capsys, "--db", ledger, "--until", str(NOW), "--plot", png, "--json")
    assert code == 1 and json.loads(out)["findings"]
    assert fake.saved == [png]
    ttfb = fake.axes[0][0]
    assert ttfb.title == "TTFB p95 (ms)"
    # Six compared groups (the skipped one is not drawn): baseline bars, then window bars.
    assert len(ttfb.bars[0]) == 6 and ttfb.bars[1][3] == pytest.approx(981.0)
    assert fake.axes[2][0].bars[1][1] == pytest.approx(10.0)  # failing: 10 % errors
