"""HTTP/2 response header blocks written without HPACK's dynamic table.

hpack's encoder costs about 20 us of a 155 us HTTP/2 request in the h2 library
(bench.micro.h2): it searches its dynamic table linearly for every header and
builds each representation through several calls. A response head here is a status,
a few fixed names and per-request values (ids, dates, lengths), which the dynamic
table would not shorten much: so every field is written from the static table alone
(RFC 7541 §2.3.1, Appendix A), as

- an indexed field when the static table holds the name and value (``:status 200``:
  one byte, §6.1);
- otherwise a literal, never indexed when the caller asked (``NeverIndexedHeaderTuple``,
  §6.2.3) and without indexing else (§6.2.2), naming the static table's entry for
  the name when there is one; values raw, without Huffman coding (§5.2).

The peer's decoder table is never written to, so the blocks need no state. The one
thing the encoder still owes the peer is a dynamic table size update (§4.2, §6.3)
after the peer lowered SETTINGS_HEADER_TABLE_SIZE: that block goes through hpack's
own encoder, which writes the update first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hpack import HeaderTuple
from hpack.hpack import Encoder
from hpack.table import HeaderTable

# (name, value) -> static index, and name -> its first static index (RFC 7541 Appendix A).
_INDEXED: dict[tuple[bytes, bytes], int] = {}
_NAMED: dict[bytes, int] = {}
for _i, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, 1):
    _NAMED.setdefault(_name, _i)
    if _value:
        _INDEXED[(_name, _value)] = _i
del _i, _name, _value

_NEVER_INDEXED = 0x10  # §6.2.3: 0001xxxx
_WITHOUT_INDEXING = 0x00  # §6.2.2: 0000xxxx


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An integer with an N-bit prefix (§5.1); ``first``: the first byte's other bits."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes((first | value,))
    out = bytearray((first | top,))
    value -= top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    """A string literal without Huffman coding (§5.2)."""
    n = len(data)
    if n < 127:
        return bytes((n,)) + data
    return _integer(n, 7, 0) + data


def encode_block(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The header block of ``headers`` (bytes names and values, pseudo-headers first)."""
    out = []
    for field in headers:
        name, value = field[0], field[1]
        i = _INDEXED.get((name, value))
        if i is not None:
            out.append(bytes((0x80 | i,)))
            continue
        kind = (_NEVER_INDEXED if isinstance(field, HeaderTuple) and not field.indexable
                else _WITHOUT_INDEXING)
        n = _NAMED.get(name)
        if n is None:
            out.append(bytes((kind,)) + _string(name))
        else:
            out.append(_integer(n, 4, kind))
        out.append(_string(value))
    return b"".join(out)


def install(encoder: Encoder) -> None:
    """Make ``encoder.encode`` write blocks with ``encode_block``, falling back to
    hpack's own encoding (Huffman off) for a block that owes the peer a table size
    update."""
    hpack_encode: Callable[..., bytes] = encoder.encode
    table = encoder.header_table

    def encode(headers: Any, huffman: bool = False) -> bytes:
        if table.resized:
            return hpack_encode(headers, huffman=False)
        return encode_block(headers)

    encoder.encode = encode  # type: ignore[method-assign]
