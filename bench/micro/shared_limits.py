"""Micro benchmark of shared limits: what a keyed request with rpm, tpm and a budget on
its key and its user costs the gateway's thread with its counters in Redis, against
the per-process meter, in the same run.

    python -m bench.micro.shared_limits [--redis redis://127.0.0.1:6379/0]
        [--requests 50000] [--concurrency 64] [--repeat 5] [--json OUT.json]

One process, the gateway's own code on uvloop, as ``bench.micro.accounts`` (same
key, user, limits too large to be reached, and prices), with ``--concurrency``
requests at a time as in a busy gateway: identify the key, ``check_access`` (with
Redis: the admission queued, and the rest of the request run by ``when_admitted``
once its reply came), then ``finish_record`` (the settlement). Every ``SPEND_EVERY``
requests the spend read-out the sync thread hands over (with Redis: the holds the
ledger now shows are released). The figure is the CPU time of this thread per request
(``time.thread_time``: the gateway's side of the sockets included, Redis's own CPU
not), the minimum of ``--repeat`` runs, each mode's runs interleaved. Redis keys go
under a prefix of the run's own, deleted at the end.
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

from bench.micro.accounts import BODY, CONFIG, FULL, SPEND_EVERY, _request  # noqa: E402
from proxy.accounts.store import AccountStore  # noqa: E402
from proxy.call import Call  # noqa: E402
from proxy.config import load_config  # noqa: E402
from proxy.dispatch import Dispatcher  # noqa: E402
from proxy.endpoints.access import check_access, when_admitted  # noqa: E402
from proxy.state import GatewayState  # noqa: E402


class _Conn:
    client_addr = "127.0.0.1"
    closed = False
    task: Any = None


async def _run(state: GatewayState, dispatcher: Dispatcher, secret: str, n: int,
               concurrency: int) -> float:
    """CPU seconds of ``n`` keyed requests' accounting, ``concurrency`` at a time."""
    body = json.loads(BODY)
    finish = state.finish_record
    spend = state.accounts.spend

    def proceed(call: Call) -> None:
        rec = call.rec
        rec.served_model = "gpt-bench-2025"
        rec.input_tokens, rec.output_tokens = 19, 10
        finish(rec)

    done = 0
    t0 = time.thread_time()
    while done < n:
        if done % SPEND_EVERY < concurrency:
            spend({}, state.recorded())
        tasks = []
        for _ in range(min(concurrency, n - done)):
            req = _request(secret)
            req.identity = dispatcher.identify(req)  # type: ignore[assignment]
            call = Call(req, _Conn(), "openai_chat", "openai_chat", finish)
            admission = check_access(state, call, "openai_chat", "gpt-bench", body)
            if admission is None:
                proceed(call)
            else:
                when_admitted(call, admission, lambda c=call: proceed(c))  # type: ignore[misc]
                tasks.append(admission.admission.reply)
        if tasks:
            await asyncio.gather(*tasks)
            await asyncio.sleep(0)  # the callbacks of the last replies
        done += concurrency
    # The settlements still queued go out before the clock stops.
    shared = state.accounts.shared
    while shared is not None and (shared._queue or shared._flusher is not None):
        await asyncio.sleep(0)
    return time.thread_time() - t0


def measure(redis_url: str, requests: int, concurrency: int, repeat: int) -> dict[str, Any]:
    import uvloop

    prefix = f"tokenway-bench-micro:{os.getpid()}:"
    out: dict[str, list[float]] = {"process": [], "redis": []}
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "ledger.db")
        with AccountStore(db) as store:
            store.add_user("bench", limits=FULL)
            _, secret = store.create_key(name="bench", user="bench", limits=FULL)
            snap = store.snapshot()
        texts = {"process": CONFIG,
                 # A timeout of 1 s rather than 100 ms: on a shared 2-core machine a
                 # round trip of 128 scripts can stall past 100 ms, and this measures
                 # what counting costs, not the outage policy.
                 "redis": CONFIG + f'\n[limits]\nredis_url = "{redis_url}"\n'
                                   f'key_prefix = "{prefix}"\ntimeout = "1s"\n'}
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        states = {}
        rows = [0]

        def record(rec: Any) -> None:
            rows[0] += 1

        try:
            for mode, text in texts.items():
                conf = os.path.join(tmp, f"{mode}.toml")
                Path(conf).write_text(text)
                state = GatewayState(load_config(conf), loop, record, lambda: rows[0])
                state.accounts.install(snap)
                states[mode] = (state, Dispatcher(state, lambda: {}))

            async def main() -> None:
                for state, disp in states.values():  # warm up
                    await _run(state, disp, secret, 2000, concurrency)
                for _ in range(repeat):
                    for mode, (state, disp) in states.items():
                        cpu = await _run(state, disp, secret, requests, concurrency)
                        out[mode].append(cpu / requests)
                shared = states["redis"][0].accounts.shared
                assert shared is not None and shared.state == "up", shared and shared.stats()
                assert shared.counts["admitted"] >= requests * repeat, shared.stats()
                stats.update(shared.stats())
                await states["redis"][0].accounts.close()

            stats: dict[str, Any] = {}
            loop.run_until_complete(main())
        finally:
            loop.close()
    import redis

    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(match=prefix + "*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()
    proc, red = min(out["process"]), min(out["redis"])
    return {"schema": "tokenway-bench-micro-shared-limits/1", "requests": requests,
            "concurrency": concurrency, "repeat": repeat,
            "process_us": round(proc * 1e6, 3), "redis_us": round(red * 1e6, 3),
            "redis_x": round(red / proc, 3),
            "process_runs_us": [round(x * 1e6, 3) for x in out["process"]],
            "redis_runs_us": [round(x * 1e6, 3) for x in out["redis"]],
            "round_trips": stats.get("round_trips"), "commands": stats.get("commands")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.micro.shared_limits")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    p.add_argument("--requests", type=int, default=50_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = p.parse_args(argv)
    res = measure(args.redis, args.requests, args.concurrency, args.repeat)
    print(f"accounts path of a key + user with rpm, tpm and budget, CPU per request of this "
          f"thread (min of {args.repeat} runs of {args.requests:,}, {args.concurrency} at a "
          "time):")
    print(f"  per-process meter  {res['process_us']:7.2f} us")
    print(f"  Redis              {res['redis_us']:7.2f} us  (x{res['redis_x']:.2f}; "
          f"{res['commands']:,} commands in {res['round_trips']:,} round trips)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
