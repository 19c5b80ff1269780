"""The gateway's ledger under load: rows lost, and what its writer thread costs.

**Rows lost (`ledger` group).** A cell drives non-stream Chat at c=256 through
`tokenway-ledger` (the gateway with a SQLite file of its own) for the `ledger` duration
(60 s, 10 s with `--quick`, `--ledger-seconds`), with wrk counting the requests it wrote
(post.lua, WRK_COUNT_SENT). Then the gateway gets SIGTERM, as a service manager would
stop it: it drains, flushes its ledger and exits. The rows the cell added to its
`requests` table (proxy/ledger/schema.py) must equal the requests wrk sent: the ones it
saw completed, the ones that ended in a socket error, and the ones still in flight when
wrk's clock ran out (wrk stops with requests outstanding; each of them reached the
gateway, which owes it a row). The gateway is then started again, for the next repeat.

**Writer CPU (every gateway cell).** The ledger's writer thread is named
`tokenway-ledger` (proxy/ledger/writer.py); its CPU time is read from
/proc/PID/task/TID/schedstat (ns) before and after each cell. CPython 3.11 does not pass
thread names to the OS, so the thread is found by elimination (procstat.find_thread);
when that is ambiguous the figure is left out and the target's info says why. It counts
the writer thread only: `record()` on the event loop (~0.1 us) and building the row are
in the main thread's share of the CPU per request.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import procstat
from bench.scenarios import Scenario

if TYPE_CHECKING:
    from bench.runner import Runner, TargetRun

LEDGER_THREAD = "tokenway-ledger"   # threading name of the writer (proxy/ledger/writer.py)
LEDGER_TABLE = "requests"           # proxy/ledger/schema.py TABLE
SETTLE_TIMEOUT_S = 15.0             # wait for the queue to drain before counting rows
SETTLE_POLL_S = 0.05
SQLITE_BUSY_TIMEOUT_S = 10.0
# The gateway's exit line (proxy/cli.py): "ledger closed: N rows written, S spilled
# (J waiting in the journal), M dropped" and, if the writer stalled, why.
CLOSED_RE = re.compile(r"ledger closed: (\d+) rows written, \d+ spilled "
                       r"\(\d+ waiting in the journal\), (\d+) dropped(.*)$")


# ---------------------------------------------------------------- writer thread CPU

def locate_writer(tr: TargetRun) -> None:
    """Find the writer thread of a freshly started gateway (tr.ledger_tid)."""
    assert tr.started is not None
    tid, how = procstat.find_thread(tr.started.pid, LEDGER_THREAD)
    tr.ledger_tid = tid
    tr.ledger_thread = how


def writer_cpu_ns(tr: TargetRun) -> int | None:
    if tr.ledger_tid is None or tr.started is None:
        return None
    return procstat.thread_cpu_ns(tr.started.pid, tr.ledger_tid)


def writer_figures(before_ns: int | None, after_ns: int | None,
                   served: int) -> dict[str, float]:
    """The writer thread's CPU during a cell, in total and per request."""
    if before_ns is None or after_ns is None or not served:
        return {}
    ns = after_ns - before_ns
    return {"ledger_thread_cpu_s": round(ns / 1e9, 4),
            "ledger_thread_cpu_us_per_req": round(ns / 1e3 / served, 3)}


# ---------------------------------------------------------------- rows lost

def count_rows(db: Path) -> int:
    """Rows in the ledger's table (0 before the gateway created it)."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {LEDGER_TABLE}").fetchone()[0])
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    finally:
        conn.close()


def settle(runner: Runner, tr: TargetRun) -> bool:
    """Wait until the gateway's ledger has written every row it was given (/health
    ledger.queued == 0), so that the rows counted before a cell are all on disk."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        health = runner.health_of(tr)
        queued = ((health or {}).get("ledger") or {}).get("queued")
        if queued == 0:
            return True
        time.sleep(SETTLE_POLL_S)
    return False


def closed_line(log_path: Path | None) -> tuple[int, int, str] | None:
    """(written, dropped, rest) from the last "ledger closed" line of the gateway's log."""
    if log_path is None:
        return None
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return None
    found = None
    for line in text.splitlines():
        m = CLOSED_RE.search(line)
        if m:
            found = (int(m.group(1)), int(m.group(2)), m.group(3).strip())
    return found


def sent_by_driver(cell: dict[str, Any]) -> tuple[int, str]:
    """Requests that reached the target, from the load driver's own counts."""
    if cell.get("sent") is not None:  # wrk with post.lua's request counter
        return int(cell["sent"]), "wrk sent"
    # bench.loadgen lets in-flight requests finish at the deadline: each one either
    # completed or failed.
    return int(cell.get("reqs") or 0) + int(cell.get("sockerr") or 0), "loadgen completed+errors"


def measure(runner: Runner, sc: Scenario, tr: TargetRun) -> dict[str, Any]:
    """One `ledger` cell: count, load, SIGTERM, count again, start the gateway again."""
    target = tr.target
    db = target.db_path(runner.context)  # type: ignore[attr-defined]
    problems = []
    if not settle(runner, tr):
        problems.append(f"ledger still had queued rows {SETTLE_TIMEOUT_S:g} s before the cell")
    before = count_rows(db)
    cell = runner.measure(sc, tr)
    sent, source = sent_by_driver(cell)
    t0 = time.monotonic()
    target.stop()  # SIGTERM, 10 s grace, then SIGKILL
    stop_s = time.monotonic() - t0
    code = target.proc.returncode if target.proc is not None else None
    after = count_rows(db)
    rows = after - before
    closed = closed_line(target.log_path)
    socket_errors = int(cell.get("read_err") or 0) + int(cell.get("write_err") or 0)
    cell.update({
        "sent": sent, "sent_source": source,
        "in_flight_at_stop": sent - int(cell.get("reqs") or 0) - socket_errors,
        "ledger_rows": rows, "rows_lost": sent - rows,
        "stop_s": round(stop_s, 3), "exit_code": code,
    })
    if closed is not None:
        cell["ledger_written_at_exit"], cell["ledger_dropped"] = closed[0], closed[1]
        if closed[2]:
            problems.append(f"ledger: {closed[2]}")
    else:
        problems.append("no 'ledger closed' line in the gateway's log")
    if code != 0:
        problems.append(f"exit code {code} after SIGTERM")
    if problems:
        cell["errors"] = ", ".join(filter(None, [cell.get("errors"), *problems]))
    restart(runner, tr)
    return cell


def restart(runner: Runner, tr: TargetRun) -> None:
    """Start the stopped gateway again on the same ledger file, keeping the figures
    of its first start (start->200, idle RSS) for the targets table."""
    first = (tr.startup_s, tr.listen_s, tr.rss_idle_kib)
    tr.listen_s = None
    probe = Scenario("probe", "chat", "chat", 1, False, "load", "gpt-bench", 0, 0, 0)
    assert runner.context is not None
    runner.start_target(tr, runner.context, probe)
    tr.restarts += 1
    tr.startup_s, tr.listen_s, tr.rss_idle_kib = first
