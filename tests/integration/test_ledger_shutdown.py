"""gatewayd on SIGTERM stores every ledger row: in the database, or in the spill
journal when the database is locked (and the next start replays it)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import apsw

from tests.integration.test_cli import start_daemon

PY = sys.executable
CHAT = json.dumps({"model": "loopback",
                   "messages": [{"role": "user", "content": "count me"}]}).encode()


def send_requests(url: str, n: int) -> None:
    """n loopback chat requests on one keep-alive connection, each answered 200."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        for _ in range(n):
            conn.request("POST", "/v1/chat/completions", body=CHAT,
                         headers={"content-type": "application/json"})
            r = conn.getresponse()
            r.read()
            assert r.status == 200
    finally:
        conn.close()


def send_garbage(url: str) -> None:
    """A request that breaks HTTP framing: answered 400, recorded as rejected."""
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 400")


def ledger_rows(db: str) -> list[dict]:
    out = subprocess.run([PY, "-c", "from proxy.cli import gateway_main; import sys; "
                          "sys.exit(gateway_main())", "usage", "--db", db, "--json",
                          "--limit", "0"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def stop(p: subprocess.Popen) -> str:
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=60)[1]  # audited: start_daemon's AuditedPopen
    assert p.returncode == 0, err
    return err


def test_sigterm_right_after_the_last_response_loses_no_row(tmp_path):
    p, url = start_daemon(tmp_path)
    try:
        send_requests(url, 600)
        for _ in range(3):
            send_garbage(url)
    finally:
        err = stop(p)  # the last rows are still queued: close() must store them
    assert "603 rows written, 0 spilled" in err and "0 dropped" in err
    rows = ledger_rows(str(tmp_path / "t.db"))
    assert len(rows) == 603
    assert len({r["request_id"] for r in rows}) == 603
    assert sum(r["status"] == 200 and r["model"] == "loopback" for r in rows) == 600
    assert sum(r["status"] == 400 for r in rows) == 3


def test_sigterm_with_the_database_locked_journals_rows_for_the_next_start(tmp_path):
    db = str(tmp_path / "t.db")
    p, url = start_daemon(tmp_path)
    locker = apsw.Connection(db)
    # The daemon may be committing something of its own at this moment (a write of
    # its start): wait for it rather than fail to take the lock.
    locker.set_busy_timeout(10_000)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        send_requests(url, 200)
    finally:
        err = stop(p)
    assert "0 rows written, 200 spilled (200 waiting in the journal), 0 dropped" in err
    assert os.path.getsize(db + ".spill") > 0
    locker.execute("COMMIT")
    locker.close()

    p, url = start_daemon(tmp_path)  # replays the journal at start
    try:
        send_requests(url, 5)
    finally:
        err = stop(p)
    assert "205 rows written" in err
    rows = ledger_rows(db)
    assert len(rows) == len({r["request_id"] for r in rows}) == 205
    assert not os.path.exists(db + ".spill")
