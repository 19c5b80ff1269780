"""Fuzz target for ``protocols.observe``: the passthrough tap over untrusted bytes.

Invariants, for any input bytes:

1. Only ``protocols.errors.ProtocolError`` escapes (``BufferLimitExceeded`` for an
   event over the limit), whatever the bytes and the format.
2. Without ``strip_usage`` the tap forwards the provider's bytes unchanged: what it
   gives is a prefix of the input (an unterminated last event is dropped at the end),
   and the same prefix however the input is split.
3. With ``strip_usage`` (Chat) the output is the input minus events: no longer than the
   input, and every line of it is a line of the input.

The tap's facts are deliberately not compared across splits: after a stream's head it
reads only the last events of each read, which is exact for streams that put their
facts where providers put them (see the module) and, for a stream that breaks that
rule, depends on where reads end.

Input layout: byte 0 picks the format (and, for Chat, ``strip_usage``), byte 1 seeds
the chunking, the rest is the provider's stream.  ``python -m fuzz.run tap`` runs it
long; every failing input belongs in ``fuzz/corpus/tap/``, which the normal test run
replays.
"""

from __future__ import annotations

from fuzz import FORMATS, chunks
from protocols.errors import ProtocolError
from protocols.observe import stream_tap


def _run(fmt: str, strip: bool, pieces: list[bytes]) -> bytes | str:
    tap = stream_tap(fmt, strip_usage=strip)
    out = []
    try:
        for p in pieces:
            out.append(tap.feed(p))
        out.append(tap.finish())
    except ProtocolError as e:
        return type(e).__name__
    _ = (tap.complete, tap.error_relayed, tap.usage, tap.model, tap.at_boundary)
    return b"".join(out)


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    fmt = FORMATS[data[0] % len(FORMATS)]
    strip = fmt == "openai_chat" and data[0] & 0x10 != 0
    payload = data[2:]
    whole = _run(fmt, strip, [payload])
    split = _run(fmt, strip, chunks(payload, data[1]))
    if not strip:
        if type(whole) is bytes:
            assert payload.startswith(whole), "the tap changed the bytes"
        if type(whole) is bytes and type(split) is bytes:
            assert whole == split, "the forwarded bytes depend on the split"
        return
    lines = set(payload.splitlines())
    for out in (whole, split):
        if type(out) is bytes:
            assert len(out) <= len(payload)
            for line in out.splitlines():
                assert line in lines, "the tap forwarded bytes that were not an input line"
