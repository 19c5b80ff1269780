"""The body filter a gateway pumps a streamed reply through, whatever the mode.

``Translation.stream_filter()`` returns one: in observe mode (same format on both
sides) the zero-copy ``protocols.observe.StreamTap``, otherwise a
:class:`TranslatedStream` over the translation's decoder and encoder.  Both have the
interface :class:`StreamFilter` documents, so the gateway has one stream path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from . import ir
from .registry import format_module

if TYPE_CHECKING:
    from .translate import Translation

__all__ = ["StreamFilter", "TranslatedStream"]


class StreamFilter(Protocol):
    """A streamed reply on its way from a provider to a client.

    Bytes: ``feed(data)`` takes the provider's next bytes (any split) and returns the
    client's (``b""`` when no whole event is ready); ``finish()`` at the provider's
    end returns the rest.  ``feed`` raises ``ProtocolError`` only for a provider that
    breaks a buffer limit (an endless event); the caller then ends the stream.
    ``error_frame(message, kind)`` is the client format's error event for a provider
    that failed mid-stream (``kind``: ``timeout``, ``stream_cut``, …), to write last.
    ``heartbeat()`` is a keep-alive the client ignores, to write only when
    ``at_boundary`` (no partial event held).

    Facts, read at the end: ``complete`` (the stream ended with its terminal event and
    no error), ``error_relayed`` (the provider's own error event already reached the
    client, so no error event needs adding), ``usage`` (``ir.Usage`` or None, for every
    format) and ``model`` (the served model, if known).  One fact holds as soon as it
    is true: ``ended``, the provider's last event (its terminal or its error event) has
    been fed, so the client's stream is whole even if the connection fails before the
    provider's HTTP framing ends; the caller then ends it with ``finish()``, not with
    an error event.
    """

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...

    def error_frame(self, message: str, kind: str = "upstream_error") -> bytes: ...

    def heartbeat(self) -> bytes: ...

    @property
    def at_boundary(self) -> bool: ...

    @property
    def complete(self) -> bool: ...

    @property
    def ended(self) -> bool: ...

    @property
    def error_relayed(self) -> bool: ...

    @property
    def usage(self) -> ir.Usage | None: ...

    @property
    def model(self) -> str | None: ...


class TranslatedStream:
    """The stream filter over a translating ``Translation`` (client and provider formats
    differ): the provider's bytes are decoded to IR events and encoded for the client."""

    __slots__ = ("tr",)

    #: A translated stream's errors are the encoder's own events, never relayed bytes.
    error_relayed = False
    #: The encoder writes whole events only.
    at_boundary = True

    def __init__(self, tr: Translation) -> None:
        self.tr = tr

    def feed(self, data: bytes) -> bytes:
        return self.tr.feed(data)

    def finish(self) -> bytes:
        return self.tr.finish()

    def heartbeat(self) -> bytes:
        """The encoder's keep-alive event where the client needs one (Responses), else
        the client format's ``HEARTBEAT``."""
        beat = self.tr.keepalive()
        if beat is not None:
            return beat
        default: bytes = format_module(self.tr.client_format).HEARTBEAT
        return default

    def error_frame(self, message: str, kind: str = "upstream_error") -> bytes:
        """The provider failed mid-stream: end the client's stream with its error event,
        saying ``message``; a ``timeout`` is the client format's timeout error, anything
        else a bad gateway (as a stream cut at its end is, in ``finish``)."""
        err = ir.ErrorKind.TIMEOUT if kind == "timeout" else ir.ErrorKind.UPSTREAM_PROTOCOL
        return self.tr.fail(err, message)

    @property
    def complete(self) -> bool:
        return not self.tr.failed

    @property
    def ended(self) -> bool:
        """The client encoder wrote its terminal event (a clean end or an error)."""
        return self.tr.ended

    @property
    def usage(self) -> ir.Usage | None:
        return self.tr.usage

    @property
    def model(self) -> str | None:
        return self.tr.model
