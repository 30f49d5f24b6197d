"""Serial line settings, and the two that P1 ports use in practice."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LineSettings:
    baudrate: int
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


DSMR4 = LineSettings(115200, 8, "N", 1)
"""DSMR 4.x and 5.x, Belgian e-MUCS and Luxembourg Smarty."""

DSMR2 = LineSettings(9600, 7, "E", 1)
"""DSMR 2.2 and 3.0."""

AUTO_CANDIDATES = (DSMR4, DSMR2)
