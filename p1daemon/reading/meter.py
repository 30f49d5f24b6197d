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
        # The reading was validated when it was parsed: its fields are copied, not
        # validated twice. What `model_construct` does, without its per-field loop over
        # aliases and defaults (every field is given): a quarter of the daemon's own cost
        # per telegram went there. tests/test_reading_meter.py holds the two equal.
        values = reading.__dict__.copy()
        values["meter"] = meter
        values["role"] = role
        values["ean"] = ean
        values["meter_replaced"] = meter_replaced
        values["received_at"] = received_at
        if not _PLAIN or type(reading) is not Reading:
            return cls.model_construct(**values)
        made = cls.__new__(cls)
        _set(made, "__dict__", values)
        _set(made, "__pydantic_fields_set__", set(values))
        _set(made, "__pydantic_extra__", None)
        _set(made, "__pydantic_private__", None)
        return made


_set = object.__setattr__
# The fast path of `from_reading` holds for a model without post-init, private
# attributes or extra fields, whose fields are exactly the reading's plus the five above.
_PLAIN = (
    MeterReading.__pydantic_post_init__ is None
    and not MeterReading.__private_attributes__
    and MeterReading.model_config.get("extra") != "allow"
    and list(MeterReading.model_fields)
    == [*Reading.model_fields, "meter", "role", "ean", "meter_replaced", "received_at"]
)
