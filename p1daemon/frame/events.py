"""What the framing layer hands on: a complete telegram, or a dropped piece with its reason."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DropReason(StrEnum):
    """Why bytes never became a reading; operators count these per meter."""

    CRC_MISMATCH = "crc_mismatch"
    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    MISSING_CRC = "missing_crc"
    GARBAGE = "garbage"
    DECRYPT_FAILED = "decrypt_failed"
    UNPARSABLE = "unparsable"


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete telegram as it came off the wire.

    `body` runs from '/' through '!' inclusive (what the CRC covers); `crc` is the
    declared checksum, or None for DSMR 2.2/3.0 telegrams that carry none.
    """

    body: bytes
    crc: int | None
    crc_checked: bool


@dataclass(frozen=True, slots=True)
class Dropped:
    """Bytes that were thrown away, with the reason and a short human detail."""

    reason: DropReason
    detail: str
    size: int

    def describe(self) -> str:
        return f"{self.reason.value}: {self.detail} ({self.size} bytes)"
