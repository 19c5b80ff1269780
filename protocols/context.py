"""The per-request translation Context, part of the IR's surface (``ir.Context``).

Kept apart from the IR's data classes (``protocols/ir.py``) because it is the one
mutable, stateful piece: ids handed out during a request, the renamed tools, the
decoded client request.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ir import Request

_ID_SAFE = re.compile(r"[A-Za-z0-9_-]*")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class Context:
    """Per-request state shared by the two codecs of one translation (mutable; one per
    request, not thread-safe).

    * ``request_id`` / ``created``: the gateway's request id and Unix time, passed in so
      that ``protocols/`` never reads a clock (sans-IO, tests/test_layering.py).
    * ``client_format`` / ``upstream_format``: format names (``FORMAT_*``).
    * ``client_request``: the decoded client ``Request`` once known; client-side encoders
      read options from it (Chat ``include_usage``, tool kinds, the requested model).
    * ``tool_names``: upstream wire tool name → client tool name. An upstream request
      encoder that has to rename tools (length or charset limits, docs/protocols.md §5.3)
      records the reverse mapping here; upstream decoders apply it to the names they
      report, so the client sees its own names again.
    * ``builtin_tools``: what an upstream encoder does with another provider's built-in
      tool that has no equivalent (``protocols/builtin_tools.py``): ``"drop"`` it and
      name it in ``dropped_tools``, or ``"refuse"`` the request.
    * ``new_id(prefix)``: a fresh id such as ``chatcmpl-…``, ``msg_…``, ``call_…``. Ids are
      distinct within one request and deterministic for a given ``request_id`` unless an
      ``id_factory`` is supplied.
    """

    __slots__ = (
        "request_id",
        "created",
        "client_format",
        "upstream_format",
        "client_request",
        "tool_names",
        "builtin_tools",
        "dropped_tools",
        "_id_factory",
        "_id_counts",
        "_id_suffix",
    )

    def __init__(
        self,
        *,
        request_id: str,
        created: int,
        client_format: str = "",
        upstream_format: str = "",
        id_factory: Any = None,
    ) -> None:
        self.request_id = request_id
        self.created = created
        self.client_format = client_format
        self.upstream_format = upstream_format
        self.client_request: Request | None = None
        self.tool_names: dict[str, str] = {}
        self.builtin_tools = "drop"
        self.dropped_tools: list[str] = []
        self._id_factory = id_factory
        self._id_counts: dict[str, int] = {}
        self._id_suffix: str | None = None  # request_id made id-safe, computed once

    def new_id(self, prefix: str) -> str:
        """A new id starting with ``prefix``, built from ``id_factory(prefix)`` when one was
        given, else ``prefix + request_id`` (characters outside ``[A-Za-z0-9_-]`` become
        ``_``), with ``_2``, ``_3``… appended on later calls for the same prefix."""
        if self._id_factory is not None:
            return str(self._id_factory(prefix))
        n = self._id_counts.get(prefix, 0) + 1
        self._id_counts[prefix] = n
        suffix = self._id_suffix
        if suffix is None:
            rid = self.request_id
            suffix = rid if _ID_SAFE.fullmatch(rid) else _ID_UNSAFE.sub("_", rid)
            self._id_suffix = suffix
        base = prefix + suffix
        return base if n == 1 else f"{base}_{n}"
