"""Fuzz target for ``protocols.translate.Translation`` (Chat ⇄ Anthropic).

Invariants (style-anchors.md §5 principle 11):

1. Only ``protocols.errors.ProtocolError`` escapes, whatever the bytes.
2. Stream output does not depend on how the upstream body was split into chunks.

Input layout: byte 0 picks the mode and the (client, upstream) pair, byte 1 seeds the
chunking, the rest is the payload:

* mode 0 (stream): the payload is an upstream SSE body, fed whole and in pseudo-random
  chunks; both outputs must be equal.
* mode 1 (request): the payload is a client request body (JSON).
* mode 2 (reply): the payload is an upstream complete reply (JSON).
* mode 3 (error): the payload is an upstream error body, with byte 1 picking the status.

Run long: ``python fuzz/translate.py [examples]`` (Hypothesis; atheris is used instead when
installed and ``--atheris`` is given). Every input that ever failed belongs in
``fuzz/corpus/translate/``; the normal test run replays that folder.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocols import jsonio  # noqa: E402
from protocols.errors import ProtocolError  # noqa: E402
from protocols.translate import Translation  # noqa: E402

PAIRS = [
    ("openai_chat", "openai_chat"),
    ("openai_chat", "anthropic_messages"),
    ("anthropic_messages", "openai_chat"),
    ("anthropic_messages", "anthropic_messages"),
]
REQUESTS = {
    "openai_chat": {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True,
                    "stream_options": {"include_usage": True}},
    "anthropic_messages": {"model": "m", "max_tokens": 64, "stream": True,
                           "messages": [{"role": "user", "content": "x"}]},
}
STATUSES = (400, 401, 403, 404, 413, 429, 500, 502, 503, 504, 529)


def _translation(client: str, upstream: str) -> Translation:
    return Translation(client, upstream, request_id="fuzz", created=0)


def _chunks(payload: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(payload):
        n = rng.randint(1, 9)
        out.append(payload[i : i + n])
        i += n
    return out


def _stream(client: str, upstream: str, payload: bytes, chunks: list[bytes]) -> tuple[bytes, tuple]:
    t = _translation(client, upstream)
    t.request(dict(REQUESTS[client]))
    out = b"".join(t.feed(c) for c in chunks) + t.finish()
    facts = (t.usage, t.model, t.stop_reason, t.tool_calls_seen, t.failed)
    return out, facts


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, pair = divmod(data[0] % 16, 4)
    client, upstream = PAIRS[pair]
    payload = data[2:]
    try:
        if mode == 0:
            whole = _stream(client, upstream, payload, [payload])
            split = _stream(client, upstream, payload, _chunks(payload, data[1]))
            assert split == whole, "stream output depends on chunking"
            if client == upstream:
                assert whole[0] == payload, "observe mode changed the bytes"
        elif mode in (1, 2):
            try:
                body = jsonio.loads(payload)
            except jsonio.JSONDecodeError:
                return  # not JSON: the proxy rejects it before translation
            t = _translation(client, upstream)
            if mode == 1:
                out = t.request(body)
                if client != upstream:
                    jsonio.dumps(out)
            else:
                t.request(dict(REQUESTS[client]))
                out = t.response(body)
                jsonio.dumps(out)
        else:
            status = STATUSES[data[1] % len(STATUSES)]
            code, out = _translation(client, upstream).error(status, payload)
            assert type(code) is int and type(out) is bytes
    except ProtocolError:
        pass


def _seed_corpus() -> None:
    """Rebuild the stream seeds from the shared transcripts (developer helper)."""
    here = Path(__file__).resolve().parent
    shared = here.parents[1] / "shared" / "conformance" / "transcripts"
    corpus = here / "corpus" / "translate"
    corpus.mkdir(parents=True, exist_ok=True)
    for path in sorted(shared.glob("*.sse")):
        upstream = "openai_chat" if path.name.startswith("openai_chat") else (
            "anthropic_messages" if path.name.startswith("anthropic") else None)
        if upstream is None:
            continue
        for i, (client, up) in enumerate(PAIRS):
            if up == upstream:
                (corpus / f"stream-{client}-{path.stem}").write_bytes(bytes([i, 7]) + path.read_bytes())


def main(argv: list[str]) -> None:
    if "--seed-corpus" in argv:
        _seed_corpus()
        return
    if "--atheris" in argv:
        import atheris  # optional, not installed by default

        atheris.Setup([a for a in argv if a != "--atheris"], check)
        atheris.Fuzz()
        return
    from hypothesis import given, settings
    from hypothesis import strategies as st

    n = int(argv[1]) if len(argv) > 1 else 10_000
    corpus = [p.read_bytes() for p in (Path(__file__).resolve().parent / "corpus" / "translate").glob("*")]

    @settings(max_examples=n, deadline=None, database=None)
    @given(st.one_of(
        st.binary(max_size=2000),
        st.sampled_from(corpus or [b"\0\0"]).flatmap(
            lambda seed: st.tuples(st.integers(0, 255), st.integers(0, max(len(seed) - 1, 0)),
                                   st.binary(max_size=8)).map(
                lambda t: bytes([t[0]]) + seed[1 : 2 + t[1]] + t[2] + seed[2 + t[1]:])),
    ))
    def run(data: bytes) -> None:
        check(data)

    run()


if __name__ == "__main__":
    main(sys.argv)
