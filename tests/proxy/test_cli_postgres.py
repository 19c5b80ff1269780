"""``gateway tail`` and ``gateway audit`` on a PostgreSQL ledger print what they print
for the same rows in SQLite (``gateway usage``: test_ledger_postgres.py)."""

from __future__ import annotations

import io
import pathlib
import time

import pytest

from proxy.cli import gateway_main
from proxy.ledger import DictRecord, Ledger, open_backend
from proxy.tail_cli import tail_main
from tests.pgdb import pg_url_fixture  # noqa: F401 (the pg_url fixture)
from tests.proxy.ledger_rows import make_rec
from tests.proxy.test_audit import NOW, scenario


def both(pg_url: str, tmp_path: pathlib.Path, records: list) -> str:
    """Store ``records`` in a SQLite file and in PostgreSQL; the SQLite path."""
    lite = str(tmp_path / "l.db")
    for ledger in (Ledger(lite), Ledger(str(tmp_path / "pg"), backend=open_backend(pg_url))):
        for rec in records:
            ledger.record(rec)
        ledger.start()
        assert ledger.close() and ledger.written == len(records)
    return lite


def test_tail_on_postgresql(pg_url: str, tmp_path: pathlib.Path) -> None:
    now = time.time()
    lite = both(pg_url, tmp_path, [
        make_rec(1, ts=now - 5), make_rec(2, ts=now - 4, status=502, error_kind="upstream_error"),
        make_rec(3, ts=now - 3, model="claude-haiku-4-5", served_model=None,
                 provider="anthropic", attempts=2),
        make_rec(4, ts=now - 7200)])
    for args in (["--since", "1h", "--color", "never"], ["--since", "1h", "--json"],
                 ["--since", "1h", "--status", "5xx"], ["--since", "1h", "--provider", "anthro*"]):
        want, got = io.StringIO(), io.StringIO()
        assert tail_main(["--db", lite, *args], want, polls=2) == 0
        assert tail_main(["--database-url", pg_url, *args], got, polls=2) == 0
        assert got.getvalue() == want.getvalue() != "", args
    # Without --since only rows stored from now on are shown.
    out = io.StringIO()
    assert tail_main(["--database-url", pg_url], out, polls=1) == 0
    assert out.getvalue() == ""


def test_tail_with_a_bad_url(capsys: pytest.CaptureFixture) -> None:
    assert tail_main(["--database-url", "mysql://u:pw-x@h/db"]) == 2
    err = capsys.readouterr().err
    assert "unsupported database URL" in err and "pw-x" not in err


def test_audit_on_postgresql(pg_url: str, tmp_path: pathlib.Path,
                             capsys: pytest.CaptureFixture) -> None:
    lite = both(pg_url, tmp_path, [DictRecord(r) for r in scenario()])
    for args in (["--until", str(NOW)], ["--until", str(NOW), "--json"]):
        want = gateway_main(["audit", "--db", lite, *args]), capsys.readouterr().out
        got = gateway_main(["audit", "--database-url", pg_url, *args]), capsys.readouterr().out
        assert got == want and want[0] == 1, args  # 1: something was found
