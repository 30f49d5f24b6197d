"""A reading as the daemon publishes it: the telegram's document plus which metering point.

One grid connection can have a primary and up to five secondary allocation points,
each with its own meter; subscribers must be able to tell them apart without knowing
which serial port is which, so every reading names its meter, role and EAN.
"""

from __future__ import annotations

from datetime import datetime

from p1daemon.reading.model import Reading
from p1daemon.reading.role import Role as Role


class MeterReading(Reading):
    """`Reading` plus the metering point it belongs to (public contract, add freely)."""

    meter: str
    role: Role
    ean: str | None = None
    meter_replaced: bool = False
    received_at: datetime

    @classmethod
    def from_reading(
        cls,
        reading: Reading,
        *,
        meter: str,
        role: Role,
        ean: str | None,
        received_at: datetime,
        meter_replaced: bool = False,
    ) -> MeterReading:
        # model_construct: the reading was validated when it was parsed; copying its
        # already-validated fields avoids validating every telegram twice. `__dict__`
        # holds exactly those fields and is far cheaper to read than iterating the model.
        return cls.model_construct(
            **reading.__dict__,
            meter=meter,
            role=role,
            ean=ean,
            received_at=received_at,
            meter_replaced=meter_replaced,
        )
