"""A reading as the daemon publishes it: the telegram's document plus which metering point.

One grid connection can have a primary and up to five secondary allocation points,
each with its own meter; subscribers must be able to tell them apart without knowing
which serial port is which, so every reading names its meter, role and EAN.
"""

from __future__ import annotations

from datetime import datetime

from p1daemon.reading.model import Reading
from p1daemon.reading.role import Role as Role

_READING_KEYS = Reading.json_names


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
        # The reading was checked when it was parsed: its fields are copied (one dict
        # copy: the reading's values are its `__dict__`, in field order), not made again.
        # A quarter of the daemon's own cost per telegram once went to this step.
        if type(reading) is Reading or type(reading) is MeterReading:
            values = reading.__dict__.copy()
        else:  # a subclass with more fields: only the reading's own go on
            values = {key: reading.__dict__[key] for key in _READING_KEYS}
        values["meter"] = meter
        values["role"] = role
        values["ean"] = ean
        values["meter_replaced"] = meter_replaced
        values["received_at"] = received_at
        return cls.of(values)
