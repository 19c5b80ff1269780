"""The benchmark's scenarios: every cell a run can measure, grouped as `--scenarios`
takes them, with their loads, models, durations and the tables they print in.

A scenario is plain data (`Scenario`): which client API, how many connections, stream or
not, which driver (wrk/loadgen, the SSE client, the fixed-rate loadgen, the soak), which
model (the fake upstream reads pacing knobs from it) and which targets run it.
`build_scenarios` turns the selected groups into the ordered list the runner walks.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from bench.targets import Target

CHUNKS = 20                 # content deltas per stream in the SSE scenarios
PACED_CHUNKS = 64           # the paced stream: 64 deltas ...
PACED_INTERVAL_MS = 20.0    # ... 20 ms apart (a fast model's token rate)
CONCURRENCY = (1, 16, 64, 256)   # non-stream chat
SSE_CONCURRENCY = (1, 16, 64)    # zero-interval streams
STREAM_CHECK_CONC = 16
PACED_CONC = 16
PACED_MANY_CONC = 512       # many concurrent paced streams: frames lost must stay 0
XLATE_CONC = 16             # translated paths
ROUTE_CONCS = (1, 16)       # failover and weighted routes
# Head-of-line: short paced streams (4 deltas, 5 ms apart) beside one connection that
# posts a ~400 KB (about 100k tokens) conversation back to back.
HOL_STREAM_CONC = 8
HOL_CHUNKS = 4
HOL_INTERVAL_MS = 5.0
HOL_BIG_BYTES = 400_000
AUTH_FLOOD_CONC = 64        # wrong-key requests ...
AUTH_VALID_CONC = 4         # ... beside valid ones
WORKERS_CONCS = (16, 64, 256)
RATES = (1000, 5000)        # fixed-rate (open-loop) group: requests per second (--rates)
LEDGER_CONC = 256           # ledger rows: saturating non-stream chat, then SIGTERM
WRONG_KEY = "sk-wrong-key-0000000000000000"
# HTTP/2 (h2c, prior knowledge): 16 streams on one connection against HTTP/1.1 keep-alive
# with 16 connections; 512 paced streams over 8 connections.
H2_STREAMS = 16
H2_MANY_STREAMS = 512
H2_MANY_CONNECTIONS = 8

DURATIONS = {
    # seconds: load = each wrk/loadgen cell, check = zero-interval SSE client cell,
    # paced = paced SSE cell (a 64 x 20 ms stream lasts ~1.3 s), warmup = discarded,
    # soak = the mixed-load soak (--soak-seconds), ledger = the saturating run whose
    # ledger rows are counted
    "full": {"load": 5.0, "check": 2.0, "paced": 6.0, "warmup": 1.0, "soak": 600.0,
             "ledger": 60.0},
    "quick": {"load": 2.0, "check": 1.0, "paced": 3.0, "warmup": 1.0, "soak": 60.0,
              "ledger": 10.0},
}

PACED_MODEL = f"gpt-bench-n{PACED_CHUNKS}-i{PACED_INTERVAL_MS:g}"
HOL_MODEL = f"gpt-bench-n{HOL_CHUNKS}-i{HOL_INTERVAL_MS:g}"
# Translated paths: client API -> (model, what tokenway does with it).
XLATE_PATHS = (
    ("chat", "gpt-bench", "chat->chat (passthrough)"),
    ("messages", "gpt-bench", "messages->chat"),
    ("responses", "claude-bench", "responses->messages"),
)
# The same clients on a provider of their own protocol (tokenway only: direct and nginx
# serve these APIs in the rows above): what pointing Claude Code at an OpenAI model, or
# Codex at Claude, costs against leaving them on their own vendor.
XLATE_SAME_CLIENT = (
    ("messages", "claude-bench", "messages->messages (passthrough)"),
    ("responses", "gpt-bench", "responses->responses (passthrough)"),
)
API_PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages",
             "responses": "/v1/responses"}

GROUPS = {
    "chat": "chat non-stream, POST /v1/chat/completions",
    "sse": f"chat stream ({CHUNKS} chunks, zero interval), POST /v1/chat/completions",
    "stream_check": f"stream integrity, SSE client, c={STREAM_CHECK_CONC} ({CHUNKS} chunks)",
    "paced": f"paced stream, SSE client, c={PACED_CONC} "
             f"({PACED_CHUNKS} deltas every {PACED_INTERVAL_MS:g} ms)",
    "paced_many": f"paced stream, SSE client, c={PACED_MANY_CONC} "
                  f"({PACED_CHUNKS} deltas every {PACED_INTERVAL_MS:g} ms)",
    "translated": "translated paths vs the passthrough path (Anthropic client -> OpenAI "
                  "upstream, Responses client -> Anthropic upstream)",
    "routing": "failover (dead first target) and a weighted five-route table vs direct",
    "hol": f"head-of-line: small paced streams with and without ~{HOL_BIG_BYTES // 1000} KB "
           "request bodies on another connection",
    "authflood": f"invalid-key flood (c={AUTH_FLOOD_CONC} wrong key) beside valid requests "
                 f"(c={AUTH_VALID_CONC})",
    "workers": "tokenway --workers 2 beside 1 worker, no CPU pinning",
    "soak": "memory soak: mixed load, RSS over time",
    "ledger": f"ledger rows: non-stream chat at c={LEDGER_CONC}, then SIGTERM; rows in the "
              "SQLite ledger vs requests sent",
    "messages": "Anthropic messages non-stream, POST /v1/messages",
    "rate": "chat non-stream at a fixed arrival rate (open loop, bench.loadgen --rate); "
            "latency from the scheduled send time",
    "messages_sse": f"Anthropic messages stream ({CHUNKS} deltas), POST /v1/messages",
    "h2": f"HTTP/2 (h2c): non-stream chat, {H2_STREAMS} streams on one connection (h2load) vs "
          f"HTTP/1.1 keep-alive (wrk, c={H2_STREAMS})",
}
DEFAULT_GROUPS = ("chat", "sse", "stream_check", "paced", "paced_many", "translated",
                  "routing", "hol", "authflood", "workers", "h2", "ledger", "soak")

# Report tables (one per kind of cell); a group may produce several.
TABLE_TITLES = {
    "xlate": f"translated paths, non-stream, wrk c={XLATE_CONC}",
    "xlate_sse": f"translated paths, stream ({CHUNKS} deltas, zero interval), wrk c={XLATE_CONC}",
    "xlate_ttfb": f"translated paths, stream, SSE client c={XLATE_CONC}: TTFB and integrity",
    "xlate_paced": f"translated paths, paced stream ({PACED_CHUNKS} deltas "
                   f"{PACED_INTERVAL_MS:g} ms apart), SSE client c={XLATE_CONC}",
    "workers_sse": "chat stream, tokenway --workers 2 beside 1 worker, no CPU pinning",
    "h2_paced": f"HTTP/2 (h2c): paced stream, {H2_MANY_STREAMS} streams over "
                f"{H2_MANY_CONNECTIONS} connections ({PACED_CHUNKS} deltas every "
                f"{PACED_INTERVAL_MS:g} ms)",
}


@dataclass(frozen=True)
class Scenario:
    id: str
    group: str
    api: str            # "chat" | "messages" | "responses": the client API
    conc: int
    stream: bool
    driver: str         # "load" (wrk or loadgen) | "rate" (loadgen --rate) | "sse" | "soak"
                        # | "h2load" (HTTP/2 load) | "h2sse" (the SSE client over HTTP/2)
    model: str
    chunks: int
    interval_ms: float
    duration_s: float
    table: str = ""     # report table (default: the group)
    targets: tuple[str, ...] | None = None  # only these targets (None: all that fit)
    key: str = "valid"  # "valid" | "wrong": the client key sent
    big_body: bool = False        # a ~400 KB conversation instead of "hi"
    placement: str = "pinned"     # "pinned" (--pin) | "free": no CPU pinning in this cell
    companion: Scenario | None = None  # a second driver run alongside, on the same target
    ref: str | None = None        # compare each target with its own cell of this scenario
    label: str = ""
    rate: int = 0       # driver "rate": requests per second, sent on schedule
    connections: int = 0  # drivers "h2load", "h2sse": HTTP/2 connections the conc spread over

    @property
    def path(self) -> str:
        return API_PATHS[self.api]

    def body(self) -> bytes:
        if self.api == "responses":
            req: dict = {"model": self.model, "input": "hi", "max_output_tokens": 16}
        else:
            req = {"model": self.model, "max_tokens": 16,
                   "messages": big_history() if self.big_body
                   else [{"role": "user", "content": "hi"}]}
        if self.stream:
            req["stream"] = True
        return orjson.dumps(req)

    @property
    def events_per_stream(self) -> int:
        """SSE events the fake sends per stream in the client's format: what "per chunk"
        divides by."""
        if not self.stream:
            return 1
        if self.api == "chat":
            return self.chunks + 2  # deltas, finish chunk, [DONE]
        if self.api == "responses":
            return self.chunks + 8  # created, in_progress, item/part added, deltas, 4 done
        return self.chunks + 6      # start, block start, ping, deltas, block stop, delta, stop


_BIG: list[dict] | None = None


def big_history(target_bytes: int = HOL_BIG_BYTES) -> list[dict]:
    """A deterministic agent-style conversation of about `target_bytes` of JSON (about
    100k tokens at ~4 bytes per token): alternating turns of prose with quotes, newlines
    and a little non-ASCII, as a long coding session's history looks on the wire."""
    global _BIG
    if _BIG is not None and target_bytes == HOL_BIG_BYTES:
        return _BIG
    import random

    rng = random.Random(20261126)
    words = ("the", "function", "returns", "a", "value", "when", "called", "with", "tokens",
             "stream", "gateway", "request", "config", "error", "handler", "\"quoted\"",
             "path/to/file.py", "line", "def", "class", "import", "await", "self", "None",
             "café", "→", "{", "}", "[", "]", "=", "==", "x", "i", "n", "0", "1", "42")
    msgs: list[dict] = []
    size = 0
    turn = 0
    while size < target_bytes:
        n = rng.randint(200, 600)
        text = " ".join(rng.choice(words) + ("\n" if rng.random() < 0.05 else "")
                        for _ in range(n))
        role = "user" if turn % 2 == 0 else "assistant"
        msgs.append({"role": role, "content": text})
        size += len(orjson.dumps(msgs[-1])) + 1
        turn += 1
    if msgs[-1]["role"] != "user":
        msgs.append({"role": "user", "content": "Please continue."})
    if target_bytes == HOL_BIG_BYTES:
        _BIG = msgs
    return msgs


def build_scenarios(groups: list[str], concs: list[int], dur: dict[str, float],
                    sse_concs: list[int] | None = None,
                    soak_targets: tuple[str, ...] = ("tokenway",),
                    rates: list[int] | None = None) -> list[Scenario]:
    sse_concs = sse_concs or list(SSE_CONCURRENCY)
    rates = rates or list(RATES)
    out: list[Scenario] = []
    for g in groups:
        if g == "chat":
            out += [Scenario(f"chat_c{c}", g, "chat", c, False, "load", "gpt-bench", 0, 0.0,
                             dur["load"]) for c in concs]
        elif g == "sse":
            out += [Scenario(f"sse_c{c}", g, "chat", c, True, "load", "gpt-bench", CHUNKS, 0.0,
                             dur["load"]) for c in sse_concs]
        elif g == "stream_check":
            out.append(Scenario(f"stream_check_c{STREAM_CHECK_CONC}", g, "chat",
                                STREAM_CHECK_CONC, True, "sse", "gpt-bench", CHUNKS, 0.0,
                                dur["check"]))
        elif g == "paced":
            out.append(Scenario(f"paced_c{PACED_CONC}", g, "chat", PACED_CONC, True, "sse",
                                PACED_MODEL, PACED_CHUNKS, PACED_INTERVAL_MS, dur["paced"]))
        elif g == "paced_many":
            out.append(Scenario(f"paced_c{PACED_MANY_CONC}", g, "chat", PACED_MANY_CONC, True,
                                "sse", PACED_MODEL, PACED_CHUNKS, PACED_INTERVAL_MS,
                                dur["paced"], table="paced"))
        elif g == "translated":
            for mode, stream, driver, d in (("", False, "load", dur["load"]),
                                            ("_sse", True, "load", dur["load"]),
                                            ("_ttfb", True, "sse", dur["check"] * 2)):
                for api, model, label in XLATE_PATHS:
                    ref = None if api == "chat" else f"xlate_chat{mode}_c{XLATE_CONC}"
                    out.append(Scenario(f"xlate_{api}{mode}_c{XLATE_CONC}", g, api, XLATE_CONC,
                                        stream, driver, model, CHUNKS if stream else 0, 0.0, d,
                                        table=f"xlate{mode}", ref=ref, label=label))
                for api, model, label in XLATE_SAME_CLIENT:
                    out.append(Scenario(f"xlate_{api}_pt{mode}_c{XLATE_CONC}", g, api,
                                        XLATE_CONC, stream, driver, model,
                                        CHUNKS if stream else 0, 0.0, d, table=f"xlate{mode}",
                                        targets=("tokenway",),
                                        ref=f"xlate_chat{mode}_c{XLATE_CONC}", label=label))
            # At a provider's pace (64 deltas 20 ms apart), the cost that matters is the
            # delay each frame picks up; each translated path against its client's own
            # passthrough.
            paced = f"-n{PACED_CHUNKS}-i{PACED_INTERVAL_MS:g}"
            for api, model, label in XLATE_PATHS + XLATE_SAME_CLIENT:
                pt = "passthrough" in label
                sid = f"xlate_{api}{'_pt' if pt and api != 'chat' else ''}_paced_c{XLATE_CONC}"
                ref = None if pt else f"xlate_{api}_pt_paced_c{XLATE_CONC}"
                out.append(Scenario(sid, g, api, XLATE_CONC, True, "sse", model + paced,
                                    PACED_CHUNKS, PACED_INTERVAL_MS, dur["paced"],
                                    table="xlate_paced", ref=ref, label=label,
                                    targets=("tokenway",) if pt and api != "chat" else None))
        elif g == "routing":
            for c in ROUTE_CONCS:
                plain = f"route_plain_c{c}"
                out.append(Scenario(plain, g, "chat", c, False, "load", "gpt-bench", 0, 0.0,
                                    dur["load"], targets=("direct", "nginx", "tokenway"),
                                    label="gpt-bench: first route, one target"))
                out.append(Scenario(f"route_weighted_c{c}", g, "chat", c, False, "load",
                                    "weighted-bench", 0, 0.0, dur["load"],
                                    targets=("direct", "nginx", "tokenway"), ref=plain,
                                    label="5 routes, match last, weights 3:1"))
                out.append(Scenario(f"route_failover_c{c}", g, "chat", c, False, "load",
                                    "failover-bench", 0, 0.0, dur["load"],
                                    targets=("direct", "nginx", "tokenway",
                                             "tokenway-nobreaker"), ref=plain,
                                    label="[dead port, fake]"))
        elif g == "hol":
            base = Scenario("hol_base", g, "chat", HOL_STREAM_CONC, True, "sse", HOL_MODEL,
                            HOL_CHUNKS, HOL_INTERVAL_MS, dur["paced"],
                            label="small streams alone")
            big = Scenario("hol_big_body", g, "chat", 1, False, "load", "gpt-bench", 0, 0.0,
                           dur["paced"], big_body=True)
            out.append(base)
            out.append(Scenario("hol_with_big", g, "chat", HOL_STREAM_CONC, True, "sse",
                                HOL_MODEL, HOL_CHUNKS, HOL_INTERVAL_MS, dur["paced"],
                                companion=big, ref="hol_base",
                                label="small streams + 400 KB bodies"))
        elif g == "authflood":
            valid = Scenario(f"auth_valid_c{AUTH_VALID_CONC}", g, "chat", AUTH_VALID_CONC,
                             False, "load", "gpt-bench", 0, 0.0, dur["load"],
                             label="valid key only")
            out.append(valid)
            out.append(Scenario(f"auth_flood_c{AUTH_FLOOD_CONC}", g, "chat", AUTH_FLOOD_CONC,
                                False, "load", "gpt-bench", 0, 0.0, dur["load"], key="wrong",
                                companion=valid, ref=valid.id,
                                label="wrong key + valid beside"))
        elif g == "workers":
            names = ("direct", "nginx", "tokenway", "tokenway-w2")
            out += [Scenario(f"workers_c{c}", g, "chat", c, False, "load", "gpt-bench", 0, 0.0,
                             dur["load"], targets=names, placement="free")
                    for c in WORKERS_CONCS]
            out.append(Scenario("workers_sse_c64", g, "chat", 64, True, "load", "gpt-bench",
                                CHUNKS, 0.0, dur["load"], targets=names, placement="free",
                                table="workers_sse"))
        elif g == "soak":
            out.append(Scenario("soak", g, "chat", 0, False, "soak", "gpt-bench", 0, 0.0,
                                dur["soak"], targets=tuple(soak_targets)))
        elif g == "ledger":
            out.append(Scenario(f"ledger_c{LEDGER_CONC}", g, "chat", LEDGER_CONC, False,
                                "load", "gpt-bench", 0, 0.0, dur["ledger"],
                                targets=("tokenway-ledger",),
                                label=f"{dur['ledger']:g} s at c={LEDGER_CONC}, then SIGTERM"))
        elif g == "rate":
            out += [Scenario(f"rate_r{r}", g, "chat", 0, False, "rate", "gpt-bench", 0, 0.0,
                             dur["load"], targets=("direct", "nginx", "tokenway"), rate=r,
                             label=f"{r}/s") for r in rates]
        elif g == "h2":
            h1 = Scenario(f"h2_h1_c{H2_STREAMS}", g, "chat", H2_STREAMS, False, "load",
                          "gpt-bench", 0, 0.0, dur["load"], targets=("tokenway",),
                          label=f"HTTP/1.1 keep-alive, {H2_STREAMS} connections")
            out.append(h1)
            out.append(Scenario(f"h2_m{H2_STREAMS}", g, "chat", H2_STREAMS, False, "h2load",
                                "gpt-bench", 0, 0.0, dur["load"], targets=("tokenway",),
                                connections=1, ref=h1.id,
                                label=f"h2c, {H2_STREAMS} streams on 1 connection"))
            out.append(Scenario(f"h2_paced_m{H2_MANY_STREAMS}", g, "chat", H2_MANY_STREAMS,
                                True, "h2sse", PACED_MODEL, PACED_CHUNKS, PACED_INTERVAL_MS,
                                dur["paced"], table="h2_paced", targets=("tokenway",),
                                connections=H2_MANY_CONNECTIONS,
                                label=f"h2c, {H2_MANY_STREAMS} streams over "
                                      f"{H2_MANY_CONNECTIONS} connections"))
        elif g == "messages":
            out.append(Scenario("messages_c16", g, "messages", 16, False, "load", "gpt-bench",
                                0, 0.0, dur["load"]))
        elif g == "messages_sse":
            out.append(Scenario("messages_sse_c16", g, "messages", 16, True, "load",
                                "gpt-bench", CHUNKS, 0.0, dur["load"]))
        else:
            raise ValueError(f"unknown scenario group {g!r}; known: {', '.join(GROUPS)}")
    return out


def soak_drivers(duration_s: float) -> list[Scenario]:
    """The soak's mixed load: these drivers run together for the whole soak."""
    d = duration_s
    return [
        Scenario("soak_chat", "soak", "chat", 16, False, "load", "gpt-bench", 0, 0.0, d),
        Scenario("soak_chat_sse", "soak", "chat", 4, True, "load", "gpt-bench", CHUNKS, 0.0, d),
        Scenario("soak_messages_sse", "soak", "messages", 4, True, "load", "gpt-bench", CHUNKS,
                 0.0, d),
        Scenario("soak_responses", "soak", "responses", 4, False, "load", "claude-bench", 0,
                 0.0, d),
        Scenario("soak_paced", "soak", "chat", 32, True, "sse", PACED_MODEL, PACED_CHUNKS,
                 PACED_INTERVAL_MS, d),
    ]


def runs_on(sc: Scenario, t: Target) -> bool:
    """Whether scenario `sc` runs on target `t`."""
    if sc.api not in t.apis:
        return False
    if t.groups is not None and sc.group not in t.groups:
        return False
    if sc.targets is not None and t.name not in sc.targets:
        return False
    if sc.group == "authflood" and not (t.checks_keys or t.kind in ("upstream", "proxy")):
        return False
    return True
