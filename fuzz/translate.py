"""Fuzz target for ``protocols.translate.Translation`` (Chat ⇄ Anthropic).

Invariants:

1. Only ``protocols.errors.ProtocolError`` escapes, whatever the bytes.
2. Stream output does not depend on how the upstream body was split into chunks: neither
   the client's bytes nor the upstream decoder's events (fed whole and byte at a time when
   short, up to and including the error a broken stream raises).

Input layout: byte 0 picks the mode and the (client, upstream) pair, byte 1 seeds the
chunking, the rest is the payload:

* mode 0 (stream): the payload is an upstream SSE body, fed whole and in pseudo-random
  chunks; both outputs must be equal. The Chat client declares a custom tool, so an
  Anthropic upstream's calls to it take the custom-tool path.
* mode 1 (request): the payload is a client request body (JSON); one that decodes
  without ``ctx`` must re-encode.
* mode 2 (reply): the payload is an upstream complete reply (JSON).
* mode 3 (error): the payload is an upstream error body, with byte 1 picking the status.

Run long: ``python fuzz/translate.py [examples]`` (Hypothesis; atheris is used instead when
installed and ``--atheris`` is given). Every input that ever failed belongs in
``fuzz/corpus/translate/``; the normal test run replays that folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz import check_body, check_stream  # noqa: E402
from protocols.errors import ProtocolError  # noqa: E402
from protocols.translate import Translation  # noqa: E402

PAIRS = [
    ("openai_chat", "openai_chat"),
    ("openai_chat", "anthropic_messages"),
    ("anthropic_messages", "openai_chat"),
    ("anthropic_messages", "anthropic_messages"),
]
STATUSES = (400, 401, 403, 404, 413, 429, 500, 502, 503, 504, 529)


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, pair = divmod(data[0] % 16, 4)
    client, upstream = PAIRS[pair]
    payload = data[2:]
    try:
        if mode == 0:
            check_stream(client, upstream, payload, data[1])
        elif mode in (1, 2):
            check_body(mode, client, upstream, payload)
        else:
            status = STATUSES[data[1] % len(STATUSES)]
            code, out = Translation(client, upstream, request_id="fuzz", created=0).error(
                status, payload)
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
                seed = bytes([i, 7]) + path.read_bytes()
                (corpus / f"stream-{client}-{path.stem}").write_bytes(seed)


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
    corpus_dir = Path(__file__).resolve().parent / "corpus" / "translate"
    corpus = [p.read_bytes() for p in corpus_dir.glob("*")]

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
