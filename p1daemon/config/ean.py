"""EAN codes of metering points: 18 digits whose last one is a GS1 mod-10 check digit.

A typo in an EAN would silently attach a house's readings to somebody else's connection
in every downstream tool, so the check digit is verified when the file is loaded.
"""

from __future__ import annotations

EAN_LENGTH = 18


def gs1_check_digit(body: str) -> int:
    """Check digit for the digits before it: weights 3,1,3,... from the right, mod 10."""
    total = sum(int(digit) * (3 if i % 2 == 0 else 1) for i, digit in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def ean_problem(ean: str) -> str | None:
    """Why `ean` is not a valid metering point EAN, or None when it is."""
    if not ean.isascii() or not ean.isdigit():
        return f"must be {EAN_LENGTH} digits, got {ean!r}"
    if len(ean) != EAN_LENGTH:
        return f"must be {EAN_LENGTH} digits, got {len(ean)}"
    expected = gs1_check_digit(ean[:-1])
    if int(ean[-1]) != expected:
        return f"check digit should be {expected}, got {ean[-1]}"
    return None
