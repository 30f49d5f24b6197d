"""The reading document: the public JSON contract every MQTT subscriber depends on.

Plain Python classes (p1daemon/reading/doc.py says why not pydantic); their JSON is
p1daemon/reading/encode.py's, byte for byte what the former pydantic models published
(tests/test_reading_encode.py holds the two equal against those models, kept as an oracle).
Names marked as contract in the project's issues must never change; new fields may be
added. A register the meter does not send is null (or an empty list) - never invented,
never a zero - because Home Assistant and settlement tools read a zero as a meter reset.
"""

from __future__ import annotations

from datetime import datetime

from p1daemon.reading.doc import Doc as _Doc
from p1daemon.reading.doc import doc_field


class EnergyDirection(_Doc):
    """One direction of energy flow: import (1-0:1.x.x) or export (1-0:2.x.x).

    Tariffs are t1/t2 as the meter numbers them; what "t1" means (low in NL, day in BE)
    is configuration, not something the parser may guess.
    """

    t1_kwh: float | None = None
    t2_kwh: float | None = None
    t3_kwh: float | None = None
    t4_kwh: float | None = None
    total_kwh: float | None = None
    power_kw: float | None = None
    l1_kw: float | None = None
    l2_kw: float | None = None
    l3_kw: float | None = None


class Voltage(_Doc):
    l1_v: float | None = None
    l2_v: float | None = None
    l3_v: float | None = None


class Current(_Doc):
    l1_a: float | None = None
    l2_a: float | None = None
    l3_a: float | None = None


class PhaseCounts(_Doc):
    """Voltage sag or swell counters per phase."""

    l1: int | None = None
    l2: int | None = None
    l3: int | None = None


class PowerFailureEvent(_Doc):
    end: datetime | None
    duration_s: int | None


class PowerFailures(_Doc):
    short: int | None = None
    long: int | None = None
    log: list[PowerFailureEvent] = doc_field(default_factory=list)


class MbusDevice(_Doc):
    """A sub-meter on M-Bus channel 1-4, identified by what it is, not where it sits."""

    channel: int
    device_type: int | None = None
    kind: str = "unknown"
    equipment_id: str | None = None
    value: float | None = None
    unit: str | None = None
    timestamp: datetime | None = None
    valve: int | None = None


class CapacityPeak(_Doc):
    month: datetime | None
    at: datetime | None
    max_kw: float | None


class Capacity(_Doc):
    """Belgian capacity-tariff data (e-MUCS): the quarter-hour demand and its peaks."""

    average_demand_kw: float | None = None
    month_max_kw: float | None = None
    month_max_at: datetime | None = None
    history: list[CapacityPeak] = doc_field(default_factory=list)


class Limiter(_Doc):
    value: float | None
    unit: str | None


class Reading(_Doc):
    """Everything one telegram said, with import and export kept strictly apart."""

    equipment_id: str | None = None
    header: str
    manufacturer: str | None = None
    dsmr_version: str | None = None
    version_code: str | None = None
    timestamp: datetime | None = None
    tariff: int | None = None
    import_: EnergyDirection = doc_field(default_factory=EnergyDirection, json_name="import")
    export: EnergyDirection = doc_field(default_factory=EnergyDirection)
    voltage: Voltage = doc_field(default_factory=Voltage)
    current: Current = doc_field(default_factory=Current)
    voltage_sags: PhaseCounts = doc_field(default_factory=PhaseCounts)
    voltage_swells: PhaseCounts = doc_field(default_factory=PhaseCounts)
    power_failures: PowerFailures = doc_field(default_factory=PowerFailures)
    message: str | None = None
    message_code: str | None = None
    breaker_state: int | None = None
    limiter: Limiter | None = None
    fuse_threshold_a: float | None = None
    mbus: list[MbusDevice] = doc_field(default_factory=list)
    capacity: Capacity | None = None
    other: dict[str, str] = doc_field(default_factory=dict)
    unparsed: list[str] = doc_field(default_factory=list)
