"""The device class / state class / unit combinations this package hands to Home Assistant.

Home Assistant checks each sensor against its own tables (`DEVICE_CLASS_STATE_CLASSES`
and `DEVICE_CLASS_UNITS` in `homeassistant/components/sensor/const.py`); a mismatch
makes it warn and leaves the sensor out of long-term statistics and the Energy
dashboard. The sets below are the part of those tables we use, narrowed to what every
Home Assistant release since 2023 accepts (newer releases added more units). A reading
whose unit does not fit gets no device class rather than a wrong one.
"""

from __future__ import annotations

TOTALS = frozenset({"total", "total_increasing"})
MEASUREMENT = frozenset({"measurement"})

# device_class -> (allowed state classes, allowed units)
ALLOWED: dict[str, tuple[frozenset[str], frozenset[str | None]]] = {
    "energy": (TOTALS, frozenset({"Wh", "kWh", "MWh", "MJ", "GJ"})),
    "power": (MEASUREMENT, frozenset({"W", "kW"})),
    "voltage": (MEASUREMENT, frozenset({"V", "mV"})),
    "current": (MEASUREMENT, frozenset({"A", "mA"})),
    "gas": (TOTALS, frozenset({"m³", "ft³", "CCF"})),
    "water": (TOTALS, frozenset({"m³", "L", "gal", "ft³", "CCF"})),
    "timestamp": (frozenset(), frozenset({None})),
}

CUBIC_METRE = "m\u00b3"  # Home Assistant's unit string; "m3" is not accepted

# Units as meters spell them -> as Home Assistant spells them.
_UNIT_SPELLING = {
    "m3": CUBIC_METRE,
    "m\u00b3": CUBIC_METRE,
    "kwh": "kWh",
    "wh": "Wh",
    "gj": "GJ",
    "mj": "MJ",
}


def ha_unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    return _UNIT_SPELLING.get(unit.strip().lower(), unit.strip() or None)


def fits(device_class: str, state_class: str | None, unit: str | None) -> bool:
    allowed = ALLOWED.get(device_class)
    if allowed is None:
        return False
    state_classes, units = allowed
    state_ok = state_class in state_classes if state_classes else state_class is None
    return state_ok and unit in units
