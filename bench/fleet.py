"""Fleet bench: gateways on PostgreSQL beside one on SQLite, and two processes sharing
one PostgreSQL ledger under a sustained load with every row accounted for.

    python -m bench.fleet [--seconds 60] [--conc 64] [--json OUT.json]

In one run, on one machine (the fake provider, wrk and the database beside them):

1. ``sqlite``: one gateway, SQLite ledger, wrk -c CONC for SECONDS;
2. ``postgresql``: the same gateway on a new PostgreSQL database;
3. ``fleet``: two gateways on different ports sharing that database, each under its
   own wrk (-c CONC/2) at once, for SECONDS.

For each: requests per second, the gateways' CPU per request (their process trees'
CPU seconds over the requests wrk completed), and, after SIGTERM, the rows in the
database against the requests wrk completed plus those it saw fail (a request wrk
sent but never got an answer for is the only difference allowed, and is reported),
and the rows left in the spill journals (0 expected).  Redis, when
``--redis-url`` is given, is passed to the PostgreSQL gateways as ``TOKENWAY_REDIS_URL``.
With ``--keyed`` every request carries a stored API key whose user and key both have
requests per minute, tokens per minute and a monthly budget (too large to be reached)
and every model has a price: each phase pays the accounting, the PostgreSQL ones
through Redis when it is given, the SQLite one with the per-process meter.

Needs wrk and a PostgreSQL server that ``--admin-url`` may create databases on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procstat

REPO_ROOT = Path(__file__).resolve().parents[1]
POST_LUA = REPO_ROOT / "bench" / "post.lua"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout_s:g} s")


def start_gateway(tmp: Path, name: str, upstream_port: int, storage: list[str],
                  extra_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWAY_")}
    env.update({"TOKENWAY_OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
                "TOKENWAY_OPENAI_API_KEY": "sk-bench", "TOKENWAY_ROUTES": "*=>openai",
                "PYTHONPATH": str(REPO_ROOT)})
    env.update(extra_env)
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 (kept open for the process)
    proc = subprocess.Popen([sys.executable, "-m", "proxy", "--listen", f"127.0.0.1:{port}",
                             "--db", str(tmp / f"{name}.db"), *storage],
                            stdout=log, stderr=log, env=env, cwd=tmp)
    wait_listening(port)
    return proc, port


def run_wrk(ports: list[int], conc: int, seconds: int,
            key: str | None = None) -> list[dict[str, Any]]:
    """One wrk per port, all at once; each one's BENCH_RESULT."""
    env = dict(os.environ, WRK_COUNT_SENT="1")
    if key:
        env["WRK_KEY"] = key
    procs = [subprocess.Popen(["wrk", "-t1", f"-c{conc}", f"-d{seconds}s", "--timeout", "10s",
                               "-s", str(POST_LUA), f"http://127.0.0.1:{p}/v1/chat/completions"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
             for p in ports]
    out = []
    for p in procs:
        text = p.communicate(timeout=seconds + 60)[0].decode()
        m = re.search(r"BENCH_RESULT (\{.*\})", text)
        if not m:
            raise RuntimeError(f"wrk gave no result: {text[-500:]}")
        out.append(json.loads(m.group(1)))
    return out


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120)


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def pg_count(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])  # type: ignore[index]


def sqlite_count(path: Path) -> int:
    import apsw

    db = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return int(db.execute("SELECT count(*) FROM requests").fetchall()[0][0])
    finally:
        db.close()


def journal_bytes(tmp: Path) -> int:
    return sum(p.stat().st_size for p in tmp.glob("*.spill*") if p.is_file())


def make_key(where: str) -> str:
    """A user and a key, both with rpm, tpm and a monthly budget no run reaches."""
    from proxy.accounts.model import MAX_BUDGET_USD, MAX_RATE, MAX_TPM, Limits
    from proxy.accounts.store import AccountStore
    from proxy.ledger import parse_storage_url

    big = Limits(rpm=MAX_RATE, tpm=MAX_TPM, budget_usd=MAX_BUDGET_USD, budget_period="month")
    target = parse_storage_url(where) if "://" in where else where
    with AccountStore(target) as store:
        store.add_user("bench", limits=big)
        _, secret = store.create_key(name="bench", user="bench", limits=big)
        store.set_price("*", input=1.0, output=2.0)
    return secret


def phase(tmp: Path, name: str, upstream_port: int, storage: list[str], env: dict[str, str],
          procs_n: int, conc: int, seconds: int, key: str | None = None) -> dict[str, Any]:
    gateways = [start_gateway(tmp, f"{name}{i}", upstream_port, storage, env)
                for i in range(procs_n)]
    cpu0 = sum(procstat.cpu_seconds_tree(p.pid) for p, _ in gateways)
    t0 = time.monotonic()
    results = run_wrk([port for _, port in gateways], max(1, conc // procs_n), seconds, key)
    wall = time.monotonic() - t0
    cpu = sum(procstat.cpu_seconds_tree(p.pid) for p, _ in gateways) - cpu0
    codes = [stop(p) for p, _ in gateways]
    done = sum(int(r.get("reqs", 0)) for r in results)
    sent = sum(int(r.get("sent", 0)) for r in results)
    errors = sum(int(r.get("non2xx", 0)) for r in results)
    return {"phase": name, "processes": procs_n, "conc": conc, "seconds": round(wall, 1),
            "requests": done, "sent": sent, "non2xx": errors, "rps": round(done / wall, 1),
            "cpu_us_per_req": round(cpu * 1e6 / done, 1) if done else None,
            "exit_codes": codes, "journal_bytes": journal_bytes(tmp)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--conc", type=int, default=64)
    ap.add_argument("--redis-url", default=None)
    ap.add_argument("--keyed", action="store_true",
                    help="a key with rpm, tpm and a budget on every request")
    ap.add_argument("--json", default=None, metavar="OUT")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tw-fleet-"))
    upstream_port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "bench.fake_upstream", "--port",
                           str(upstream_port)], cwd=REPO_ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(upstream_port)
    dbname = "tw_fleet_" + secrets.token_hex(4)
    pg_admin(f'CREATE DATABASE "{dbname}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname
    pg_env = {"TOKENWAY_REDIS_URL": args.redis_url} if args.redis_url else {}
    out: list[dict[str, Any]] = []
    sqlite_key = pg_key = None
    if args.keyed:
        sqlite_key = make_key(str(tmp / "sqlite0.db"))
        pg_key = make_key(url)
    try:
        sq = phase(tmp, "sqlite", upstream_port, [], {}, 1, args.conc, args.seconds, sqlite_key)
        sq["rows"] = sqlite_count(tmp / "sqlite0.db")
        out.append(sq)
        before = 0
        for name, n in (("postgresql", 1), ("fleet", 2)):
            res = phase(tmp, name, upstream_port, ["--database-url", url], pg_env, n,
                        args.conc, args.seconds, pg_key)
            total = pg_count(url)
            res["rows"] = total - before
            before = total
            out.append(res)
    finally:
        up.terminate()
        up.wait(timeout=30)
        pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    base = out[0]["cpu_us_per_req"] or 0.0
    print(f"{'phase':<11} {'procs':>5} {'req/s':>9} {'CPU us/req':>11} {'x sqlite':>9} "
          f"{'requests':>9} {'sent':>9} {'rows':>9} {'journal B':>9}")
    for r in out:
        ratio = (r["cpu_us_per_req"] or 0.0) / base if base else 0.0
        print(f"{r['phase']:<11} {r['processes']:>5} {r['rps']:>9,.0f} "
              f"{r['cpu_us_per_req'] or 0:>11.1f} {ratio:>9.2f} {r['requests']:>9,} "
              f"{r['sent']:>9,} {r['rows']:>9,} {r['journal_bytes']:>9,}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    lost = [r for r in out if r["rows"] < r["requests"] or r["rows"] > r["sent"]]
    return 1 if lost or any(r["journal_bytes"] for r in out) else 0


if __name__ == "__main__":
    raise SystemExit(main())
