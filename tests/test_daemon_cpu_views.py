"""The views' cheaper steps per reading give what the general ones give.

- The energy views' registers of a reading whose register values are the very float
  objects of the meter's last reading (the layout decoder keeps one float per text) are
  the last sample's mapping: held to `_registers` (the general conversion) exactly,
  exponent and sign of every Decimal included, over every capture and over generated
  readings that share and swap float objects, negative zeros among them.
- Home Assistant's per-reading shape (`_shape`): two readings with the same shape have
  the same discovery configs, over every capture, so skipping the configs of a reading
  whose shape did not change loses nothing.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from conftest import capture_files

from p1daemon.frame.events import Frame
from p1daemon.frame.framer import Framer
from p1daemon.parse.layout import LayoutParser
from p1daemon.publish.topics import Topics
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import EnergyDirection
from p1daemon.views.energy import samples
from p1daemon.views.homeassistant.announcer import _shape
from p1daemon.views.homeassistant.discovery import discovery_messages
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _readings(path: Path) -> list[MeterReading]:
    """Every telegram of a capture the parser takes, as a layout parser meets them."""
    parser = LayoutParser()
    out = []
    framer = Framer(check_crc=False)
    frames = [e for e in framer.feed(path.read_bytes()) if isinstance(e, Frame)]
    for n, frame in enumerate(frames + frames):  # twice: the second pass hits the layouts
        try:
            reading = parser.parse(frame)
        except Exception:
            continue
        out.append(
            MeterReading.from_reading(
                reading,
                meter="house",
                role="primary",
                ean=None,
                received_at=AT + timedelta(seconds=n),
            )
        )
    return out


def _texts(registers: Mapping[samples.Key, Decimal]) -> dict[samples.Key, str]:
    return {key: str(value) for key, value in registers.items()}


def _general(reading: MeterReading) -> dict[samples.Key, str]:
    return _texts(samples._registers(reading.import_, reading.export))


def test_registers_of_every_capture_are_the_general_conversion() -> None:
    taken = 0
    for path in capture_files():
        samples._LAST_REGISTERS.clear()
        last = None
        for reading in _readings(path):
            registers = samples._reading_registers(reading)
            assert _texts(registers) == _general(reading), path.name
            taken += registers is last
            last = registers
    assert taken > 100  # the shared mapping was served (repeated registers)


def _reading(values: list[float | None]) -> MeterReading:
    fields = ("t1_kwh", "t2_kwh", "t3_kwh", "t4_kwh", "total_kwh")
    return MeterReading(
        header="/ISK5\\2M550E-1012",
        timestamp=AT,
        import_=EnergyDirection(**dict(zip(fields, values[:5], strict=True))),
        export=EnergyDirection(**dict(zip(fields, values[5:], strict=True))),
        meter="generated",
        role="primary",
        received_at=AT,
    )


def test_generated_readings_sharing_float_objects() -> None:
    """Readings built from a small pool of float objects (so consecutive ones often hold
    the very same objects), with +0.0 and -0.0 among them."""
    rng = random.Random(16)
    pool: list[float | None] = [None, 0.0, -0.0, 1.5, 2.25, 5123.456, float(1), 0.001]
    samples._LAST_REGISTERS.clear()
    values = [rng.choice(pool) for _ in range(10)]
    for _ in range(3000):
        if rng.random() < 0.4:  # a few registers swapped for other objects, or none
            for _ in range(rng.randint(1, 3)):
                values[rng.randrange(10)] = rng.choice(pool)
        reading = _reading(list(values))
        assert _texts(samples._reading_registers(reading)) == _general(reading)


def test_equal_home_assistant_shapes_have_equal_configs() -> None:
    settings = HomeAssistantSettings(discovery=True)
    topics = Topics("p1")
    compared = 0
    for path in capture_files():
        seen: dict[object, list[tuple[str, str, dict[str, Any]]]] = {}
        for reading in _readings(path)[::7]:
            configs = [
                (m.topic, m.unique_id, m.payload)
                for m in discovery_messages(reading, settings, topics)
            ]
            shape = _shape(reading)
            if shape in seen:
                assert seen[shape] == configs, path.name
                compared += 1
            else:
                seen[shape] = configs
    assert compared > 50
