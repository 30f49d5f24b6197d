"""CRC-16/ARC as DSMR 4+ uses it (poly 0xA001 reflected, init 0, no final xor).

The checksum runs over every byte of every telegram, so it is the hottest loop of the
daemon, and a Python loop per byte (or per 16-bit word) is what made it hot. Tables do not
fix that on a small board either: a 65,536-entry word table is 2.5 MB of Python ints.

CRC-16/ARC is polynomial arithmetic over GF(2): with each byte's bits reversed (the
meter sends the least significant bit first) the message read as one big-endian integer
`m` *is* the message polynomial M(x), bit `i` the coefficient of x^i, and the CRC is
M(x) * x^16 mod P(x), P = x^16 + x^15 + x^2 + 1 (0x8005), with its 16 bits reversed.
P = (x + 1) * Q, Q = x^15 + x + 1, so that remainder is fixed by two smaller ones
(Chinese remainders): M mod (x + 1), the parity of all the message's bits (one
`bit_count`), and M mod Q, which a handful of big-integer shifts and xors at C speed
work out, because Q is a trinomial. In GF(2), (a + b)^2 = a^2 + b^2, so for every
power of two t, x^(15t) = (x + 1)^t = x^t + 1 (mod Q): the part of m above bit 15t,
`h = m >> 15t`, folds back in as `h ^ (h << t)`, which about halves m's length for t
near 1/29 of it. Twelve such folds take a 772-byte telegram down to 15 bits; which
folds a length needs is worked out once per length (`_plan`). What the CRC is for a
parity and a remainder is linear in both, so a 256- and a 128-entry table and a constant
(`_RESIDUE_LOW`, `_RESIDUE_HIGH`, `_ODD`) give it, made from the byte-table CRC of
two-byte messages when the module is imported: a message of degree below 15 is its own
remainder. About 57,000 machine instructions (callgrind) per 772-byte telegram, against
134,000 for the 16 parity masks this replaces (16 `bit_count`s over the whole message),
and nothing to build but two small tables.

A starting register `c` is the same as xor-ing its low byte into the first byte and its
high byte into the second (that is what the register does with the next two bytes).

`crc16_arc_bytes` is the plain 256-entry table loop (a second reference for tests);
`crc16_arc_reference` the bit-by-bit definition.
"""

from __future__ import annotations

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


# -- the remainders ------------------------------------------------------------------------

# Each byte with its bits reversed: the first bit on the wire becomes the highest.
_REVERSED = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))
_Q_DEGREE = 15


def _of_polynomial(poly: int) -> int:
    """The CRC of the two-byte message whose polynomial is `poly` (degree below 16)."""
    return crc16_arc_bytes(poly.to_bytes(2, "big").translate(_REVERSED))


# Q itself has remainder 0 and odd parity: what an odd parity adds to the CRC. A
# polynomial of degree below 15 is its own remainder, with a parity of its own, which
# _ODD takes back out: what its remainder adds.
_ODD = _of_polynomial((1 << _Q_DEGREE) | 0b11)


def _residue_table(shift: int, size: int) -> list[int]:
    table = [0] * size
    for value in range(1, size):
        poly = value << shift
        table[value] = _of_polynomial(poly) ^ (_ODD if poly.bit_count() & 1 else 0)
    return table


_RESIDUE_LOW = _residue_table(0, 256)  # the remainder's bits 0-7
_RESIDUE_HIGH = _residue_table(8, 128)  # its bits 8-14

_Fold = tuple[int, int, int]  # (15t, the mask of the bits below 15t, t)
_PLANS: dict[int, tuple[_Fold, ...]] = {}
_PLANS_MAX = 256  # lengths: a meter's telegrams come in a few


def _plan(length: int) -> tuple[_Fold, ...]:
    """The folds that take a message of `length` bytes down to 15 bits: each fold at 15t
    leaves max(15t, bits - 14t) bits, and each takes the power of two t that leaves
    fewest (which is also the fewest folds: 12 for a 772-byte telegram)."""
    plan = []
    bits = 8 * length
    while bits > _Q_DEGREE:
        powers = (1 << k for k in range(bits.bit_length()))
        left, t = min((max(15 * t, bits - 14 * t), t) for t in powers if 15 * t < bits)
        plan.append((15 * t, (1 << (15 * t)) - 1, t))
        bits = left
    return tuple(plan)


def crc16_arc(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Return the CRC-16/ARC of `data`, continuing from `crc` (see the module docstring)."""
    length = len(data)
    if length < 2:
        if length:
            crc = (crc >> 8) ^ _BYTE_TABLE[(crc ^ data[0]) & 0xFF]
        return crc
    message = data.tobytes() if isinstance(data, memoryview) else data
    m = int.from_bytes(message.translate(_REVERSED), "big")
    if crc:
        # The register's low byte meets the first byte, its high byte the second.
        reversed_crc = (_REVERSED[crc & 0xFF] << 8) | _REVERSED[crc >> 8]
        m ^= reversed_crc << (8 * length - 16)
    plan = _PLANS.get(length)
    if plan is None:
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        plan = _PLANS[length] = _plan(length)
    odd = m.bit_count() & 1
    for split, below, t in plan:
        high = m >> split
        m = (m & below) ^ high ^ (high << t)
    return (_ODD if odd else 0) ^ _RESIDUE_LOW[m & 0xFF] ^ _RESIDUE_HIGH[m >> 8]
