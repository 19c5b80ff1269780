"""Idle RSS and start time of ``gatewayd`` on its embedded defaults.

    python -m bench.idle [--repeat 5] [--tree DIR | --gatewayd PATH] [--json OUT.json]

Each repeat starts ``python -m proxy --listen 127.0.0.1:PORT`` with no configuration and
no ``TOKENWAY_*`` variable, in a new temporary directory (so: the SQLite ledger
``./tokenway.db``, the built-in ``loopback`` model), and measures as bench/runner.py does
for its targets: **start**, from the process start to the first 200 of a loopback Chat
request (polled every 20 ms), and **RSS**, VmRSS of the process tree 0.2 s after that
answer (bench/procstat.py). It also reads the process's RssAnon, RssFile and threads.
Medians are printed. The bench's own figures come from its generated configuration
(providers on the fake upstream) and a passthrough request; this one is what a user who
typed ``gatewayd`` has.

``--tree DIR`` starts the gateway of another checkout (e.g. the code before a change:
``git worktree add --detach DIR REV``). The environment is kept, so
``PYTHONDONTWRITEBYTECODE`` says whether the modules come from .pyc files (an installed
gatewayd) or are compiled at start (this repository's checks run with it set).

``--gatewayd PATH`` starts that console script instead: the gateway as README's
``pip install .`` leaves it (modules compiled to .pyc at install time, no editable-install
finder, which imports pathlib, urllib.parse and ipaddress into every process of a
development venv). That is the figure a user sees.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procstat
from bench.runner import READY_POLL_S, http_post

REPO = Path(__file__).resolve().parents[1]
# As bench/runner.py: the RSS is read this long after the first 200.
SETTLE_S = 0.2
START_TIMEOUT_S = 30.0
BODY = json.dumps({"model": "loopback",
                   "messages": [{"role": "user", "content": "hello"}]}).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "Threads"):
            out[key] = int(value.split()[0])
    return out


def one(tree: Path, gatewayd: Path | None = None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWAY_")}
    port = _free_port()
    if gatewayd is None:
        env["PYTHONPATH"] = str(tree)
        cmd = [sys.executable, "-m", "proxy"]
    else:
        cmd = [str(gatewayd)]
    with tempfile.TemporaryDirectory(prefix="tokenway-idle-") as tmp:
        t0 = time.monotonic()
        p = subprocess.Popen([*cmd, "--listen", f"127.0.0.1:{port}"],
                             cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            while True:
                if p.poll() is not None:
                    raise RuntimeError(f"gatewayd exited with {p.returncode}")
                try:
                    status, _ = http_post(f"http://127.0.0.1:{port}", "/v1/chat/completions",
                                          BODY, {})
                    if status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() - t0 > START_TIMEOUT_S:
                    raise RuntimeError(f"no 200 within {START_TIMEOUT_S:.0f} s")
                time.sleep(READY_POLL_S)
            start_s = time.monotonic() - t0
            time.sleep(SETTLE_S)
            return {"start_s": start_s, "rss_kib": procstat.rss_kib_tree(p.pid),
                    **_status(p.pid)}
        finally:
            p.terminate()
            p.wait(20)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tree", type=Path, default=REPO, help="checkout to start (default: this one)")
    ap.add_argument("--gatewayd", type=Path,
                    help="an installed gatewayd to start instead of a checkout's proxy/")
    ap.add_argument("--json", type=Path, help="write the runs and medians here")
    args = ap.parse_args(argv)
    runs = []
    for i in range(args.repeat):
        r = one(args.tree.resolve(), args.gatewayd)
        runs.append(r)
        print(f"run {i + 1}: first 200 after {r['start_s']:.3f} s, RSS {r['rss_kib'] / 1024:.1f} "
              f"MiB (anon {r['RssAnon'] / 1024:.1f}, file {r['RssFile'] / 1024:.1f}), "
              f"{r['Threads']} threads", flush=True)
    med = {k: statistics.median(r[k] for r in runs)
           for k in ("start_s", "rss_kib", "RssAnon", "RssFile", "Threads")}
    print(f"median of {len(runs)}: first 200 after {med['start_s']:.3f} s, RSS "
          f"{med['rss_kib'] / 1024:.1f} MiB (anon {med['RssAnon'] / 1024:.1f}, file "
          f"{med['RssFile'] / 1024:.1f}), {med['Threads']:g} threads; bytecode cache "
          f"{'not written' if sys.dont_write_bytecode else 'written'}")
    if args.json:
        args.json.write_text(json.dumps({"tree": str(args.gatewayd or args.tree), "runs": runs,
                                         "median": med}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
