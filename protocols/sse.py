"""Incremental, sans-IO Server-Sent Events codec.

Implements "parsing an event stream" and "interpreting an event stream" from the
WHATWG HTML Living Standard, section 9.2 (Server-sent events):
https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream
The rules a gateway must get right are in docs/protocols.md §6.

What is here, and who uses it:

* :class:`FrameSplitter` cuts bytes into raw event blocks without decoding them. Every
  stream decoder (``protocols._streams``) and the passthrough tap
  (``protocols.observe``) cut streams with it, so a same-format stream can be
  forwarded byte for byte, one whole event per write.
* :func:`data_of` / :func:`event_of` pull the data payload and event name out of
  one raw block: what the decoders and the tap call on every block.
* :class:`SSEDecoder` turns bytes into :class:`SSEEvent` objects, following the spec
  to the letter. The gateway's paths do not use it (they need raw frames); it is the
  executable reference ``tests/protocols/test_sse.py`` and ``fuzz/sse.py`` hold
  :class:`FrameSplitter`, :func:`data_of` and :func:`event_of` to, itself checked
  against a literal transcription of the spec.
* :func:`encode`, :func:`encode_comment` and :data:`DONE` write events (for tests and
  tools; the format encoders write their frames from byte templates).

Design notes that apply throughout:

* Lines are split on CR and LF bytes only, never with ``str.splitlines``, which also
  splits on U+2028, U+0085, U+000B and others that are legal inside JSON strings
  (docs/protocols.md §6.2). CR and LF are ASCII, so they never occur inside a multi-byte
  UTF-8 sequence: splitting raw bytes first and decoding each complete line is
  exactly equivalent to decoding the whole stream first, and a character split
  across two network chunks simply waits in the unterminated-line buffer.
* A CR that ends a chunk may be the first half of a CRLF. Both classes act on the
  CR at once (a blank line's CR completes an event, and an event must not wait for
  the next chunk) and remember that one LF arriving next belongs to that CR.
* Work is done per chunk with one-byte ``bytes.find``/``rfind`` (memchr) and bulk
  ``decode``/``split``, never with a Python loop over bytes; the decoder's only
  per-line Python work is field interpretation.
* Every buffer is bounded (:data:`MAX_LINE_BYTES`, :data:`MAX_EVENT_BYTES`); going
  over raises :class:`~protocols.errors.BufferLimitExceeded`, an
  ``UpstreamProtocolError``, because only the provider writes the bytes decoded here.
* Results never depend on how the input was split into chunks, including whether
  and where a limit is exceeded. tests/protocols/test_sse.py and fuzz/sse.py check
  this whole, byte at a time and under random splits.

Objects here are per stream and not thread-safe.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import BufferLimitExceeded

__all__ = [
    "DONE",
    "MAX_EVENT_BYTES",
    "MAX_LINE_BYTES",
    "FrameSplitter",
    "SSEDecoder",
    "SSEEvent",
    "data_of",
    "encode",
    "encode_comment",
    "event_of",
]

#: Longest accepted line, in bytes, not counting its line end. Real events can be
#: one multi-megabyte line: ``response.completed`` echoing a long output, Anthropic
#: ``web_search_tool_result``, Gemini inline images as base64 (a 10 MB image is a
#: 13.3 MB line). Readers with small fixed buffers fail on these (Go's
#: ``bufio.Scanner`` stops at 64 KiB; docs/protocols.md §6.2), so the bound is generous,
#: but it is a bound: a provider that never sends a line end costs at most this much.
MAX_LINE_BYTES = 16 * 1024 * 1024

#: Largest accepted event block: all lines of one event up to its blank line, in
#: bytes. Two maximal lines, so one huge ``data:`` line plus its ``event:`` line and
#: a few small fields always fit. Bounds the memory of many lines that never meet a
#: blank line.
MAX_EVENT_BYTES = 2 * MAX_LINE_BYTES

#: The Chat Completions end-of-stream marker, as OpenAI sends it.
DONE = b"data: [DONE]\n\n"

_CR = 0x0D
_LF = 0x0A
# "One leading U+FEFF BYTE ORDER MARK character must be ignored" (WHATWG 9.2.5):
# the UTF-8 decode algorithm strips it, once, at the start of the stream only.
_BOM = b"\xef\xbb\xbf"

_tuple_new = tuple.__new__


# Finding blank lines. A blank line begins right after a line end, so it starts at
# the second byte of one of the pairs LF+LF, LF+CR or CR+CR; CR+LF is a single line
# end. The searches below look for single bytes only: CPython's bytes.find uses
# memchr for a one-byte needle but a byte-by-byte loop for longer ones. Measured on
# CPython 3.11 over a 3 KB line: find(b"\n") 92 ns, find(b"\n\n") 2980 ns. A blank
# line at the start of a chunk is checked by the caller, against the last byte of
# the previous chunk.


def _blank_lf_only(chunk: bytes, pos: int, n: int) -> int:
    """Start of the first blank line after an LF at ``pos`` or later; -1 if none.

    For chunks without CR, where a blank line can only follow LF+LF.
    """
    i = chunk.find(b"\n", pos)
    while 0 <= i < n - 1:
        if chunk[i + 1] == _LF:
            return i + 1
        i = chunk.find(b"\n", i + 2)
    return -1


def _blank_any(chunk: bytes, pos: int, n: int) -> int:
    """Like :func:`_blank_lf_only`, for chunks holding CR: LF, CRLF and CR line ends."""
    lf = chunk.find(b"\n", pos)
    cr = chunk.find(b"\r", pos)
    if lf < 0:
        lf = n
    if cr < 0:
        cr = n
    while True:
        i = lf if lf < cr else cr
        if i >= n - 1:
            return -1  # the pair, if any, ends in the next chunk
        after = chunk[i + 1]
        # LF+CR, CR+CR and LF+LF start a blank line; CR+LF is one line end.
        if after == _CR or (after == _LF and i == lf):
            return i + 1
        if i == lf:
            lf = chunk.find(b"\n", i + 1)
            if lf < 0:
                lf = n
        else:
            cr = chunk.find(b"\r", i + 1)
            if cr < 0:
                cr = n


class SSEEvent(NamedTuple):
    """One dispatched event.

    ``event`` is the value of the last ``event:`` field of the block, or ``None``
    when the block had none; :attr:`type` applies the spec default ``"message"``.
    ``id`` is the last event ID at dispatch time (it persists across events, per
    spec); ``None`` until an ``id`` field has been seen. ``retry`` is the
    reconnection time, in milliseconds, set by a valid ``retry`` field inside this
    event's block, else ``None``.
    """

    event: str | None
    data: str
    id: str | None = None
    retry: int | None = None

    @property
    def type(self) -> str:
        """The spec's event type: ``event``, or ``"message"`` if unset or empty."""
        return self.event or "message"


def _check_line_lengths(data: bytes, carried: int, limit: int) -> None:
    """Raise if any line in ``data`` is longer than ``limit`` bytes.

    ``carried`` is the length of the unterminated line that ``data`` continues. The
    last segment (still unterminated) counts too: it can only grow. Only called when
    ``carried + len(data)`` exceeds the limit, so its copies stay off the common path.
    """
    segments = data.replace(b"\r", b"\n").split(b"\n")
    longest = max(carried + len(segments[0]), max(map(len, segments[1:]), default=0))
    if longest > limit:
        raise BufferLimitExceeded(
            f"SSE stream: a line is longer than {limit} bytes",
            param="sse.line",
            limit=limit,
        )


def _lead(buf: bytearray, start: int, prev: int, first: int) -> int:
    """1 when the block that starts at ``start`` of the chunk (after ``buf``, the part of
    it that came before) begins with the LF of a CRLF whose CR ended the previous frame
    in the previous chunk, else 0. That LF is not counted against the event limit, nor
    is it when it comes with its CR and ends that frame. Only called over the limit."""
    if buf:
        return 1 if buf[0] == _LF else 0
    return 1 if start == 0 and prev == _CR and first == _LF else 0


def _long_line_at(data: bytes, carried: int, limit: int) -> int:
    """Where the first line longer than ``limit`` bytes starts in ``data``: 0 when it is
    the line ``data`` continues (``carried`` bytes long so far), -1 when there is none.
    Counted like :func:`_check_line_lengths`, and like it kept off the common path."""
    segments = data.replace(b"\r", b"\n").split(b"\n")
    if carried + len(segments[0]) > limit:
        return 0
    if max(map(len, segments)) <= limit:
        return -1
    at = len(segments[0]) + 1
    for segment in segments[1:]:
        if len(segment) > limit:
            return at
        at += len(segment) + 1
    return -1  # not reached: some segment is too long


def _check_limits(max_line_bytes: int, max_event_bytes: int) -> None:
    if max_line_bytes < 1 or max_event_bytes < 1:
        raise ValueError("SSE buffer limits must be at least 1 byte")


class SSEDecoder:
    """Incremental decoder: bytes in, :class:`SSEEvent` objects out.

    Follows WHATWG HTML 9.2.5 and 9.2.6 exactly, including the cases where the
    Python SDK decoders differ (docs/protocols.md §6.2): a leading BOM is stripped; a
    block without ``data`` dispatches nothing; the event type resets after every
    blank line; an event not ended by a blank line is discarded at :meth:`close`.

    Field rules (9.2.6): a line starting with ``:`` is a comment. Otherwise the
    field name runs up to the first ``:``, and one space after the colon, if
    present, is dropped; a line without a colon is a field with an empty value.
    ``data`` appends its value plus LF to the data buffer (the final LF is removed
    at dispatch); ``event`` sets the type; ``id`` sets the last event ID unless the
    value contains NUL; ``retry`` sets the reconnection time only if the value is
    all ASCII digits. Other field names are ignored. Invalid UTF-8 becomes U+FFFD,
    as the spec's UTF-8 decode does.

    Limits: a line longer than ``max_line_bytes`` bytes, or an event block whose
    lines (with one per line end) exceed ``max_event_bytes`` characters, raises
    :class:`~protocols.errors.BufferLimitExceeded`. Characters never outnumber
    bytes, so any stream :class:`FrameSplitter` accepts with the same limits is
    accepted here too.
    """

    __slots__ = (
        "_block",
        "_buf",
        "_closed",
        "_data",
        "_event",
        "_id_buffer",
        "_last_event_id",
        "_max_event",
        "_max_line",
        "_retry_event",
        "_retry_ms",
        "_skip_lf",
        "_started",
        "_truncated",
    )

    def __init__(
        self,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        _check_limits(max_line_bytes, max_event_bytes)
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        # Bytes of the line not yet ended. It is the only place a multi-byte
        # character split across chunks can wait, so no incremental codec is needed.
        self._buf = bytearray()
        # False until the first three bytes are known, to strip one leading BOM.
        self._started = False
        # The previous chunk ended with a CR: an LF starting this chunk completes it.
        self._skip_lf = False
        # Size of the event block so far (characters of its finished lines, plus
        # one per line end); 0 right after a blank line.
        self._block = 0
        self._data: list[str] = []
        self._event: str | None = None
        self._retry_event: int | None = None
        # The spec keeps two values: the "last event ID buffer", set by each `id`
        # field, and the event source's "last event ID string", copied from the
        # buffer at every blank line (9.2.6, dispatch step 1).
        self._id_buffer: str | None = None
        self._last_event_id: str | None = None
        self._retry_ms: int | None = None
        self._closed = False
        self._truncated = False

    @property
    def last_event_id(self) -> str | None:
        """The ID a reconnecting client would send as ``Last-Event-ID``.

        Updated at every blank line, as in the spec, so an ``id`` field in an
        event that was never terminated does not count. ``None`` if no ``id``
        field has been seen (the spec's initial value is the empty string).
        """
        return self._last_event_id

    @property
    def retry_ms(self) -> int | None:
        """The reconnection time from the latest valid ``retry`` field, in ms."""
        return self._retry_ms

    @property
    def truncated(self) -> bool:
        """True if :meth:`close` discarded an unterminated event or line."""
        return self._truncated

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume ``chunk`` (any split of the stream) and return finished events."""
        if self._closed:
            raise RuntimeError("SSEDecoder.feed() called after close()")
        if not chunk:
            return []
        buf = self._buf
        if not self._started:
            buf += chunk
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                return []  # could still be a BOM
            self._started = True
            if buf.startswith(_BOM):
                del buf[: len(_BOM)]
            chunk = bytes(buf)
            buf.clear()
            if not chunk:
                return []
        n = len(chunk)
        start = 0
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == _LF:
                start = 1
        carried = len(buf)
        if carried + n - start > self._max_line:
            _check_line_lengths(chunk[start:], carried, self._max_line)

        # The last line end in the chunk: everything before it is whole lines.
        last = chunk.rfind(b"\n", start)
        cr = chunk.rfind(b"\r", last + 1 if last >= 0 else start)
        if cr > last:
            last = cr
        if last < 0:
            buf += chunk if start == 0 else chunk[start:]
            return []
        if carried:
            raw = b"".join((buf, memoryview(chunk)[start : last + 1]))
            buf.clear()
        elif start == 0 and last == n - 1:
            raw = chunk
        else:
            raw = chunk[start : last + 1]
        if last + 1 < n:
            buf += memoryview(chunk)[last + 1 :]
        elif chunk[last] == _CR:
            self._skip_lf = True

        # Decoding a run of whole lines in one call is exact (see module docstring).
        text = raw.decode("utf-8", "replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        lines.pop()  # `text` ends with a line end, so the last item is ""

        # `text` now holds every line with a one-character line end, so its length
        # bounds the size of every block in it; count line by line only beyond that.
        block = self._block
        max_event = self._max_event
        if block + len(text) > max_event:
            for line in lines:
                block = block + len(line) + 1 if line else 0
                if block > max_event:
                    raise BufferLimitExceeded(
                        f"SSE stream: an event is larger than {max_event} bytes",
                        param="sse.event",
                        limit=max_event,
                    )
        cut = text.rfind("\n\n")
        if cut >= 0:
            self._block = len(text) - cut - 2
        elif text[0] == "\n":
            self._block = len(text) - 1
        else:
            self._block = self._block + len(text)

        return self._interpret(lines)

    def _interpret(self, lines: list[str]) -> list[SSEEvent]:
        """Apply the field rules of WHATWG 9.2.6 to whole lines."""
        events: list[SSEEvent] = []
        data = self._data
        event = self._event
        retry_event = self._retry_event
        id_buffer = self._id_buffer
        last_event_id = self._last_event_id
        for line in lines:
            if not line:
                # Blank line: dispatch. The data buffer is non-empty exactly when
                # at least one data field was seen, even an empty one.
                last_event_id = id_buffer
                if data:
                    events.append(
                        _tuple_new(
                            SSEEvent, (event, "\n".join(data), id_buffer, retry_event)
                        )
                    )
                    data = []
                event = None
                retry_event = None
            elif line[:6] == "data: ":
                # The common shape gets its own branch: no partition, one slice.
                data.append(line[6:])
            elif line[0] == ":":
                pass  # comment
            else:
                name, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                if name == "data":
                    data.append(value)
                elif name == "event":
                    event = value
                elif name == "id":
                    if "\0" not in value:
                        id_buffer = value
                elif name == "retry":
                    # isdigit() alone accepts non-ASCII digits such as "٣".
                    if value.isascii() and value.isdigit():
                        retry_event = self._retry_ms = int(value)
        self._last_event_id = last_event_id
        self._data = data
        self._event = event
        self._retry_event = retry_event
        self._id_buffer = id_buffer
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: discard an unterminated event, as the spec requires.

        Always returns ``[]``; it is a method so callers treat every parser the
        same way. :attr:`truncated` tells whether anything was discarded, which is
        how a caller can tell a stream cut mid-event from a clean end.
        """
        if not self._closed:
            self._closed = True
            self._truncated = bool(self._buf) or self._block > 0
            self._buf.clear()
            self._data = []
            self._event = None
            self._retry_event = None
        return []


class FrameSplitter:
    """Cut a byte stream into raw event blocks, without decoding them.

    :meth:`feed` returns each complete block as the exact original bytes, from the
    first byte after the previous block through the end of its blank line. The
    concatenation of every returned frame plus :attr:`pending` always equals the
    input, so a pass-through proxy can forward frames unchanged and still write one
    whole event per write (docs/protocols.md §6.3).

    Line ends are LF, CRLF or lone CR. A blank line ending in CR is returned as
    soon as the CR arrives, because waiting for the next chunk would hold a
    complete event back. If the next byte is the LF of that CRLF, it becomes the
    first byte of the next frame (or, at the end of the stream, all of
    :attr:`pending`); decoders treat it as part of the previous line end, and
    :func:`data_of` ignores it. So frame boundaries can differ by that one LF
    with the chunking, while the bytes and the events never do.

    Each frame holds at most one event (an empty block, such as a lone comment,
    holds none). A BOM is not special here: it stays in the first frame.

    Limits: a line longer than ``max_line_bytes`` bytes, or a frame (or unfinished
    block) longer than ``max_event_bytes`` bytes, raises
    :class:`~protocols.errors.BufferLimitExceeded`. Both are counted on raw bytes,
    so the splitter is never more lenient than :class:`SSEDecoder` (the LF that a
    CRLF ending a frame leaves to the next frame, when it comes in the next chunk,
    is not counted in either, so the outcome does not depend on the split). The error's
    ``frames`` attribute holds the frames that the failing chunk completed before the
    violation: a stream cut into smaller chunks would have had them returned by earlier
    calls, so a caller that uses them sees the same frames before the error whatever
    the split. The splitter is not usable after the error.
    """

    __slots__ = ("_buf", "_closed", "_max_event", "_max_line", "_prev", "_tail")

    def __init__(
        self,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        _check_limits(max_line_bytes, max_event_bytes)
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        # The unfinished block. Only bytes that are not yet part of a frame are
        # copied here; frames inside a chunk are sliced straight out of it.
        self._buf = bytearray()
        # The last byte seen. The stream starts at a line start, as if after LF.
        self._prev = _LF
        # Length of the current unterminated line, for the line limit.
        self._tail = 0
        self._closed = False

    @property
    def pending(self) -> bytes:
        """Bytes of the unfinished block (not yet returned as a frame)."""
        return bytes(self._buf)

    def idle(self, n: int) -> bool:
        """Whether nothing is held, the last byte ended a line and a chunk of ``n``
        bytes is within the limits: a chunk that is exactly one LF-framed event would
        be returned whole by ``feed`` and leave the state as it is."""
        return (not self._buf and self._prev == _LF and n <= self._max_line
                and n <= self._max_event and not self._closed)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Consume ``chunk`` and return the frames it completes, in order."""
        if self._closed:
            raise RuntimeError("FrameSplitter.feed() called after close()")
        n = len(chunk)
        if not n:
            return []
        if (chunk[-1] == _LF and self._prev == _LF and not self._buf and n <= self._max_line
                and n <= self._max_event and chunk[0] != _LF and chunk.find(b"\r") < 0):
            # The common case (providers write one event per chunk): the chunk may be
            # exactly one LF-framed event after a line end, with nothing buffered and no
            # limit in reach. It is when its first blank line is its last byte
            # (``_blank_lf_only`` inlined); then the general path below would return the
            # same and leave the state (last byte LF, no unterminated line) as it is.
            i = chunk.find(b"\n")
            while i < n - 2 and chunk[i + 1] != _LF:
                i = chunk.find(b"\n", i + 2)
            if i == n - 2:
                return [chunk]
        tail = self._tail
        if tail + n > self._max_line:
            at = _long_line_at(chunk, tail, self._max_line)
            if at >= 0:
                raise self._line_too_long(chunk, at)
        last = chunk.rfind(b"\n")
        cr = chunk.rfind(b"\r", last + 1)
        if cr > last:
            last = cr
        self._tail = n - last - 1 if last >= 0 else tail + n

        # LF-only chunks (everything but Gemini/Vertex CRLF) take the cheaper scan.
        has_cr = chunk.find(b"\r") >= 0
        first = chunk[0]
        prev = self._prev
        if (first == _LF or first == _CR) and (
            prev == _LF or (prev == _CR and first == _CR)
        ):
            blank = 0  # the chunk starts with an empty line
        elif has_cr:
            blank = _blank_any(chunk, 0, n)
        else:
            blank = _blank_lf_only(chunk, 0, n)
        self._prev = chunk[-1]

        frames: list[bytes] = []
        buf = self._buf
        max_event = self._max_event
        # The event limit counts a frame up to the CR or LF of its blank line (``size``),
        # never the LF of that CRLF: whether it comes with its CR (and ends this frame)
        # or in the next chunk (and starts the next block, see ``_lead``) depends on the
        # split.
        start = 0
        while blank >= 0:
            end = size = blank + 1
            if chunk[blank] == _CR and end < n and chunk[end] == _LF:
                end += 1
            if buf:
                # The only frame that spans chunks; join it with one copy.
                if (len(buf) + size > max_event
                        and len(buf) + size - _lead(buf, 0, prev, first) > max_event):
                    raise self._too_big(frames)
                frames.append(b"".join((buf, memoryview(chunk)[:end])))
                buf.clear()
            elif (size - start > max_event
                    and size - start - _lead(buf, start, prev, first) > max_event):
                raise self._too_big(frames)
            elif start == 0 and end == n:
                frames.append(chunk)  # the chunk is exactly one event: no copy
            else:
                frames.append(chunk[start:end])
            start = end
            if end >= n:
                break
            # The pair (chunk[end - 1], chunk[end]) can start the next blank line.
            if has_cr:
                blank = _blank_any(chunk, end - 1, n)
            elif chunk[end] == _LF:
                blank = end  # chunk[end - 1] is the LF that ended the frame
            else:
                blank = _blank_lf_only(chunk, end + 1, n)
        if start < n:
            if (len(buf) + n - start > max_event
                    and len(buf) + n - start - _lead(buf, start, prev, first) > max_event):
                raise self._too_big(frames)
            buf += chunk if start == 0 else memoryview(chunk)[start:]
        return frames

    def _too_big(self, frames: list[bytes]) -> BufferLimitExceeded:
        err = BufferLimitExceeded(
            f"SSE stream: an event is larger than {self._max_event} bytes",
            param="sse.event",
            limit=self._max_event,
        )
        err.frames = frames
        return err

    def _line_too_long(self, chunk: bytes, at: int) -> BufferLimitExceeded:
        """The error for the line over the limit that starts at ``chunk[at]``, carrying
        the frames completed before it (the lines before it are within the limit; an
        event over its own limit among them raises that error instead)."""
        frames = self.feed(chunk[:at]) if at else []
        err = BufferLimitExceeded(
            f"SSE stream: a line is longer than {self._max_line} bytes",
            param="sse.line",
            limit=self._max_line,
        )
        err.frames = frames
        return err

    def close(self) -> bytes:
        """End of stream: return the unfinished block (often ``b""``) and reset.

        Per spec a block without its blank line is never dispatched; whether to
        forward these bytes anyway is the caller's decision.
        """
        self._closed = True
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


def _split_two_lines(frame: bytes) -> tuple[int, int] | None:
    """Match ``event: E\\ndata: D\\n\\n`` exactly; return the ends of E and D."""
    i = frame.find(b"\n", 7)
    if i < 0 or not frame.startswith(b"data: ", i + 1):
        return None
    j = frame.find(b"\n", i + 7)
    if j != len(frame) - 2 or frame[-1] != _LF or frame.find(b"\r", 0, j) >= 0:
        return None
    return i, j


def _parse_frame(frame: bytes) -> tuple[bytes | None, bytes | None]:
    """Field rules of WHATWG 9.2.6 over one raw block, up to its first dispatch.

    Returns ``(event, data)``. ``data`` is ``None`` unless a blank line dispatches
    an event. ``event`` is that event's type field, or, if nothing is dispatched,
    the last ``event`` field seen.
    """
    if frame.startswith(_BOM):
        frame = frame[len(_BOM) :]
    if b"\r" in frame:
        frame = frame.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = frame.split(b"\n")
    lines.pop()  # after the last line end: an unterminated line, never interpreted
    event: bytes | None = None
    last_seen: bytes | None = None
    data: list[bytes] = []
    reset = False
    for line in lines:
        if not line:
            if data:
                return event, b"\n".join(data)
            # A blank line with nothing to dispatch (for example the LF of a CRLF
            # whose CR ended the previous frame) resets the event type. The reset
            # is applied lazily so `event: ping\n\n` still reports "ping".
            reset = True
            continue
        if reset:
            event = None
            reset = False
        if line[:1] == b":":
            continue
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = last_seen = value
    return last_seen, None


def data_of(frame: bytes) -> bytes | None:
    """The data payload of one raw frame, as raw bytes, or ``None`` if it has none.

    Multiple ``data`` lines are joined with LF, as the decoder does; the bytes are
    not UTF-8-decoded, so they can go straight to ``jsonio.loads``. The common
    shapes ``data: D\\n\\n`` and ``event: E\\ndata: D\\n\\n`` cost a few
    ``find``/``startswith`` calls and one slice; anything else (CRLF, several
    lines, ``data:`` without its space) goes through the general field parser.

    The frame is read on its own, so a leading BOM is always skipped; in a valid
    stream one can only start the first frame, where the decoder skips it too.
    """
    n = len(frame)
    if frame.startswith(b"data: "):
        i = frame.find(b"\n", 6)
        if i == n - 2 and frame[-1] == _LF and frame.find(b"\r", 6, i) < 0:
            return frame[6:i]
    elif frame.startswith(b"event: "):
        # ``_split_two_lines`` inlined: this is the shape of every Anthropic and
        # Responses event.
        i = frame.find(b"\n", 7)
        if i >= 0 and frame.startswith(b"data: ", i + 1):
            j = frame.find(b"\n", i + 7)
            if j == n - 2 and frame[-1] == _LF and frame.find(b"\r", 0, j) < 0:
                return frame[i + 7 : j]
    return _parse_frame(frame)[1]


def event_of(frame: bytes) -> bytes | None:
    """The ``event`` field of one raw frame, as bytes, or ``None`` if it has none.

    For a frame that dispatches nothing (``event: ping`` without data, which the
    spec drops) this is still the field's value, so callers should look at
    :func:`data_of` first. ``b""`` (an empty field) means the default ``message``.
    """
    if frame.startswith(b"data: "):
        i = frame.find(b"\n", 6)
        if i == len(frame) - 2 and frame[-1] == _LF and frame.find(b"\r", 6, i) < 0:
            return None
    elif frame.startswith(b"event: "):
        ends = _split_two_lines(frame)
        if ends is not None:
            return frame[7 : ends[0]]
    return _parse_frame(frame)[0]


def _split_payload(payload: bytes) -> list[bytes]:
    return payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")


def encode(data: str | bytes, event: str | None = None) -> bytes:
    """One event: ``event: E\\n`` (if given), ``data: ...\\n`` per line, blank line.

    Each line of ``data`` becomes its own ``data:`` line, which a decoder joins
    back with LF. CR and CRLF inside ``data`` are line ends on the wire, so they
    come back as LF; JSON payloads never contain them raw. Exactly one space
    follows each colon, so values that start with a space survive the
    single-space rule. No BOM, ``id`` or ``retry`` is ever written: the Stainless
    SDK decoders mishandle all three (docs/protocols.md §6.2).
    """
    if isinstance(data, str):
        data = data.encode()
    if b"\n" in data or b"\r" in data:
        body = b"data: " + b"\ndata: ".join(_split_payload(data)) + b"\n\n"
    else:
        body = b"data: " + data + b"\n\n"
    if event is None:
        return body
    name = event.encode()
    if b"\n" in name or b"\r" in name:
        raise ValueError(f"SSE event name must be a single line: {event!r}")
    return b"event: " + name + b"\n" + body


def encode_comment(text: str = "") -> bytes:
    """A comment block such as ``: ping\\n\\n``: a heartbeat no client dispatches.

    The trailing blank line dispatches nothing because the data buffer is empty;
    the Stainless decoders also skip it, as long as no ``id`` was ever sent.
    """
    lines = _split_payload(text.encode())
    return b"".join(b": " + line + b"\n" if line else b":\n" for line in lines) + b"\n"
