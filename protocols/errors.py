"""Protocol errors that say who broke the protocol.

Every decoder and encoder in ``protocols/`` raises only subclasses of
:class:`ProtocolError`; the fuzz harnesses in ``fuzz/`` check exactly that. The
split follows h11's ``LocalProtocolError`` / ``RemoteProtocolError``, renamed for a
gateway that sits between two peers:

* :class:`ClientProtocolError`: the downstream client sent something invalid. The
  proxy answers 4xx in the client's own error format.
* :class:`UpstreamProtocolError`: the provider sent something invalid. The proxy
  answers 502 (or, mid-stream, ends the stream with an error event).

``status_hint`` is only a hint: ``proxy/`` owns the mapping to real responses,
because mid-stream there is no status line left to set.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BufferLimitExceeded",
    "ClientProtocolError",
    "ProtocolError",
    "UnsupportedFeature",
    "UpstreamProtocolError",
]


def _restore(
    cls: type[ProtocolError], args: tuple[Any, ...], state: dict[str, Any]
) -> Any:
    # Rebuild without calling __init__: subclasses have different constructor
    # signatures, so the default ``cls(*args)`` unpickling would mix them up.
    obj = cls.__new__(cls)
    obj.args = args
    obj.__dict__.update(state)
    return obj


class ProtocolError(Exception):
    """Root of every error raised by ``protocols/``.

    Attributes:
        status_hint: HTTP status the proxy should answer with, if it still can.
            The root class uses 500 because a bare ``ProtocolError`` does not say
            which side is at fault.
        param: the request field or wire element at fault (for example
            ``"messages[2].content"`` or ``"sse.line"``), or ``None``. OpenAI
            error bodies carry it as ``error.param``.
    """

    status_hint: int = 500

    def __init__(
        self,
        message: str = "",
        *,
        param: str | None = None,
        status_hint: int | None = None,
    ) -> None:
        super().__init__(message)
        self.param = param
        if status_hint is not None:
            self.status_hint = status_hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args, self.__dict__.copy()))

    def __repr__(self) -> str:
        extra = f", param={self.param!r}" if self.param is not None else ""
        return f"{type(self).__name__}({self.message!r}{extra})"


class ClientProtocolError(ProtocolError):
    """The downstream client sent something invalid (hint: 400)."""

    status_hint = 400


class UpstreamProtocolError(ProtocolError):
    """The upstream provider sent something invalid (hint: 502 Bad Gateway)."""

    status_hint = 502


class UnsupportedFeature(ClientProtocolError):
    """The request uses a field the target wire format cannot express.

    Raised while translating a request, so the client is told (400, with
    ``param`` naming the field) instead of the field being dropped silently.
    """

    def __init__(self, param: str, detail: str | None = None) -> None:
        message = f"{param!r} cannot be expressed in the target format"
        if detail:
            message = f"{message}: {detail}"
        super().__init__(message, param=param)
        self.detail = detail


class BufferLimitExceeded(UpstreamProtocolError):
    """An upstream element outgrew its named buffer limit.

    Every buffer in ``protocols/`` has an explicit bound (for example
    ``sse.MAX_LINE_BYTES``) so a misbehaving provider costs bounded memory.
    ``limit`` is the bound that was exceeded, in the unit its name states.
    """

    def __init__(
        self, message: str = "", *, param: str | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message, param=param)
        self.limit = limit
        #: Frames a splitter completed in the same call before the limit was hit: they
        #: still count (``protocols._streams``).
        self.frames: list[bytes] = []
