"""Micro benchmark of the stream paths in protocols/: events per second per core.

    python -m bench micro [--seconds 1.0] [--json OUT.json]
    python -m bench.micro.translate [--seconds 1.0] [--json OUT.json]

Everything runs in this one process, single-threaded, with no sockets, and is timed with
`time.process_time()` (CPU time of this process), so a figure is "per core": on a busy
machine it moves far less than wall-clock throughput does.

What is measured, over the provider transcripts in shared/conformance/transcripts
(`$TOKENWAY_SHARED/conformance/transcripts`, else `../shared` next to the repository):

- **observe**: `protocols.translate.Translation` with the same format on both sides
  (the gateway's passthrough for Anthropic and Responses clients): bytes go through
  unchanged while the format's decoder reads usage, stop reason and errors off them;
- **re-encode**: the same format decoded to the IR and encoded again (a Translation
  whose observe mode is switched off): the cost of a full translation without a change
  of format;
- **chat->anthropic**, **anthropic->chat**, **anthropic->responses**: real translations,
  named upstream->client (an OpenAI Chat provider streamed to an Anthropic client, ...).

Each is run two ways:

- `transcripts`: every transcript of the upstream format in turn, start to end, with a
  new Translation per stream (the per-stream setup is included);
- `text deltas`: one long stream, the transcript's head, then 2,000 copies of its text
  delta event, then its tail: the steady-state cost of one streamed token, which is
  what the >= 150,000 events/s target is about.

Input is fed one SSE event per `feed()` call (providers write one event per chunk).
"events" counts the upstream's events.

The passthrough tap (`protocols.observe.stream_tap`, which the gateway puts on every
stream whose client and provider speak the same format) is measured in GB/s of SSE bytes
and µs per chunk, for Chat (with `strip_usage` on, as the gateway runs it), Anthropic and
Responses, over ~1 MiB of each format's real stream (a transcript's head, its text deltas
repeated, its end; Chat with `usage:null` on every chunk, as providers send once the
gateway asks for usage), cut one event per chunk and in 16 KiB chunks. Target: >= 1 GB/s
(judged on 16 KiB chunks: with one small event per chunk the figure is the per-call cost,
shown as µs per chunk).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from protocols import ir
from protocols.observe import stream_tap
from protocols.sse import FrameSplitter
from protocols.translate import Translation

REPO_ROOT = Path(__file__).resolve().parents[2]
TEXT_DELTAS = 2_000
TAP_TARGET_BYTES = 1 << 20
TAP_CHUNK = 16 * 1024
TARGET_EVENTS_PER_S = 150_000
TARGET_TAP_GBPS = 1.0

CHAT, ANTHROPIC, RESPONSES = (ir.FORMAT_OPENAI_CHAT, ir.FORMAT_ANTHROPIC_MESSAGES,
                              ir.FORMAT_OPENAI_RESPONSES)
SHORT = {CHAT: "chat", ANTHROPIC: "anthropic", RESPONSES: "responses"}

# Upstream format -> (transcripts of a whole successful stream, the one whose text
# deltas make the long stream, a predicate for its text delta event).
TRANSCRIPTS = {
    CHAT: (["openai_chat_stream_text.sse", "openai_chat_stream_include_usage.sse",
            "openai_chat_stream_parallel_tool_calls.sse"], "openai_chat_stream_text.sse",
           lambda f: b'"delta":{"content":"' in f),
    ANTHROPIC: (["anthropic_stream_text.sse", "anthropic_stream_thinking_tool_use.sse"],
                "anthropic_stream_text.sse", lambda f: b'"text_delta"' in f),
    RESPONSES: (["responses_stream_text.sse", "responses_stream_function_call.sse"],
                "responses_stream_text.sse", lambda f: b"response.output_text.delta" in f),
}

# A streaming request body in each client format (the client's options matter to the
# encoders: include_usage, the model, ...).
CLIENT_BODIES = {
    CHAT: {"model": "gpt-bench", "stream": True,
           "messages": [{"role": "user", "content": "hi"}]},
    ANTHROPIC: {"model": "claude-bench", "max_tokens": 1024, "stream": True,
                "messages": [{"role": "user", "content": "hi"}]},
    RESPONSES: {"model": "gpt-bench", "input": "hi", "stream": True, "store": False},
}

# (label, upstream format, client format, observe off?)
CASES = [
    ("observe chat", CHAT, CHAT, False),
    ("observe anthropic", ANTHROPIC, ANTHROPIC, False),
    ("observe responses", RESPONSES, RESPONSES, False),
    ("re-encode chat", CHAT, CHAT, True),
    ("re-encode anthropic", ANTHROPIC, ANTHROPIC, True),
    ("chat->anthropic", CHAT, ANTHROPIC, False),
    ("anthropic->chat", ANTHROPIC, CHAT, False),
    ("anthropic->responses", ANTHROPIC, RESPONSES, False),
]
TRANSLATED = {"chat->anthropic", "anthropic->chat", "anthropic->responses"}


def transcripts_dir() -> Path:
    shared = os.environ.get("TOKENWAY_SHARED")
    base = Path(shared) if shared else REPO_ROOT.parent / "shared"
    return base / "conformance" / "transcripts"


def frames_of(data: bytes) -> list[bytes]:
    """The transcript cut into whole events, exact bytes (one per feed, as providers write)."""
    split = FrameSplitter()
    frames = split.feed(data)
    if split.pending:
        frames.append(split.pending)
    return [f for f in frames if f.strip()]


def long_text_stream(frames: list[bytes], is_delta: Callable[[bytes], bool],
                     n: int = TEXT_DELTAS) -> list[bytes]:
    """Head, `n` copies of the first text delta, tail: one long text stream."""
    idx = [i for i, f in enumerate(frames) if is_delta(f)]
    if not idx:
        raise ValueError("no text delta in the transcript")
    first, last = idx[0], idx[-1]
    return frames[:first] + [frames[first]] * n + frames[last + 1:]


def _translation(upstream: str, client: str, reencode: bool) -> Translation:
    tr = Translation(client, upstream, request_id="req_bench", created=1_700_000_000)
    if reencode:
        tr.observe = False  # same format, but through the decoder and encoder
    tr.request(dict(CLIENT_BODIES[client]))
    return tr


def run_streams(streams: list[list[bytes]], upstream: str, client: str, reencode: bool,
                seconds: float) -> dict:
    """Feed every stream in turn, a new Translation each, until `seconds` of CPU."""
    events_per_round = sum(len(s) for s in streams)
    bytes_per_round = sum(len(f) for s in streams for f in s)
    out_bytes = 0
    for s in streams:  # a check run: the streams translate without error
        tr = _translation(upstream, client, reencode)
        for f in s:
            out_bytes += len(tr.feed(f))
        out_bytes += len(tr.finish())
        if tr.failed:
            raise RuntimeError(f"{SHORT[upstream]}->{SHORT[client]}: the stream failed")
    rounds = 0
    gc.collect()
    t0 = time.process_time()
    deadline = t0 + seconds
    while True:
        for s in streams:
            tr = _translation(upstream, client, reencode)
            feed = tr.feed
            for f in s:
                feed(f)
            tr.finish()
        rounds += 1
        now = time.process_time()
        if now >= deadline:
            break
    cpu = now - t0
    events = events_per_round * rounds
    return {"events": events, "cpu_s": round(cpu, 4),
            "events_per_s": round(events / cpu, 1),
            "us_per_event": round(cpu * 1e6 / events, 3),
            "in_mb_per_s": round(bytes_per_round * rounds / cpu / 1e6, 2),
            "out_bytes_per_round": out_bytes, "events_per_round": events_per_round,
            "streams_per_round": len(streams)}


TAP_TRANSCRIPTS = {CHAT: "openai_chat_stream_include_usage.sse",
                   ANTHROPIC: "anthropic_stream_text.sse",
                   RESPONSES: "responses_stream_text.sse"}


def tap_stream(tdir: Path, fmt: str) -> list[bytes]:
    """~1 MiB of one format's SSE: a transcript's head, its text deltas repeated, its end."""
    is_delta = TRANSCRIPTS[fmt][2]
    frames = frames_of((tdir / TAP_TRANSCRIPTS[fmt]).read_bytes())
    idx = [i for i, f in enumerate(frames) if is_delta(f)]
    head, deltas, tail = frames[:idx[0]], frames[idx[0]:idx[-1] + 1], frames[idx[-1] + 1:]
    body: list[bytes] = list(head)
    size = sum(map(len, body)) + sum(map(len, tail))
    i = 0
    while size < TAP_TARGET_BYTES:
        f = deltas[i % len(deltas)]
        body.append(f)
        size += len(f)
        i += 1
    return body + tail


def run_tap(fmt: str, chunks: list[bytes], seconds: float) -> dict:
    total = sum(map(len, chunks))
    strip = fmt == CHAT  # as the gateway runs it: usage forced on, stripped again
    tap = stream_tap(fmt, strip_usage=strip)
    passed = sum(len(tap.feed(c)) for c in chunks) + len(tap.finish())
    if not tap.complete or tap.usage is None:
        raise RuntimeError(f"the {SHORT[fmt]} tap did not see the end of the stream and its usage")
    rounds = 0
    gc.collect()
    t0 = time.process_time()
    deadline = t0 + seconds
    while True:
        tap = stream_tap(fmt, strip_usage=strip)
        feed = tap.feed
        for c in chunks:
            feed(c)
        tap.finish()
        rounds += 1
        now = time.process_time()
        if now >= deadline:
            break
    cpu = now - t0
    return {"format": SHORT[fmt], "bytes_per_round": total, "bytes_passed": passed,
            "chunks": len(chunks),
            "avg_chunk_bytes": round(total / len(chunks), 1), "cpu_s": round(cpu, 4),
            "gb_per_s": round(total * rounds / cpu / 1e9, 3),
            "chunks_per_s": round(len(chunks) * rounds / cpu, 1),
            "us_per_chunk": round(cpu * 1e6 / (len(chunks) * rounds), 3),
            "ns_per_byte": round(cpu * 1e9 / (total * rounds), 3)}


def measure(seconds: float, tdir: Path) -> dict:
    streams: dict[str, list[list[bytes]]] = {}
    longs: dict[str, list[bytes]] = {}
    for fmt, (files, text_file, is_delta) in TRANSCRIPTS.items():
        streams[fmt] = [frames_of((tdir / f).read_bytes()) for f in files]
        longs[fmt] = long_text_stream(frames_of((tdir / text_file).read_bytes()), is_delta)
    rows = []
    for label, up, client, reencode in CASES:
        for kind, ss in (("transcripts", streams[up]), ("text deltas", [longs[up]])):
            r = run_streams(ss, up, client, reencode, seconds)
            r.update(case=label, input=kind, upstream=SHORT[up], client=SHORT[client])
            if label in TRANSLATED and kind == "text deltas":
                r["target"] = f">= {TARGET_EVENTS_PER_S:,} events/s"
                r["ok"] = r["events_per_s"] >= TARGET_EVENTS_PER_S
            rows.append(r)
    taps = []
    for fmt in TAP_TRANSCRIPTS:
        stream = tap_stream(tdir, fmt)
        data = b"".join(stream)
        for kind, chunks in (("one event per chunk", stream),
                             ("16 KiB chunks", [data[i:i + TAP_CHUNK]
                                                for i in range(0, len(data), TAP_CHUNK)])):
            r = run_tap(fmt, chunks, seconds)
            r["chunking"] = kind
            if kind == "16 KiB chunks":
                r.update(target=f">= {TARGET_TAP_GBPS:g} GB/s",
                         ok=r["gb_per_s"] >= TARGET_TAP_GBPS)
            taps.append(r)
    return {"schema": "tokenway-bench-micro/1",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": platform.python_version(), "machine": platform.machine(),
            "orjson": getattr(orjson, "__version__", None), "seconds_per_case": seconds,
            "transcripts_dir": str(tdir), "text_deltas": TEXT_DELTAS,
            "translate": rows, "tap": taps}


def render(res: dict) -> str:
    lines = [f"tokenway micro bench: {res['timestamp']}, Python {res['python']}, "
             f"{res['seconds_per_case']:g} s CPU per case, one event per feed()",
             "", "stream translation (upstream->client), per core",
             f"  {'case':<22}{'input':<13}{'events':>7}{'events/s':>12}{'us/event':>10}"
             f"{'MB/s in':>9}  target"]
    for r in res["translate"]:
        verdict = ""
        if "ok" in r:
            verdict = f"{r['target']}: {'PASS' if r['ok'] else 'FAIL'}"
        lines.append(f"  {r['case']:<22}{r['input']:<13}{r['events_per_round']:>7}"
                     f"{r['events_per_s']:>12,.0f}{r['us_per_event']:>10.2f}"
                     f"{r['in_mb_per_s']:>9.1f}  {verdict}")
    lines += ["",
              "passthrough tap (protocols.observe.stream_tap; Chat with strip_usage on), per core",
              f"  {'format':<11}{'chunking':<22}{'chunks':>7}{'avg bytes':>10}{'GB/s':>8}"
              f"{'chunks/s':>12}{'us/chunk':>9}  target"]
    for r in res["tap"]:
        verdict = f"{r['target']}: {'PASS' if r['ok'] else 'FAIL'}" if "ok" in r else ""
        lines.append(f"  {r['format']:<11}{r['chunking']:<22}{r['chunks']:>7}"
                     f"{r['avg_chunk_bytes']:>10.0f}{r['gb_per_s']:>8.3f}"
                     f"{r['chunks_per_s']:>12,.0f}{r['us_per_chunk']:>9.2f}  {verdict}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench micro", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0,
                    help="CPU seconds per case (default 1.0)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--transcripts", type=Path, default=None,
                    help="transcript folder (default: $TOKENWAY_SHARED or ../shared)")
    args = ap.parse_args(argv)
    tdir = args.transcripts or transcripts_dir()
    if not tdir.is_dir():
        print(f"no transcripts at {tdir}: set TOKENWAY_SHARED", file=sys.stderr)
        return 2
    res = measure(args.seconds, tdir)
    sys.stdout.write(render(res))
    if args.json:
        args.json.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
