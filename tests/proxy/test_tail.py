"""``gateway tail``: rows as they are stored, filtered, as lines or JSON; run in a
pseudo-terminal as a user runs it (colours, Ctrl-C)."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from proxy.ledger import Ledger
from proxy.tail_cli import tail_main
from tests.proxy.ledger_rows import make_rec

PY = sys.executable


def stored(path: str, *recs) -> None:
    ledger = Ledger(path)
    ledger.start()
    try:
        for rec in recs:
            ledger.record(rec)
        assert ledger.wait_idle(10)
    finally:
        ledger.close()


def test_since_shows_stored_rows_filtered(tmp_path) -> None:
    db = str(tmp_path / "l.db")
    now = time.time()
    stored(db, make_rec(1, ts=now - 5), make_rec(2, ts=now - 4, status=502,
                                                  error_kind="upstream_error"),
           make_rec(3, ts=now - 3, model="claude-haiku-4-5", served_model=None,
                    provider="anthropic", attempts=2),
           make_rec(4, ts=now - 7200))
    out = io.StringIO()
    assert tail_main(["--db", db, "--since", "1h", "--color", "never"], out, polls=2) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # the row of two hours ago is left out
    assert "502" in lines[1] and "[upstream_error]" in lines[1]
    assert "claude-haiku-4-5 " in lines[2] and "failover x2" in lines[2]
    out = io.StringIO()
    tail_main(["--db", db, "--since", "1h", "--status", "5xx", "--json"], out, polls=2)
    [row] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert row["status"] == 502 and row["request_id"] == "req-2"
    out = io.StringIO()
    tail_main(["--db", db, "--since", "1h", "--provider", "anthro*"], out, polls=2)
    assert out.getvalue().count("\n") == 1


def test_without_since_only_new_rows_show(tmp_path) -> None:
    db = str(tmp_path / "l.db")
    stored(db, make_rec(1, ts=time.time()))
    out = io.StringIO()
    assert tail_main(["--db", db], out, polls=1) == 0
    assert out.getvalue() == ""


def test_bad_arguments_and_a_missing_ledger(tmp_path, capsys) -> None:
    assert tail_main(["--db", str(tmp_path / "none.db")]) == 2
    assert "no ledger at" in capsys.readouterr().err
    for bad in (["--status", "6xx"], ["--interval", "0"], ["--since", "yesterday-ish"]):
        stored(str(tmp_path / "l.db"))
        assert tail_main(["--db", str(tmp_path / "l.db"), *bad]) == 2, bad


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux pty")
def test_in_a_terminal_rows_scroll_in_colour_and_ctrl_c_ends_it(tmp_path) -> None:
    db = str(tmp_path / "l.db")
    stored(db)  # an empty ledger the daemon made
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    p = subprocess.Popen([PY, "-c", "import sys; from proxy.cli import gateway_main; "
                          "sys.exit(gateway_main(sys.argv[1:]))", "tail", "--db", db,
                          "--interval", "0.1"],
                         stdin=slave, stdout=slave, stderr=slave, env=env,
                         start_new_session=True)
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout_s: float = 20) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout_s
        while marker not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {marker!r} in {seen!r}"
            ready, _, _ = select.select([master], [], [], left)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break

    try:
        time.sleep(0.5)  # let it take the newest row id before the rows arrive
        now = time.time()
        stored(db, make_rec(10, ts=now, status=200),
               make_rec(11, ts=now, status=500, error_kind="upstream_error"),
               make_rec(12, ts=now, status=429, error_kind="rate_limited"))
        read_until(b"[rate_limited]")
        text = seen.decode()
        assert "\x1b[31m" in text and "[upstream_error]" in text  # red for the 500
        assert "\x1b[33m" in text  # yellow for the 429
        p.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert p.wait(20) == 0
        try:
            while True:
                ready, _, _ = select.select([master], [], [], 0.2)
                if not ready:
                    break
                seen += os.read(master, 65536)
        except OSError:
            pass
        assert b"Traceback" not in seen
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
