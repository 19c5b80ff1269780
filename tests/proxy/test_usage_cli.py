"""`gateway usage` against real ledger files written by the real writer."""

from __future__ import annotations

import json
import pathlib
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from proxy.ledger import LEDGER_COLUMNS, DictRecord, Ledger
from proxy.usage_cli import parse_since, usage_main

NOW = 1_717_243_200.0  # a pinned clock for parse_since


def write_ledger(path: str, rows: list[dict[str, Any]]) -> None:
    ledger = Ledger(path)
    ledger.start()
    for row in rows:
        ledger.record(DictRecord(row))
    assert ledger.close()
    assert ledger.written == len(rows)


@pytest.fixture
def db(tmp_path: pathlib.Path) -> str:
    # Times are relative to the real clock so that `--since 1h` selects rows
    # without the test depending on what time it is.
    now = time.time()
    path = str(tmp_path / "usage.db")
    write_ledger(
        path,
        [
            {
                "ts": now - 3 * 3600,
                "request_id": "old",
                "endpoint": "/v1/messages",
                "client_protocol": "anthropic_messages",
                "model": "claude-sonnet-4",
                "served_model": "claude-sonnet-4-20250514",
                "provider": "anthropic",
                "status": 200,
                "stream": True,
                "input_tokens": 1200,
                "output_tokens": 300,
                "cached_tokens": 1000,
                "cache_write_tokens": 0,
                "reasoning_tokens": None,
                "latency_ms": 2500.0,
                "ttfb_ms": 400.0,
                "bytes_in": 5000,
                "bytes_out": 9000,
            },
            {
                "ts": now - 600,
                "request_id": "recent",
                "endpoint": "/v1/chat/completions",
                "client_protocol": "openai_chat",
                "model": "gpt-4o-mini",
                "served_model": "gpt-4o-mini-2024-07-18",
                "provider": "openai",
                "status": 200,
                "stream": False,
                "input_tokens": 50,
                "output_tokens": 20,
                "cached_tokens": 0,
                "reasoning_tokens": 8,
                "latency_ms": 300.0,
                "ttfb_ms": 290.0,
                "bytes_in": 400,
                "bytes_out": 800,
            },
            {
                "ts": now - 60,
                "request_id": "failed",
                "endpoint": "/v1/chat/completions",
                "client_protocol": "openai_chat",
                "model": "gpt-4o",
                "provider": "openai",
                "status": 504,
                "error_kind": "upstream_timeout",
                "stream": True,
                "latency_ms": 30000.0,
                "attempts": 2,
            },
        ],
    )
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert usage_main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


# -- --json ----------------------------------------------------------------------


def test_json_rows_have_every_key(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "--db", db)
    assert [r["request_id"] for r in rows] == ["old", "recent", "failed"]
    required = {
        "ts", "request_id", "endpoint", "client_protocol", "model", "served_model",
        "provider", "status", "error_kind", "stream", "input_tokens", "output_tokens",
        "cached_tokens", "reasoning_tokens", "latency_ms", "ttfb_ms", "bytes_in",
        "bytes_out", "cache_write_tokens", "attempts", "api_key_id", "client_addr",
    }  # fmt: skip
    for row in rows:
        assert set(row) == set(LEDGER_COLUMNS) >= required
        assert isinstance(row["stream"], bool)
        assert isinstance(row["ts"], float)
    old, recent, failed = rows
    assert old["stream"] is True and recent["stream"] is False
    assert old["cached_tokens"] == 1000 and old["reasoning_tokens"] is None
    assert failed["error_kind"] == "upstream_timeout" and failed["status"] == 504
    assert failed["input_tokens"] is None  # unknown stays null, not 0
    assert failed["attempts"] == 2 and recent["attempts"] == 1


def test_json_filters(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    def ids(*argv: str) -> list[str]:
        return [r["request_id"] for r in run_json(capsys, "--db", db, *argv)]

    assert ids("--since", "1h") == ["recent", "failed"]
    assert ids("--since", "5m") == ["failed"]
    assert ids("--since", "7d") == ["old", "recent", "failed"]
    assert ids("--model", "gpt-4o*") == ["recent", "failed"]
    assert ids("--model", "gpt-4o") == ["failed"]
    assert ids("--model", "claude-sonnet-4-20250514") == ["old"]  # served model
    assert ids("--limit", "2") == ["recent", "failed"]
    assert ids("--limit", "0") == ["old", "recent", "failed"]
    assert ids("--model", "gpt-4o*", "--limit", "1") == ["failed"]
    assert ids("--model", "nothing") == []


def test_since_accepts_unix_and_iso(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = run_json(capsys, "--db", db)
    cut = rows[1]["ts"]
    by_unix = run_json(capsys, "--db", db, "--since", repr(cut))
    assert [r["request_id"] for r in by_unix] == ["recent", "failed"]
    iso = datetime.fromtimestamp(cut - 1, tz=UTC).isoformat()
    by_iso = run_json(capsys, "--db", db, "--since", iso)
    assert [r["request_id"] for r in by_iso] == ["recent", "failed"]


# -- parse_since ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", NOW - 15 * 60),
        ("2h", NOW - 2 * 3600),
        ("7d", NOW - 7 * 86400),
        ("90s", NOW - 90),
        ("1w", NOW - 7 * 86400),
        ("1.5h", NOW - 5400),
        (" 2H ", NOW - 7200),
        ("1717000000", 1_717_000_000.0),
        ("1717000000.25", 1_717_000_000.25),
        ("2024-06-01T12:00:00Z", 1_717_243_200.0),
        ("2024-06-01T14:00:00+02:00", 1_717_243_200.0),
        ("2024-06-01 12:00:00+00:00", 1_717_243_200.0),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, NOW) == pytest.approx(expected)


def test_parse_since_naive_iso_is_local_time() -> None:
    assert parse_since("2024-06-01", NOW) == datetime(2024, 6, 1).timestamp()
    assert (
        parse_since("2024-06-01T08:30", NOW) == datetime(2024, 6, 1, 8, 30).timestamp()
    )


@pytest.mark.parametrize("text", ["", "yesterday", "15x", "-5m", "2024-13-01", "1e9"])
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_since(text, NOW)


# -- table -------------------------------------------------------------------------


def test_table_output(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_main(["--db", db]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    header, *body, rule, totals = lines
    assert header.split() == [
        "TIME", "PROTOCOL", "MODEL", "PROVIDER", "STATUS", "ERROR", "STREAM",
        "IN", "OUT", "CACHED", "REASONING", "COST_USD", "TTFB_MS", "LATENCY_MS",
    ]  # fmt: skip
    assert len(body) == 3
    assert "claude-sonnet-4 (claude-sonnet-4-20250514)" in body[0]
    assert "upstream_timeout" in body[2]
    assert set(rule) <= {"-", " "}

    # Aligned: text columns start at the same offset on every line, and the
    # right-aligned numbers end where their header ends.
    for name in ("PROTOCOL", "MODEL", "PROVIDER", "ERROR", "STREAM"):
        start = header.index(name)
        for line in body:
            assert line[start - 2 : start] == "  " and line[start] != " "
    in_end = header.index(" IN ") + len(" IN")
    assert [line[in_end - 4 : in_end] for line in body] == ["1200", "  50", "   -"]

    # Totals: 3 requests, 1 error, known token counts summed (unknown skipped).
    assert totals.startswith("total: 3 requests")
    assert "1 error" in totals
    assert totals[in_end - 4 : in_end] == "1250"
    cells = totals.split()
    assert "320" in cells  # output tokens
    assert "1000" in cells  # cached tokens
    assert "8" in cells  # reasoning tokens
    assert "(3 unknown)" in totals  # no row has a cost: unknown, never zero
    assert captured.err == ""


def test_table_mentions_the_limit(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_main(["--db", db, "--limit", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("TIME")
    assert len(captured.out.splitlines()) == 1 + 2 + 2
    assert "--limit 0" in captured.err


def test_empty_selection(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_main(["--db", db, "--model", "none"]) == 0
    assert "no requests" in capsys.readouterr().out
    assert usage_main(["--db", db, "--model", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


# -- errors ------------------------------------------------------------------------


def test_missing_database(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.db"
    assert usage_main(["--db", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "not found" in captured.err and str(missing) in captured.err
    assert "Traceback" not in captured.err
    assert not missing.exists()


def test_default_db_is_in_the_current_directory(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert usage_main([]) == 2
    assert "tokenway.db" in capsys.readouterr().err
    write_ledger("tokenway.db", [{"ts": 1.0, "request_id": "here"}])
    assert [r["request_id"] for r in run_json(capsys)] == ["here"]


def test_not_a_ledger(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00not a database" * 200)
    assert usage_main(["--db", str(junk)]) == 2
    err = capsys.readouterr().err
    assert "gateway usage: error:" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [["--since", "tomorrow"], ["--limit", "-1"], ["--limit", "x"], ["--bogus"]],
)
def test_bad_arguments(
    db: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert usage_main(["--db", db, *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: gateway usage" in captured.err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_main(["--help"]) == 0
    assert "--since" in capsys.readouterr().out
