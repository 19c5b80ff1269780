"""Micro benchmark of the access log: what one line costs, on the event loop and
in all.

    python -m bench.micro.access_log [--requests 200000] [--repeat 5] [--json OUT.json]

One process, the gateway's own code: a ``GatewayState`` whose ledger is a list
(``record`` appends) calls ``finish_record`` for ``--requests`` finished request
records (a translated chat request with usage, as a busy gateway finishes them),
once with the access log off and once on, writing to a file in a temporary
directory (rotation off; a queue as long as the run, so that no line is
dropped). Figures, each the minimum of ``--repeat`` runs (time
stolen by a noisy host only ever adds):

- **loop CPU per request**: this thread's CPU time (``time.thread_time``) in
  ``finish_record``, on minus off: what the event loop pays (the hand-off to the
  writer, and what the writer thread costs it through the GIL meanwhile);
- **process CPU per request**: the whole process's CPU time (``time.process_time``)
  until every line is on disk (``flush``), on minus off: formatting and
  writing included, on whichever core;
- **format + write per line**, JSON and logfmt: the writer's own work measured
  in one thread (format the records, write them in batches of 256 lines).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from proxy.access_log import AccessLog, formatter  # noqa: E402
from proxy.config import load_config  # noqa: E402
from proxy.log_files import LogFile  # noqa: E402
from proxy.request import RequestRecord  # noqa: E402
from proxy.state import GatewayState  # noqa: E402

BATCH = 256


def _records(n: int) -> list[RequestRecord]:
    out = []
    for i in range(n):
        rec = RequestRecord("/v1/messages", "anthropic_messages", "10.1.2.3:51234", 812)
        rec.model = "claude-sonnet-4-5"
        rec.served_model = "gpt-4.1-2025-04-14"
        rec.provider = "openai"
        rec.status = 200
        rec.stream = bool(i & 1)
        rec.input_tokens, rec.output_tokens = 1234, 256
        rec.cached_tokens, rec.reasoning_tokens = 1024, 0
        rec.ttfb_ms, rec.latency_ms = 182.4, 1893.2
        rec.bytes_out = 2048
        rec.attempts = 1
        rec.api_key_id = "key_3f2a9c0d81be"
        out.append(rec)
    return out


def _run_state(recs: list[RequestRecord], access: AccessLog | None) -> tuple[float, float]:
    """(loop thread CPU s, process CPU s) to finish every record and, with an
    access log, to get every line written."""
    loop = asyncio.new_event_loop()
    try:
        rows: list[Any] = []
        state = GatewayState(load_config(env={}), loop, rows.append)
        if access is not None:
            state.access_log = access.record
        finish = state.finish_record
        p0, t0 = time.process_time(), time.thread_time()
        for rec in recs:
            finish(rec)
        t1 = time.thread_time()
        if access is not None:
            assert access.flush(60.0)
        p1 = time.process_time()
        return t1 - t0, p1 - p0
    finally:
        loop.close()


def _format_and_write(recs: list[RequestRecord], fmt: str, path: str) -> float:
    """This thread's CPU s to format ``recs`` as ``fmt`` and write them in batches."""
    line = formatter(fmt)
    f = LogFile(path)
    try:
        t0 = time.thread_time()
        for i in range(0, len(recs), BATCH):
            f.write_lines([line(r) for r in recs[i:i + BATCH]])
        return time.thread_time() - t0
    finally:
        f.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.micro.access_log")
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", metavar="OUT.json")
    args = p.parse_args(argv)
    n = args.requests
    recs = _records(n)
    off_loop, off_proc = [], []
    on_loop: dict[str, list[float]] = {"json": [], "logfmt": []}
    on_proc: dict[str, list[float]] = {"json": [], "logfmt": []}
    direct: dict[str, list[float]] = {"json": [], "logfmt": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            lo, po = _run_state(recs, None)
            off_loop.append(lo)
            off_proc.append(po)
            for fmt in ("json", "logfmt"):
                path = os.path.join(tmp, f"access-{fmt}.log")
                # A queue for every record: a loop doing nothing else outruns the
                # writer, and a dropped line costs nothing to measure.
                access = AccessLog(path, fmt, rotate_bytes=0, max_queue=n + 1)
                try:
                    lo, po = _run_state(recs, access)
                finally:
                    access.close()
                assert access.stats()["dropped"] == 0, access.stats()
                on_loop[fmt].append(lo)
                on_proc[fmt].append(po)
                os.unlink(path)
                direct[fmt].append(_format_and_write(recs, fmt, path))
                os.unlink(path)
    us = 1e6 / n
    result: dict[str, Any] = {
        "schema": "tokenway-bench-micro-access-log/1",
        "requests": n, "repeat": args.repeat,
        "finish_record_off_us": min(off_loop) * us,
    }
    print(f"access log, {n:,} requests, min of {args.repeat} runs (us per request):")
    print(f"  finish_record with the access log off (ledger append, pricing): "
          f"{min(off_loop) * us:.3f}")
    for fmt in ("json", "logfmt"):
        loop_cost = (min(on_loop[fmt]) - min(off_loop)) * us
        proc_cost = (min(on_proc[fmt]) - min(off_proc)) * us
        line_cost = min(direct[fmt]) * us
        print(f"  {fmt:<7} loop CPU {loop_cost:6.3f}   process CPU {proc_cost:6.3f}   "
              f"format + write per line {line_cost:6.3f}")
        result[fmt] = {"loop_cpu_us": loop_cost, "process_cpu_us": proc_cost,
                       "format_write_us": line_cost}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
