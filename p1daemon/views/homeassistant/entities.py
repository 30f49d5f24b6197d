"""Which Home Assistant sensors a reading calls for: one per register it actually sends.

A register the meter does not send is null in the reading and gets no entity. Every
state comes out of the meter's retained `latest` document through a value template that
yields nothing for a null, so Home Assistant keeps the previous state instead of
recording a zero (a zero on a total_increasing sensor reads as a meter reset and puts a
spike in the Energy dashboard). See `templates.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from p1daemon.reading.model import MbusDevice, Reading
from p1daemon.views.homeassistant import templates
from p1daemon.views.homeassistant.units import fits, ha_unit

DIAGNOSTIC = "diagnostic"
_PHASES = ("l1", "l2", "l3")


@dataclass(frozen=True, slots=True)
class Entity:
    """One sensor. `key` is stable per register and becomes part of the unique id."""

    key: str
    name: str
    template: str
    device_class: str | None = None
    state_class: str | None = None
    unit: str | None = None
    precision: int | None = None
    category: str | None = None


def _energy(key: str, name: str, path: tuple[str, ...]) -> Entity:
    return Entity(key, name, templates.number(path), "energy", "total_increasing", "kWh", 3)


def _power(key: str, name: str, path: tuple[str, ...]) -> Entity:
    return Entity(key, name, templates.number(path), "power", "measurement", "kW", 3)


def _tariff_name(tariff: str, labels: Mapping[str, str]) -> str:
    label = labels.get(tariff)
    return f"{tariff.upper()} ({label})" if label else tariff.upper()


def meter_entities(reading: Reading, tariff_labels: Mapping[str, str]) -> list[Entity]:
    """The metering point's own sensors (not its M-Bus devices)."""
    out: list[Entity] = []
    for direction, label, values in (
        ("import", "import", reading.import_),
        ("export", "export", reading.export),
    ):
        short = "imp" if direction == "import" else "exp"
        for tariff in ("t1", "t2", "t3", "t4"):
            if getattr(values, f"{tariff}_kwh") is not None:
                name = f"Energy {label} {_tariff_name(tariff, tariff_labels)}"
                out.append(_energy(f"{short}_{tariff}", name, (direction, f"{tariff}_kwh")))
        if values.total_kwh is not None:
            out.append(_energy(f"{short}_total", f"Energy {label} total", (direction, "total_kwh")))
        if values.power_kw is not None:
            out.append(_power(f"{short}_power", f"Power {label}", (direction, "power_kw")))
        for phase in _PHASES:
            if getattr(values, f"{phase}_kw") is not None:
                out.append(
                    _power(
                        f"{short}_power_{phase}",
                        f"Power {label} {phase.upper()}",
                        (direction, f"{phase}_kw"),
                    )
                )
    for phase in _PHASES:
        if getattr(reading.voltage, f"{phase}_v") is not None:
            out.append(
                Entity(
                    f"voltage_{phase}",
                    f"Voltage {phase.upper()}",
                    templates.number(("voltage", f"{phase}_v")),
                    "voltage",
                    "measurement",
                    "V",
                    1,
                )
            )
    for phase in _PHASES:
        if getattr(reading.current, f"{phase}_a") is not None:
            out.append(
                Entity(
                    f"current_{phase}",
                    f"Current {phase.upper()}",
                    templates.number(("current", f"{phase}_a")),
                    "current",
                    "measurement",
                    "A",
                    2,
                )
            )
    if reading.tariff is not None:
        # A display precision makes Home Assistant treat the state as a number, which is
        # what makes it ignore the empty string a missing tariff renders to.
        out.append(Entity("tariff", "Tariff", templates.number(("tariff",)), precision=0))
    out.extend(_counters(reading))
    if reading.capacity is not None:
        out.extend(_capacity(reading))
    return out


def _counter(key: str, name: str, path: tuple[str, ...]) -> Entity:
    return Entity(
        key,
        name,
        templates.number(path),
        state_class="total_increasing",
        precision=0,
        category=DIAGNOSTIC,
    )


def _counters(reading: Reading) -> list[Entity]:
    out: list[Entity] = []
    failures = reading.power_failures
    if failures.short is not None:
        out.append(_counter("power_failures", "Power failures", ("power_failures", "short")))
    if failures.long is not None:
        out.append(
            _counter("long_power_failures", "Long power failures", ("power_failures", "long"))
        )
    for field, label, counts in (
        ("voltage_sags", "Voltage sags", reading.voltage_sags),
        ("voltage_swells", "Voltage swells", reading.voltage_swells),
    ):
        for phase in _PHASES:
            if getattr(counts, phase) is not None:
                out.append(
                    _counter(
                        f"{field.removeprefix('voltage_')}_{phase}",
                        f"{label} {phase.upper()}",
                        (field, phase),
                    )
                )
    return out


def _capacity(reading: Reading) -> list[Entity]:
    capacity = reading.capacity
    assert capacity is not None
    out: list[Entity] = []
    if capacity.average_demand_kw is not None:
        out.append(
            _power(
                "capacity_average",
                "Average demand (quarter-hour)",
                ("capacity", "average_demand_kw"),
            )
        )
    if capacity.month_max_kw is not None:
        out.append(
            _power("capacity_month_peak", "Peak demand this month", ("capacity", "month_max_kw"))
        )
    if capacity.month_max_at is not None:
        out.append(
            Entity(
                "capacity_month_peak_at",
                "Peak demand this month at",
                templates.timestamp(("capacity", "month_max_at")),
                "timestamp",
            )
        )
    return out


# M-Bus medium (the parser's `kind`) -> (device class, its name in entity and device names)
_MBUS_CLASSES: dict[str, tuple[str, str]] = {
    "gas": ("gas", "Gas"),
    "water": ("water", "Water"),
    "warm_water": ("water", "Warm water"),
    "heat": ("energy", "Heat"),
    "cooling": ("energy", "Cooling"),
    "heat_cooling": ("energy", "Heat/cooling"),
    "electricity": ("energy", "Energy"),
}


def mbus_label(device: MbusDevice) -> str:
    known = _MBUS_CLASSES.get(device.kind)
    return known[1] if known else "Reading"


def mbus_entities(device: MbusDevice) -> list[Entity]:
    """The sensors of one M-Bus sub-meter, found in `mbus` by its equipment id."""
    if device.value is None and device.timestamp is None:
        return []
    out: list[Entity] = []
    unit = ha_unit(device.unit)
    if device.value is not None:
        known = _MBUS_CLASSES.get(device.kind)
        device_class = known[0] if known else None
        if device_class is not None and not fits(device_class, "total_increasing", unit):
            # e.g. a gas meter in an unexpected unit: no class beats a wrong one
            device_class = None
        out.append(
            Entity(
                "value",
                mbus_label(device),
                templates.mbus(device, "value", numeric=True),
                device_class,
                "total_increasing",
                unit,
                3,
            )
        )
    if device.timestamp is not None:
        out.append(
            Entity(
                "captured_at",
                "Reading time",
                templates.mbus(device, "timestamp", numeric=False),
                "timestamp",
                category=DIAGNOSTIC,
            )
        )
    return out
