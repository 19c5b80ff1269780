"""proxy/hpack_out.py: response header blocks from the static table alone, read back by
hpack's own decoder (RFC 7541), and the table size update still written after the peer
lowers SETTINGS_HEADER_TABLE_SIZE."""

from __future__ import annotations

from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import hpack_out

HEAD = [(b":status", b"200"), (b"content-type", b"application/json"),
        (b"x-request-id", b"req_0123456789abcdef01234567"), (b"content-length", b"600"),
        (b"date", b"Mon, 07 Dec 2026 14:40:08 GMT"), (b"server", b"tokenway")]


def decoded(block: bytes, decoder: Decoder | None = None) -> list[tuple[bytes, bytes]]:
    d = decoder or Decoder()
    out = d.decode(block, raw=True)
    assert not d.header_table.dynamic_entries  # nothing entered the peer's table
    return [(bytes(k), bytes(v)) for k, v in out]


def test_a_response_head_reads_back_and_uses_the_static_table() -> None:
    block = hpack_out.encode_block(HEAD)
    assert decoded(block) == HEAD
    assert block[0] == 0x80 | 8  # ":status 200" is static entry 8: one byte
    # content-type is static entry 31: 0000 1111 then 31 - 15, then the raw value.
    assert block[1:4] == bytes((0x0F, 16, len(b"application/json")))


def test_never_indexed_fields_stay_never_indexed() -> None:
    head = [(b":status", b"404"), NeverIndexedHeaderTuple(b"set-cookie", b"a=b"),
            NeverIndexedHeaderTuple(b"x-secret", b"s")]
    out = Decoder().decode(hpack_out.encode_block(head), raw=True)
    assert [type(f).__name__ for f in out] == ["HeaderTuple", "NeverIndexedHeaderTuple",
                                               "NeverIndexedHeaderTuple"]
    assert [(bytes(k), bytes(v)) for k, v in out] == [(bytes(k), bytes(v)) for k, v in head]


def test_lengths_past_one_byte_prefixes() -> None:
    for n in (126, 127, 128, 255, 16_383, 16_384, 30_000):
        head = [(b":status", b"200"), (b"x-long", b"v" * n), (b"n" * n, b"x")]
        assert decoded(hpack_out.encode_block(head)) == head


_names = st.one_of(st.sampled_from([b":status", b"content-type", b"date", b"server",
                                    b"www-authenticate", b"retry-after", b"x-request-id"]),
                   st.binary(min_size=1, max_size=300).map(lambda b: b.lower()))
_fields = st.tuples(_names, st.binary(max_size=400))


@settings(max_examples=300, deadline=None)
@given(st.lists(_fields, max_size=20))
def test_any_header_list_reads_back(head: list[tuple[bytes, bytes]]) -> None:
    assert decoded(hpack_out.encode_block(head)) == head


def test_a_lowered_table_size_is_signalled_once_then_blocks_need_no_state() -> None:
    enc, dec = Encoder(), Decoder()
    hpack_out.install(enc)
    first = enc.encode(HEAD)
    assert decoded(first, dec) == HEAD
    enc.header_table_size = 0  # the peer's SETTINGS_HEADER_TABLE_SIZE 0
    dec.header_table_size = 0
    second = enc.encode(HEAD)
    assert second[0] == 0x20  # dynamic table size update to 0 (§6.3) opens the block
    assert [(bytes(k), bytes(v)) for k, v in dec.decode(second, raw=True)] == HEAD
    third = enc.encode(HEAD)
    assert third == first and decoded(third, dec) == HEAD
