"""Micro benchmark of the accounts path: what a key, its limits and its budget cost a
request, in CPU, with no sockets.

    python -m bench.micro.accounts [--requests 200000] [--repeat 5] [--cold] [--json OUT.json]

One process, the gateway's own code: a ``GatewayState`` with a price for every model
and a ledger file holding the key of each case (``CASES``): a key with no limits, a
key with requests per minute, and a key and its user that both have a model
allow-list, requests and tokens per minute and a monthly budget, all too large to be
reached. Each simulated request runs what the gateway runs for accounting, in order (and every
``SPEND_EVERY`` requests the spend read-out the sync thread hands over each second):

- ``Dispatcher.identify``: the credential headers read and hashed, the key looked up;
- ``check_access``: end user, allow-list, the estimate priced, admission charged on
  the key's and the user's quotas, the remaining-quota headers built;
- ``GatewayState.finish_record``'s part before the ledger: the row priced from the
  served model and the charge settled with the reported usage.

The same loop with no key (authentication off: no identity, so ``check_access``
returns after the end user) is the baseline; the figure is the difference per
request, CPU time of this thread (``time.thread_time``), the minimum of
``--repeat`` runs (time stolen by a noisy host only ever adds).

``--cold`` runs each simulated request after touching ``EVICT_BYTES`` of memory, as
the rest of a gateway request does between two runs of the accounting path, and
times each request alone (the eviction is not counted). A loop that repeats the
path keeps its code and objects in the CPU caches; the running gateway does not,
and there the same path costs four to five times more (bench/RESULTS.md,
2026-12-07): ``--cold`` comes close to the gateway's figure in one process.
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

from proxy.accounts.model import MAX_BUDGET_USD, MAX_RATE, MAX_TPM, Limits  # noqa: E402
from proxy.accounts.store import AccountStore  # noqa: E402
from proxy.call import Call  # noqa: E402
from proxy.config import load_config  # noqa: E402
from proxy.dispatch import Dispatcher  # noqa: E402
from proxy.endpoints.access import check_access  # noqa: E402
from proxy.state import GatewayState  # noqa: E402
from proxy.wire import Request  # noqa: E402

CONFIG = """
[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "sk-provider"

[[routes]]
match = "gpt-*"
to = ["openai"]

[prices."*"]
input = 1.0
output = 2.0
"""

BODY = (b'{"model":"gpt-bench","messages":[{"role":"user","content":"Say hello in one word."}],'
        b'"max_tokens":64,"user":"end-user-1"}')


# Requests between two spend read-outs: one second of a busy gateway.
SPEND_EVERY = 10_000
# --cold: memory touched between two requests, one byte per KiB (a gateway request
# runs about 100 us of other code; 8 MiB is well past this machine's L2 and most
# of its L3), and how many requests a cold run times.
EVICT_BYTES = 8 << 20
COLD_REQUESTS = 4_000
_junk = bytearray(EVICT_BYTES)


def _evict() -> None:
    junk = _junk
    for i in range(0, EVICT_BYTES, 1024):
        junk[i] = 1


class _Conn:
    client_addr = "127.0.0.1"


def _request(secret: str | None) -> Request:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    if secret is not None:
        headers.append((b"authorization", b"Bearer " + secret.encode()))
    req = Request("POST", b"/v1/chat/completions", headers, "1.1", True, 0.0)
    req.body = BODY
    return req


def _run(state: GatewayState, dispatcher: Dispatcher, secret: str | None, n: int,
         cold: bool = False) -> float:
    """CPU seconds of ``n`` requests' accounting (with ``secret``) or of its
    baseline (None); with ``cold``, caches evicted before each request and only
    the requests timed."""
    conn: Any = _Conn()
    body = json.loads(BODY)
    finish = state.finish_record
    spend = state.accounts.spend
    clock = time.thread_time_ns
    cold_ns = 0
    t0 = time.thread_time()
    for i in range(n):
        if i % SPEND_EVERY == 0:
            # The sync thread hands over the ledger's spend once a second, which
            # retires the settled charges the ledger has stored.
            spend({}, state.recorded())
        if cold:
            _evict()
            c0 = clock()
        req = _request(secret)
        if secret is not None:
            found = dispatcher.identify(req)
            req.identity = found  # type: ignore[assignment]
        call = Call(req, conn, "openai_chat", "openai_chat", finish)
        check_access(state, call, "openai_chat", "gpt-bench", body)
        rec = call.rec
        rec.served_model = "gpt-bench-2025"
        rec.input_tokens, rec.output_tokens = 19, 10
        finish(rec)
        if cold:
            cold_ns += clock() - c0
    if cold:
        return cold_ns / 1e9
    return time.thread_time() - t0


# The cases, each a key in its own ledger file: (name, key limits, user limits).
FULL = Limits(models=("gpt-*", "claude-*"), rpm=MAX_RATE, tpm=MAX_TPM,
              budget_usd=MAX_BUDGET_USD, budget_period="month")
CASES = (
    ("key, no limits", Limits(), None),
    ("key: requests per minute", Limits(rpm=MAX_RATE), None),
    ("key + user: allow-list, rpm, tpm, budget", FULL, FULL),
)


class SimulatedClock:
    """The meter's clock: 0.1 ms per reading (two readings a request), so the
    windows move a second every 5,000 requests, as at 5,000 requests a second,
    and a long run never fills the limits."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        self.t += 1e-4
        return self.t


def measure_case(key_limits: Limits, user_limits: Limits | None, requests: int,
                 repeat: int, cold: bool = False) -> tuple[list[float], list[float]]:
    """CPU seconds per request with the key and with no key, one figure per run."""
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "ledger.db")
        with AccountStore(db) as store:
            user = None
            if user_limits is not None:
                user = store.add_user("bench", limits=user_limits).name
            _, secret = store.create_key(name="bench", user=user, limits=key_limits)
            snap = store.snapshot()
        conf = os.path.join(tmp, "tokenway.toml")
        Path(conf).write_text(CONFIG)
        loop = asyncio.new_event_loop()
        # The ledger's part: count the rows and keep the last (the real ledger
        # hands them to its writer thread, which lets them go once written).
        rows: list[Any] = [0, None]

        def record(rec: Any) -> None:
            rows[0] += 1
            rows[1] = rec

        try:
            state = GatewayState(load_config(conf), loop, record, lambda: rows[0])
            state.accounts.meter.clock = SimulatedClock()
            state.accounts.install(snap)
            dispatcher = Dispatcher(state, lambda: {})
            assert getattr(dispatcher.identify(_request(secret)), "key", None) is not None
            _run(state, dispatcher, secret, 1000)  # warm the memos
            _run(state, dispatcher, None, 1000)
            keyed, bare = [], []
            for _ in range(repeat):
                bare.append(_run(state, dispatcher, None, requests, cold) / requests)
                keyed.append(_run(state, dispatcher, secret, requests, cold) / requests)
            last = rows[1]
            assert last is not None and last.api_key_id is not None and last.cost_usd
        finally:
            loop.close()
    return keyed, bare


def measure(requests: int, repeat: int, cold: bool = False) -> dict[str, Any]:
    cases = []
    for name, key_limits, user_limits in CASES:
        keyed, bare = measure_case(key_limits, user_limits, requests, repeat, cold)
        cases.append({
            "case": name,
            "keyed_us": round(min(keyed) * 1e6, 3), "no_key_us": round(min(bare) * 1e6, 3),
            "accounts_us_per_request": round((min(keyed) - min(bare)) * 1e6, 3),
            "keyed_runs_us": [round(x * 1e6, 3) for x in keyed],
            "no_key_runs_us": [round(x * 1e6, 3) for x in bare],
        })
    return {"schema": "tokenway-bench-micro-accounts/2", "requests": requests,
            "repeat": repeat, "cold": cold, "cases": cases}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.micro.accounts")
    p.add_argument("--requests", type=int)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--cold", action="store_true",
                   help=f"evict the CPU caches before each request (default --requests "
                        f"{COLD_REQUESTS:,})")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = p.parse_args(argv)
    requests = args.requests or (COLD_REQUESTS if args.cold else 200_000)
    res = measure(requests, args.repeat, args.cold)
    print(f"accounts path, CPU per request (min of {args.repeat} runs of {requests:,}"
          f"{', caches evicted before each' if args.cold else ''}), "
          "with the key / with no key (authentication off) / difference:")
    for c in res["cases"]:
        print(f"  {c['case']:<42} {c['keyed_us']:6.2f} us {c['no_key_us']:6.2f} us "
              f"{c['accounts_us_per_request']:6.2f} us")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
