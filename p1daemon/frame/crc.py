"""CRC-16/ARC as DSMR 4+ uses it (poly 0xA001 reflected, init 0, no final xor).

The checksum runs over every byte of every telegram, so it is the hottest loop of the
daemon, and a Python loop per byte (or per 16-bit word) is what made it hot. Tables do not
fix that on a small board either: a 65,536-entry word table is 2.5 MB of Python ints.

CRC-16/ARC with init 0 and no final xor is linear over GF(2): each of the 16 CRC bits is
the parity of some of the message's bits. Read the message as one *big-endian* integer
(`int.from_bytes(data, "big")`) and the bit `8 * d + b` is bit `b` of the byte `d` places
before the end; what that bit adds to the CRC depends on `d` and `b` only, never on the
message's length. So 16 fixed masks (`_MASKS[j]` holds every position whose bit feeds CRC
bit `j`) serve every length up to `_SPAN` bytes, and CRC bit `j` is
`(x & _MASKS[j]).bit_count() & 1`, 16 steps at C speed whatever the length. A starting
register `c` is the same as xor-ing its low byte into the first byte and its high byte
into the second (that is what the register does with the next two bytes), so longer
messages go through in `_SPAN`-byte pieces, each continuing from the previous one.
The masks take 16 x `_SPAN` bytes (35 kB as ints) and about 5 ms to build, on first use
(the word table and block plans they replace took 2.8 MB and half a second).

`crc16_arc_bytes` is the plain 256-entry table loop (a second reference for tests);
`crc16_arc_reference` the bit-by-bit definition.
"""

from __future__ import annotations

from array import array

_POLY = 0xA001
_SPAN = 2048  # bytes per piece: longer than any real telegram, so one piece in practice


def _byte_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_BYTE_TABLE = _byte_table()


def crc16_arc_bytes(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The CRC-16/ARC of `data`, continuing from `crc`, one table step per byte."""
    table = _BYTE_TABLE
    for byte in bytes(data):
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def crc16_arc_reference(data: bytes) -> int:
    """Bit-by-bit CRC straight from the companion standard, for tests and tools."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
    return crc


# -- the parity masks ----------------------------------------------------------------------


def _masks(span: int) -> tuple[int, ...]:
    """The 16 masks for messages of up to `span` bytes (see the module docstring).

    Bit `b` of the byte `d` places before the end goes through `8 * d + 8 - b` shifts of
    the bit-serial register once xor-ed into its bit `b`, which is where the bit-serial
    register started from 1 is after `8 * d + 8 - b` shifts: `states[k - 1]` below. The
    masks are those states' bit planes, transposed with `bytes.translate` and slices so
    that building them costs about `8 * span` Python steps, not `128 * span`.
    """
    states = array("H")
    state = 1
    for _ in range(8 * span):
        state = (state >> 1) ^ _POLY if state & 1 else state >> 1
        states.append(state)
    halves = (bytes(state & 0xFF for state in states), bytes(state >> 8 for state in states))
    planes = [bytes((value >> bit) & 1 for value in range(256)) for bit in range(8)]
    masks = []
    for j in range(16):
        plane = halves[j >> 3].translate(planes[j & 7])  # bit j of each state, as 0/1 bytes
        mask = 0
        for b in range(8):
            # Byte d of plane[7 - b :: 8] is bit j of states[8 * d + 7 - b]; little-endian
            # puts it at bit 8 * d, and the shift moves it to 8 * d + b.
            mask |= int.from_bytes(plane[7 - b :: 8], "little") << b
        masks.append(mask)
    return tuple(masks)


_MASKS: tuple[int, ...] | None = None


def crc16_arc(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Return the CRC-16/ARC of `data`, continuing from `crc` (see the module docstring)."""
    global _MASKS
    masks = _MASKS
    if masks is None:
        masks = _MASKS = _masks(_SPAN)
    m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15 = masks
    length = len(data)
    pos = 0
    while length - pos >= 2:
        size = min(length - pos, _SPAN)
        x = int.from_bytes(data[pos : pos + size], "big")
        if crc:
            # The register's low byte meets the piece's first byte, its high byte the second.
            x ^= (((crc & 0xFF) << 8) | (crc >> 8)) << (8 * size - 16)
        pos += size
        crc = (
            ((x & m0).bit_count() & 1)
            | ((x & m1).bit_count() & 1) << 1
            | ((x & m2).bit_count() & 1) << 2
            | ((x & m3).bit_count() & 1) << 3
            | ((x & m4).bit_count() & 1) << 4
            | ((x & m5).bit_count() & 1) << 5
            | ((x & m6).bit_count() & 1) << 6
            | ((x & m7).bit_count() & 1) << 7
            | ((x & m8).bit_count() & 1) << 8
            | ((x & m9).bit_count() & 1) << 9
            | ((x & m10).bit_count() & 1) << 10
            | ((x & m11).bit_count() & 1) << 11
            | ((x & m12).bit_count() & 1) << 12
            | ((x & m13).bit_count() & 1) << 13
            | ((x & m14).bit_count() & 1) << 14
            | ((x & m15).bit_count() & 1) << 15
        )
    if pos < length:  # one byte left over
        crc = (crc >> 8) ^ _BYTE_TABLE[(crc ^ data[pos]) & 0xFF]
    return crc
