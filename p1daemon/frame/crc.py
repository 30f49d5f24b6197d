"""CRC-16/ARC as DSMR 4+ uses it (poly 0xA001 reflected, init 0, no final xor).

The checksum runs over every byte of every telegram, so it is the hottest loop of the
daemon, and a Python loop per byte (or per 16-bit word) is what made it hot. CRC-16/ARC
with init 0 and no final xor is linear over GF(2): the CRC of a block of `size` bytes,
started from register `c`, is `advance(c) ^ crc0(block)`, where `advance` pushes the
register through `size` zero bytes (a linear map of 16 bits: two 256-entry tables), and
each of the 16 bits of `crc0(block)` is the parity of the block, read as one
little-endian integer, masked with a fixed `size`-dependent mask. `int.bit_count()` and
`&` run at C speed over the whole block, so a 1 kB telegram costs a few dozen Python
steps instead of 500. Blocks of 1024, 512, ... 16 bytes (each used at most once after
the largest) cover a telegram of any length; the last < 16 bytes go through the 16-bit
word table. The masks and tables are built on first use (about 0.1 s, 100 kB).

`crc16_arc_words` is the word-table loop on its own (kept for the tail and as a second
reference for tests); `crc16_arc_reference` the bit-by-bit definition.
"""

from __future__ import annotations

import sys
from array import array

_POLY = 0xA001


def _byte_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_BYTE_TABLE = _byte_table()


def _word_table() -> list[int]:
    # Feeding the low byte then the high byte of `word` through the byte table,
    # starting from a zero register.
    bt = _BYTE_TABLE
    table = [0] * 65536
    for word in range(65536):
        crc = bt[word & 0xFF]
        table[word] = (crc >> 8) ^ bt[(crc ^ (word >> 8)) & 0xFF]
    return table


_WORD_TABLE: list[int] | None = None


def crc16_arc_words(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The CRC-16/ARC of `data`, continuing from `crc`, one 16-bit table step per word."""
    global _WORD_TABLE
    table = _WORD_TABLE
    if table is None:
        table = _WORD_TABLE = _word_table()
    length = len(data)
    even = length & ~1
    words = array("H")
    words.frombytes(data[:even])
    if sys.byteorder == "big":
        words.byteswap()
    for word in words:
        crc = table[crc ^ word]
    if length & 1:
        bt = _BYTE_TABLE
        crc = (crc >> 8) ^ bt[(crc ^ data[even]) & 0xFF]
    return crc


def crc16_arc_reference(data: bytes) -> int:
    """Bit-by-bit CRC straight from the companion standard, for tests and tools."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
    return crc


# -- the block method --------------------------------------------------------------------

_BLOCK_SIZES = (1024, 512, 256, 128, 64, 32, 16)
_Plan = tuple[int, tuple[int, ...], list[int], list[int]]
_PLANS: list[_Plan] | None = None


def _advance_zeros(crc: int, count: int) -> int:
    bt = _BYTE_TABLE
    for _ in range(count):
        crc = (crc >> 8) ^ bt[crc & 0xFF]
    return crc


def _plan(size: int) -> _Plan:
    """Masks of crc0 for blocks of `size` bytes, and the tables of `advance` over them."""
    bt = _BYTE_TABLE
    masks = [0] * 16
    for bit in range(8):
        # The register after the byte (1 << bit) and then d zero bytes, for d = 0, 1, ...
        state = bt[1 << bit]
        for distance in range(size):
            position = 8 * (size - 1 - distance) + bit  # that byte's bit in the block int
            for j in range(16):
                if state >> j & 1:
                    masks[j] |= 1 << position
            state = (state >> 8) ^ bt[state & 0xFF]
    basis = [_advance_zeros(1 << i, size) for i in range(16)]

    def combine(value: int, shift: int) -> int:
        out = 0
        for i in range(8):
            if value >> i & 1:
                out ^= basis[i + shift]
        return out

    low = [combine(value, 0) for value in range(256)]
    high = [combine(value, 8) for value in range(256)]
    return size, tuple(masks), low, high


def _plans() -> list[_Plan]:
    global _PLANS
    if _PLANS is None:
        _PLANS = [_plan(size) for size in _BLOCK_SIZES]
    return _PLANS


def crc16_arc(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Return the CRC-16/ARC of `data`, continuing from `crc` (see the module docstring)."""
    length = len(data)
    if length < 16:
        return crc16_arc_words(data, crc)
    plans = _PLANS if _PLANS is not None else _plans()
    from_bytes = int.from_bytes
    pos = 0
    for size, masks, low, high in plans:
        if length - pos < size:
            continue
        m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15 = masks
        while length - pos >= size:
            x = from_bytes(data[pos : pos + size], "little")
            pos += size
            crc = (
                low[crc & 0xFF]
                ^ high[crc >> 8]
                ^ ((x & m0).bit_count() & 1)
                ^ ((x & m1).bit_count() & 1) << 1
                ^ ((x & m2).bit_count() & 1) << 2
                ^ ((x & m3).bit_count() & 1) << 3
                ^ ((x & m4).bit_count() & 1) << 4
                ^ ((x & m5).bit_count() & 1) << 5
                ^ ((x & m6).bit_count() & 1) << 6
                ^ ((x & m7).bit_count() & 1) << 7
                ^ ((x & m8).bit_count() & 1) << 8
                ^ ((x & m9).bit_count() & 1) << 9
                ^ ((x & m10).bit_count() & 1) << 10
                ^ ((x & m11).bit_count() & 1) << 11
                ^ ((x & m12).bit_count() & 1) << 12
                ^ ((x & m13).bit_count() & 1) << 13
                ^ ((x & m14).bit_count() & 1) << 14
                ^ ((x & m15).bit_count() & 1) << 15
            )
    if pos < length:
        crc = crc16_arc_words(data[pos:], crc)
    return crc
