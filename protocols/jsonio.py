"""The single JSON seam of ``protocols/``.

Every module in ``protocols/`` parses and serialises JSON through this module and
nothing else, so the hot-path library can be swapped or benchmarked in one place.
The backend is orjson: it parses ``bytes`` straight off the wire (no decode to
``str`` first), rejects ``NaN``/``Infinity`` like RFC 8259, and emits compact UTF-8.

Errors are deliberately not translated here. Whether bad JSON is the client's
fault (400) or the provider's (502) depends on which side the bytes came from, so
the caller catches :data:`JSONDecodeError` and raises ``ClientProtocolError`` or
``UpstreamProtocolError`` from ``protocols.errors``.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["JSONDecodeError", "JSONEncodeError", "dumps", "dumps_sorted", "loads"]

#: Raised by :func:`loads`. A subclass of ``json.JSONDecodeError`` and so of
#: ``ValueError``, which lets callers catch it without importing orjson.
JSONDecodeError = orjson.JSONDecodeError

#: Raised by :func:`dumps` for values JSON cannot hold (non-``str`` keys, integers
#: beyond 64 bits, arbitrary objects). A subclass of ``TypeError``.
JSONEncodeError = orjson.JSONEncodeError


# ``loads`` and ``dumps`` are orjson's own functions, not wrappers: they run on every
# stream event and every request, and a Python-level wrapper would add a call to each.

#: ``loads(data: bytes | bytearray | memoryview | str) -> Any``: parse one JSON
#: document; raises :data:`JSONDecodeError` when invalid.
loads = orjson.loads

#: ``dumps(obj: Any) -> bytes``: serialise ``obj`` as compact UTF-8 JSON (no spaces, no
#: trailing newline). Call it with ``obj`` only.
dumps = orjson.dumps


def dumps_sorted(obj: Any) -> bytes:
    """Like :func:`dumps` with object keys sorted: a canonical form for comparing."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
